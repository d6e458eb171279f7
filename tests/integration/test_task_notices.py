"""Replicas see each other's commits at once: PostgreSQL LISTEN/NOTIFY wakes the long-polls
and event streams of one process when another process (a replica, a worker) commits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Collection, Iterator

import pytest

from clustertasks import settings
from clustertasks.domain import records, states
from clustertasks.service import changes
from clustertasks.storage import changes as storage_changes
from clustertasks.storage import database as storage_database
from clustertasks.storage import store
from tests.support import databases, factories, polling

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(all_databases: databases.Databases) -> Iterator[str]:
    url = all_databases.migrated(databases.POSTGRES)
    yield url
    all_databases.drop(url)


def _open(url: str) -> storage_database.Database:
    return storage_database.Database.open(settings.StorageSettings(url=url))


def test_a_commit_in_another_process_is_heard(pg_url: str) -> None:
    here, elsewhere = _open(pg_url), _open(pg_url)
    heard: list[str] = []
    guard = threading.Lock()

    def on_change(task_ids: Collection[str]) -> None:
        with guard:
            heard.extend(task_ids)

    listener = here.listen_for_task_changes(on_change)
    assert listener is not None
    # Commits before the LISTEN are not heard (a caller's poll catches up with them).
    assert listener.wait_listening(30)
    try:
        # Notifications arrive in commit order: once the last seeded task is heard, so is
        # every commit of the one seeded before it.
        quiet = factories.seed_task(here.tasks, cluster_id="c" + "1" * 32).task.task_id
        task_id = factories.seed_task(here.tasks).task.task_id
        polling.until("the seeding heard", lambda: task_id in heard)
        with guard:
            heard.clear()
        elsewhere.tasks.request_action(task_id, records.PAUSE, factories.BASE_US + 10**9)
        polling.until("the pause request heard", lambda: list(heard), lambda h: task_id in h)
        assert quiet not in heard  # only what changed
    finally:
        listener.stop()
        here.close()
        elsewhere.close()


def test_a_long_poll_wakes_on_another_process_commit_not_the_poll(pg_url: str) -> None:
    here, elsewhere = _open(pg_url), _open(pg_url)
    task_id = factories.seed_task(here.tasks).task.task_id
    # A poll far slower than the wait below: only a notification can wake the waiter.
    hub = changes.ChangeHub(here.tasks, settings.LiveSettings(poll_seconds=60))
    listener = here.listen_for_task_changes(hub.notify)
    assert listener is not None
    # Commits before the LISTEN are not heard (a caller's poll catches up with them).
    assert listener.wait_listening(30)

    async def scenario() -> store.Stamp | None:
        async with hub.watch(task_id) as watch:
            before = await watch.refresh()
            waiting = asyncio.create_task(watch.beyond(before, timeout=30))
            await asyncio.sleep(0.2)  # the listener is up; the waiter waits
            await asyncio.to_thread(
                elsewhere.tasks.request_action, task_id, records.PAUSE, factories.BASE_US + 10**9
            )
            return await asyncio.wait_for(waiting, 10)

    try:
        woke_at = asyncio.run(scenario())
        assert woke_at is not None
        assert woke_at == here.tasks.task_stamp(task_id)
    finally:
        hub.close()
        listener.stop()
        here.close()
        elsewhere.close()


def test_every_kind_of_write_is_heard(pg_url: str) -> None:
    """A task's success, an event or a new result alone (no stage change in the same
    transaction) still tells the other processes: a worker's last commit of a task is often
    just that."""
    here, elsewhere = _open(pg_url), _open(pg_url)
    heard: list[str] = []
    guard = threading.Lock()

    def on_change(task_ids: Collection[str]) -> None:
        with guard:
            heard.extend(task_ids)

    listener = here.listen_for_task_changes(on_change)
    assert listener is not None
    # Commits before the LISTEN are not heard (a caller's poll catches up with them).
    assert listener.wait_listening(30)
    try:
        task = factories.seed_task(here.tasks).task
        polling.until("the seeding heard", lambda: task.task_id in heard)
        now = factories.BASE_US + 10**9
        writes: dict[str, Callable[[], object]] = {
            "an event": lambda: elsewhere.tasks.append_event(
                task.task_id,
                action="progress",
                level=states.EventLevel.NORMAL,
                reason="Progress",
                message="m",
                now_us=now,
            ),
            "a new result": lambda: elsewhere.tasks.set_result(
                task.task_id, "i-1", states.ResultStatus.INITIAL, now
            ),
            # The group commit and the stage starts send their notifications with their
            # statements (one pipeline), not on their own.
            "a stage start": lambda: elsewhere.tasks.begin_stages(
                [store.StageStart(task.task_id, "JoinNodes", now)]
            ),
            "a group commit": lambda: elsewhere.tasks.apply_batch(
                [
                    storage_changes.UpdateStage(
                        task.task_id,
                        here.tasks.describe_task(task.task_id)
                        .stages[2]
                        .with_state(task.task_id, states.StageState.SUCCESS, now),
                        now,
                    )
                ]
            ),
            # A worker's changes sharing the transaction of another task's stage start.
            "changes beside a stage start": lambda: elsewhere.tasks.begin_stages_and_apply(
                [store.StageStart("T-ffffffffffffffffffffffff", "JoinNodes", now)],
                [
                    storage_changes.AppendEvent(
                        task.task_id, "progress", states.EventLevel.NORMAL, "Progress", "m", now
                    )
                ],
            ),
            "the task's success": lambda: elsewhere.tasks.update_task(
                task.with_state(states.TaskState.SUCCESS, now)
            ),
        }
        for what, write in writes.items():
            with guard:
                heard.clear()
            write()
            polling.until(f"{what} heard", lambda: list(heard), lambda h: task.task_id in h)
    finally:
        listener.stop()
        here.close()
        elsewhere.close()
