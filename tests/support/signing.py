"""The AccessKey every test signs with, and signing for in-process and raw HTTP clients."""

from __future__ import annotations

from clustertasks import clock, settings
from clustertasks.cli import client
from clustertasks.domain import access
from clustertasks.service import auth as auth_service
from clustertasks.storage import database

KEY_ID = "test-ak"
SECRET = "test-secret"
SERVER_ENV = {"CLUSTERTASKS_ACCESS_KEY_ID": KEY_ID, "CLUSTERTASKS_ACCESS_KEY_SECRET": SECRET}
"""What ``ServerProcess`` gives every server: the SDK's test key as an admin key."""
UNLIMITED = settings.AuthSettings(rate_per_second=1e9, burst=1_000_000_000)
"""No throttling: in-process tests make requests faster than any real client."""


def auth(key_id: str = KEY_ID, secret: str = SECRET) -> client.SigningAuth:
    """An ``httpx`` auth that signs like the official SDK (ACS3-HMAC-SHA256)."""
    return client.SigningAuth(key_id, secret)


def add_key(
    db: database.Database,
    role: access.Role = access.Role.ADMIN,
    key_id: str = KEY_ID,
    secret: str = SECRET,
    status: access.KeyStatus = access.KeyStatus.ACTIVE,
) -> access.AccessKey:
    key = access.AccessKey(key_id, secret, role, "tests", status, clock.SystemClock().now_us())
    db.keys.put(key)
    return key


def authenticator(
    db: database.Database,
    config: settings.AuthSettings = UNLIMITED,
    time: clock.Clock | None = None,
) -> auth_service.Authenticator:
    """Verifies against the test's database, where the test key exists (admin)."""
    add_key(db)
    return auth_service.Authenticator(db.keys, config, time or clock.SystemClock(), db.audit)


def clock_now_us() -> int:
    return clock.SystemClock().now_us()
