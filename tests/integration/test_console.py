"""The web console's sign-in, sessions, CSRF tokens and roles, in-process on SQLite and
PostgreSQL: the console and the API mounted as ``clustertasks serve`` mounts them, driven
with the ASGI test client (no executor: tasks stay as the test wrote them)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from clustertasks import clock, settings
from clustertasks.api import app as api_app
from clustertasks.console import app as console_app
from clustertasks.domain import access, states, world
from clustertasks.operations import catalog
from clustertasks.service import sessions as session_service
from clustertasks.storage import database as storage_database
from clustertasks.storage import schema
from tests.integration.conftest import services_for
from tests.support import cloud, factories, signing

READER_ID = "reader-ak"
VERSION = "1.32.1-aliyun.1"
READER_SECRET = "reader-secret"
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


@dataclass
class Console:
    client: TestClient
    db: storage_database.Database
    time: clock.FixedClock

    def sign_in(self, key_id: str = signing.KEY_ID, secret: str = signing.SECRET) -> str:
        """Sign in; the CSRF token of the session."""
        response = self.client.post(
            "/console/sign-in", data={"access_key_id": key_id, "access_key_secret": secret}
        )
        assert response.status_code == 303, response.text
        return self.csrf("/console/clusters")

    def csrf(self, page: str) -> str:
        response = self.client.get(page)
        assert response.status_code == 200, response.text
        found = CSRF.search(response.text)
        assert found is not None
        return found.group(1)

    def audit(self) -> list[tuple[str, str, int, str]]:
        return [
            (e.access_key_id, e.action, e.status, e.outcome)
            for e in self.db.audit.entries()
            if e.action.startswith("Console") or e.target.startswith("/console")
        ]


def _console(db: storage_database.Database, auth: settings.AuthSettings) -> Iterator[Console]:
    signing.add_key(db)
    signing.add_key(db, access.Role.READONLY, READER_ID, READER_SECRET)
    time = clock.FixedClock(clock.SystemClock().now_us())
    services = services_for(db)
    sessions = session_service.ConsoleSessions(
        db.keys, db.sessions, auth, time, db.audit, failures_per_second=0.01, failures_burst=3
    )
    api = api_app.create_app(
        services, settings.WireSettings(), authenticator=signing.authenticator(db)
    )
    console = console_app.Console(services, sessions, catalog.registry(), settings.WireSettings())
    app = console_app.Mount(api, console.app())
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        yield Console(client, db, time)


@pytest.fixture
def console(database: storage_database.Database) -> Iterator[Console]:
    yield from _console(database, signing.UNLIMITED)


def test_sign_in_exchanges_the_secret_for_an_http_only_strict_cookie(console: Console) -> None:
    response = console.client.post(
        "/console/sign-in",
        data={"access_key_id": signing.KEY_ID, "access_key_secret": signing.SECRET},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/console/clusters"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/console" in cookie
    assert signing.SECRET not in cookie
    token = console.client.cookies[console_app.COOKIE]
    # The database keeps only the token's hash, with the key and an expiry an hour away.
    with console.db.engine.connect() as conn:
        rows = conn.execute(sa.select(schema.console_sessions)).all()
    assert len(rows) == 1
    assert rows[0].token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert rows[0].access_key_id == signing.KEY_ID
    assert rows[0].expires_us - rows[0].created_us == session_service.SESSION_SECONDS * 10**6
    page = console.client.get("/console/clusters")
    assert page.status_code == 200
    assert signing.KEY_ID in page.text
    assert signing.SECRET not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert console.audit() == [(signing.KEY_ID, "ConsoleSignIn", 200, "")]


@pytest.mark.parametrize(
    ("key_id", "secret"),
    [(signing.KEY_ID, "not-the-secret"), ("no-such-key", signing.SECRET), ("", "")],
)
def test_a_wrong_id_or_secret_is_refused_the_same_way_and_audited(
    console: Console, key_id: str, secret: str
) -> None:
    response = console.client.post(
        "/console/sign-in", data={"access_key_id": key_id, "access_key_secret": secret}
    )
    assert response.status_code == 401
    assert "The AccessKey ID or secret is not right" in response.text
    assert "set-cookie" not in response.headers
    assert console.client.get("/console/clusters").status_code == 303
    assert console.audit() == [(key_id, "ConsoleSignIn", 401, "InvalidAccessKeyIdOrSecret")]


def test_failed_sign_ins_are_rate_limited_even_with_the_right_secret_then(
    console: Console,
) -> None:
    wrong = {"access_key_id": signing.KEY_ID, "access_key_secret": "wrong"}
    statuses = [console.client.post("/console/sign-in", data=wrong).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 401]  # the fourth empties the bucket of three
    right = {"access_key_id": signing.KEY_ID, "access_key_secret": signing.SECRET}
    throttled = console.client.post("/console/sign-in", data=right)
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    assert "set-cookie" not in throttled.headers
    assert console.audit()[-1] == (signing.KEY_ID, "ConsoleSignIn", 429, "Throttling.User")
    # Once the bucket refills (simulated time), the right secret signs in.
    console.time.advance(300)
    assert console.client.post("/console/sign-in", data=right).status_code == 303


def test_a_change_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    console: Console, database: storage_database.Database
) -> None:
    task = factories.seed_task(database.tasks).task
    other = TestClient(console.client.app, follow_redirects=False)
    other.post(
        "/console/sign-in",
        data={"access_key_id": signing.KEY_ID, "access_key_secret": signing.SECRET},
    )
    foreign = CSRF.search(other.get("/console/clusters").text)
    assert foreign is not None
    console.sign_in()
    for form in ({}, {"csrf_token": ""}, {"csrf_token": foreign.group(1)}):
        refused = console.client.post(f"/console/tasks/{task.task_id}/cancel", data=form)
        assert refused.status_code == 403, refused.text
        assert "Forbidden.CsrfToken" in refused.text
    assert database.tasks.get_task(task.task_id).requested_action is None
    # From another site: refused on its Origin before anything else.
    csrf = console.csrf(f"/console/tasks/{task.task_id}")
    cross = console.client.post(
        f"/console/tasks/{task.task_id}/cancel",
        data={"csrf_token": csrf},
        headers={"origin": "http://evil.example"},
    )
    assert cross.status_code == 403
    assert database.tasks.get_task(task.task_id).requested_action is None
    done = console.client.post(f"/console/tasks/{task.task_id}/cancel", data={"csrf_token": csrf})
    assert done.status_code == 303
    assert database.tasks.get_task(task.task_id).requested_action == "cancel"
    outcomes = [(action, status, outcome) for _, action, status, outcome in console.audit()]
    assert outcomes[-2:] == [("CancelTask", 403, "Forbidden.CsrfToken"), ("CancelTask", 303, "")]


def test_a_read_only_key_sees_no_control_and_is_refused_one(
    console: Console, database: storage_database.Database
) -> None:
    task = factories.seed_task(database.tasks).task
    csrf = console.sign_in(READER_ID, READER_SECRET)
    page = console.client.get(f"/console/tasks/{task.task_id}")
    assert page.status_code == 200
    assert "Cancel task" not in page.text
    assert f"/console/tasks/{task.task_id}/cancel" not in page.text
    assert "/console/emulator" not in page.text
    refused = console.client.post(
        f"/console/tasks/{task.task_id}/cancel", data={"csrf_token": csrf}
    )
    assert refused.status_code == 403
    assert "Forbidden.RAM" in refused.text
    assert database.tasks.get_task(task.task_id).requested_action is None
    assert console.client.get("/console/emulator").status_code == 403
    reset = console.client.post("/console/emulator/reset", data={"csrf_token": csrf})
    assert reset.status_code == 403
    assert database.tasks.get_task(task.task_id).state is states.TaskState.RUNNING


def test_sign_out_ends_the_session_on_the_server(console: Console) -> None:
    csrf = console.sign_in()
    token = console.client.cookies[console_app.COOKIE]
    out = console.client.post("/console/sign-out", data={"csrf_token": csrf})
    assert out.status_code == 303
    assert 'clustertasks_console=""' in out.headers["set-cookie"]
    with console.db.engine.connect() as conn:
        assert conn.execute(sa.select(schema.console_sessions)).all() == []
    # The old cookie, replayed, is worth nothing.
    replayed = TestClient(console.client.app, follow_redirects=False)
    replayed.cookies.set(console_app.COOKIE, token, path="/console")
    page = replayed.get("/console/clusters")
    assert page.status_code == 303
    assert page.headers["location"] == "/console/sign-in?next=/console/clusters"
    assert console.audit()[-1] == (signing.KEY_ID, "ConsoleSignOut", 303, "")


def test_a_session_ends_when_it_expires_or_its_key_is_disabled(console: Console) -> None:
    console.sign_in()
    console.time.advance(session_service.SESSION_SECONDS + 1)
    assert console.client.get("/console/clusters").status_code == 303
    console.sign_in()
    console.db.keys.set_status(signing.KEY_ID, access.KeyStatus.INACTIVE)
    assert console.client.get("/console/clusters").status_code == 303


def test_the_console_cookie_does_not_sign_api_requests(console: Console) -> None:
    console.sign_in()
    response = console.client.get("/api/v1/clusters")
    assert response.status_code == 400
    assert response.json()["code"] == "IncompleteSignature"


def test_sign_in_goes_back_to_console_pages_only(console: Console) -> None:
    for target, expected in [
        ("/console/clusters?x=1", "/console/clusters?x=1"),
        ("https://evil.example/", "/console/clusters"),
        ("//evil.example/console/", "/console/clusters"),
        ("/console//evil.example", "/console/clusters"),
    ]:
        response = console.client.post(
            "/console/sign-in",
            data={
                "access_key_id": signing.KEY_ID,
                "access_key_secret": signing.SECRET,
                "next": target,
            },
        )
        assert response.headers["location"] == expected


def test_bad_input_gets_a_4xx_page_naming_the_field(console: Console) -> None:
    console.sign_in()
    cluster = "c0123456789abcdef0123456789abcdef"
    assert console.client.get(f"/console/clusters/{cluster}").status_code == 404
    page = console.client.get("/console/tasks/T-000000000000000000000000")
    assert page.status_code == 404
    assert "ErrorTaskNotFound" in page.text
    assert console.client.get("/console/no-such-page").status_code == 404
    spec = world.ClusterSpec(name="demo", region_id="cn-hangzhou", kubernetes_version=VERSION)
    cloud.sim_for(console.db).register_cluster(cluster, spec)
    tasks = f"/console/clusters/{cluster}/tasks"
    assert console.client.get(tasks).status_code == 200
    for query, field in (("state=bogus", "state"), ("page=0", "page"), ("type=%01", "task_type")):
        refused = console.client.get(f"{tasks}?{query}")
        assert refused.status_code == 400, query
        assert "InvalidParameter" in refused.text
        assert field in refused.text


@pytest.mark.one_backend
def test_with_auth_off_the_console_is_open_and_says_so(
    database: storage_database.Database,
) -> None:
    for console in _console(database, settings.AuthSettings(enabled=False)):
        page = console.client.get("/console/clusters")
        assert page.status_code == 200
        assert "authentication off" in page.text
        assert console_app.COOKIE in page.headers["set-cookie"]
        # Forms still need the session's CSRF token.
        assert console.client.post("/console/emulator/reset", data={}).status_code == 403
        reset = console.client.post(
            "/console/emulator/reset", data={"csrf_token": console.csrf("/console/emulator")}
        )
        assert reset.status_code == 303
