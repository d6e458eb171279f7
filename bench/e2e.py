"""End to end: concurrent node-pool scale-outs against a real ``clustertasks serve``.

Sets up clusters and node pools through the official SDK (not timed), then submits every
ScaleClusterNodePool at once (signed HTTP from this process, loopback only) and polls
DescribeTaskInfo until all tasks have ended. Prints the wall time, tasks/s and nodes/s,
and the server's peak resident memory (VmHWM of its process), next to its memory before
the scale-outs as the baseline from the same run.

    .venv/bin/python bench/e2e.py                       # 200 scale-outs of 5 nodes
    .venv/bin/python bench/e2e.py --scale-outs 2 --nodes 1 --pools-per-cluster 2
    .venv/bin/python bench/e2e.py --profile e2e.raw     # py-spy on the server, timed part only
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from alibabacloud_cs20151215.client import Client  # noqa: E402
from alibabacloud_tea_openapi.utils_models import Config  # noqa: E402
from tests.acceptance import sdk  # noqa: E402
from tests.support.server import PROXY_VARIABLES, ServerProcess  # noqa: E402

from bench import common  # noqa: E402
from bench.load import RawConnection  # noqa: E402

KEY_ID = "LTAIbenche2e00000001"
KEY_SECRET = secrets.token_hex(16)
TERMINAL = ("success", "fail", "canceled")
STOCKED_TYPES = ("ecs.g7.large", "ecs.g6.large")
WAIT_LIMIT = 600.0


def vm_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def start_profile(path: str, pid: int) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` into ``path`` until it is sent SIGINT."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    # --gil: the thread holding the GIL (the server is CPU-bound: where its Python goes);
    # --nonblocking: sampling without stopping the process, which slows a busy server down.
    command = [spy, "record", "--pid", str(pid), "--format", "raw", "--output", path]
    command += ["--gil", "--nonblocking"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the first request goes out
    return process


def sign(method: str, path: str, host: str, body: bytes) -> dict[str, str]:
    try:
        from clustertasks.domain import signing
    except ImportError:  # a server without signatures
        return {"content-type": "application/json"} if body else {}
    base = [("host", host)]
    if body:
        base.append(("content-type", "application/json"))
    bare, _, query = path.partition("?")
    request = signing.HttpRequest(method, bare, query, tuple(base), body)
    headers = signing.sign_acs3(request, KEY_ID, KEY_SECRET, now_us=time.time_ns() // 1000)
    if body:
        headers["content-type"] = "application/json"
    return headers


def setup(server: ServerProcess, clusters: int, pools_per_cluster: int) -> list[tuple[str, str]]:
    """Clusters with empty node pools, made with the official SDK; returns (cluster, pool)."""
    client = Client(
        Config(
            access_key_id=KEY_ID,
            access_key_secret=KEY_SECRET,
            endpoint=server.endpoint,
            protocol="http",
            region_id="cn-hangzhou",
        )
    )

    def one_cluster(n: int) -> list[tuple[str, str]]:
        cluster_id, _ = sdk.create_cluster(client, name=f"bench-{n}", pool_size=1)
        made = []
        for p in range(pools_per_cluster):
            # Two instance types: the simulated zone holds 1,000 of each, as a real one
            # runs out of stock, and 200 x 5 nodes plus the default pools would exceed it.
            types = [STOCKED_TYPES[p % len(STOCKED_TYPES)]]
            body = client.create_cluster_node_pool(
                cluster_id, sdk.pool_request(f"pool-{p}", 0, types)
            ).body
            made.append((cluster_id, body.nodepool_id, body.task_id))
        for _, _, task_id in made:
            sdk.wait_task(client, task_id, timeout=120)
        return [(c, np) for c, np, _ in made]

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return [pair for pairs in pool.map(one_cluster, range(clusters)) for pair in pairs]


async def scale_out(
    server: ServerProcess, pools: list[tuple[str, str]], nodes: int, concurrency: int
) -> dict[str, Any]:
    host = server.endpoint
    connections = [RawConnection("127.0.0.1", server.port) for _ in range(concurrency)]
    body = json.dumps({"count": nodes}).encode()
    task_ids: list[str] = []
    failures: list[str] = []
    queue = list(pools)

    async def submit(connection: RawConnection) -> None:
        while queue:
            cluster_id, pool_id = queue.pop()
            path = f"/clusters/{cluster_id}/nodepools/{pool_id}"
            status, payload = await connection.request(
                "POST", path, sign("POST", path, host, body), body
            )
            if status != 200:
                failures.append(f"{status} {payload[:200]!r}")
                continue
            task_ids.append(json.loads(payload)["task_id"])

    started = time.perf_counter()
    await asyncio.gather(*(submit(c) for c in connections))
    submitted = time.perf_counter() - started
    states: dict[str, str] = {}
    errors: dict[str, int] = {}
    pending = list(task_ids)
    deadline = started + WAIT_LIMIT
    while pending and time.perf_counter() < deadline:
        still: list[str] = []

        async def poll(connection: RawConnection, mine: list[str], still: list[str]) -> None:
            for task_id in mine:
                path = f"/tasks/{task_id}"
                status, payload = await connection.request(
                    "GET", path, sign("GET", path, host, b"")
                )
                document = json.loads(payload) if status == 200 else {}
                state = document.get("state", "")
                if state in TERMINAL:
                    states[task_id] = state
                    if state == "fail":
                        code = document.get("error", {}).get("code", "")
                        errors[code] = errors.get(code, 0) + 1
                else:
                    still.append(task_id)

        shares = [pending[i :: len(connections)] for i in range(len(connections))]
        await asyncio.gather(*(poll(c, s, still) for c, s in zip(connections, shares, strict=True)))
        pending = still
        if pending:
            await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - started
    for connection in connections:
        await connection.close()
    outcome: dict[str, int] = {}
    for state in states.values():
        outcome[state] = outcome.get(state, 0) + 1
    return {
        "seconds": elapsed,
        "submit_seconds": submitted,
        "tasks": len(task_ids),
        "rejected": len(failures),
        "first_rejection": failures[0] if failures else "",
        "unfinished": len(pending),
        "states": outcome,
        "errors": errors,
    }


def main() -> int:
    # The SDK honours proxy variables even for 127.0.0.1 (reference/sdk-wire.md §8).
    for name in PROXY_VARIABLES:
        os.environ.pop(name, None)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scale-outs", type=int, default=200, help="concurrent scale-outs")
    parser.add_argument("--nodes", type=int, default=5, help="nodes added by each")
    parser.add_argument(
        "--pools-per-cluster", type=int, default=20, help="node pools on each cluster"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="HTTP connections")
    parser.add_argument("--json", help="merge the figures into this results file")
    parser.add_argument(
        "--profile",
        help="record the server with py-spy (raw format, the thread holding the GIL) while the "
        "scale-outs run, into this file",
    )
    args = parser.parse_args()
    clusters = -(-args.scale_outs // args.pools_per_cluster)
    print(
        f"e2e bench: {args.scale_outs} scale-outs of {args.nodes} nodes on {clusters} clusters "
        f"at --sim-speed 0; {common.machine()}"
    )
    env = {
        "CLUSTERTASKS_ACCESS_KEY_ID": KEY_ID,
        "CLUSTERTASKS_ACCESS_KEY_SECRET": KEY_SECRET,
        "CLUSTERTASKS_RATE_LIMIT": "1000000",
        "CLUSTERTASKS_RATE_BURST": "1000000",
    }
    with tempfile.TemporaryDirectory(prefix="ct-bench-e2e-") as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work / 'clustertasks.db'}"
        server = ServerProcess(url, work, "--sim-speed", "0", "--sim-seed", "5", env=env)
        server.start()
        try:
            assert server.process is not None
            pid = server.process.pid
            setup_started = time.perf_counter()
            pools = setup(server, clusters, args.pools_per_cluster)[: args.scale_outs]
            setup_seconds = time.perf_counter() - setup_started
            print(
                f"  setup ({clusters} clusters, {len(pools)} pools via the SDK): "
                f"{setup_seconds:.1f} s",
                flush=True,
            )
            rss_before = vm_rss_kib(pid)
            hwm_before = common.rss_peak_kib(pid)
            cpu_before = common.cpu_seconds(pid)
            spy = start_profile(args.profile, pid) if args.profile else None
            try:
                figures = asyncio.run(scale_out(server, pools, args.nodes, args.concurrency))
            finally:
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(timeout=60)
            hwm = common.rss_peak_kib(pid)
            cpu = common.cpu_seconds(pid) - cpu_before
        finally:
            server.stop()
    figures.update(
        setup_seconds=setup_seconds,
        rss_before_kib=rss_before,
        hwm_before_kib=hwm_before,
        peak_rss_kib=hwm,
        server_cpu_seconds=cpu,
        nodes=args.nodes,
        scale_outs=args.scale_outs,
    )
    done = figures["states"].get("success", 0)
    print(
        f"  {figures['tasks']} scale-outs submitted in {figures['submit_seconds']:.2f} s, "
        f"all ended after {figures['seconds']:.2f} s: {figures['states']} "
        f"({figures['rejected']} rejected, {figures['unfinished']} unfinished)"
    )
    if figures["errors"]:
        print(f"  failures by error code: {figures['errors']}")
    if figures["first_rejection"]:
        print(f"  first rejection: {figures['first_rejection']}")
    seconds = figures["seconds"] or float("nan")
    print(
        f"  throughput: {done / seconds:.1f} scale-outs/s, {done * args.nodes / seconds:.1f} "
        f"nodes/s"
    )
    print(
        f"  server CPU during the scale-outs: {cpu:.1f} s (user + system; the wall time "
        f"above also holds waits for a machine others share)"
    )
    print(
        f"  server memory: peak (VmHWM) {(hwm or 0) / 1024:.0f} MiB; before the scale-outs "
        f"{(rss_before or 0) / 1024:.0f} MiB resident (ratio "
        f"{common.ratio(hwm or 0, rss_before or 0):.2f}x)"
    )
    common.save(args.json, "e2e", figures)
    return 0 if figures["tasks"] else 1


if __name__ == "__main__":
    sys.exit(main())
