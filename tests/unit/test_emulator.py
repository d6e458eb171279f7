"""The emulator's clock and fault records, errors by code, and the simulated clock's waits
(in memory, no database)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from clustertasks import clock, errors, settings
from clustertasks.domain import emulator, ids
from clustertasks.emulator import simclock
from clustertasks.operations import outcomes
from clustertasks.providers import base

T = TypeVar("T")
US = 1_000_000
START = 1_800_000_000 * US


def test_the_clock_modes_are_the_settings_modes() -> None:
    assert emulator.CLOCK_MODES == settings.SIM_CLOCK_MODES
    with pytest.raises(errors.ConfigurationError):
        settings.SimSettings(clock="sometimes")


@pytest.mark.parametrize(
    ("mode", "speed", "later"),
    [
        ("realtime", 2.0, START + 20 * US),  # twice as fast as the wall clock
        ("realtime", 0.0, START + 10 * US),  # speed 0: with the wall clock
        ("manual", 2.0, START),
        ("per_poll", 2.0, START),
    ],
)
def test_simulated_time_at_a_wall_clock_instant(mode: str, speed: float, later: int) -> None:
    state = emulator.ClockState(mode, speed, sim_us=START, real_us=0)
    assert state.at(10 * US) == later


def test_errors_by_code_are_the_classes_of_real_failures() -> None:
    no_stock = errors.from_code("OperationDenied.NoStock", "sold out")
    assert isinstance(no_stock, errors.InstanceCreateFailed)
    assert (no_stock.code, no_stock.message) == ("OperationDenied.NoStock", "sold out")
    assert isinstance(errors.from_code("TemporarilyUnavailable", "busy"), errors.TemporaryError)
    assert type(errors.from_code("NodeUpgradeFailed", "x")) is errors.NodeUpgradeFailed
    unknown = errors.from_code("Ecs.DiskFull", "disk full")
    assert type(unknown) is errors.PermanentError
    assert unknown.code == "Ecs.DiskFull"
    assert errors.PermanentError.code == "OperationFailed"  # only that instance changed
    # A failure stored earlier is raised again with its code, and never retried.
    again = errors.permanent("TemporarilyUnavailable", "busy")
    assert not isinstance(again, errors.TemporaryError)
    assert again.code == "TemporarilyUnavailable"
    assert outcomes.rebuild("Ecs.DiskFull", "disk full").code == "Ecs.DiskFull"
    assert isinstance(outcomes.rebuild("OperationDenied.NoStock", "x"), errors.NoStock)


def test_fault_ids_are_seeded_like_every_other_id() -> None:
    first = [ids.SeededIds(42).fault_id() for _ in range(2)]
    assert first[0] == first[1]
    sequence = ids.SeededIds(42)
    one, two = sequence.fault_id(), sequence.fault_id()
    assert (one, two != one) == (first[0], True)
    # A restarted server continues the sequence from the rules it already has.
    assert ids.SeededIds(42, {"fault": 1}).fault_id() == two
    assert ids.IdGenerator().fault_id().startswith("F-")
    assert len(first[0]) == 18


def test_documents() -> None:
    rule = emulator.FaultRule(
        fault_id="F-1",
        match=emulator.FaultMatch(task_type="cluster_scaleout", instance_index=3),
        effect=emulator.FaultEffect(error_code="OperationDenied.NoStock"),
        count=1,
        remaining=0,
        probability=None,
        hits=1,
        created_us=START,
    )
    assert emulator.fault_document(rule) == {
        "fault_id": "F-1",
        "match": {"task_type": "cluster_scaleout", "instance_index": 3},
        "effect": {"error_code": "OperationDenied.NoStock", "message": ""},
        "count": 1,
        "remaining": 0,
        "probability": None,
        "hits": 1,
    }
    view = emulator.ClockView("manual", 1.0, START + 5, 2)
    assert emulator.clock_document(view) == {
        "mode": "manual",
        "speed": 1.0,
        "now": "2027-01-15T08:00:00.000005Z",
        "waiting": 2,
    }


# -- the simulated clock's waits ------------------------------------------------------------------


def _run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def _clock(mode: str, speed: float = 1.0) -> simclock.SimClock:
    return simclock.SimClock(emulator.ClockState(mode, speed, START, 0), wall=clock.FixedClock(0))


async def _settle() -> None:
    """Let every task that can run, run (nothing here sleeps on a timer)."""
    for _ in range(20):
        await asyncio.sleep(0)


def _task_wait(
    sim: simclock.SimClock, seconds: float, task_id: str = "T-1"
) -> asyncio.Future[None]:
    with base.calling_as(base.TaskCall(task_id, "cluster_scaleout", "JoinNodes")):
        return asyncio.ensure_future(sim.wait(seconds))


def test_a_manual_clock_releases_the_waits_an_advance_passes() -> None:
    sim = _clock("manual")

    async def scenario() -> None:
        short, long = _task_wait(sim, 5), _task_wait(sim, 30)
        await _settle()
        assert sim.view().waiting == 2
        sim.advance(4.5)
        await _settle()
        assert not short.done()
        sim.advance(0.5)
        await _settle()
        assert short.done()
        assert not long.done()
        assert sim.view().waiting == 1
        sim.advance(25)
        await asyncio.wait_for(long, 5)
        # A wait made for no task does not wait for a manual clock.
        await asyncio.wait_for(sim.wait(3600), 5)

    _run(scenario())
    assert sim.simulated_us() == START + 30 * US


def test_a_per_poll_clock_completes_a_tasks_pending_waits_on_each_poll() -> None:
    sim = _clock("per_poll")

    async def scenario() -> None:
        mine = [_task_wait(sim, 5), _task_wait(sim, 600)]
        other = _task_wait(sim, 5, task_id="T-2")
        await _settle()
        sim.poll("T-2")
        await _settle()
        assert other.done()
        assert not any(w.done() for w in mine)
        sim.poll("T-1")
        await asyncio.wait_for(asyncio.gather(*mine), 5)
        later = _task_wait(sim, 5)
        await _settle()
        assert not later.done()  # a poll releases the waits pending then, not later ones
        sim.poll("T-1")
        await asyncio.wait_for(later, 5)

    _run(scenario())
    assert sim.simulated_us() == START  # per-poll time stands still


def test_a_poll_between_two_waits_is_kept_for_the_next_one() -> None:
    """A client that reads again right after each change may poll while the task is
    between waits: that poll must move the task's next wait, or the client stalls."""
    sim = _clock("per_poll")

    async def scenario() -> None:
        sim.poll("T-1")  # nothing of T-1 waits now
        sim.poll("T-1")  # kept once, not twice
        await asyncio.wait_for(_task_wait(sim, 5), 5)
        second = _task_wait(sim, 5)
        await _settle()
        assert not second.done()
        sim.poll("T-1")
        await asyncio.wait_for(second, 5)
        # A kept poll is forgotten when the mode changes.
        sim.poll("T-1")
        sim.set_mode("manual")
        sim.set_mode("per_poll")
        third = _task_wait(sim, 5)
        await _settle()
        assert not third.done()
        sim.poll("T-1")
        await asyncio.wait_for(third, 5)

    _run(scenario())


def test_switching_modes_re_times_pending_waits() -> None:
    sim = _clock("manual", speed=0)

    async def scenario() -> None:
        waiting = _task_wait(sim, 3600)
        await _settle()
        assert not waiting.done()
        with pytest.raises(errors.InvalidParameter):
            sim.set_mode("sideways")
        sim.set_mode("realtime")  # speed 0: no wait takes time
        await asyncio.wait_for(waiting, 5)
        await asyncio.wait_for(_task_wait(sim, 3600), 5)

    _run(scenario())
    with pytest.raises(errors.ClockNotManual) as refused:
        sim.advance(1)
    assert refused.value.code == "IncorrectClockMode"
    assert sim.view().mode == "realtime"


def test_timestamps_are_simulated_time_and_never_repeat() -> None:
    sim = _clock("manual")
    stamps = [sim.now_us() for _ in range(3)]
    assert stamps == [START, START + 1, START + 2]
    sim.advance(60)
    assert sim.now_us() == START + 60 * US
