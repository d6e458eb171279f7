"""Batches: many callers' items handed to one blocking call together."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator

import pytest

from clustertasks.engine import batches


@pytest.fixture
def pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def run(self, items: list[str]) -> list[str | Exception]:
        self.calls.append(list(items))
        return [ValueError(item) if item == "bad" else item.upper() for item in items]


def _batches(
    pool: concurrent.futures.Executor, recorder: Recorder, gather: float
) -> batches.Batches[str, str]:
    return batches.Batches(
        recorder.run, pool, written=set, gather_seconds=gather, name="test-batches"
    )


async def _handed_in(grouped: batches.Batches[str, str], *items: str) -> list[asyncio.Task[str]]:
    """Submit ``items`` at once; returns when they wait in the batch that is gathering."""
    waiting = [asyncio.create_task(grouped.submit(item)) for item in items]
    await asyncio.sleep(0)  # each is handed in
    await asyncio.sleep(0)  # the batch has begun to gather
    return waiting


def test_an_item_alone_goes_at_once_however_long_the_gathering(
    pool: concurrent.futures.Executor,
) -> None:
    recorder = Recorder()

    async def scenario() -> list[str]:
        grouped = _batches(pool, recorder, gather=3600.0)
        # Idle: neither a wait of an hour nor a second item to wait for.
        first = await asyncio.wait_for(grouped.submit("a"), 30)
        second = await asyncio.wait_for(grouped.submit("b"), 30)
        return [first, second]

    assert asyncio.run(scenario()) == ["A", "B"]
    assert recorder.calls == [["a"], ["b"]]


def test_under_load_a_batch_waits_for_more_to_join_it(
    pool: concurrent.futures.Executor,
) -> None:
    recorder = Recorder()

    async def scenario(gather: float) -> list[str | BaseException]:
        grouped = _batches(pool, recorder, gather)
        waiting = await _handed_in(grouped, "a", "bad")
        later = asyncio.ensure_future(grouped.submit("c"))
        return await asyncio.gather(*waiting, later, return_exceptions=True)

    outcomes = asyncio.run(scenario(gather=0.2))
    assert outcomes[0] == "A"
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[2] == "C"
    assert recorder.calls == [["a", "bad", "c"]]

    recorder.calls.clear()
    asyncio.run(scenario(gather=0.0))
    assert recorder.calls == [["a", "bad"], ["c"]]  # without: the third waits for its own


def test_items_gathering_when_the_batches_are_cancelled_are_cancelled_too(
    pool: concurrent.futures.Executor,
) -> None:
    recorder = Recorder()

    async def scenario() -> list[bool]:
        grouped = _batches(pool, recorder, gather=3600.0)
        waiting = await _handed_in(grouped, "a", "b")
        flusher = grouped._flusher
        assert flusher is not None
        flusher.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        return [w.cancelled() for w in waiting]

    assert asyncio.run(scenario()) == [True, True]
    assert recorder.calls == []
