"""api/fastpath.py answers exactly what the FastAPI application answers.

Every request of the matrix goes to the application through ``FastPath`` and straight to
it, and the two answers are compared: status, every header in order (the request id's value
aside), the body's bytes (the request id inside it aside), what each changed in the
metrics and every line each logged with its bound fields. Requests the fast path takes
(a signed or refused ``GET /tasks/{id}``) and ones it passes on (``HEAD``, long-polls, other
paths) alike, with signatures checked and with ``--auth off``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from clustertasks import clock, settings
from clustertasks.api import app as api_app
from clustertasks.api import fastpath
from clustertasks.domain import access, signing, states
from clustertasks.observability import logs
from clustertasks.observability import telemetry as observed
from clustertasks.service import auth as auth_service
from clustertasks.storage import database as storage_database
from tests.integration.conftest import services_for
from tests.support import factories
from tests.support import signing as test_signing

MINUTE_US = 60 * 1_000_000


@dataclasses.dataclass(frozen=True)
class Case:
    """One request: how it is signed and what is sent."""

    name: str
    path: str
    query: str = ""
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    signed: bool = True
    key_id: str = test_signing.KEY_ID
    secret: str = test_signing.SECRET
    skew_us: int = 0
    drop: tuple[str, ...] = ()
    """Headers taken out after signing."""
    kept: bool = True
    """False: the kept documents are forgotten before each of the two answers."""
    body: bytes = b""
    signed_body: bool = True
    """False: signed as if the body were empty."""


@dataclasses.dataclass
class Pair:
    app: FastAPI
    fast: TestClient
    full: TestClient
    time: clock.FixedClock
    database: storage_database.Database
    telemetry: observed.Telemetry
    nonces: int = 0

    def headers(self, case: Case, nonce: str) -> dict[str, str]:
        headers = {"host": "testserver", "accept": "application/json", **dict(case.headers)}
        if case.signed:
            unsigned = signing.HttpRequest(
                case.method,
                case.path,
                case.query,
                signing.lower_headers(headers),
                case.body if case.signed_body else b"",
            )
            headers |= signing.sign_acs3(
                unsigned,
                case.key_id,
                case.secret,
                now_us=self.time.now_us() + case.skew_us,
                nonce=nonce,
            )
        return {k: v for k, v in headers.items() if k not in case.drop}

    def send(self, client: TestClient, case: Case, headers: dict[str, str]) -> Answer:
        if not case.kept:
            self.app.state.documents.clear()
        url = f"{case.path}?{case.query}" if case.query else case.path
        before = _counted(self.telemetry)
        with _LogLines() as lines:
            response = client.request(case.method, url, headers=headers, content=case.body)
        answer = Answer.of(response)
        after = _counted(self.telemetry)
        counted = {
            name: after.get(name, 0) - before.get(name, 0)
            for name in before.keys() | after.keys()
            if after.get(name, 0) != before.get(name, 0)
        }
        rid = response.headers["x-acs-request-id"]
        logged = [line.replace(rid, "RID") for line in lines.lines]
        return dataclasses.replace(answer, counted=counted, logged=logged)

    def compare(self, case: Case) -> Answer:
        """The answer of both paths to ``case``, asserted equal; the fast path's returned."""
        self.nonces += 1
        nonce = f"nonce-{self.nonces}"
        spent = self.database.keys.nonce_count()
        full = self.send(self.full, case, self.headers(case, nonce))
        if self.database.keys.nonce_count() != spent:
            # The first request spent its nonce: the second needs another one (no answer
            # that spends a nonce shows it).
            nonce = f"nonce-{self.nonces}-again"
        fast = self.send(self.fast, case, self.headers(case, nonce))
        assert fast == full, case.name
        return fast


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    counted: dict[str, float] = dataclasses.field(default_factory=dict)
    """What the request changed in the metrics: each counter's, gauge's and histogram
    count's change, by name and labels (durations' sums and buckets aside: timing; and
    the process's own figures)."""
    logged: list[str] = dataclasses.field(default_factory=list)
    """Every record logged under ``clustertasks`` meanwhile: logger, level, message (its
    duration aside) and the fields bound to it."""

    @classmethod
    def of(cls, response: object) -> Answer:
        rid = response.headers.get("x-acs-request-id", "")  # type: ignore[attr-defined]
        assert rid, "every answer carries a request id"
        headers = [
            (name.decode(), "RID" if name == b"x-acs-request-id" else value.decode())
            for name, value in response.headers.raw  # type: ignore[attr-defined]
        ]
        body = response.content.replace(rid.encode(), b"RID")  # type: ignore[attr-defined]
        return cls(response.status_code, headers, body)  # type: ignore[attr-defined]


def _counted(telemetry: observed.Telemetry) -> dict[str, float]:
    found: dict[str, float] = {}
    for metric in telemetry.metrics.registry.collect():
        for sample in metric.samples:
            if not sample.name.startswith("clustertasks_") or sample.name.endswith(
                ("_sum", "_bucket", "_created")
            ):
                continue  # the process's own figures, and timing
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


class _LogLines(logging.Handler):
    """The records logged under ``clustertasks`` while in use, at every level, with the
    log fields bound when each was made."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._logger = logging.getLogger("clustertasks")
        self._level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        message = re.sub(r" in [0-9.]+s$", " in Ts", record.getMessage())
        fields = sorted(logs.current().items())
        self.lines.append(f"{record.name} {record.levelname} {message} {fields}")

    def __enter__(self) -> _LogLines:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


def _pair(database: storage_database.Database, config: settings.AuthSettings) -> Iterator[Pair]:
    time = clock.FixedClock(clock.SystemClock().now_us())
    test_signing.add_key(database)
    test_signing.add_key(database, access.Role.READONLY, "ro-ak", "ro-secret")
    test_signing.add_key(
        database, key_id="off-ak", secret="off-secret", status=access.KeyStatus.INACTIVE
    )
    telemetry = observed.Telemetry()
    app = api_app.create_app(
        services_for(database),
        settings.WireSettings(),
        authenticator=auth_service.Authenticator(database.keys, config, time, database.audit),
        telemetry=telemetry,
    )
    with (
        TestClient(fastpath.FastPath(app), raise_server_exceptions=False) as fast,
        TestClient(app, raise_server_exceptions=False) as full,
    ):
        yield Pair(app, fast, full, time, database, telemetry)


@pytest.fixture
def pair(database: storage_database.Database) -> Iterator[Pair]:
    yield from _pair(database, test_signing.UNLIMITED)


@pytest.fixture
def pair_auth_off(database: storage_database.Database) -> Iterator[Pair]:
    yield from _pair(database, dataclasses.replace(test_signing.UNLIMITED, enabled=False))


@pytest.fixture
def pair_throttled(database: storage_database.Database) -> Iterator[Pair]:
    """One request's worth of rate for each key, and a clock that stands still."""
    yield from _pair(
        database, dataclasses.replace(test_signing.UNLIMITED, rate_per_second=0.001, burst=1)
    )


def _matrix(running: str, done: str) -> list[Case]:
    path = f"/tasks/{running}"
    return [
        Case("signed", path),
        Case("signed, kept document", path),
        Case("signed, first rendering", path, kept=False),
        Case("finished task", f"/tasks/{done}"),
        Case("readonly key", path, key_id="ro-ak", secret="ro-secret"),
        Case("unknown task", "/tasks/T-5faa48fb31b6b8078d000006"),
        Case("malformed task id", "/tasks/not%20a%20task"),
        Case("malformed task id, not ASCII", "/tasks/%E2%9C%93"),
        Case("task id of 300 characters", "/tasks/" + "T" * 300),
        Case("bad signature", path, secret="guess"),
        Case("unknown key", path, key_id="nobody"),
        Case("inactive key", path, key_id="off-ak", secret="off-secret"),
        Case("unsigned", path, signed=False),
        Case("no nonce", path, drop=(signing.NONCE_HEADER,)),
        Case("no date", path, drop=("x-acs-date",)),
        Case("expired timestamp", path, skew_us=-16 * MINUTE_US),
        Case("timestamp ahead", path, skew_us=16 * MINUTE_US),
        Case("wait=0", path, "wait=0"),
        Case("wait=abc", path, "wait=abc"),
        Case("wait=0.01 (a long-poll)", path, "wait=0.01&since=1"),
        Case("since", path, "since=1"),
        Case("since=x", path, "since=x"),
        Case("format=xml", path, "format=xml"),
        Case("format=json", path, "format=json"),
        Case("format=yaml", path, "format=yaml"),
        Case("format=xml, unknown task", "/tasks/T-nothing", "format=xml"),
        Case("accept xml", path, headers=(("accept", "application/xml"),)),
        Case("if-none-match, current", path, headers=(("if-none-match", '"3-json"'),)),
        Case("if-none-match *", path, headers=(("if-none-match", "*"),)),
        Case("if-none-match, stale", path, headers=(("if-none-match", 'W/"1-json"'),)),
        Case("unrelated query", path, "x=1&y=%20"),
        Case("a body, signed", path, body=b'{"x": 1}'),
        Case("a body the signature misses", path, body=b"x", signed_body=False),
        Case("content-length 0", path, headers=(("content-length", "0"),)),
        Case("HEAD", path, method="HEAD"),
        Case("POST", path, method="POST"),
        Case("empty task id", "/tasks/"),
        Case("trailing slash", path + "/"),
        Case("stream of an unknown task", "/tasks/T-nothing/stream"),
        Case("healthz", "/healthz", signed=False),
    ]


@pytest.fixture
def tasks(database: storage_database.Database) -> tuple[str, str]:
    running = factories.seed_task(database.tasks).task.task_id
    done = factories.seed_task(
        database.tasks, state=states.TaskState.SUCCESS, created_us=factories.BASE_US + 1
    ).task.task_id
    return running, done


def test_fast_path_answers_like_the_application(pair: Pair, tasks: tuple[str, str]) -> None:
    answers = [pair.compare(case) for case in _matrix(*tasks)]
    assert {200, 304, 400, 404, 405} <= {answer.status for answer in answers}
    # The comparison saw what the middlewares count and log: a kept answer's line at debug
    # with the request id and the key bound, and the refusals counted by code.
    signed = answers[1]
    assert signed.counted == {
        "clustertasks_api_request_duration_seconds_count{operation=DescribeTaskInfo}": 1,
        "clustertasks_api_requests_total{access_key_id=test-ak,code=,operation=DescribeTaskInfo,"
        "status=200}": 1,
    }
    assert any(
        "DEBUG DescribeTaskInfo GET" in line and "('access_key_id', 'test-ak')" in line
        for line in signed.logged
    )
    assert any("auth_failures" in name for a in answers for name in a.counted)


def test_throttled_requests_are_refused_alike(pair_throttled: Pair, tasks: tuple[str, str]) -> None:
    case = Case("signed", f"/tasks/{tasks[0]}")
    assert (
        pair_throttled.send(pair_throttled.fast, case, pair_throttled.headers(case, "n")).status
        == 200
    )
    throttled = pair_throttled.compare(case)
    assert throttled.status == 429
    assert b"Throttling" in throttled.body
    assert any(name == "x-acs-retry-after" for name, _ in throttled.headers)
    assert any("throttled_requests" in name for name in throttled.counted)


def test_fast_path_answers_like_the_application_with_auth_off(
    pair_auth_off: Pair, tasks: tuple[str, str]
) -> None:
    statuses = {pair_auth_off.compare(case).status for case in _matrix(*tasks)}
    assert {200, 304, 400, 404, 405} <= statuses


def test_a_replayed_nonce_is_refused_on_either_path(pair: Pair, tasks: tuple[str, str]) -> None:
    case = Case("signed", f"/tasks/{tasks[0]}")
    headers = pair.headers(case, "the-nonce")
    assert pair.send(pair.full, case, headers).status == 200
    replayed = pair.send(pair.fast, case, headers)
    assert replayed == pair.send(pair.full, case, headers)
    assert replayed.status == 400
    assert b"SignatureNonceUsed" in replayed.body
    # And the other way round: spent on the fast path, refused by both.
    headers = pair.headers(case, "another-nonce")
    assert pair.send(pair.fast, case, headers).status == 200
    assert pair.send(pair.full, case, headers) == pair.send(pair.fast, case, headers)


def test_a_key_another_process_disabled_is_refused_alike(
    pair: Pair, tasks: tuple[str, str], db_url: str
) -> None:
    """The key was remembered by an answered request, then disabled by another process:
    the next request's nonce transaction finds it, and both paths refuse it alike."""
    case = Case("signed", f"/tasks/{tasks[0]}")
    other = storage_database.Database.open(settings.StorageSettings(url=db_url))
    refused = []
    try:
        for n, client in enumerate((pair.fast, pair.full)):
            other.keys.set_status(test_signing.KEY_ID, access.KeyStatus.ACTIVE)
            assert pair.send(client, case, pair.headers(case, f"before-{n}")).status == 200
            other.keys.set_status(test_signing.KEY_ID, access.KeyStatus.INACTIVE)
            refused.append(pair.send(client, case, pair.headers(case, f"after-{n}")))
    finally:
        other.close()
    assert refused[0] == refused[1]
    assert refused[0].status == 400
    assert b"InvalidAccessKeyId.Inactive" in refused[0].body


def test_fast_path_skips_the_router_and_is_measured(
    database: storage_database.Database, tasks: tuple[str, str]
) -> None:
    """A DescribeTaskInfo never reaches FastAPI's own stack, and counts in the metrics as
    the application's would: by operation, status, code and key."""
    telemetry = observed.Telemetry()
    app = api_app.create_app(
        services_for(database),
        settings.WireSettings(),
        authenticator=test_signing.authenticator(database),
        telemetry=telemetry,
    )
    client = TestClient(fastpath.FastPath(app), raise_server_exceptions=False)
    client.auth = test_signing.auth()
    assert client.get(f"/tasks/{tasks[0]}").status_code == 200
    assert client.get("/tasks/T-nothing").status_code == 404
    assert app.middleware_stack is None, "FastAPI built its stack: the router was used"
    samples = {
        (tuple(sorted(s.labels.items())), s.name): s.value
        for metric in telemetry.metrics.registry.collect()
        for s in metric.samples
    }

    def count(status: str, code: str) -> float:
        labels = {
            "operation": "DescribeTaskInfo",
            "status": status,
            "code": code,
            "access_key_id": test_signing.KEY_ID,
        }
        return samples.get((tuple(sorted(labels.items())), "clustertasks_api_requests_total"), 0)

    assert count("200", "") == 1
    assert count("404", "ErrorTaskNotFound") == 1
    duration = (
        (("operation", "DescribeTaskInfo"),),
        "clustertasks_api_request_duration_seconds_count",
    )
    assert samples[duration] == 2
    # Anything else still goes to the application.
    assert client.get("/healthz").status_code == 200
    assert app.middleware_stack is not None
