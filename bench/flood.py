"""Floods of waiting clients against one server, and what another client sees meanwhile.

    python bench/flood.py [--waiters 10000] [--kind poll|stream|silent|both] [--seconds 20]

Starts ``clustertasks serve --no-executor`` on a new SQLite file, creates a cluster (its task
stays ``running``: nothing runs it) and measures a *prober*: one client polling
DescribeTaskInfo on one keep-alive connection, signed as the SDK signs.

1. Baseline: the prober alone for ``--seconds``.
2. Flood: a second process opens ``--waiters`` connections as fast as it can, each a signed
   long-poll (``GET /tasks/T?wait=60&since=V``), an event stream (``GET /tasks/T/stream``)
   or nothing at all (``silent``: a socket that never sends its request), and holds them;
   the prober runs meanwhile for ``--seconds``.
3. Held: every waiter is connected and held; the prober runs again for ``--seconds`` and
   the server's RSS is read (2,000 open streams: ``--waiters 2000 --kind stream
   --serve-arg=--max-waits-per-key=2000``).
4. After: the flood closes its connections; the server's RSS is read again after a pause.

Prints the prober's p50/p99 in both phases and their ratio (flood / baseline), the
server's RSS before, at its peak during, and after the flood, and how the server answered
the waiters (200 started, 429 and 503 refusals with ``Retry-After``, closed by the server).

With ``--rate-seconds S`` (5 by default; 0 skips it), DescribeTaskInfo's requests/s is also
measured before the flood, while the crowd is held and after it has gone: bench/load.py
(wrk where it is installed), 16 connections, S seconds each; ``held_vs_around`` compares
the held window with the mean of the two around it, so a drift of the machine's speed
over the run cancels out. A one-connection prober's p50 is around a
millisecond, where the machine's noise is of the size of the effect; the server's
throughput is the steadier measure of what the crowd costs the others.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.load import RawConnection  # noqa: E402

KEY_ID = "bench-ak"
SECRET = "bench-secret"


def _signed(host: str, path: str) -> dict[str, str]:
    from clustertasks.domain import signing

    target, _, query = path.partition("?")
    request = signing.HttpRequest("GET", target, query, (("host", host),), b"")
    return signing.sign_acs3(request, KEY_ID, SECRET, now_us=time.time_ns() // 1000)


def _rate(url: str, task_id: str, seconds: float, workdir: Path, pid: int) -> dict[str, float]:
    """DescribeTaskInfo's requests/s for ``seconds`` (bench/load.py, 16 connections), and
    the server's CPU per request meanwhile (``server_cpu_us``: what the crowd costs each
    request, whatever else the machine runs)."""
    paths = workdir / "rate-paths.txt"
    paths.write_text(f"/tasks/{task_id}\n")
    wrk = shutil.which("wrk") is not None
    command = [sys.executable, str(ROOT / "bench" / "load.py"), "--url", url]
    command += ["--paths", str(paths), "--concurrency", "16"]
    command += ["--access-key-id", KEY_ID, "--access-key-secret", SECRET]
    if wrk:
        command += ["--client", "wrk", "--time-limit", str(seconds)]
        command += ["--requests", str(int(seconds * 25_000))]
    else:
        command += ["--client", "raw", "--time-limit", str(seconds), "--requests", "1000000"]
    cpu_before = common.cpu_seconds(pid)
    figures = common.json_line(command, seconds + 120, "load generator")
    if figures["requests"]:
        used = common.cpu_seconds(pid) - cpu_before
        figures["server_cpu_us"] = used / figures["requests"] * 1e6
    return figures


def _rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -- the flood, in a process of its own --------------------------------------------------------


async def _flood(port: int, task_id: str, since: int, waiters: int, kind: str) -> dict[str, Any]:
    host = f"127.0.0.1:{port}"
    counts: dict[str, int] = {}
    retry_after: set[str] = set()
    held: list[asyncio.StreamWriter] = []
    readers: list[asyncio.Task[None]] = []

    def count(what: str) -> None:
        counts[what] = counts.get(what, 0) + 1

    letting_go = asyncio.Event()

    async def watch(reader: asyncio.StreamReader) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            count("held to the end" if letting_go.is_set() else "closed by server, no answer")
            return
        status = head.split(b" ", 2)[1].decode()
        count(status)
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"retry-after:"):
                retry_after.add(line.split(b":", 1)[1].strip().decode())
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass
            if not letting_go.is_set():
                count(f"{status} then closed by server")

    async def one(index: int) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            count("connect failed")
            return
        held.append(writer)
        which = kind if kind != "both" else ("poll" if index % 2 else "stream")
        if which != "silent":
            if which == "poll":
                path = f"/tasks/{task_id}?wait=60&since={since}"
            else:
                path = f"/tasks/{task_id}/stream"
            lines = [f"GET {path} HTTP/1.1", f"host: {host}"]
            lines += [f"{k}: {v}" for k, v in _signed(host, path).items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        readers.append(asyncio.create_task(watch(reader)))

    started = time.perf_counter()
    for start in range(0, waiters, 500):
        await asyncio.gather(*(one(i) for i in range(start, min(waiters, start + 500))))
    connected = time.perf_counter() - started
    print(json.dumps({"connected": len(held), "seconds": round(connected, 2)}), flush=True)
    # Hold everything until told to let go (a line on stdin).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    letting_go.set()
    for writer in held:
        writer.close()
    await asyncio.sleep(0.5)
    for task in readers:
        task.cancel()
    return {"answers": counts, "retry_after": sorted(retry_after), "connect_seconds": connected}


def flood_main(args: argparse.Namespace) -> int:
    done = asyncio.run(_flood(args.port, args.task, args.since, args.waiters, args.kind))
    print(json.dumps(done), flush=True)
    return 0


# -- the prober and the measurements -----------------------------------------------------------


async def _probe(port: int, task_id: str, seconds: float) -> list[float]:
    connection = RawConnection("127.0.0.1", port)
    host = f"127.0.0.1:{port}"
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            path = f"/tasks/{task_id}"
            headers = _signed(host, path)
            started = time.perf_counter()
            try:
                status = await asyncio.wait_for(connection.get(path, headers), 30)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                status = 0
                await connection.close()
            latencies.append(time.perf_counter() - started)
            if status != 200:
                latencies[-1] = max(latencies[-1], 30.0)  # a failure counts as the timeout
            await asyncio.sleep(0.02)
    finally:
        await connection.close()
    return latencies


def _summary(latencies: list[float]) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "p50_ms": round(common.percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(common.percentile(latencies, 99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
    }


def _sample_rss(pid: int, until: float, peak: list[int]) -> None:
    while time.monotonic() < until:
        peak[0] = max(peak[0], _rss_kib(pid))
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiters", type=int, default=10_000)
    parser.add_argument("--kind", choices=("poll", "stream", "silent", "both"), default="poll")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0, help="Pause before RSS after.")
    parser.add_argument(
        "--rate-seconds",
        type=float,
        default=5.0,
        help="DescribeTaskInfo requests/s before and while held, each this long (0: skip)",
    )
    parser.add_argument("--serve-arg", action="append", default=[], help="Extra serve flag.")
    parser.add_argument("--json", help="Append the figures to this JSON file.")
    parser.add_argument("--flooder", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--since", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flooder:
        return flood_main(args)

    from clustertasks import testing
    from clustertasks.cli import client

    with tempfile.TemporaryDirectory(prefix="flood-") as workdir:
        server = testing.ServerProcess(
            ["--no-executor", "--sim-speed", "0", "--log-level", "warning", *args.serve_arg],
            Path(workdir),
            db_url=f"sqlite:///{workdir}/flood.db",
            env={
                "CLUSTERTASKS_ACCESS_KEY_ID": KEY_ID,
                "CLUSTERTASKS_ACCESS_KEY_SECRET": SECRET,
                "CLUSTERTASKS_RATE_LIMIT": "1000000",
                "CLUSTERTASKS_RATE_BURST": "1000000",
            },
        )
        with server:
            assert server.process is not None
            pid = server.process.pid
            made = httpx.post(
                f"{server.url}/clusters",
                json={"name": "flood", "region_id": "cn-hangzhou", "vswitch_ids": ["vsw-1"]},
                auth=client.SigningAuth(KEY_ID, SECRET),
                trust_env=False,
            ).json()
            task_id = made["task_id"]
            version = int(
                httpx.get(
                    f"{server.url}/tasks/{task_id}",
                    auth=client.SigningAuth(KEY_ID, SECRET),
                    trust_env=False,
                ).headers["x-clustertasks-task-version"]
            )
            baseline = asyncio.run(_probe(server.port, task_id, args.seconds))
            rate_before = (
                _rate(server.url, task_id, args.rate_seconds, Path(workdir), pid)
                if args.rate_seconds
                else None
            )
            rss_before = _rss_kib(pid)

            flooder = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--flooder",
                    "--port",
                    str(server.port),
                    "--task",
                    task_id,
                    "--since",
                    str(version),
                    "--waiters",
                    str(args.waiters),
                    "--kind",
                    args.kind,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            )
            assert flooder.stdin is not None
            assert flooder.stdout is not None
            peak = [rss_before]
            sampler = threading.Thread(
                target=_sample_rss,
                args=(pid, time.monotonic() + args.seconds + 120, peak),
                daemon=True,
            )
            sampler.start()
            during = asyncio.run(_probe(server.port, task_id, args.seconds))
            connected = json.loads(flooder.stdout.readline() or "{}")
            # Every waiter connected and still held: what an open crowd costs in the steady
            # state, once its arrival is over.
            held = asyncio.run(_probe(server.port, task_id, args.seconds))
            rss_held = _rss_kib(pid)
            rate_held = (
                _rate(server.url, task_id, args.rate_seconds, Path(workdir), pid)
                if args.rate_seconds
                else None
            )
            rss_during_peak = peak[0]
            flooder.stdin.write("\n")
            flooder.stdin.flush()
            outcome = json.loads(flooder.stdout.readline() or "{}")
            flooder.wait(60)
            time.sleep(args.settle)
            rss_after = _rss_kib(pid)
            after = asyncio.run(_probe(server.port, task_id, min(args.seconds, 5.0)))
            # Once more with the crowd gone: the machine drifts between the windows, and the
            # held one is compared with the mean of the two around it.
            rate_after = (
                _rate(server.url, task_id, args.rate_seconds, Path(workdir), pid)
                if args.rate_seconds
                else None
            )
            returncode = server.stop()
            if returncode != 0:
                print(server.log()[-3000:], file=sys.stderr)

    base, flood = _summary(baseline), _summary(during)
    figures = {
        "machine": common.machine(),
        "waiters": args.waiters,
        "kind": args.kind,
        "serve_args": args.serve_arg,
        "prober_baseline": base,
        "prober_during_flood": flood,
        "prober_while_held": _summary(held),
        "prober_after": _summary(after),
        "p99_ratio_flood_vs_baseline": round(common.ratio(flood["p99_ms"], base["p99_ms"]), 2),
        "p50_ratio_held_vs_baseline": round(
            common.ratio(_summary(held)["p50_ms"], base["p50_ms"]), 2
        ),
        "rss_mib": {
            "before": round(rss_before / 1024, 1),
            "peak_during": round(rss_during_peak / 1024, 1),
            "held": round(rss_held / 1024, 1),
            "after": round(rss_after / 1024, 1),
        },
        "flood": {**connected, **outcome},
        "describe_rate": None
        if rate_before is None or rate_held is None or rate_after is None
        else {
            "before_rps": round(rate_before["rps"]),
            "held_rps": round(rate_held["rps"]),
            "after_rps": round(rate_after["rps"]),
            "held_vs_before": round(common.ratio(rate_held["rps"], rate_before["rps"]), 2),
            "held_vs_around": round(
                common.ratio(rate_held["rps"], (rate_before["rps"] + rate_after["rps"]) / 2), 2
            ),
            "before_server_cpu_us": round(rate_before.get("server_cpu_us", 0.0)),
            "held_server_cpu_us": round(rate_held.get("server_cpu_us", 0.0)),
            "after_server_cpu_us": round(rate_after.get("server_cpu_us", 0.0)),
            "not_200": int(rate_before["not_200"] + rate_held["not_200"] + rate_after["not_200"]),
        },
        "server_exit": returncode,
    }
    print(json.dumps(figures, indent=2))
    common.save(args.json, f"flood-{args.kind}", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
