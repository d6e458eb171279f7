"""How the CLI follows a task (``cli/watch.py``), against a real server: long-polls, pauses
between reads that bring nothing new, and when it gives up.

The reads go over the network to ``clustertasks serve``; a transport that only records
what was sent sits in between, and the follower's sleeps are counted instead of slept.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alibabacloud_cs20151215 import models as cs_models

from clustertasks.cli import client, watch
from tests.acceptance import sdk
from tests.support import signing
from tests.support.server import ServerProcess


class Recording(httpx.HTTPTransport):
    """The real network transport, remembering each request's query."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[dict[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.queries.append(dict(request.url.params))
        return super().handle_request(request)


class CountedTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@contextlib.contextmanager
def _follower(
    url: str, task_id: str, time: CountedTime, transport: httpx.BaseTransport | None = None
) -> Iterator[watch.TaskFollower]:
    with client.ApiClient(url, signing.auth(), transport=transport) as api:
        yield watch.TaskFollower(api, task_id, sleep=time.sleep, monotonic=time.monotonic)


def _scale_out(server: ServerProcess, clock: str, count: int = 2) -> str:
    """A scale-out started on a simulated clock in ``clock`` mode (the cluster it scales is
    made first, with the clock as it was)."""
    api = sdk.client(server)
    cluster_id, _ = sdk.create_cluster(api, pool_size=1)
    _clock(server, clock)
    pools = api.describe_cluster_node_pools(
        cluster_id, cs_models.DescribeClusterNodePoolsRequest()
    ).body.nodepools
    return str(
        api.scale_cluster_node_pool(
            cluster_id,
            pools[0].nodepool_info.nodepool_id,
            cs_models.ScaleClusterNodePoolRequest(count=count),
        ).body.task_id
    )


def _clock(server: ServerProcess, mode: str) -> Any:
    answer = httpx.post(
        f"{server.url}/_emulator/clock", json={"mode": mode}, auth=signing.auth(), trust_env=False
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_after_the_first_read_every_read_is_a_long_poll_since_the_last_version(
    server: ServerProcess,
) -> None:
    task_id = _scale_out(server, "manual")  # it waits until the clock is advanced
    time = CountedTime()
    transport = Recording()
    with _follower(server.url, task_id, time, transport) as follower:
        documents = follower.documents()
        assert next(documents)["state"] == "running"
        _clock(server, "realtime")  # at speed 0: everything waiting completes now
        states = [document["state"] for document in documents]
    assert states[-1] == "success"
    assert transport.queries[0] == {}
    assert all(set(q) == {"wait", "since"} for q in transport.queries[1:])
    assert all(q["wait"] == str(watch.LONG_POLL_SECONDS) for q in transport.queries[1:])
    sinces = [int(q["since"]) for q in transport.queries[1:]]
    assert sinces == sorted(sinces)
    assert time.sleeps == []  # every long-poll brought something new


def test_a_server_that_answers_long_polls_at_once_is_not_hammered(server: ServerProcess) -> None:
    # A per-poll clock makes the server answer every long-poll at once (nothing could change
    # without a read): the follower keeps its reads a poll interval apart when one brought
    # nothing new, and still follows the task to its end.
    task_id = _scale_out(server, "per_poll")
    time = CountedTime()
    with _follower(server.url, task_id, time) as follower:
        documents = list(follower.documents())
    assert documents[-1]["state"] == "success"
    assert all(pause == watch.POLL_SECONDS for pause in time.sleeps)


def test_it_gives_up_on_a_server_that_went_away_and_stays_away(db_url: str, tmp_path: Path) -> None:
    with ServerProcess(db_url, tmp_path, "--sim-speed", "0") as server:
        task_id = _scale_out(server, "manual")
        time = CountedTime()
        with _follower(server.url, task_id, time) as follower:
            documents = follower.documents()
            assert next(documents)["state"] == "running"
            assert server.stop() == 0
            with pytest.raises(client.ConnectionFailed, match=server.url):
                next(documents)
    assert watch.PATIENCE_SECONDS - 5 <= sum(time.sleeps) <= watch.PATIENCE_SECONDS
    assert len(time.sleeps) >= 6


def test_a_server_unreachable_from_the_start_is_said_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # bound, never listening
        time = CountedTime()
        with (
            _follower(url, "T-000000000000000000000001", time) as follower,
            pytest.raises(client.ConnectionFailed),
        ):
            list(follower.documents())
    assert time.sleeps == []


def test_request_errors_are_not_retried(server: ServerProcess) -> None:
    time = CountedTime()
    transport = Recording()
    unknown = "T-000000000000000000000001"
    with (
        _follower(server.url, unknown, time, transport) as follower,
        pytest.raises(client.ApiError) as caught,
    ):
        list(follower.documents())
    assert (caught.value.code, caught.value.status) == ("ErrorTaskNotFound", 404)
    assert caught.value.request_id
    assert len(transport.queries) == 1
    assert time.sleeps == []
