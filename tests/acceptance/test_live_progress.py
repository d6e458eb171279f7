"""Following tasks live over a real ``clustertasks serve``: event streams and long-polls,
signed like every other request (docs/live-progress.md)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_cs20151215.client import Client

from clustertasks.api import conditional
from clustertasks.domain import states, wire
from clustertasks.storage import store
from tests.acceptance import sdk
from tests.support import factories, polling, signing, sse
from tests.support.server import ServerProcess

OLD = "1.31.1-aliyun.1"
NEW = "1.32.1-aliyun.1"
READ_TIMEOUT = 30.0
VERSION = "x-clustertasks-task-version"
LATER_US = factories.BASE_US + 100_000_000


def _http(server: ServerProcess) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        auth=signing.auth(),
        trust_env=False,
        timeout=httpx.Timeout(READ_TIMEOUT),
    )


class Stream:
    """One open event stream, read a message at a time (each read bounded)."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        self._lines = response.iter_lines()
        self._parser = sse.Parser()

    def item(self) -> sse.Message | sse.Comment | None:
        """The next message or comment; None when the server has closed the stream."""
        for line in self._lines:
            item = self._parser.feed(line)
            if item is not None:
                return item
        return None

    def next(self) -> sse.Message | None:
        """The next message, past any comments; None when the server has closed the stream."""
        while (item := self.item()) is not None:
            if isinstance(item, sse.Message):
                return item
        return None

    def until_end(self) -> list[sse.Message]:
        received: list[sse.Message] = []
        while (message := self.next()) is not None:
            received.append(message)
        assert received, "the stream closed without a message"
        assert received[-1].event == "end", [m.event for m in received]
        return received


@contextlib.contextmanager
def _stream(http: httpx.Client, task_id: str, last_event_id: str | None = None) -> Iterator[Stream]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with http.stream("GET", f"/tasks/{task_id}/stream", headers=headers) as response:
        yield Stream(response)


def _events_once_in_order(first: int, received: list[sse.Message]) -> list[int]:
    seqs = [m.seq for m in received if m.event == "event"]
    assert seqs == list(range(first + 1, first + 1 + len(seqs))), seqs
    return seqs


def _positions_move_forward(received: list[sse.Message]) -> None:
    positions = [(m.version, m.seq) for m in received]
    assert positions == sorted(positions), positions


# -- a task run by the server's executor -------------------------------------------------------


def _paused_upgrade(client: Client) -> str:
    """A node-pool upgrade paused after its first batch (pause_policy FirstBatch)."""
    created = client.create_cluster(
        cs_models.CreateClusterRequest(
            name="live",
            region_id="cn-hangzhou",
            cluster_type="ManagedKubernetes",
            kubernetes_version=OLD,
            vswitch_ids=["vsw-hangzhou-h"],
            nodepools=[
                cs_models.Nodepool(
                    nodepool_info=cs_models.NodepoolNodepoolInfo(name="pool-a"),
                    scaling_group=cs_models.NodepoolScalingGroup(
                        instance_types=["ecs.g7.large"], desired_size=4
                    ),
                )
            ],
        )
    ).body
    assert sdk.wait_task(client, created.task_id).state == "success"
    cluster_id = created.cluster_id
    pool_id = (
        client.describe_cluster_node_pools(cluster_id, cs_models.DescribeClusterNodePoolsRequest())
        .body.nodepools[0]
        .nodepool_info.nodepool_id
    )
    control_plane = client.upgrade_cluster(
        cluster_id, cs_models.UpgradeClusterRequest(next_version=NEW, master_only=True)
    ).body
    assert sdk.wait_task(client, control_plane.task_id).state == "success"
    task_id: str = client.upgrade_cluster_nodepool(
        cluster_id,
        pool_id,
        cs_models.UpgradeClusterNodepoolRequest(
            kubernetes_version=NEW,
            rolling_policy=cs_models.UpgradeClusterNodepoolRequestRollingPolicy(
                max_parallelism=2, pause_policy="FirstBatch"
            ),
        ),
    ).body.task_id
    paused = sdk.wait_task(client, task_id, states=("paused", "success", "fail"))
    assert paused.state == "paused"
    return task_id


def _long_poll(server: ServerProcess, task_id: str, since: int) -> httpx.Response:
    with _http(server) as http:
        return http.get(f"/tasks/{task_id}", params={"wait": "60", "since": str(since)})


def test_follow_a_task_resumed_after_connecting_through_a_reconnection(
    server: ServerProcess,
) -> None:
    client = sdk.client(server)
    task_id = _paused_upgrade(client)
    with _http(server) as http, concurrent.futures.ThreadPoolExecutor(1) as pool:
        with _stream(http, task_id) as stream:
            snapshot = stream.next()
            assert snapshot is not None
            assert snapshot.event == "snapshot"
            assert snapshot.data["state"] == "paused"
            assert snapshot.data["task_id"] == task_id
            seen = len(snapshot.data["events"])
            assert snapshot.seq == seen
            # A long-poll from the version the snapshot shows: it answers once the task moves.
            polled = pool.submit(_long_poll, server, task_id, snapshot.version)

            client.resume_task(task_id)
            first_part = [snapshot]
            while True:  # up to the first event after the resume, then go away
                message = stream.next()
                assert message is not None
                first_part.append(message)
                if message.event == "event":
                    break
        last_id = first_part[-1].id

        with _stream(http, task_id, last_id) as stream:
            second_part = stream.until_end()
        assert "snapshot" not in [m.event for m in second_part]

        answer = polled.result(timeout=READ_TIMEOUT)
        assert answer.status_code == 200
        assert int(answer.headers[VERSION]) > snapshot.version

    received = first_part + second_part
    _positions_move_forward(received)
    seqs = _events_once_in_order(seen, received[1:])
    end = received[-1]
    assert end.data["state"] == "success"
    assert end.data["task_id"] == task_id
    assert end.seq == len(end.data["events"]) == seen + len(seqs)
    streamed = [m.data for m in received if m.event == "event"]
    assert snapshot.data["events"] + streamed == end.data["events"]
    reasons = [e["reason"] for e in streamed]
    assert reasons[0] == "TaskResumed"
    assert reasons.count("NodeUpgraded") == 2
    assert reasons[-1] == "TaskSucceed"
    # Every stage the client rebuilt from stage messages is what the task ended with.
    stages = {s["name"]: s for s in snapshot.data["stages"]}
    stages.update({m.data["name"]: m.data for m in received if m.event == "stage"})
    assert list(stages.values()) == end.data["stages"]

    # Connecting to a finished task: its snapshot and its end at once.
    with _http(server) as http, _stream(http, task_id) as stream:
        finished = stream.until_end()
    assert [m.event for m in finished] == ["snapshot", "end"]
    assert finished[0].data == finished[1].data == end.data
    assert finished[0].id == finished[1].id == end.id


def test_a_task_that_finished_before_connecting(server: ServerProcess) -> None:
    client = sdk.client(server)
    cluster_id, created = sdk.create_cluster(client, pool_size=1)
    assert created.state == "success"
    pool_id = (
        client.describe_cluster_node_pools(cluster_id, cs_models.DescribeClusterNodePoolsRequest())
        .body.nodepools[0]
        .nodepool_info.nodepool_id
    )
    task_id = client.scale_cluster_node_pool(
        cluster_id, pool_id, cs_models.ScaleClusterNodePoolRequest(count=2)
    ).body.task_id
    with _http(server) as http, _stream(http, task_id) as stream:
        received = stream.until_end()
    # At --sim-speed 0 it may have finished before the stream opened, or not.
    assert received[0].event == "snapshot"
    _positions_move_forward(received)
    _events_once_in_order(len(received[0].data["events"]), received[1:])
    end = received[-1].data
    assert end["state"] == "success"
    assert [r["status"] for r in end["task_result"]] == ["success", "success"]
    assert sdk.wait_task(client, task_id).state == "success"


# -- a task written by another process (an API-only server sees it through its poller) --------


def _event(task_store: store.TaskStore, task_id: str, reason: str) -> None:
    task_store.append_event(
        task_id,
        action="progress",
        level=states.EventLevel.NORMAL,
        reason=reason,
        message=f"{reason} of {task_id}",
        now_us=LATER_US,
    )


def _progress(task_store: store.TaskStore, task_id: str, done: int) -> None:
    stage = next(s for s in task_store.describe_task(task_id).stages if s.state.value == "running")
    outputs = {"nodes_total": 9, "nodes_done": done}
    task_store.update_stage(task_id, dataclasses.replace(stage, outputs=outputs), LATER_US)


def _finish(task_store: store.TaskStore, task_id: str) -> None:
    task = task_store.get_task(task_id)
    task_store.update_task(task.with_state(states.TaskState.SUCCESS, task.updated_us + 1))


def test_disconnect_and_resume_loses_and_repeats_nothing(
    read_server: ServerProcess, seeding_store: store.TaskStore
) -> None:
    view = factories.seed_task(seeding_store)
    task_id = view.task.task_id
    first = len(view.events)
    with _http(read_server) as http:
        with _stream(http, task_id) as stream:
            snapshot = stream.next()
            assert snapshot is not None
            assert (snapshot.event, snapshot.id) == ("snapshot", f"{view.task.version}.{first}")
            assert snapshot.data == wire.task_document(view)

            _event(seeding_store, task_id, "One")
            one = stream.next()
            assert one is not None
            assert (one.event, one.seq, one.data["reason"]) == ("event", first + 1, "One")
            assert one.version == seeding_store.task_version(task_id)

            _progress(seeding_store, task_id, 2)
            progress = stream.next()
            assert progress is not None
            assert progress.event == "stage"
            assert progress.data["outputs"] == {"nodes_total": 9, "nodes_done": 2}
            assert progress.seq == first + 1

            seeding_store.set_result(
                task_id, "i-cccccccccccccccccccc", states.ResultStatus.INITIAL, LATER_US
            )
            result = stream.next()
            assert result is not None
            assert (result.event, result.data) == (
                "result",
                {"data": "i-cccccccccccccccccccc", "status": "initial"},
            )
            last_id = result.id

        # Gone; meanwhile the task moves on.
        for reason in ("Two", "Three"):
            _event(seeding_store, task_id, reason)
        seeding_store.set_result(
            task_id, "i-cccccccccccccccccccc", states.ResultStatus.SUCCESS, LATER_US
        )

        with _stream(http, task_id, last_id) as stream:
            resumed: list[sse.Message] = []
            while len([m for m in resumed if m.event == "event"]) < 2:
                message = stream.next()
                assert message is not None
                resumed.append(message)
            _finish(seeding_store, task_id)
            resumed += stream.until_end()

    assert "snapshot" not in [m.event for m in resumed]
    _positions_move_forward([snapshot, one, progress, result, *resumed])
    assert _events_once_in_order(first + 1, resumed) == [first + 2, first + 3]
    assert [m.data["reason"] for m in resumed if m.event == "event"] == ["Two", "Three"]
    results = [m.data for m in resumed if m.event == "result"]
    assert {"data": "i-cccccccccccccccccccc", "status": "success"} in results
    tasks = [m.data for m in resumed if m.event == "task"]
    assert tasks[-1]["state"] == "success"
    assert "stages" not in tasks[-1]
    end = resumed[-1]
    assert end.data == wire.task_document(seeding_store.describe_task(task_id))
    assert end.id == f"{seeding_store.task_version(task_id)}.{first + 3}"


def test_heartbeats_keep_an_idle_stream_alive(
    db_url: str, tmp_path: Path, task_store: store.TaskStore
) -> None:
    view = factories.seed_task(task_store)
    with (
        ServerProcess(db_url, tmp_path, "--no-executor", "--sse-heartbeat", "0.1") as server,
        _http(server) as http,
        _stream(http, view.task.task_id) as stream,
    ):
        snapshot = stream.next()
        assert snapshot is not None
        assert snapshot.event == "snapshot"
        # Nothing changes: comments only, until something does.
        assert [stream.item(), stream.item()] == [sse.Comment("keep-alive")] * 2
        _event(task_store, view.task.task_id, "AtLast")
        message = stream.next()
        assert message is not None
        assert (message.event, message.data["reason"]) == ("event", "AtLast")
        assert server.stop() == 0


def test_a_hundred_streams_see_the_same_sequence(
    db_url: str, tmp_path: Path, task_store: store.TaskStore
) -> None:
    view = factories.seed_task(task_store)
    task_id = view.task.task_id
    unthrottled = ("--rate-limit", "100000", "--rate-burst", "100000")
    with ServerProcess(db_url, tmp_path, "--no-executor", *unthrottled) as server:
        received = asyncio.run(_many_streams(server, task_store, task_id, streams=100))
        assert server.stop() == 0
    first = received[0]
    assert [m.event for m in first] == ["snapshot"] + ["event", "stage"] * 3 + ["task", "end"]
    for other in received[1:]:
        assert other == first
    _positions_move_forward(first)
    _events_once_in_order(len(view.events), first[1:])
    assert first[-1].data == wire.task_document(task_store.describe_task(task_id))


async def _many_streams(
    server: ServerProcess, task_store: store.TaskStore, task_id: str, streams: int
) -> list[list[sse.Message]]:
    received: list[list[sse.Message]] = [[] for _ in range(streams)]
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams + 10)
    async with httpx.AsyncClient(
        base_url=server.url,
        auth=signing.auth(),
        trust_env=False,
        timeout=httpx.Timeout(READ_TIMEOUT),
        limits=limits,
    ) as http:

        async def follow(into: list[sse.Message]) -> None:
            parser = sse.Parser()
            async with http.stream("GET", f"/tasks/{task_id}/stream") as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    item = parser.feed(line)
                    if isinstance(item, sse.Message):
                        into.append(item)

        async def everyone_has(count: int) -> None:
            await polling.until_async(
                f"every stream with {count} messages",
                lambda: [len(messages) for messages in received],
                lambda lengths: all(length >= count for length in lengths),
                timeout=READ_TIMEOUT,
            )

        followers = [asyncio.create_task(follow(into)) for into in received]
        await everyone_has(1)
        # One change at a time, each seen by every stream before the next.
        for done in (1, 2, 3):
            await asyncio.to_thread(_event, task_store, task_id, f"Step{done}")
            await everyone_has(2 * done)
            await asyncio.to_thread(_progress, task_store, task_id, done)
            await everyone_has(1 + 2 * done)
        await asyncio.to_thread(_finish, task_store, task_id)
        await asyncio.wait_for(asyncio.gather(*followers), READ_TIMEOUT)
    return received


def test_stopping_the_server_ends_open_streams(
    db_url: str, tmp_path: Path, task_store: store.TaskStore
) -> None:
    view = factories.seed_task(task_store)
    server = ServerProcess(db_url, tmp_path, "--no-executor").start()
    try:
        with (
            _http(server) as http,
            _stream(http, view.task.task_id) as first,
            _stream(http, view.task.task_id) as second,
        ):
            for stream in (first, second):
                opened = stream.next()
                assert opened is not None
                assert opened.event == "snapshot"
            # SIGTERM: exit status 0, promptly, though two streams were open.
            assert server.stop() == 0, server.log()
            # Each stream closed cleanly, without an end: the task has not finished.
            assert first.next() is None
            assert second.next() is None
    finally:
        server.kill()


def test_unknown_task_and_long_poll_over_http(
    read_server: ServerProcess, seeding_store: store.TaskStore
) -> None:
    view = factories.seed_task(seeding_store)
    path = f"/tasks/{view.task.task_id}"
    with _http(read_server) as http:
        missing = http.get("/tasks/T-000000000000000000000000/stream")
        assert missing.status_code == 404
        assert missing.json()["code"] == "ErrorTaskNotFound"

        current = http.get(path)
        # The shared server is reset between tests: the tag names the state's generation.
        generation = seeding_store.task_stamp(view.task.task_id).generation
        assert current.headers["etag"] == conditional.etag(view.task.version, "json", generation)
        held = {"If-None-Match": current.headers["etag"]}
        assert http.get(path, headers=held).status_code == 304

        since = {"wait": "60", "since": str(view.task.version)}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            polled = pool.submit(http.get, path, params=since)
            _event(seeding_store, view.task.task_id, "Written")
            answer = polled.result(timeout=READ_TIMEOUT)
        assert answer.status_code == 200
        assert int(answer.headers[VERSION]) == view.task.version + 1
        assert answer.json()["events"][-1]["reason"] == "Written"
        assert http.get(path, headers=held).status_code == 200
