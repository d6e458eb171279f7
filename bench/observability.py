"""What metrics and traces cost: engine throughput (N tasks x 5 no-op stages on SQLite) with
the engine's telemetry hooks doing nothing (the baseline), with metrics as every server
has them (tracing off), and with tracing on (spans to the SDK's in-memory exporter); then
how long one ``GET /metrics`` render takes with that many tasks in the database.

Each configuration runs ``--rounds`` times, interleaved, on a new database each time; the
best round counts.

    .venv/bin/python bench/observability.py --tasks 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from bench import common, no_cloud  # noqa: E402
from clustertasks import settings  # noqa: E402
from clustertasks.domain import records  # noqa: E402
from clustertasks.engine import executor  # noqa: E402
from clustertasks.observability import telemetry, tracing  # noqa: E402
from clustertasks.operations import base  # noqa: E402
from clustertasks.service import control  # noqa: E402
from clustertasks.storage import database  # noqa: E402

STAGES = 5
CLUSTER = "c" + "0" * 32


class Quiet(telemetry.TaskTelemetry):
    """The hooks, doing nothing: the engine as it was before it reported anything."""

    @contextlib.contextmanager
    def task_run(self, task_id: str, task_type: str, trace_parent: str | None) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def stage_attempt(
        self, task_id: str, task_type: str, stage: str, attempt: int
    ) -> Iterator[Callable[[str], None]]:
        yield lambda _outcome: None

    def finished(self, task_type: str, state: str) -> None:
        pass


async def _noop(_ctx: Any) -> None:
    return None


async def _run(url: str, tasks: int, hooks: telemetry.TaskTelemetry) -> tuple[float, float]:
    """(seconds to run every task, seconds of one /metrics render after)."""
    operation = base.Operation(
        "bench_noop", tuple(base.Stage(f"Step{i}", _noop) for i in range(STAGES))
    )
    registry = base.Registry([operation])
    reporting = telemetry.Telemetry()
    db = database.Database.open(
        settings.StorageSettings(url=url), on_transaction=reporting.metrics.observe_transaction
    )
    reporting.metrics.watch_tasks(db.tasks.count_by_type_and_state)
    try:
        submitter = control.TaskControl(db.tasks, registry)
        for i in range(tasks):
            submitter.submit(
                "bench_noop",
                cluster_id=CLUSTER,
                target=records.Target(f"np{i}", "nodepool"),
                parameters={},
            )
        engine = executor.LocalExecutor(
            db.tasks, registry, no_cloud.NoCloud(), lock=db.executor_lock(), telemetry=hooks
        )
        started = time.perf_counter()
        await engine.start()
        while db.tasks.unfinished_tasks():
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        await engine.stop()
        renders = []
        for _ in range(20):
            began = time.perf_counter()
            reporting.metrics.render()
            renders.append(time.perf_counter() - began)
    finally:
        db.close()
    return elapsed, common.median(renders)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    configurations: dict[str, Callable[[], telemetry.TaskTelemetry]] = {
        "hooks doing nothing (baseline)": lambda: Quiet(telemetry.Telemetry(), "local"),
        "metrics (every server)": lambda: telemetry.Telemetry().tasks(),
        "metrics + tracing": lambda: telemetry.Telemetry(
            tracing=tracing.Tracing.exporting(SimpleSpanProcessor(InMemorySpanExporter()))
        ).tasks(),
    }
    best: dict[str, float] = {}
    render: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for round_number in range(args.rounds):
            for name, make in configurations.items():
                url = f"sqlite:///{workdir}/bench-{round_number}-{len(best)}-{abs(hash(name))}.db"
                seconds, rendered = asyncio.run(_run(url, args.tasks, make()))
                best[name] = min(best.get(name, seconds), seconds)
                render[name] = rendered
    baseline = best["hooks doing nothing (baseline)"]
    figures: dict[str, Any] = {"tasks": args.tasks, "stages": STAGES, "machine": common.machine()}
    print(f"{args.tasks} tasks x {STAGES} no-op stages on SQLite, best of {args.rounds}")
    for name, seconds in best.items():
        rate = args.tasks / seconds
        print(
            f"  {name:32} {rate:8.0f} tasks/s  ratio {common.ratio(seconds, baseline):.3f} "
            f"(time vs baseline)"
        )
        figures[name] = {"tasks_per_s": rate, "time_ratio": seconds / baseline}
    scrape_ms = render["metrics (every server)"] * 1000
    print(f"  GET /metrics render with {args.tasks} tasks in the database: {scrape_ms:.2f} ms")
    figures["metrics_render_ms"] = scrape_ms
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
