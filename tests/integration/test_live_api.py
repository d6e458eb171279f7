"""Conditional reads, long-polls and finished event streams, in-process on both backends.

Waiters here poll the database only once a minute, so a long-poll answering well before
its ``wait`` shows that a notification woke it. Live streams need a real server (an
in-process client reads a response only once it has ended): tests/acceptance.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx2
import pytest
from fastapi.testclient import TestClient

from clustertasks import bootstrap, settings
from clustertasks.api import app as api_app
from clustertasks.api import services as api_services
from clustertasks.domain import records, states, wire
from clustertasks.engine import executor, runner
from clustertasks.service import changes
from clustertasks.storage import database as storage_database
from clustertasks.storage import store
from tests.support import cloud, factories, fake_cloud, polling, signing, sse
from tests.support import operations as ops

CLUSTER = "c0123456789abcdef0123456789abcdef"
UNKNOWN = "T-000000000000000000000000"
# Far longer than any test waits for an answer: answering in time means it was woken.
LONG_WAIT = "60"
ANSWER_WITHIN = 30.0
VERSION = "x-clustertasks-task-version"
T = TypeVar("T")


class Live:
    """The app in-process, its services, and requests made from other threads."""

    def __init__(self, client: TestClient, services: api_services.Services) -> None:
        self.client = client
        self.services = services
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)

    def get(self, path: str, **kwargs: Any) -> httpx2.Response:
        return self.client.get(path, **kwargs)

    def later(self, path: str, **kwargs: Any) -> concurrent.futures.Future[httpx2.Response]:
        """Send a request from another thread; its answer comes when it comes."""
        return self._pool.submit(self.client.get, path, **kwargs)

    def in_thread(self, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        return self._pool.submit(call)

    def waiting(self, task_id: str, count: int = 1) -> None:
        """Until ``count`` requests wait for ``task_id`` (bounded)."""
        polling.until(
            f"{count} requests waiting for {task_id}",
            lambda: self.services.changes.watching(task_id),
            lambda watching: watching == count,
            timeout=ANSWER_WITHIN,
            interval=0.01,
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _answer(future: concurrent.futures.Future[T]) -> T:
    return future.result(timeout=ANSWER_WITHIN)


@contextlib.contextmanager
def _live(
    db: storage_database.Database,
    config: settings.LiveSettings,
    engine: _ExecutorThread | None = None,
) -> Iterator[Live]:
    hub = engine.hub if engine is not None else changes.ChangeHub(db.tasks, config)
    services = bootstrap.build_services(
        db,
        ops.REGISTRY,
        cloud.sim_for(db),
        hub=hub,
        executor=engine.executor if engine is not None else None,
    )
    app = api_app.create_app(
        services, settings.WireSettings(), authenticator=signing.authenticator(db)
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        client.auth = signing.auth()
        live = Live(client, services)
        try:
            yield live
        finally:
            live.close()
    assert services.changes.watching() == 0  # nobody left behind


@pytest.fixture
def live(database: storage_database.Database) -> Iterator[Live]:
    with _live(database, settings.LiveSettings(poll_seconds=60)) as opened:
        yield opened


@pytest.fixture(autouse=True)
def _fresh_operations() -> Iterator[None]:
    ops.reset()
    yield
    ops.reset()


def _submit(live: Live, task_type: str, pool: str = "np1") -> str:
    return live.services.control.submit(
        task_type, cluster_id=CLUSTER, target=records.Target(pool, "nodepool"), parameters={}
    ).task.task_id


def _event(task_store: store.TaskStore, task_id: str, reason: str) -> None:
    task_store.append_event(
        task_id,
        action="progress",
        level=states.EventLevel.NORMAL,
        reason=reason,
        message=f"{reason} on {task_id}",
        now_us=factories.BASE_US + 100_000_000,
    )


def _error(response: httpx2.Response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert body["requestId"] == response.headers["x-acs-request-id"]
    for word in words:
        assert word in body["message"]


# -- conditional reads -------------------------------------------------------------------------


def test_etag_and_304_round_trip(live: Live, task_store: store.TaskStore) -> None:
    view = factories.seed_task(task_store)
    path = f"/tasks/{view.task.task_id}"
    version = view.task.version

    first = live.get(path)
    assert first.status_code == 200
    assert first.headers["etag"] == f'"{version}-json"'
    assert first.headers[VERSION] == str(version)
    body = first.json()
    del body["requestId"]
    assert body == wire.task_document(view)

    same = live.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == first.headers["etag"]
    assert same.headers[VERSION] == str(version)
    assert same.headers["x-acs-request-id"]
    assert "content-type" not in same.headers

    for held in (
        "*",
        f'"1-json", "{version}-json"',
        f'W/"{version}-json"',
        f'"{version}-xml", W/"{version}-json"',
    ):
        assert live.get(path, headers={"If-None-Match": held}).status_code == 304, held
    for held in ('"1-json"', f'"{version}-xml"', f'"{version + 1}-json"', "garbage"):
        assert live.get(path, headers={"If-None-Match": held}).status_code == 200, held

    _event(task_store, view.task.task_id, "SomethingHappened")
    changed = live.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert changed.status_code == 200
    assert changed.headers["etag"] == f'"{version + 1}-json"'
    assert changed.headers[VERSION] == str(version + 1)
    assert changed.json()["events"][-1]["reason"] == "SomethingHappened"


def test_the_etag_names_the_representation(live: Live, task_store: store.TaskStore) -> None:
    view = factories.seed_task(task_store, state=states.TaskState.SUCCESS)
    path = f"/tasks/{view.task.task_id}"
    version = view.task.version
    as_xml = live.get(path, params={"format": "xml"})
    assert as_xml.status_code == 200
    assert as_xml.headers["content-type"].startswith("application/xml")
    assert as_xml.headers["etag"] == f'"{version}-xml"'
    assert as_xml.headers[VERSION] == str(version)

    json_tag = {"If-None-Match": f'"{version}-json"'}
    assert live.get(path, params={"format": "xml"}, headers=json_tag).status_code == 200
    xml_tag = {"If-None-Match": f'"{version}-xml"', "Accept": "application/xml"}
    assert live.get(path, headers=xml_tag).status_code == 304
    assert live.get(path, headers={"If-None-Match": f'"{version}-xml"'}).status_code == 200


def test_unknown_task_and_bad_format_before_anything_else(live: Live) -> None:
    _error(live.get(f"/tasks/{UNKNOWN}", headers={"If-None-Match": "*"}), 404, "ErrorTaskNotFound")
    _error(
        live.get(f"/tasks/{UNKNOWN}", params={"wait": "5", "since": "1"}),
        404,
        "ErrorTaskNotFound",
        UNKNOWN,
    )
    _error(live.get("/tasks/not-an-id", params={"wait": "5"}), 404, "ErrorTaskNotFound")
    _error(
        live.get(f"/tasks/{UNKNOWN}", params={"wait": "5", "format": "csv"}),
        400,
        "InvalidParameter",
        "format",
    )


# -- long-polls --------------------------------------------------------------------------------


def test_long_poll_answers_at_once_when_the_client_is_behind(
    live: Live, task_store: store.TaskStore
) -> None:
    view = factories.seed_task(task_store)
    path = f"/tasks/{view.task.task_id}"
    version = view.task.version
    for params in (
        {"wait": LONG_WAIT, "since": str(version - 1)},
        {"wait": LONG_WAIT, "since": "0"},
        {"wait": LONG_WAIT},  # no since: nothing to wait for
        {"since": str(version)},  # no wait: a plain read
    ):
        response = _answer(live.later(path, params=params))
        assert response.status_code == 200, params
        assert response.headers[VERSION] == str(version)
        assert response.json()["task_id"] == view.task.task_id


@pytest.mark.parametrize("action", ["pause", "cancel"])
def test_long_poll_wakes_when_the_service_records_a_request(
    live: Live, task_store: store.TaskStore, action: str
) -> None:
    task_id = _submit(live, "test_batches")
    version = task_store.task_version(task_id)
    pending = live.later(f"/tasks/{task_id}", params={"wait": LONG_WAIT, "since": str(version)})
    live.waiting(task_id)
    {"pause": live.services.control.pause, "cancel": live.services.control.cancel}[action](task_id)
    response = _answer(pending)
    assert response.status_code == 200
    assert int(response.headers[VERSION]) == version + 1
    assert response.headers["etag"] == f'"{version + 1}-json"'
    assert task_store.get_task(task_id).requested_action == action


def test_long_poll_with_if_none_match_waits_for_another_etag(
    live: Live, task_store: store.TaskStore
) -> None:
    task_id = _submit(live, "test_batches")
    first = live.get(f"/tasks/{task_id}")
    pending = live.later(
        f"/tasks/{task_id}",
        params={"wait": LONG_WAIT},
        headers={"If-None-Match": first.headers["etag"]},
    )
    live.waiting(task_id)
    live.services.control.cancel(task_id)
    response = _answer(pending)
    assert response.status_code == 200
    assert response.headers["etag"] != first.headers["etag"]


def test_long_poll_times_out_with_the_same_version(live: Live, task_store: store.TaskStore) -> None:
    view = factories.seed_task(task_store)
    path = f"/tasks/{view.task.task_id}"
    version = str(view.task.version)

    unchanged = live.get(path, params={"wait": "0.2", "since": version})
    assert unchanged.status_code == 200
    assert unchanged.headers[VERSION] == version
    assert unchanged.json()["task_id"] == view.task.task_id

    held = {"If-None-Match": f'"{version}-json"'}
    timed_out = live.get(path, params={"wait": "0.2"}, headers=held)
    assert timed_out.status_code == 304
    assert timed_out.headers[VERSION] == version
    assert timed_out.content == b""


def test_long_poll_wakes_when_the_executor_commits(
    database: storage_database.Database, task_store: store.TaskStore
) -> None:
    engine = _ExecutorThread(database, settings.LiveSettings(poll_seconds=60))
    try:
        with _live(database, engine.config, engine) as live:
            task_id = _submit(live, "test_batches")
            polling.until(
                "the Upgrade stage running",
                lambda: _stage_state(task_store, task_id, "Upgrade"),
                lambda state: state == "running",
                timeout=ANSWER_WITHIN,
                interval=0.01,
            )
            version = task_store.task_version(task_id)
            pending = live.later(
                f"/tasks/{task_id}", params={"wait": LONG_WAIT, "since": str(version)}
            )
            live.waiting(task_id)
            engine.open_gate(1)
            response = _answer(pending)
            assert response.status_code == 200
            assert int(response.headers[VERSION]) > version
            # The batch's first commit: its node done.
            assert {"data": "node-1", "status": "success"} in response.json()["task_result"]
            engine.open_gate(2)
            engine.open_gate(3)
            polling.until(
                "the task succeeded",
                lambda: task_store.get_task(task_id).state,
                lambda state: state is states.TaskState.SUCCESS,
                timeout=ANSWER_WITHIN,
                interval=0.01,
            )
    finally:
        engine.stop()


def test_long_poll_sees_what_another_process_commits(
    database: storage_database.Database, task_store: store.TaskStore
) -> None:
    # As an API-only replica: no notification, only the versions it re-reads.
    with _live(database, settings.LiveSettings(poll_seconds=0.05)) as live:
        view = factories.seed_task(task_store)
        task_id = view.task.task_id
        pending = live.later(
            f"/tasks/{task_id}", params={"wait": LONG_WAIT, "since": str(view.task.version)}
        )
        live.waiting(task_id)
        _event(task_store, task_id, "WrittenElsewhere")
        response = _answer(pending)
        assert response.status_code == 200
        assert response.json()["events"][-1]["reason"] == "WrittenElsewhere"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("wait", "-1"),
        ("wait", "60.5"),
        ("wait", "61"),
        ("wait", "abc"),
        ("wait", "1e1"),
        ("wait", "nan"),
        ("wait", "inf"),
        ("wait", ""),
        ("since", "-1"),
        ("since", "1.5"),
        ("since", "x"),
        ("since", ""),
    ],
)
def test_bad_long_poll_parameters_are_refused(
    live: Live, task_store: store.TaskStore, name: str, value: str
) -> None:
    view = factories.seed_task(task_store)
    params = {"wait": "5", "since": str(view.task.version), name: value}
    _error(live.get(f"/tasks/{view.task.task_id}", params=params), 400, "InvalidParameter", name)
    assert task_store.describe_task(view.task.task_id) == view


def test_waits_are_bounded(
    database: storage_database.Database, task_store: store.TaskStore
) -> None:
    with _live(database, settings.LiveSettings(poll_seconds=60, max_watchers=1)) as live:
        task_id = _submit(live, "test_batches")
        since = {"wait": LONG_WAIT, "since": str(task_store.task_version(task_id))}
        pending = live.later(f"/tasks/{task_id}", params=since)
        live.waiting(task_id)
        _error(live.get(f"/tasks/{task_id}", params=since), 503, "ServiceUnavailable")
        _error(live.get(f"/tasks/{task_id}/stream"), 503, "ServiceUnavailable")
        live.services.control.pause(task_id)
        assert _answer(pending).status_code == 200
        assert live.services.changes.watching() == 0
        assert live.get(f"/tasks/{task_id}", params={"wait": "0.1"}).status_code == 200


def test_stopping_ends_waits_at_once(live: Live, task_store: store.TaskStore) -> None:
    view = factories.seed_task(task_store)
    task_id = view.task.task_id
    version = str(view.task.version)
    pending = live.later(f"/tasks/{task_id}", params={"wait": LONG_WAIT, "since": version})
    live.waiting(task_id)
    portal = live.client.portal
    assert portal is not None
    portal.call(live.services.changes.close)
    response = _answer(pending)
    assert response.status_code == 200
    assert response.headers[VERSION] == version
    # Later waits do not wait at all.
    again = _answer(live.later(f"/tasks/{task_id}", params={"wait": LONG_WAIT, "since": version}))
    assert again.headers[VERSION] == version


# -- event streams of finished tasks ---------------------------------------------------------


def test_a_finished_task_streams_its_snapshot_and_ends(
    live: Live, task_store: store.TaskStore
) -> None:
    view = factories.seed_task(task_store, state=states.TaskState.FAIL)
    response = live.get(f"/tasks/{view.task.task_id}/stream")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-acs-request-id"]
    snapshot, end = sse.messages(response.text)
    document = wire.task_document(view)
    position = f"{view.task.version}.{len(view.events)}"
    assert (snapshot.event, snapshot.id, snapshot.data) == ("snapshot", position, document)
    assert (end.event, end.id, end.data) == ("end", position, document)
    assert end.data["state"] == "fail"


def test_resuming_a_finished_task_sends_what_was_missed(
    live: Live, task_store: store.TaskStore
) -> None:
    view = factories.seed_task(task_store, state=states.TaskState.SUCCESS)
    path = f"/tasks/{view.task.task_id}/stream"
    events = len(view.events)
    missed = 2

    by_header = live.get(path, headers={"Last-Event-ID": f"3.{events - missed}"})
    by_query = live.get(path, params={"last_event_id": f"3.{events - missed}"})
    for response in (by_header, by_query):
        assert response.status_code == 200
        messages = sse.messages(response.text)
        kinds = [m.event for m in messages]
        # Everything may have changed since version 3: every stage, result and the task again.
        assert kinds == ["stage"] * 3 + ["result"] * 2 + ["event"] * missed + ["task", "end"]
        assert [m.seq for m in messages if m.event == "event"] == [events - 1, events]
        assert [m.data for m in messages if m.event == "event"] == (
            wire.task_document(view)["events"][-missed:]
        )
        assert messages[-1].data == wire.task_document(view)
        assert messages[-1].id == f"{view.task.version}.{events}"

    # The header wins over the query: an EventSource's reconnection sends it.
    both = live.get(
        path,
        headers={"Last-Event-ID": f"{view.task.version}.{events}"},
        params={"last_event_id": "1.0"},
    )
    assert [m.event for m in sse.messages(both.text)] == ["end"]


def test_stream_errors_come_before_the_stream(live: Live, task_store: store.TaskStore) -> None:
    view = factories.seed_task(task_store)
    path = f"/tasks/{view.task.task_id}/stream"
    _error(live.get(f"/tasks/{UNKNOWN}/stream"), 404, "ErrorTaskNotFound", UNKNOWN)
    _error(live.get("/tasks/nonsense/stream"), 404, "ErrorTaskNotFound")
    for bad in ("abc", "1", "1.2.3", "-1.0", "1.x"):
        _error(
            live.get(path, headers={"Last-Event-ID": bad}),
            400,
            "InvalidParameter",
            "Last-Event-ID",
        )
        _error(
            live.get(path, params={"last_event_id": bad}), 400, "InvalidParameter", "last_event_id"
        )
    ahead = f"{view.task.version + 1}.0"
    _error(
        live.get(path, headers={"Last-Event-ID": ahead}),
        400,
        "InvalidParameter",
        "Last-Event-ID",
        "ahead",
    )
    assert task_store.describe_task(view.task.task_id) == view


# -- helpers -----------------------------------------------------------------------------------


def _stage_state(task_store: store.TaskStore, task_id: str, name: str) -> str:
    stages = task_store.describe_task(task_id).stages
    return next(s.state.value for s in stages if s.name == name)


class _ExecutorThread:
    """The local executor on an event loop of its own, telling a change hub about its
    commits, as the server wires it."""

    def __init__(self, db: storage_database.Database, config: settings.LiveSettings) -> None:
        self.config = config
        self.hub = changes.ChangeHub(db.tasks, config)
        self.executor = executor.LocalExecutor(
            db.tasks,
            ops.REGISTRY,
            fake_cloud.FakeCloud(),
            lock=db.executor_lock(),
            tuning=runner.EngineTuning(retry_delay_scale=0),
            on_commit=self.hub.notify,
        )
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.executor.start(), self.loop).result(ANSWER_WITHIN)

    def open_gate(self, batch: int) -> None:
        self.loop.call_soon_threadsafe(ops.gate(batch).set)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.executor.stop(), self.loop).result(ANSWER_WITHIN)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(ANSWER_WITHIN)
        self.loop.close()


def _stream_kinds(live: Live, task_id: str) -> list[str]:
    """The ``event:`` of each message of the task's stream, until the server closes it."""
    kinds = []
    with live.client.stream("GET", f"/tasks/{task_id}/stream") as response:
        assert response.status_code == 200
        parser = sse.Parser()
        for line in response.iter_lines():
            message = parser.feed(line)
            if isinstance(message, sse.Message):
                kinds.append(message.event)
    return kinds


def test_waits_on_a_task_an_emulator_reset_removes_end(
    database: storage_database.Database, task_store: store.TaskStore
) -> None:
    """A long-poll answers 404 and a stream closes (without ``end``) once the task is gone."""
    with _live(database, settings.LiveSettings(poll_seconds=0.05)) as live:
        view = factories.seed_task(task_store)
        task_id = view.task.task_id

        streamed = live.in_thread(lambda: _stream_kinds(live, task_id))
        pending = live.later(
            f"/tasks/{task_id}", params={"wait": LONG_WAIT, "since": str(view.task.version)}
        )
        live.waiting(task_id, 2)
        assert live.client.post("/_emulator/reset").status_code == 200
        _error(_answer(pending), 404, "ErrorTaskNotFound", task_id)
        assert _answer(streamed) == ["snapshot"]


def test_waits_on_a_task_an_emulator_import_replaces_answer_at_once(
    database: storage_database.Database, task_store: store.TaskStore
) -> None:
    """An import brings back an older copy of the task under its id, in a new generation of
    the state, with a lower version than the waiters hold: a long-poll (``since`` or a held
    ETag) answers with that copy at once, and a stream closes (without ``end``, and with no
    changes computed against the other copy) so that its client starts again."""
    with _live(database, settings.LiveSettings(poll_seconds=0.05)) as live:
        view = factories.seed_task(task_store)
        task_id = view.task.task_id
        path = f"/tasks/{task_id}"
        exported = live.client.get("/_emulator/state").json()
        _event(task_store, task_id, "AfterTheExport")
        current = live.get(path)
        later = view.task.version + 1
        assert current.headers[VERSION] == str(later)

        streamed = live.in_thread(lambda: _stream_kinds(live, task_id))
        since = live.later(path, params={"wait": LONG_WAIT, "since": str(later)})
        tagged = live.later(
            path, params={"wait": LONG_WAIT}, headers={"If-None-Match": current.headers["etag"]}
        )
        live.waiting(task_id, 3)
        assert live.client.post("/_emulator/state", json=exported).status_code == 200
        for answer in (_answer(since), _answer(tagged)):
            assert answer.status_code == 200, answer.text
            assert answer.headers[VERSION] == str(view.task.version)
            assert answer.headers["etag"] == f'"{view.task.version}-json-1"'
            assert [e["reason"] for e in answer.json()["events"]] == [e.reason for e in view.events]
        assert _answer(streamed) == ["snapshot"]
