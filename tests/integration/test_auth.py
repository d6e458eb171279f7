"""The signature gateway in front of the API, in-process, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clustertasks import clock, errors, settings
from clustertasks.api import app as api_app
from clustertasks.domain import access, signing, states
from clustertasks.service import auth as auth_service
from clustertasks.storage import database as storage_database
from tests.integration.conftest import services_for
from tests.support import factories, legacy_signers
from tests.support import signing as test_signing

CLUSTER = "c0123456789abcdef0123456789abcdef"
LIMITS = settings.AuthSettings(rate_per_second=1.0, burst=5, max_body_bytes=1024)


@dataclass
class Gateway:
    client: TestClient
    time: clock.FixedClock
    database: storage_database.Database

    def send(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: bytes = b"",
        key_id: str = test_signing.KEY_ID,
        secret: str = test_signing.SECRET,
        nonce: str | None = None,
        now_us: int | None = None,
        sent_body: bytes | None = None,
    ) -> Any:
        """Sign like the SDK; ``sent_body`` sends other bytes than were signed."""
        headers = {"host": "testserver", "x-acs-action": "Test", "accept": "application/json"}
        if body:
            headers["content-type"] = "application/json; charset=utf-8"
        unsigned = signing.HttpRequest(method, path, query, signing.lower_headers(headers), body)
        headers |= signing.sign_acs3(
            unsigned,
            key_id,
            secret,
            now_us=self.time.now_us() if now_us is None else now_us,
            nonce=nonce,
        )
        url = f"{path}?{query}" if query else path
        content = body if sent_body is None else sent_body
        return self.client.request(method, url, content=content, headers=headers)


@pytest.fixture
def gateway(database: storage_database.Database) -> Iterator[Gateway]:
    """The app with a key per role, a clock that moves only when told, and tight limits."""
    time = clock.FixedClock(clock.SystemClock().now_us())
    test_signing.add_key(database)
    test_signing.add_key(database, access.Role.READONLY, "ro-ak", "ro-secret")
    test_signing.add_key(database, access.Role.OPERATOR, "op-ak", "op-secret")
    test_signing.add_key(
        database, key_id="off-ak", secret="off-secret", status=access.KeyStatus.INACTIVE
    )
    authenticator = auth_service.Authenticator(database.keys, LIMITS, time, database.audit)
    app = api_app.create_app(
        services_for(database), settings.WireSettings(), authenticator=authenticator
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Gateway(client, time, database)


def _error(response: Any, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body: dict[str, object] = response.json()
    assert body["code"] == code, body
    assert body["requestId"] == response.headers["x-acs-request-id"]
    return body


def test_a_signed_request_is_answered(gateway: Gateway) -> None:
    task_id = factories.seed_task(gateway.database.tasks, cluster_id=CLUSTER).task.task_id
    response = gateway.send("GET", f"/tasks/{task_id}")
    assert response.status_code == 200, response.text
    assert response.json()["task_id"] == task_id
    listed = gateway.send("GET", f"/clusters/{CLUSTER}/tasks", query="page_size=5&state=running")
    assert [t["task_id"] for t in listed.json()["tasks"]] == [task_id]


def test_unsigned_requests_are_refused_but_health_and_docs_are_open(gateway: Gateway) -> None:
    body = _error(gateway.client.get("/tasks/T-1"), 400, "IncompleteSignature")
    assert "Authorization" in str(body["message"])
    assert gateway.client.get("/healthz").status_code == 200
    assert gateway.client.get("/openapi.json").status_code == 200


def test_gateway_errors(gateway: Gateway) -> None:
    _error(gateway.send("GET", "/tasks/T-1", key_id="nobody"), 404, "InvalidAccessKeyId.NotFound")
    _error(
        gateway.send("GET", "/tasks/T-1", key_id="off-ak", secret="off-secret"),
        400,
        "InvalidAccessKeyId.Inactive",
    )
    wrong = _error(gateway.send("GET", "/tasks/T-1", secret="guess"), 400, "SignatureDoesNotMatch")
    assert "string to sign" in str(wrong["message"])
    assert test_signing.SECRET not in str(wrong["message"])
    stale = gateway.time.now_us() - 16 * 60 * 1_000_000
    _error(gateway.send("GET", "/tasks/T-1", now_us=stale), 400, "InvalidTimeStamp.Expired")
    ahead = gateway.time.now_us() + 16 * 60 * 1_000_000
    _error(gateway.send("GET", "/tasks/T-1", now_us=ahead), 400, "InvalidTimeStamp.Expired")


GATEWAY_KEYS = {"RequestId", "HostId", "Code", "Message", "Recommend"}


def test_gateway_errors_carry_both_shapes_service_errors_one(gateway: Gateway) -> None:
    wrong = _error(gateway.send("GET", "/tasks/T-1", secret="guess"), 400, "SignatureDoesNotMatch")
    assert set(wrong) == {"code", "message", "requestId", "status", *GATEWAY_KEYS}
    assert wrong["Code"] == wrong["code"]
    assert wrong["Message"] == wrong["message"]
    assert wrong["RequestId"] == wrong["requestId"]
    assert wrong["HostId"] == "testserver"
    assert f"requestId={wrong['requestId']}" in str(wrong["Recommend"])
    for response, status, code in (
        (gateway.send("GET", "/no/such/api"), 404, "InvalidApi.NotFound"),
        (gateway.client.get("/tasks/T-1"), 400, "IncompleteSignature"),
        (
            gateway.send("POST", "/tasks/T-1/cancel", key_id="ro-ak", secret="ro-secret"),
            403,
            "Forbidden.RAM",
        ),
    ):
        assert set(_error(response, status, code)) >= GATEWAY_KEYS
    # The service's own errors keep the shape real ACK's CS service answers with.
    service = _error(gateway.send("GET", "/tasks/T-1"), 404, "ErrorTaskNotFound")
    assert set(service) == {"code", "message", "requestId", "status"}


def _send(gateway: Gateway, signed: legacy_signers.Signed) -> Any:
    return gateway.client.request(
        signed.method, signed.target, content=signed.body, headers=signed.headers
    )


def test_legacy_requests_without_a_nonce_pass_within_the_date_window(gateway: Gateway) -> None:
    task_id = factories.seed_task(gateway.database.tasks, cluster_id=CLUSTER).task.task_id
    now_s = gateway.time.now_us() / 1e6
    key = legacy_signers.Key(test_signing.KEY_ID, test_signing.SECRET)
    go = legacy_signers.go_sdk(
        "GET", f"/tasks/{task_id}", action="DescribeTaskInfo", now_s=now_s, key=key
    )
    assert "x-acs-signature-nonce" not in go.headers
    for _ in range(2):  # no nonce, so nothing to replay: the same request passes again
        response = _send(gateway, go)
        assert response.status_code == 200, response.text
        assert response.json()["task_id"] == task_id
    listed = legacy_signers.aliyun_cli(
        "GET",
        f"/clusters/{CLUSTER}/tasks",
        query={"page_size": "5", "state": "running"},
        now_s=now_s,
        key=key,
    )
    response = _send(gateway, listed)
    assert response.status_code == 200, response.text
    assert [t["task_id"] for t in response.json()["tasks"]] == [task_id]

    late = legacy_signers.go_sdk(
        "GET", f"/tasks/{task_id}", action="DescribeTaskInfo", now_s=now_s - 16 * 60, key=key
    )
    _error(_send(gateway, late), 400, "InvalidTimeStamp.Expired")
    wrong = legacy_signers.go_sdk(
        "GET",
        f"/tasks/{task_id}",
        action="DescribeTaskInfo",
        now_s=now_s,
        key=legacy_signers.Key(test_signing.KEY_ID, "guess"),
    )
    _error(_send(gateway, wrong), 400, "SignatureDoesNotMatch")


def test_a_legacy_request_with_a_nonce_is_refused_on_replay(gateway: Gateway) -> None:
    now_s = gateway.time.now_us() / 1e6
    signed = legacy_signers.aliyungo(
        "GET",
        f"/clusters/{CLUSTER}/tasks",
        query={"page_size": "5", "flag": ""},
        key=legacy_signers.Key(test_signing.KEY_ID, test_signing.SECRET),
        now_s=now_s,
        region="cn-hangzhou",
    )
    assert _send(gateway, signed).status_code == 200
    _error(_send(gateway, signed), 400, "SignatureNonceUsed")


def test_a_replayed_nonce_is_refused_and_forgotten_after_the_window(gateway: Gateway) -> None:
    first = gateway.send("GET", "/tasks/T-1", nonce="once")
    _error(first, 404, "ErrorTaskNotFound")
    _error(gateway.send("GET", "/tasks/T-1", nonce="once"), 400, "SignatureNonceUsed")
    # Another key may use the same nonce: nonces are per key.
    _error(
        gateway.send("GET", "/tasks/T-1", nonce="once", key_id="ro-ak", secret="ro-secret"),
        404,
        "ErrorTaskNotFound",
    )
    key_store = gateway.database.keys
    assert key_store.nonce_count() == 2
    # Past the window the old request fails its date check, so its nonce can go.
    gateway.time.advance(16 * 60)
    assert key_store.purge_nonces(gateway.time.now_us()) == 2
    assert key_store.nonce_count() == 0


def test_concurrent_nonces_are_written_together_and_each_is_fresh_once(
    database: storage_database.Database,
) -> None:
    """Threads claiming at once: of every (key, nonce) pair exactly one claim is fresh,
    whether the duplicates meet in one batch or in different ones."""
    key_store = database.keys
    expires = factories.BASE_US + 900_000_000
    pairs = [(f"ak-{n % 3}", f"nonce-{n % 40}") for n in range(240)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(
            pool.map(
                lambda pair: key_store.use_nonce(pair[0], pair[1], expires, factories.BASE_US),
                pairs,
            )
        )
    fresh = [pair for pair, ok in zip(pairs, answers, strict=True) if ok]
    assert sorted(fresh) == sorted(set(pairs))
    assert key_store.nonce_count() == len(set(pairs))
    assert not key_store.use_nonce("ak-0", "nonce-0", expires, factories.BASE_US)
    assert key_store.use_nonce("ak-0", "nonce-new", expires, factories.BASE_US)


def test_a_key_changed_by_another_process_is_seen_by_the_next_request(
    gateway: Gateway, db_url: str
) -> None:
    """A server checks signatures against the keys it read before (SQLite) and learns of a
    change in the nonce's transaction: a key disabled, deleted, given a new secret or a
    lesser role by another process (``clustertasks keys``) is refused, or checked anew, at
    the very next request, on the read path and elsewhere."""
    task_id = factories.seed_task(gateway.database.tasks, cluster_id=CLUSTER).task.task_id
    other = storage_database.Database.open(settings.StorageSettings(url=db_url))
    admin = auth_service.KeyAdmin(other.keys, clock.SystemClock())
    key_id = test_signing.KEY_ID
    cancel = f"/tasks/{task_id}/cancel"

    def send(method: str, path: str, **signed: Any) -> Any:
        gateway.time.advance(1.0)  # a token of the key's rate for each request
        return gateway.send(method, path, **signed)

    try:
        assert send("GET", f"/tasks/{task_id}").status_code == 200
        admin.disable(key_id)
        _error(send("GET", f"/tasks/{task_id}"), 400, "InvalidAccessKeyId.Inactive")
        _error(send("GET", f"/clusters/{CLUSTER}/tasks"), 400, "InvalidAccessKeyId.Inactive")
        admin.enable(key_id)
        assert send("GET", f"/tasks/{task_id}").status_code == 200
        # A new secret: requests signed with it pass, ones signed with the old do not.
        test_signing.add_key(other, secret="rotated")
        _error(send("GET", f"/tasks/{task_id}"), 400, "SignatureDoesNotMatch")
        assert send("GET", f"/tasks/{task_id}", secret="rotated").status_code == 200
        # A lesser role: what the key may no longer do is forbidden.
        test_signing.add_key(other, access.Role.READONLY, secret="rotated")
        _error(send("POST", cancel, secret="rotated"), 403, "Forbidden.RAM")
        admin.delete(key_id)
        _error(
            send("GET", f"/tasks/{task_id}", secret="rotated"), 404, "InvalidAccessKeyId.NotFound"
        )
    finally:
        other.close()
    assert gateway.database.tasks.get_task(task_id).state is states.TaskState.RUNNING


@pytest.mark.one_backend
def test_a_key_changed_between_its_checks_and_its_nonce_is_checked_again(
    database: storage_database.Database, db_url: str
) -> None:
    """The change that lands after the signature was checked against a remembered key and
    before its nonce is written: the nonce's transaction finds it, and the checks run
    again on the key as stored then. (SQLite: on PostgreSQL no key is remembered, each
    request reads its own.)"""
    time = clock.FixedClock(clock.SystemClock().now_us())
    authenticator = test_signing.authenticator(database, time=time)
    other = storage_database.Database.open(settings.StorageSettings(url=db_url))
    key_id = test_signing.KEY_ID

    async def admitted(nonce: str, change: Callable[[], object]) -> access.AccessKey:
        headers = signing.lower_headers({"host": "testserver", "accept": "application/json"})
        unsigned = signing.HttpRequest("GET", "/tasks/T-1", "", headers)
        headers += signing.lower_headers(
            signing.sign_acs3(
                unsigned, key_id, test_signing.SECRET, now_us=time.now_us(), nonce=nonce
            )
        )
        checked = authenticator.verified(
            signing.HttpRequest("GET", "/tasks/T-1", "", headers), remembered=True
        )
        change()
        return await authenticator.admit(checked)

    try:
        assert asyncio.run(admitted("n-1", lambda: None)).role is access.Role.ADMIN
        lesser = asyncio.run(
            admitted("n-2", lambda: test_signing.add_key(other, access.Role.READONLY))
        )
        assert lesser.role is access.Role.READONLY
        with pytest.raises(errors.AccessKeyInactive):
            asyncio.run(
                admitted("n-3", lambda: other.keys.set_status(key_id, access.KeyStatus.INACTIVE))
            )
        other.keys.set_status(key_id, access.KeyStatus.ACTIVE)
        with pytest.raises(errors.AccessKeyNotFound):
            asyncio.run(admitted("n-4", lambda: other.keys.delete(key_id)))
    finally:
        other.close()


def test_a_body_changed_after_signing_is_refused(gateway: Gateway) -> None:
    path = f"/clusters/{CLUSTER}/nodepools/np1"
    response = gateway.send("POST", path, body=b'{"count":1}', sent_body=b'{"count":99}')
    body = _error(response, 400, "SignatureDoesNotMatch")
    assert "x-acs-content-sha256" in str(body["message"])


def test_roles(gateway: Gateway) -> None:
    path = f"/clusters/{CLUSTER}/nodepools/np1"
    readonly: dict[str, Any] = {"key_id": "ro-ak", "secret": "ro-secret"}
    denied = _error(
        gateway.send("POST", path, body=b'{"count":3}', **readonly),
        403,
        "Forbidden.RAM",
    )
    assert "cs:ScaleClusterNodePool" in str(denied["message"])
    _error(gateway.send("POST", "/tasks/T-1/cancel", **readonly), 403, "Forbidden.RAM")
    # Reading is allowed; an operator reaches the route (which finds no such cluster).
    _error(gateway.send("GET", "/tasks/T-1", **readonly), 404, "ErrorTaskNotFound")
    operator = gateway.send("POST", path, body=b'{"count":3}', key_id="op-ak", secret="op-secret")
    _error(operator, 404, "ErrorClusterNotFound")


def test_mutating_requests_are_audited_reads_are_not(gateway: Gateway) -> None:
    path = f"/clusters/{CLUSTER}/nodepools/np1"
    denied = gateway.send("POST", path, body=b'{"count":3}', key_id="ro-ak", secret="ro-secret")
    tried = gateway.send("POST", path, body=b'{"count":3}', key_id="op-ak", secret="op-secret")
    gateway.send("GET", "/tasks/T-1")
    gateway.send("GET", "/tasks/T-1", key_id="nobody")  # not even authenticated: not audited
    entries = gateway.database.audit.entries()
    assert [
        (e.access_key_id, e.action, e.method, e.target, e.status, e.outcome, e.request_id)
        for e in entries
    ] == [
        (
            "ro-ak",
            "ScaleClusterNodePool",
            "POST",
            path,
            403,
            "Forbidden.RAM",
            denied.headers["x-acs-request-id"],
        ),
        (
            "op-ak",
            "ScaleClusterNodePool",
            "POST",
            path,
            404,
            "ErrorClusterNotFound",
            tried.headers["x-acs-request-id"],
        ),
    ]
    assert all(e.time_us == gateway.time.now_us() for e in entries)
    assert gateway.database.audit.entries(since_us=gateway.time.now_us() + 1) == []


def test_throttling_answers_429_with_retry_after_then_recovers(gateway: Gateway) -> None:
    statuses = [gateway.send("GET", "/tasks/T-1").status_code for _ in range(LIMITS.burst)]
    assert statuses == [404] * LIMITS.burst
    throttled = gateway.send("GET", "/tasks/T-1")
    _error(throttled, 429, "Throttling.User")
    retry_after_ms = int(throttled.headers["x-acs-retry-after"])
    assert retry_after_ms > 0
    # Other keys have buckets of their own.
    other = gateway.send("GET", "/tasks/T-1", key_id="ro-ak", secret="ro-secret")
    assert other.status_code == 404
    gateway.time.advance(retry_after_ms / 1000)
    assert gateway.send("GET", "/tasks/T-1").status_code == 404


def test_oversized_bodies_are_refused_with_413(gateway: Gateway) -> None:
    path = f"/clusters/{CLUSTER}/nodepools/np1"
    big = b"{" + b" " * 2048 + b"}"
    _error(gateway.send("POST", path, body=big), 413, "RequestEntityTooLarge")

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b" " * 512

    # Chunked, so no Content-Length: refused once the bytes pass the limit.
    response = gateway.client.post(path, content=chunks())
    _error(response, 413, "RequestEntityTooLarge")


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "ACS3-HMAC-SHA256"},
        {"authorization": "ACS3-HMAC-SHA256 Credential=,SignedHeaders=;,Signature="},
        {"authorization": b"acs \xff\xfe:\xff"},
        {"authorization": "ACS3-HMAC-SM9 Credential=a"},
        {"authorization": "acs a:b", "date": "not a date", "x-acs-signature-nonce": "n"},
        {"authorization": "acs a:b", "x-acs-signature-nonce": "n" * 500, "date": "x"},
        {"content-length": "12abc"},
        {"x-big": "v" * 40_000},
        {f"x-h{i}": "v" for i in range(150)},
    ],
    ids=lambda h: next(iter(h))[:20],
)
def test_malformed_requests_are_400_never_500(gateway: Gateway, headers: dict[str, str]) -> None:
    response = gateway.client.get("/tasks/T-1?a=%ff%fe", headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["requestId"] == response.headers["x-acs-request-id"]


def test_auth_off_accepts_any_well_formed_signature(database: storage_database.Database) -> None:
    config = settings.AuthSettings(enabled=False)
    authenticator = auth_service.Authenticator(database.keys, config, clock.SystemClock())
    app = api_app.create_app(
        services_for(database), settings.WireSettings(), authenticator=authenticator
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        signed = client.get("/tasks/T-1", auth=test_signing.auth("anyone", "anything"))
        _error(signed, 404, "ErrorTaskNotFound")
        _error(client.get("/tasks/T-1"), 400, "IncompleteSignature")


def _key(access_key_id: str) -> access.AccessKey:
    return access.AccessKey(
        access_key_id, "secret", access.Role.ADMIN, "", access.KeyStatus.ACTIVE, 0
    )


def test_nonces_claimed_on_an_event_loop_are_fresh_once_across_processes(
    database: storage_database.Database, db_url: str
) -> None:
    """Claims made on an event loop (one batch per turn of the loop on SQLite) and by a
    second store on the same database, as another API worker process has: of every
    (key, nonce) pair exactly one claim is fresh, however the claims meet."""
    other = storage_database.Database.open(settings.StorageSettings(url=db_url))
    expires = factories.BASE_US + 900_000_000
    pairs = [(f"ak-{n % 3}", f"nonce-{n % 50}") for n in range(300)]

    async def claim_all(keys: Any, chosen: list[tuple[str, str]]) -> list[bool]:
        spent = await asyncio.gather(
            *(keys.spend_nonce(_key(k), n, expires, factories.BASE_US) for k, n in chosen)
        )
        return [each.fresh for each in spent]

    try:
        first = asyncio.run(claim_all(database.keys, pairs[::2]))
        second = asyncio.run(claim_all(other.keys, pairs[1::2]))
        # Across the two stores, and against the nonces the thread path wrote.
        assert not other.keys.use_nonce("ak-0", "nonce-0", expires, factories.BASE_US)
        assert asyncio.run(claim_all(database.keys, [("ak-1", "nonce-late")])) == [True]
        assert not database.keys.use_nonce("ak-1", "nonce-late", expires, factories.BASE_US)
    finally:
        other.close()
    answers = first + second
    claimed = pairs[::2] + pairs[1::2]
    fresh = [pair for pair, ok in zip(claimed, answers, strict=True) if ok]
    assert sorted(fresh) == sorted(set(pairs))
    assert database.keys.nonce_count() == len(set(pairs)) + 1


@pytest.mark.one_backend
def test_nonces_wait_on_the_loop_for_a_write_lock_another_process_holds(db_url: str) -> None:
    """While another connection (another API process) holds SQLite's write lock, nonces
    claimed on an event loop wait without holding the loop up, and are answered fresh once
    it is released; held past the busy timeout, they fail as the store being unavailable,
    and nothing was written."""
    config = settings.StorageSettings(url=db_url, sqlite_busy_timeout_ms=300)
    opened = storage_database.Database.open(config)
    holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    expires = factories.BASE_US + 900_000_000

    async def claim(nonce: str) -> tuple[Any, int]:
        """The claim's outcome, and how many turns the loop made while it waited."""
        turns = 0
        holder.execute("BEGIN IMMEDIATE")
        waiting = asyncio.ensure_future(
            opened.keys.spend_nonce(_key("ak"), nonce, expires, factories.BASE_US)
        )
        for _ in range(200):  # 0.1 s of turns, or until the claim gives up
            await asyncio.sleep(0.0005)
            turns += 1
            if waiting.done():
                break
        holder.execute("COMMIT")
        try:
            return await waiting, turns
        except errors.ClustertasksError as exc:
            return exc, turns

    try:
        spent, turns = asyncio.run(claim("released"))
        assert spent.fresh
        assert spent.key is None
        assert turns == 200  # the loop went on while the claim waited
        assert opened.keys.nonce_count() == 1

        async def held_too_long() -> Any:
            holder.execute("BEGIN IMMEDIATE")
            try:
                return await asyncio.wait_for(
                    opened.keys.spend_nonce(_key("ak"), "late", expires, factories.BASE_US), 5
                )
            except errors.ClustertasksError as exc:
                return exc
            finally:
                holder.execute("COMMIT")

        assert isinstance(asyncio.run(held_too_long()), errors.StorageUnavailable)
        assert opened.keys.nonce_count() == 1
    finally:
        holder.close()
        opened.close()
