"""Operations defined by the tests, exercising every engine path."""

from __future__ import annotations

import asyncio
import collections

from clustertasks import errors
from clustertasks.domain import states
from clustertasks.operations import base

FAST = base.RetryPolicy(max_attempts=3, initial_delay=0.0, max_delay=0.0)

# What stages did, by task id: lets tests see re-runs and compensation.
calls: collections.Counter[str] = collections.Counter()
gates: dict[int, asyncio.Event] = {}


def reset() -> None:
    calls.clear()
    gates.clear()


def gate(batch: int) -> asyncio.Event:
    return gates.setdefault(batch, asyncio.Event())


async def step(ctx: base.StageContext) -> None:
    calls[f"{ctx.task_id}:{ctx.stage}"] += 1
    await ctx.emit(f"{ctx.stage}Done", f"stage {ctx.stage} of {ctx.task_id} did its work")
    await ctx.progress(work_done=1, work_total=1)


async def _make_items(ctx: base.StageContext) -> None:
    calls[f"{ctx.task_id}:{ctx.stage}"] += 1
    for item in ("i-1", "i-2", "i-3"):
        await ctx.set_result(item, states.ResultStatus.INITIAL)
    for done, item in enumerate(("i-1", "i-2", "i-3"), start=1):
        await ctx.set_result(item, states.ResultStatus.SUCCESS)
        await ctx.progress(nodes_done=done, nodes_total=3)
        await ctx.checkpoint()


async def _flaky(ctx: base.StageContext) -> None:
    calls[f"{ctx.task_id}:flaky"] += 1
    failures = int(ctx.parameters.get("failures", 0))
    if calls[f"{ctx.task_id}:flaky"] <= failures:
        raise errors.TemporaryError("the API is busy", delay=0.0)


async def _database_blip(ctx: base.StageContext) -> None:
    calls[f"{ctx.task_id}:blip"] += 1
    if calls[f"{ctx.task_id}:blip"] <= 2:
        raise errors.StorageUnavailable()


async def _broken(ctx: base.StageContext) -> None:
    calls[f"{ctx.task_id}:broken"] += 1
    raise RuntimeError("disk on fire")


async def _no_stock(ctx: base.StageContext) -> None:
    await ctx.set_result("i-good", states.ResultStatus.SUCCESS)
    await ctx.set_result("i-bad", states.ResultStatus.FAILED)
    raise errors.InstanceCreateFailed("no stock for ecs.g7.large in cn-hangzhou-h")


async def _slow(ctx: base.StageContext) -> None:
    await asyncio.sleep(30)


async def _compensate(ctx: base.StageContext) -> None:
    calls[f"{ctx.task_id}:compensate"] += 1
    await ctx.emit("Compensated", f"released what {ctx.task_id} created")


async def _batches(ctx: base.StageContext) -> None:
    """Three batches; each waits for its gate (tests open them), then marks its item done."""
    calls[f"{ctx.task_id}:batches"] += 1
    total = 3
    done = ctx.results()
    for batch in range(1, total + 1):
        item = f"node-{batch}"
        if done.get(item) is states.ResultStatus.SUCCESS:
            continue
        if not ctx.parameters.get("ungated"):
            await gate(batch).wait()
        await ctx.set_result(item, states.ResultStatus.SUCCESS)
        await ctx.emit("BatchDone", f"node {item} done (batch {batch})")
        await ctx.progress(batch=batch, batches_total=total, nodes_done=batch, nodes_total=total)
        await ctx.checkpoint(batch=batch, batches=total)


async def _wait_for_gate(ctx: base.StageContext) -> None:
    """No checkpoint inside: only the stage boundary can honour a request."""
    await gate(1).wait()


async def _nap(ctx: base.StageContext) -> None:
    await ctx.sleep(float(ctx.parameters.get("seconds", 30)))


STEPS = base.Operation(
    "test_steps",
    [
        base.Stage("Prepare", step),
        base.Stage("CreateItems", _make_items),
        base.Stage("Finish", step),
    ],
)
FLAKY = base.Operation(
    "test_flaky", [base.Stage("Flaky", _flaky, retry=FAST), base.Stage("Finish", step)]
)
BROKEN = base.Operation(
    "test_broken",
    [
        base.Stage("Prepare", step),
        base.Stage("Broken", _broken, retry=FAST),
        base.Stage("Finish", step),
    ],
    compensate=_compensate,
)
NO_STOCK = base.Operation(
    "test_no_stock",
    [base.Stage("CreateInstances", _no_stock), base.Stage("JoinNodes", step)],
    compensate=_compensate,
)
SLOW = base.Operation("test_slow", [base.Stage("Slow", _slow, timeout=0.2)])
BATCHES = base.Operation(
    "test_batches",
    [base.Stage("Prepare", step), base.Stage("Upgrade", _batches), base.Stage("Finish", step)],
    pausable=True,
    compensate=_compensate,
)
NAP = base.Operation("test_nap", [base.Stage("Nap", _nap)], compensate=_compensate)
FIXED = base.Operation("test_uncancelable", [base.Stage("Nap", _nap)], cancelable=False)

TWO_STEPS = base.Operation(
    "test_two_steps",
    [base.Stage("Wait", _wait_for_gate), base.Stage("Next", step)],
    pausable=True,
)

BLIP = base.Operation("test_blip", [base.Stage("Blip", _database_blip, retry=FAST)])

REGISTRY = base.Registry(
    [BLIP, TWO_STEPS, STEPS, FLAKY, BROKEN, NO_STOCK, SLOW, BATCHES, NAP, FIXED]
)
