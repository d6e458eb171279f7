"""The read path in-process: CPU time per DescribeTaskInfo through the ASGI application.

No sockets and no server: requests are handed to ``FastPath(create_app(...))`` directly,
``--concurrency`` at a time on one event loop, on a SQLite file with ``--tasks`` tasks
whose documents are kept (each is read once before the timed part). Prints the CPU
microseconds per request of signed DescribeTaskInfo, of ``--auth off`` DescribeTaskInfo
and of ``/healthz``, best of ``--repeat``. Run it with another checkout's ``src`` on
``PYTHONPATH`` to compare two versions of the code back to back.

``--workers N`` measures signed and ``--auth off`` DescribeTaskInfo in N processes at once
on the one database, as ``serve --workers N`` runs them: each process's nonce commits then
meet the others' (the write lock, the checkpoints, the page caches the commits of another
connection empty). Each process prints its own figure.

    .venv/bin/python bench/read_asgi.py
    .venv/bin/python bench/read_asgi.py --requests 4000 --profile signed.prof
    .venv/bin/python bench/read_asgi.py --workers 2 --concurrency 4
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.conftest import services_for  # noqa: E402
from tests.support import factories  # noqa: E402
from tests.support import signing as test_signing  # noqa: E402

from clustertasks import clock, settings  # noqa: E402
from clustertasks.api import app as api_app  # noqa: E402
from clustertasks.api import fastpath  # noqa: E402
from clustertasks.domain import signing  # noqa: E402
from clustertasks.service import auth as auth_service  # noqa: E402
from clustertasks.storage import database as storage_database  # noqa: E402


class Bench:
    def __init__(self, db: storage_database.Database, auth_on: bool) -> None:
        config = test_signing.UNLIMITED
        if not auth_on:
            config = dataclasses.replace(config, enabled=False)
        test_signing.add_key(db)
        self.app = fastpath.FastPath(
            api_app.create_app(
                services_for(db),
                settings.WireSettings(),
                authenticator=auth_service.Authenticator(
                    db.keys, config, clock.SystemClock(), db.audit
                ),
            )
        )
        self.nonce = 0

    def scope(self, path: str, signed: bool = True) -> dict[str, Any]:
        headers = {"host": "127.0.0.1:8000", "accept": "application/json", "user-agent": "bench"}
        if signed:
            self.nonce += 1
            unsigned = signing.HttpRequest("GET", path, "", signing.lower_headers(headers))
            headers |= signing.sign_acs3(
                unsigned,
                test_signing.KEY_ID,
                test_signing.SECRET,
                now_us=clock.SystemClock().now_us(),
                # The process id too: with --workers, two processes may read the same
                # clock at the same count: a replay, refused, and a worker stops at any
                # answer but 200.
                nonce=f"bench-{os.getpid()}-{time.time_ns()}-{self.nonce}",
            )
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
        }

    async def one(self, scope: dict[str, Any]) -> int:
        status = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(scope, receive, send)
        return status

    async def run(self, scopes: list[dict[str, Any]], concurrency: int) -> float:
        """CPU seconds for ``scopes``, ``concurrency`` at a time."""
        started = time.process_time()
        for first in range(0, len(scopes), concurrency):
            batch = scopes[first : first + concurrency]
            statuses = await asyncio.gather(*(self.one(s) for s in batch))
            if any(status != 200 for status in statuses):
                raise RuntimeError(f"answers other than 200: {sorted(set(statuses))}")
        return time.process_time() - started


def seed(args: argparse.Namespace, db: storage_database.Database) -> list[str]:
    return [
        "/tasks/" + factories.seed_task(db.tasks, created_us=factories.BASE_US + n).task.task_id
        for n in range(args.tasks)
    ]


async def measure(
    args: argparse.Namespace,
    db: storage_database.Database,
    paths: list[str],
    together: Any = None,
) -> None:
    cases = [
        ("DescribeTaskInfo, signed", True, None),
        ("DescribeTaskInfo, --auth off", False, None),
        ("/healthz", True, "/healthz"),
    ]
    if together is not None:
        cases = cases[:2]
    for label, auth_on, path_of in cases:
        bench = Bench(db, auth_on)
        await bench.run([bench.scope(p) for p in paths], args.concurrency)  # keep documents
        best = float("inf")
        for _ in range(args.repeat):
            if together is not None:
                together.wait()  # every process times the same stretch
            scopes = [
                bench.scope(path_of or paths[n % len(paths)], signed=path_of is None)
                for n in range(args.requests)
            ]
            profile = cProfile.Profile() if args.profile and label.endswith("signed") else None
            if profile is not None:
                profile.enable()
            seconds = await bench.run(scopes, args.concurrency)
            if profile is not None:
                profile.disable()
                profile.dump_stats(args.profile)
            best = min(best, seconds)
        who = f" (process {os.getpid()})" if together is not None else ""
        print(f"  {label:32} {best / args.requests * 1e6:7.1f} µs of CPU per request{who}")


def worker(args: argparse.Namespace, url: str, paths: list[str], together: Any) -> None:
    """One of ``--workers`` processes: the measurement on a connection of its own."""
    db = storage_database.Database.open(settings.StorageSettings(url=url))
    try:
        asyncio.run(measure(args, db, paths, together))
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", help="write a cProfile of the signed requests here")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes measuring at once on one database"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = storage_database.Database.open(settings.StorageSettings(url=url))
        try:
            paths = seed(args, db)
            if args.workers <= 1:
                asyncio.run(measure(args, db, paths))
                return
        finally:
            db.close()
        context = multiprocessing.get_context("spawn")
        together = context.Barrier(args.workers)
        processes = [
            context.Process(target=worker, args=(args, url, paths, together))
            for _ in range(args.workers)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        if any(process.exitcode != 0 for process in processes):
            sys.exit("a worker process failed")


if __name__ == "__main__":
    main()
