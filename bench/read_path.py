"""The read path: DescribeTaskInfo against a real ``clustertasks serve --no-executor``.

Figures, each from a separate load-generator process (bench/load.py) in the same run:
  1. The floor (bench/floor.py: FastAPI, one SQLite primary-key lookup of the stored
     document, uvicorn with httptools and uvloop, one process) vs signed DescribeTaskInfo
     through ``clustertasks serve --workers N``, vs the same server's GET /healthz, and vs
     DescribeTaskInfo with ``--auth off``: requests/s, p50, p99.
  2. DescribeTaskInfo p99 with many stored tasks vs with the small store.
  3. DescribeTaskInfo p99 for a task with many task_result entries vs one with 1.
It also measures what storing tasks costs: through the store as the engine writes them
(tests/support/factories.py) and by bulk-copying that task's rows.

    .venv/bin/python bench/read_path.py                      # 1,000 vs 100,000 tasks
    .venv/bin/python bench/read_path.py --small 5 --large 20 --results 10 --requests 40
    .venv/bin/python bench/read_path.py --large 0            # the ratios only
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import factories  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

from bench import common, floor  # noqa: E402
from clustertasks import settings, testing  # noqa: E402
from clustertasks.api import render  # noqa: E402
from clustertasks.domain import ids, states, wire  # noqa: E402
from clustertasks.storage import database, schema  # noqa: E402

KEY_ID = "LTAIbenchreadpath0001"
KEY_SECRET = secrets.token_hex(16)
SERVER_ENV = {
    "CLUSTERTASKS_ACCESS_KEY_ID": KEY_ID,
    "CLUSTERTASKS_ACCESS_KEY_SECRET": KEY_SECRET,
    # The per-key throttle would measure itself, not the read path.
    "CLUSTERTASKS_RATE_LIMIT": "1000000",
    "CLUSTERTASKS_RATE_BURST": "1000000",
}
CHUNK = 2000
WRK_MAX_RPS = 25_000
"""Requests written for wrk per second of a measurement (it fails when a server would take
more): well above what one small machine answers."""


class Seeder:
    """Stores tasks: the first ones through the store, the rest by copying their rows."""

    def __init__(self, url: str, *, seed: int = 11, start_us: int = factories.BASE_US) -> None:
        self.url = url
        self.database = database.Database.open(settings.StorageSettings(url=url))
        self.store = self.database.tasks
        self.engine = sa.create_engine(url)
        self.ids = ids.IdGenerator(random.Random(seed))
        self.task_ids: list[str] = []
        self.store_seconds = 0.0
        self.store_count = 0
        self.copy_seconds = 0.0
        self.copy_count = 0
        self._template: dict[str, list[dict[str, Any]]] | None = None
        self._created_us = start_us

    def close(self) -> None:
        self.database.close()
        self.engine.dispose()

    def through_store(self, count: int, **kwargs: Any) -> list[str]:
        made: list[str] = []
        started = time.perf_counter()
        for _ in range(count):
            self._created_us += 1000
            view = factories.seed_task(
                self.store,
                state=states.TaskState.SUCCESS,
                created_us=self._created_us,
                cluster_id=f"c{len(self.task_ids) % 100:032x}",
                **kwargs,
            )
            made.append(view.task.task_id)
        self.store_seconds += time.perf_counter() - started
        self.store_count += count
        self.task_ids += made
        return made

    def copies(self, count: int) -> None:
        if self._template is None:
            template = self.task_ids[0]
            tables = (schema.tasks, schema.stages, schema.events, schema.results)
            with self.engine.connect() as conn:
                self._template = {
                    t.name: [
                        dict(r._mapping)
                        for r in conn.execute(sa.select(t).where(t.c.task_id == template))
                    ]
                    for t in tables
                }
        started = time.perf_counter()
        done = 0
        while done < count:
            rows: dict[str, list[dict[str, Any]]] = {name: [] for name in self._template}
            for _ in range(min(CHUNK, count - done)):
                self._created_us += 1000
                task_id = self.ids.task_id(self._created_us)
                cluster = f"c{len(self.task_ids) % 100:032x}"
                for name, template_rows in self._template.items():
                    for row in template_rows:
                        copy = {**row, "task_id": task_id}
                        if name == "tasks":
                            copy.update(
                                cluster_id=cluster,
                                target_id=cluster,
                                created_us=self._created_us,
                                client_token=None,
                            )
                        rows[name].append(copy)
                self.task_ids.append(task_id)
                done += 1
            with self.engine.begin() as conn:
                for name in ("tasks", "task_stages", "task_events", "task_results"):
                    if rows.get(name):
                        conn.execute(sa.insert(schema.metadata.tables[name]), rows[name])
        self.copy_seconds += time.perf_counter() - started
        self.copy_count += count

    def with_results(self, count: int) -> str:
        instances = [f"i-{n:020d}" for n in range(count)]
        return self.through_store(1, instances=instances)[0]

    def documents(self, task_ids: list[str]) -> list[tuple[str, bytes]]:
        """The DescribeTaskInfo documents of ``task_ids`` as the server renders them."""
        return [
            (task_id, render.dumps(wire.task_document(self.store.describe_task(task_id))))
            for task_id in task_ids
        ]


class FloorProcess:
    """bench/floor.py on a free port, serving ``documents`` from a SQLite file of its own."""

    def __init__(self, work: Path, documents: list[tuple[str, bytes]]) -> None:
        path = work / "floor.db"
        floor.write_documents(str(path), documents)
        self.port = testing.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                *(sys.executable, str(ROOT / "bench" / "floor.py")),
                *("--db", str(path), "--port", str(self.port)),
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the floor app exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0, trust_env=False).is_success:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the floor app did not answer within 60 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _pooled(runs: list[dict[str, float]]) -> dict[str, float]:
    """Several runs of one figure as one: requests/s over them all, the median p50/p99."""
    seconds = sum(r["seconds"] for r in runs)
    requests = sum(r["requests"] for r in runs)
    pooled = {
        "requests": requests,
        "seconds": seconds,
        "rps": requests / seconds if seconds else 0.0,
        "p50_ms": common.median([r["p50_ms"] for r in runs]),
        "p99_ms": common.median([r["p99_ms"] for r in runs]),
        "not_200": sum(r["not_200"] for r in runs),
    }
    if requests and all("server_cpu_us" in r for r in runs):
        # The server's CPU over all the runs' requests.
        pooled["server_cpu_us"] = sum(r["server_cpu_us"] * r["requests"] for r in runs) / requests
    return pooled


def serve_flags() -> str:
    """``clustertasks serve --help``: which flags this server has (``--auth`` arrived
    with signatures, ``--workers`` with API worker processes)."""
    done = subprocess.run(
        [sys.executable, "-m", "clustertasks", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout


def _pid(server: ServerProcess) -> int | None:
    return server.process.pid if server.process is not None else None


def measure(
    url: str,
    work: Path,
    name: str,
    paths: list[str],
    requests: int,
    concurrency: int,
    time_limit: float,
    pid: int | None = None,
    client: str = "raw",
    quiet: bool = False,
) -> dict[str, float]:
    path_file = work / f"paths-{len(list(work.glob('paths-*')))}.txt"
    path_file.write_text("\n".join(paths) + "\n")
    command = [
        sys.executable,
        str(ROOT / "bench" / "load.py"),
        "--url",
        url,
        "--paths",
        str(path_file),
        "--requests",
        str(requests),
        "--concurrency",
        str(concurrency),
        "--time-limit",
        str(time_limit),
        "--access-key-id",
        KEY_ID,
        "--access-key-secret",
        KEY_SECRET,
        "--client",
        client,
    ]
    cpu_before = common.cpu_seconds(pid) if pid is not None else 0.0
    figures: dict[str, float] = common.json_line(command, time_limit + 120, "load generator")
    if quiet:
        return figures
    cpu = ""
    if pid is not None and figures["requests"]:
        used = common.cpu_seconds(pid) - cpu_before
        figures["server_cpu_us"] = used / figures["requests"] * 1e6
        cpu = f"  server CPU {figures['server_cpu_us']:5.0f} µs/req"
    print(
        f"  {name:34} {figures['rps']:8.0f} req/s  p50 {figures['p50_ms']:7.2f} ms  "
        f"p99 {figures['p99_ms']:7.2f} ms  ({figures['requests']:.0f} requests, "
        f"{figures['not_200']:.0f} not 200){cpu}"
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", type=int, default=1000, help="tasks in the small store")
    parser.add_argument(
        "--large", type=int, default=100_000, help="tasks in the large store (0: skip)"
    )
    parser.add_argument("--results", type=int, default=1000, help="task_result entries")
    parser.add_argument("--through-store", type=int, default=200, help="tasks seeded via store")
    parser.add_argument(
        "--requests", type=int, default=4000, help="raw client: requests per measurement"
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--time-limit", type=float, default=30.0, help="raw client: at most, per measurement"
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="wrk: seconds of each measurement"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="serve --workers: API processes (default: one per core)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="floor/server pairs measured for each ratio"
    )
    parser.add_argument(
        "--client",
        choices=("wrk", "raw"),
        default="wrk" if shutil.which("wrk") else "raw",
        help="load generator (bench/load.py): wrk where it is installed (scripts/ensure-wrk)",
    )
    parser.add_argument("--json", help="merge the figures into this results file")
    args = parser.parse_args()
    rng = random.Random(3)
    print(f"read-path bench; {common.machine()}; load generator: {args.client}")
    flags = serve_flags()
    workers = args.workers if "--workers" in flags else 1
    worker_args = ("--workers", str(workers)) if "--workers" in flags else ()
    results: dict[str, Any] = {
        "small": args.small,
        "large": args.large,
        "workers": workers,
        "client": args.client,
        "machine": common.machine(),
    }
    with tempfile.TemporaryDirectory(prefix="ct-bench-read-") as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work / 'clustertasks.db'}"
        seeder = Seeder(url)
        try:
            seeder.through_store(min(args.through_store, args.small))
            seeder.copies(args.small - len(seeder.task_ids))
            one = seeder.with_results(1)
            many = seeder.with_results(args.results)
            small_ids = list(seeder.task_ids[: args.small])
            documents = seeder.documents(small_ids)
        finally:
            seeder.close()
        per_task_ms = seeder.store_seconds / max(seeder.store_count, 1) * 1000
        print(
            f"  storing tasks: {per_task_ms:.2f} ms each through the store "
            f"({seeder.store_count} tasks, ~16 commits each)"
        )

        def run(
            target: str, name: str, paths: list[str], pid: int | None = None
        ) -> dict[str, float]:
            if args.client == "wrk":
                # wrk sends for a fixed time: requests enough for WRK_MAX_RPS are written.
                requests, seconds = int(args.seconds * WRK_MAX_RPS), args.seconds
            else:
                requests, seconds = args.requests, args.time_limit
            return measure(
                target,
                work,
                name,
                paths,
                requests,
                args.concurrency,
                seconds,
                pid,
                args.client,
            )

        def warm(target: str, paths: list[str]) -> None:
            """Every path asked for a few times, outside the figures: the floor's and the
            server's SQLite pages, and the documents each API worker keeps, are then about
            as warm in the first measured round as in the last (a keep-alive connection
            stays with one worker, so one pass would reach each worker with half the paths)."""
            distinct = list(dict.fromkeys(paths)) * 4
            measure(
                target,
                work,
                "warm-up",
                distinct,
                len(distinct),
                args.concurrency,
                args.time_limit,
                quiet=True,
            )

        def task_paths(pool: list[str]) -> list[str]:
            return [f"/tasks/{rng.choice(pool)}" for _ in range(min(args.requests, 5000))]

        small_paths = task_paths(small_ids)
        # The floor runs beside the servers, idle but for its own turns: each figure of a
        # server is measured right after one of the floor and right before one of the same
        # server's /healthz, so a ratio compares figures of the same minute on a shared,
        # noisy machine (the median of --rounds is kept).
        floor_app = FloorProcess(work, documents)
        floor_label = f"floor: FastAPI + SQLite ({args.small} docs)"
        round_ratios: dict[str, list[float]] = {
            "signed": [],
            "auth_off": [],
            "signed_vs_healthz": [],
            "auth_off_vs_healthz": [],
        }

        def against_floor(
            server: ServerProcess, name: str, key: str, which: str, healthz: tuple[str, str]
        ) -> None:
            floors, served, health = [], [], []
            warm(floor_app.url, small_paths)
            warm(server.url, small_paths)
            for _ in range(args.rounds):
                floors.append(run(floor_app.url, floor_label, small_paths, floor_app.process.pid))
                served.append(run(server.url, name, small_paths, _pid(server)))
                health.append(run(server.url, healthz[0], ["/healthz"], _pid(server)))
                round_ratios[which].append(common.ratio(served[-1]["rps"], floors[-1]["rps"]))
                round_ratios[f"{which}_vs_healthz"].append(
                    common.ratio(served[-1]["rps"], health[-1]["rps"])
                )
            results.setdefault("floor_rounds", []).extend(floors)
            results[key] = _pooled(served)
            results[healthz[1]] = _pooled(health)

        try:
            server = ServerProcess(url, work, "--no-executor", *worker_args, env=SERVER_ENV).start()
            try:
                against_floor(
                    server,
                    f"DescribeTaskInfo ({args.small} tasks)",
                    "describe_small",
                    "signed",
                    ("GET /healthz", "healthz"),
                )
                results["describe_1_result"] = run(
                    server.url, "DescribeTaskInfo (1 result)", [f"/tasks/{one}"], _pid(server)
                )
                results["describe_many_results"] = run(
                    server.url,
                    f"DescribeTaskInfo ({args.results} results)",
                    [f"/tasks/{many}"],
                    _pid(server),
                )
            finally:
                server.stop()
            if "--auth" in flags:
                # The same reads with signature checks off: what the read path costs alone.
                server = ServerProcess(
                    url, work, "--no-executor", "--auth", "off", *worker_args, env=SERVER_ENV
                ).start()
                try:
                    against_floor(
                        server,
                        f"DescribeTaskInfo ({args.small} tasks, --auth off)",
                        "describe_small_auth_off",
                        "auth_off",
                        ("GET /healthz (--auth off)", "healthz_auth_off"),
                    )
                finally:
                    server.stop()
        finally:
            floor_app.stop()
        results["floor"] = _pooled(results["floor_rounds"])
        results["round_ratios"] = round_ratios
        copy_rate = 0.0
        db_bytes = 0
        if args.large > args.small:
            # Newer ids from another sequence: the copies never clash with the first tasks.
            seeder = Seeder(url, seed=12, start_us=factories.BASE_US + 10**12)
            try:
                seeder.task_ids = small_ids[:1]
                seeder.copies(args.large - args.small)
            finally:
                seeder.close()
            copy_rate = seeder.copy_count / seeder.copy_seconds if seeder.copy_seconds else 0.0
            print(f"  bulk-copying {seeder.copy_count} more tasks: {copy_rate:.0f} tasks/s")
            # As many tasks as the small store, drawn from the copies, asked for in the same
            # pattern: the two p99s then differ by the store's size alone, not by how often
            # a worker has already kept a document (every request would miss it with a
            # million distinct ids, against three in four with a thousand).
            copied = seeder.task_ids[1:]
            large_ids = rng.sample(copied, min(len(small_ids), len(copied)))
            server = ServerProcess(url, work, "--no-executor", *worker_args, env=SERVER_ENV).start()
            try:
                # The small store's p99 again, on this server: the two p99s compared come
                # from the same minute, not from minutes apart on a shared machine.
                results["describe_small_again"] = run(
                    server.url,
                    f"DescribeTaskInfo ({args.small} of them)",
                    small_paths,
                    _pid(server),
                )
                results["describe_large"] = run(
                    server.url,
                    f"DescribeTaskInfo ({args.large} tasks)",
                    task_paths(large_ids),
                    _pid(server),
                )
            finally:
                server.stop()
            db_bytes = sum(p.stat().st_size for p in work.glob("clustertasks.db*"))
    results["store_ms_per_task"] = per_task_ms
    results["copy_tasks_per_s"] = copy_rate
    results["db_bytes_large"] = db_bytes
    ratios = {
        "describe_vs_floor_rps": common.median(round_ratios["signed"]),
        "describe_vs_healthz_rps": common.median(round_ratios["signed_vs_healthz"]),
        "p99_many_results_vs_1": common.ratio(
            results["describe_many_results"]["p99_ms"], results["describe_1_result"]["p99_ms"]
        ),
    }
    if "describe_large" in results:
        ratios["p99_large_vs_small"] = common.ratio(
            results["describe_large"]["p99_ms"], results["describe_small_again"]["p99_ms"]
        )
    if "describe_small_auth_off" in results:
        ratios["describe_auth_off_vs_floor_rps"] = common.median(round_ratios["auth_off"])
        ratios["describe_vs_healthz_rps_auth_off"] = common.median(
            round_ratios["auth_off_vs_healthz"]
        )
    results["ratios"] = ratios
    print(f"ratios ({workers} API worker processes):")
    print(
        f"  DescribeTaskInfo signed / floor requests/s = {ratios['describe_vs_floor_rps']:.2f} "
        f"(target >= 1.0; median of {args.rounds} back-to-back pairs: "
        f"{', '.join(f'{r:.2f}' for r in round_ratios['signed'])})"
    )
    print(
        "  DescribeTaskInfo signed / healthz requests/s = "
        f"{ratios['describe_vs_healthz_rps']:.2f} (target >= 0.6; median of {args.rounds} "
        f"pairs: {', '.join(f'{r:.2f}' for r in round_ratios['signed_vs_healthz'])})"
    )
    if "describe_auth_off_vs_floor_rps" in ratios:
        print(
            "  DescribeTaskInfo --auth off / floor requests/s = "
            f"{ratios['describe_auth_off_vs_floor_rps']:.2f} (target >= 1.2; pairs: "
            f"{', '.join(f'{r:.2f}' for r in round_ratios['auth_off'])})"
        )
    if "p99_large_vs_small" in ratios:
        print(
            f"  p99 {args.large}/{args.small} tasks = {ratios['p99_large_vs_small']:.2f}x "
            "(target <= 1.5)"
        )
        print(f"  database with {args.large} tasks: {db_bytes / 1e6:.0f} MB")
    print(f"  p99 {args.results}/1 results = {ratios['p99_many_results_vs_1']:.2f}x (target <= 10)")
    common.save(args.json, "read_path", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
