"""The read path: DescribeTaskInfo against a real ``clustertasks serve --no-executor``.

Figures, each from a separate load-generator process (bench/load.py) in the same run:
  1. DescribeTaskInfo vs GET /healthz (the cheapest endpoint): requests/s, p50, p99.
  2. DescribeTaskInfo p99 with many stored tasks vs with the small store.
  3. DescribeTaskInfo p99 for a task with many task_result entries vs one with 1.
It also measures what storing tasks costs: through the store as the engine writes them
(tests/support/factories.py) and by bulk-copying that task's rows.

    .venv/bin/python bench/read_path.py                      # 1,000 vs 100,000 tasks
    .venv/bin/python bench/read_path.py --small 5 --large 20 --results 10 --requests 40
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import factories  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

from bench import common  # noqa: E402
from clustertasks import settings  # noqa: E402
from clustertasks.domain import ids, states  # noqa: E402
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


def auth_switch() -> bool:
    """Whether this server has ``--auth on|off`` (signatures arrived with it)."""
    done = subprocess.run(
        [sys.executable, "-m", "clustertasks", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return "--auth" in done.stdout


def measure(
    server: ServerProcess,
    work: Path,
    name: str,
    paths: list[str],
    requests: int,
    concurrency: int,
    time_limit: float,
) -> dict[str, float]:
    path_file = work / f"paths-{len(list(work.glob('paths-*')))}.txt"
    path_file.write_text("\n".join(paths) + "\n")
    command = [
        sys.executable,
        str(ROOT / "bench" / "load.py"),
        "--url",
        server.url,
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
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=time_limit + 120, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"load generator failed: {done.stderr.strip()[-500:]}")
    figures: dict[str, float] = json.loads(lines[-1])
    print(
        f"  {name:34} {figures['rps']:8.0f} req/s  p50 {figures['p50_ms']:7.2f} ms  "
        f"p99 {figures['p99_ms']:7.2f} ms  ({figures['requests']:.0f} requests, "
        f"{figures['not_200']:.0f} not 200)"
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", type=int, default=1000, help="tasks in the small store")
    parser.add_argument("--large", type=int, default=100_000, help="tasks in the large store")
    parser.add_argument("--results", type=int, default=1000, help="task_result entries")
    parser.add_argument("--through-store", type=int, default=200, help="tasks seeded via store")
    parser.add_argument("--requests", type=int, default=4000, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds per measurement")
    parser.add_argument("--json", help="merge the figures into this results file")
    args = parser.parse_args()
    rng = random.Random(3)
    print(f"read-path bench; {common.machine()}")
    results: dict[str, Any] = {"small": args.small, "large": args.large}
    with tempfile.TemporaryDirectory(prefix="ct-bench-read-") as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work / 'clustertasks.db'}"
        seeder = Seeder(url)
        try:
            seeder.through_store(min(args.through_store, args.small))
            seeder.copies(args.small - len(seeder.task_ids))
            one = seeder.with_results(1)
            many = seeder.with_results(args.results)
        finally:
            seeder.close()
        per_task_ms = seeder.store_seconds / max(seeder.store_count, 1) * 1000
        print(
            f"  storing tasks: {per_task_ms:.2f} ms each through the store "
            f"({seeder.store_count} tasks, ~16 commits each)"
        )
        small_ids = list(seeder.task_ids[: args.small])

        def run(name: str, paths: list[str]) -> dict[str, float]:
            return measure(
                server, work, name, paths, args.requests, args.concurrency, args.time_limit
            )

        def task_paths(pool: list[str]) -> list[str]:
            return [f"/tasks/{rng.choice(pool)}" for _ in range(min(args.requests, 5000))]

        server = ServerProcess(url, work, "--no-executor", env=SERVER_ENV).start()
        try:
            results["healthz"] = run("GET /healthz", ["/healthz"])
            results["describe_small"] = run(
                f"DescribeTaskInfo ({args.small} tasks)", task_paths(small_ids)
            )
            results["describe_1_result"] = run("DescribeTaskInfo (1 result)", [f"/tasks/{one}"])
            results["describe_many_results"] = run(
                f"DescribeTaskInfo ({args.results} results)", [f"/tasks/{many}"]
            )
        finally:
            server.stop()
        if auth_switch():
            # The same reads with signature checks off: what the read path costs by itself.
            server = ServerProcess(
                url, work, "--no-executor", "--auth", "off", env=SERVER_ENV
            ).start()
            try:
                results["healthz_auth_off"] = run("GET /healthz (--auth off)", ["/healthz"])
                results["describe_small_auth_off"] = run(
                    f"DescribeTaskInfo ({args.small} tasks, --auth off)", task_paths(small_ids)
                )
            finally:
                server.stop()
        # Newer ids from another sequence: the copies never clash with the first tasks.
        seeder = Seeder(url, seed=12, start_us=factories.BASE_US + 10**12)
        try:
            seeder.task_ids = small_ids[:1]
            seeder.copies(args.large - args.small)
        finally:
            seeder.close()
        copy_rate = seeder.copy_count / seeder.copy_seconds if seeder.copy_seconds else 0.0
        print(f"  bulk-copying {seeder.copy_count} more tasks: {copy_rate:.0f} tasks/s")
        large_ids = small_ids + seeder.task_ids[1:]
        server = ServerProcess(url, work, "--no-executor", env=SERVER_ENV).start()
        try:
            results["describe_large"] = run(
                f"DescribeTaskInfo ({args.large} tasks)", task_paths(large_ids)
            )
        finally:
            server.stop()
        db_bytes = sum(p.stat().st_size for p in work.glob("clustertasks.db*"))
    results["store_ms_per_task"] = per_task_ms
    results["copy_tasks_per_s"] = copy_rate
    results["db_bytes_large"] = db_bytes
    ratios = {
        "describe_vs_healthz_rps": common.ratio(
            results["describe_small"]["rps"], results["healthz"]["rps"]
        ),
        "p99_large_vs_small": common.ratio(
            results["describe_large"]["p99_ms"], results["describe_small"]["p99_ms"]
        ),
        "p99_many_results_vs_1": common.ratio(
            results["describe_many_results"]["p99_ms"], results["describe_1_result"]["p99_ms"]
        ),
    }
    if "describe_small_auth_off" in results:
        ratios["describe_vs_healthz_rps_auth_off"] = common.ratio(
            results["describe_small_auth_off"]["rps"], results["healthz_auth_off"]["rps"]
        )
        print(
            "ratio with --auth off: DescribeTaskInfo/healthz requests/s = "
            f"{ratios['describe_vs_healthz_rps_auth_off']:.2f}"
        )
    results["ratios"] = ratios
    print(
        f"ratios: DescribeTaskInfo/healthz requests/s = {ratios['describe_vs_healthz_rps']:.2f} "
        f"(target >= 0.6); p99 {args.large}/{args.small} tasks = "
        f"{ratios['p99_large_vs_small']:.2f}x (target <= 1.5); p99 {args.results}/1 results = "
        f"{ratios['p99_many_results_vs_1']:.2f}x (target <= 10)"
    )
    print(f"database with {args.large} tasks: {db_bytes / 1e6:.0f} MB")
    common.save(args.json, "read_path", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
