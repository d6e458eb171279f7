"""The web console in a real browser: Playwright driving Debian's Chromium (headless, never
a browser of Playwright's own; ``scripts/ensure-chromium`` installs it) against the
session's shared ``clustertasks serve``.

The rollouts run on the emulator's manual clock: a node upgrade waits for simulated time,
which the test moves on through the emulator's API, so the page is certainly showing the
task running before it pauses, and every wait is a bounded poll rather than a race.

Screenshots of each view go to ``$CLUSTERTASKS_TEST_ARTIFACTS/console`` (default: the
session's temporary directory); the README's pictures in docs/console/ were taken this way.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_cs20151215.client import Client
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from clustertasks import clock, settings
from clustertasks.domain import access
from clustertasks.storage import database as storage_database
from tests.acceptance import sdk
from tests.support import polling, signing
from tests.support.server import ServerProcess

pytestmark = pytest.mark.one_backend  # the browser's view of the server is the same on both

CHROMIUM = os.environ.get("CLUSTERTASKS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)
OLD = "1.31.1-aliyun.1"
NEW = "1.32.1-aliyun.1"
LIVE_TIMEOUT_MS = 20_000
READER_ID = "console-reader"
READER_SECRET = "console-reader-secret"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module; each test opens a context of its own (its own cookies)."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("CLUSTERTASKS_TEST_ARTIFACTS")
    directory = Path(root) / "console" if root else tmp_path_factory.mktemp("console")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(LIVE_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


# -- the world the tests look at ---------------------------------------------------------------


def _cluster_to_upgrade(client: Client, name: str) -> tuple[str, str]:
    """A cluster of four nodes at OLD whose control plane is at NEW: its pool can be
    upgraded. Returns the cluster and pool ids."""
    created = client.create_cluster(
        cs_models.CreateClusterRequest(
            name=name,
            region_id="cn-hangzhou",
            cluster_type="ManagedKubernetes",
            kubernetes_version=OLD,
            vswitch_ids=["vsw-hangzhou-h"],
            nodepools=[
                cs_models.Nodepool(
                    nodepool_info=cs_models.NodepoolNodepoolInfo(name="workers"),
                    scaling_group=cs_models.NodepoolScalingGroup(
                        instance_types=["ecs.g7.large"], desired_size=4
                    ),
                )
            ],
        )
    ).body
    assert sdk.wait_task(client, created.task_id).state == "success"
    control_plane = client.upgrade_cluster(
        created.cluster_id, cs_models.UpgradeClusterRequest(next_version=NEW, master_only=True)
    ).body
    assert sdk.wait_task(client, control_plane.task_id).state == "success"
    pools = client.describe_cluster_node_pools(
        created.cluster_id, cs_models.DescribeClusterNodePoolsRequest()
    ).body.nodepools
    return created.cluster_id, pools[0].nodepool_info.nodepool_id


def _manual_clock(server: ServerProcess) -> None:
    server.emulator("POST", "EmulatorSetClock", "/_emulator/clock", {"mode": "manual"})


def _advance_until(server: ServerProcess, client: Client, task_id: str, state: str) -> None:
    """Move the simulated clock on, a node upgrade's worth at a time, until the task is in
    ``state`` (as the API says; the page must then follow on its own)."""

    def step() -> str:
        server.emulator(
            "POST", "EmulatorAdvanceClock", "/_emulator/clock/advance", {"seconds": 120}
        )
        return str(client.describe_task_info(task_id).body.state)

    polling.until(f"task {task_id} {state}", step, lambda seen: seen == state, interval=0.1)


@contextlib.contextmanager
def _reader_key(server: ServerProcess) -> Iterator[None]:
    """A readonly AccessKey on the server for the test, gone afterwards (the shared server
    must keep the keys it started with)."""
    assert server.db_url is not None
    db = storage_database.Database.open(settings.StorageSettings(url=server.db_url))
    try:
        key = access.AccessKey(
            READER_ID,
            READER_SECRET,
            access.Role.READONLY,
            "console test",
            access.KeyStatus.ACTIVE,
            clock.SystemClock().now_us(),
        )
        db.keys.put(key)
        try:
            yield
        finally:
            db.keys.delete(READER_ID)
    finally:
        db.close()


def _sign_in(page: Page, server: ServerProcess, key_id: str, secret: str) -> None:
    """Sign in from the keyboard only: the fields are labelled and reachable with Tab."""
    page.goto(f"{server.url}/console")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
    page.get_by_label("AccessKey ID").focus()
    page.keyboard.type(key_id)
    page.keyboard.press("Tab")
    expect(page.get_by_label("AccessKey secret")).to_be_focused()
    page.keyboard.type(secret)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/clusters$"))


def _csrf(page: Page) -> str:
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return token


def _no_sideways_scroll(page: Page) -> None:
    width: Any = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert width <= 0, f"the page is {width}px wider than the viewport"


# -- the tests -----------------------------------------------------------------------------------


def test_follow_a_rolling_upgrade_live_pause_resume_and_finish(
    server: ServerProcess, page: Page, screenshots: Path
) -> None:
    client = sdk.client(server)
    cluster_id, _ = _cluster_to_upgrade(client, "web")
    _manual_clock(server)

    page.goto(f"{server.url}/console")
    page.screenshot(path=screenshots / "sign-in.png")
    _sign_in(page, server, signing.KEY_ID, signing.SECRET)
    expect(page.get_by_role("link", name="web")).to_be_visible()
    page.screenshot(path=screenshots / "clusters.png")

    page.get_by_role("link", name="web").click()
    expect(page.get_by_role("heading", name="workers")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(4)
    page.get_by_text("Upgrade this node pool").click()
    page.get_by_label("Kubernetes version").select_option(NEW)
    page.get_by_label("Nodes per batch").fill("2")
    page.get_by_label("Pause policy").select_option("FirstBatch")
    page.screenshot(path=screenshots / "cluster.png")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Start the upgrade").click()

    expect(page).to_have_url(re.compile(r"/console/tasks/T-[0-9a-f]{24}$"))
    task_id = page.url.rsplit("/", 1)[1]
    state = page.get_by_test_id("task-state")
    expect(state).to_have_text("running")
    expect(page.locator("#live[data-following=true]")).to_have_count(1)
    # Marks this document: a reload would lose it, so it shows the page changed in place.
    page.evaluate("window.stillTheSamePage = true")

    _advance_until(server, client, task_id, "paused")
    expect(state).to_have_text("paused")
    assert page.evaluate("window.stillTheSamePage") is True
    expect(page.get_by_test_id("events")).to_contain_text("TaskPaused")
    expect(page.get_by_text("nodes: 2 of 4")).to_be_visible()
    expect(page.locator(".bar-success")).not_to_have_count(0)
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    page.screenshot(path=screenshots / "task-paused.png")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Resume").click()
    expect(state).to_have_text("running")
    page.evaluate("window.stillTheSamePage = true")
    _advance_until(server, client, task_id, "success")
    expect(state).to_have_text("success")
    assert page.evaluate("window.stillTheSamePage") is True
    expect(page.get_by_role("button", name="Resume")).to_have_count(0)
    expect(page.locator("table").first.locator("tbody tr")).to_have_count(4)
    expect(page.locator("table").first).not_to_contain_text("initial")
    expect(page.get_by_test_id("events")).to_contain_text("TaskSucceed")
    page.screenshot(path=screenshots / "task.png", full_page=True)

    page.goto(f"{server.url}/console/clusters/{cluster_id}/tasks")
    page.get_by_label("State").select_option("success")
    page.get_by_label("Type").select_option("nodepool_upgrade")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("task-count")).to_have_text("1 task")
    expect(page.get_by_role("link", name=task_id)).to_be_visible()
    page.screenshot(path=screenshots / "tasks.png")

    page.goto(f"{server.url}/console/emulator")
    expect(page.get_by_test_id("clock-mode")).to_have_text("manual")
    page.screenshot(path=screenshots / "emulator.png")

    # At phone width every view still fits: nothing scrolls sideways.
    page.set_viewport_size(PHONE)
    for path in (f"/tasks/{task_id}", f"/clusters/{cluster_id}", "/clusters", "/emulator"):
        page.goto(f"{server.url}/console{path}")
        _no_sideways_scroll(page)
    page.goto(f"{server.url}/console/tasks/{task_id}")
    page.screenshot(path=screenshots / "task-phone.png", full_page=True)


def test_a_read_only_key_finds_no_control_and_a_forged_post_is_refused(
    server: ServerProcess, page: Page, screenshots: Path
) -> None:
    client = sdk.client(server)
    cluster_id, pool_id = _cluster_to_upgrade(client, "reviewed")
    _manual_clock(server)
    task_id = client.upgrade_cluster_nodepool(
        cluster_id, pool_id, cs_models.UpgradeClusterNodepoolRequest(kubernetes_version=NEW)
    ).body.task_id
    with _reader_key(server):
        _sign_in(page, server, READER_ID, READER_SECRET)
        expect(page.get_by_text("readonly", exact=True)).to_be_visible()
        expect(page.get_by_role("link", name="Emulator")).to_have_count(0)
        page.goto(f"{server.url}/console/clusters/{cluster_id}")
        expect(page.get_by_role("heading", name="workers")).to_be_visible()
        expect(page.get_by_text("Upgrade this node pool")).to_have_count(0)
        page.goto(f"{server.url}/console/tasks/{task_id}")
        expect(page.get_by_test_id("task-state")).to_have_text("running")
        # The only form a readonly key is shown is its sign-out.
        expect(page.locator("form[method=post]")).to_have_count(1)
        for name in ("Pause", "Resume", "Cancel task"):
            expect(page.get_by_role("button", name=name)).to_have_count(0)
        page.screenshot(path=screenshots / "task-readonly.png")

        # The same cancel, posted by hand with the session's own CSRF token: refused.
        forged = page.request.post(
            f"{server.url}/console/tasks/{task_id}/cancel",
            form={"csrf_token": _csrf(page)},
            headers={"origin": server.url},
            max_redirects=0,
        )
        assert forged.status == 403
        assert "Forbidden.RAM" in forged.text()
        assert page.request.get(f"{server.url}/console/emulator").status == 403
    assert client.describe_task_info(task_id).body.state == "running"


def test_a_bad_secret_a_missing_csrf_token_and_a_signed_out_cookie_are_refused(
    server: ServerProcess, browser: Browser, page: Page
) -> None:
    page.goto(f"{server.url}/console/sign-in")
    page.get_by_label("AccessKey ID").fill(signing.KEY_ID)
    page.get_by_label("AccessKey secret").fill("not-the-secret")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("The AccessKey ID or secret is not right")
    assert page.context.cookies() == []

    _sign_in(page, server, signing.KEY_ID, signing.SECRET)
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # out of the page's scripts' reach
    reset = f"{server.url}/console/emulator/reset"
    missing = page.request.post(reset, form={}, headers={"origin": server.url}, max_redirects=0)
    assert missing.status == 403
    assert "Forbidden.CsrfToken" in missing.text()

    # The same cookie in another browser context: signed in, until the sign-out.
    other = browser.new_context()
    try:
        other.add_cookies(
            [{"name": cookie["name"], "value": cookie["value"], "url": f"{server.url}/console/"}]
        )
        copy = other.new_page()
        copy.goto(f"{server.url}/console/clusters")
        expect(copy).to_have_url(re.compile(r"/console/clusters$"))

        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(r"/console/sign-in$"))
        page.goto(f"{server.url}/console/clusters")
        expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
        copy.goto(f"{server.url}/console/clusters")
        expect(copy).to_have_url(re.compile(r"/console/sign-in\?next="))
    finally:
        other.close()
