"""The web console's sign-in: an AccessKey ID and secret exchanged for a session.

A session is a random token the browser keeps in an HttpOnly cookie; the database keeps only
its SHA-256, with the key it belongs to and an expiry. The key is read again on every
request, so disabling or deleting it ends its sessions at once, and its role (readonly,
operator, admin) decides what the console shows and accepts. Forms carry a CSRF token
derived from the session token (an HMAC of it), so it needs no storage of its own and is
worthless outside its session.

Failed sign-ins spend tokens of the same kind of bucket the API's rate limit uses, per
client address and per key id; once a bucket is empty, sign-ins from there are refused
without checking the secret until it refills. Every sign-in, sign-out and console action
is written to the audit log, as the API's mutating requests are.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass

from clustertasks import clock, errors, settings
from clustertasks.domain import access
from clustertasks.service import auth as auth_service
from clustertasks.storage import audit as audit_storage
from clustertasks.storage import keys as key_storage
from clustertasks.storage import sessions as session_storage

SESSION_SECONDS = 3600
"""How long a session lasts from its sign-in; then the browser signs in again."""
FAILED_SIGN_INS_PER_SECOND = 0.1
FAILED_SIGN_INS_BURST = 10
"""Failed sign-ins allowed at once per client address and per key id, then one per 10 s."""
AUTH_OFF_KEY_ID = "auth-off"
"""Who acts in the console of a server started with ``--auth off``."""
PURGE_EVERY_US = 600 * 1_000_000
MAX_ID_LENGTH = access.MAX_FIELD_LENGTH


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser, as one request sees it."""

    token: str
    """The cookie's value; never stored, never shown."""
    access_key_id: str
    role: access.Role
    expires_us: int
    auth_off: bool = False

    @property
    def csrf_token(self) -> str:
        return csrf_token(self.token)

    @property
    def can_change(self) -> bool:
        """May start, pause, resume and cancel tasks (operator and admin keys)."""
        return self.role is not access.Role.READONLY

    @property
    def is_admin(self) -> bool:
        """May use the emulator's controls."""
        return self.role is access.Role.ADMIN

    def __repr__(self) -> str:
        return f"Session({self.access_key_id!r}, role={self.role.value})"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(token: str) -> str:
    return hmac.new(token.encode(), b"clustertasks console csrf", hashlib.sha256).hexdigest()


class ConsoleSessions:
    def __init__(
        self,
        key_store: key_storage.KeyStore,
        session_store: session_storage.SessionStore,
        config: settings.AuthSettings,
        time: clock.Clock,
        audit_log: audit_storage.AuditLog | None = None,
        *,
        lifetime_seconds: int = SESSION_SECONDS,
        failures_per_second: float = FAILED_SIGN_INS_PER_SECOND,
        failures_burst: int = FAILED_SIGN_INS_BURST,
    ) -> None:
        self.auth_enabled = config.enabled
        self._keys = key_store
        self._sessions = session_store
        self._time = time
        self._audit_log = audit_log
        self._lifetime_us = lifetime_seconds * 1_000_000
        self._failures = auth_service.RateLimiter(failures_per_second, failures_burst, time)
        self._blocked: dict[str, int] = {}
        self._blocked_lock = threading.Lock()
        self._purged_us = 0

    # -- signing in and out --------------------------------------------------------------------

    def sign_in(self, access_key_id: str, secret: str, client: str) -> Session:
        """A new session for the key; ``errors.SignInFailed`` when the id or secret is wrong
        (the same error either way: the console does not tell which keys exist), or
        ``errors.Throttled`` after too many failures from ``client`` or for this key."""
        access_key_id = access_key_id.strip()
        buckets = (f"client:{client}", f"key:{access_key_id[:MAX_ID_LENGTH]}")
        now = self._time.now_us()
        self._check_not_blocked(buckets, now)
        key = self._keys.get(access_key_id) if 0 < len(access_key_id) <= MAX_ID_LENGTH else None
        # Compared in constant time even for an unknown key, so timing tells nothing either.
        expected = key.secret if key is not None else secrets.token_hex(16)
        matches = hmac.compare_digest(expected.encode(), secret.encode())
        if key is None or not matches or not key.active:
            self._failed(buckets, now)
            raise errors.SignInFailed()
        return self._open(key.access_key_id, key.role, now)

    def open_without_auth(self) -> Session:
        """With ``--auth off``: a session for whoever opens the console (admin)."""
        if self.auth_enabled:
            raise errors.SignInRequired()
        return self._open(AUTH_OFF_KEY_ID, access.Role.ADMIN, self._time.now_us())

    def session(self, token: str | None) -> Session | None:
        """The live session of this cookie value, with its key's current role; None when
        there is none, it expired, or its key is gone or disabled."""
        if not token or len(token) > 128:
            return None
        now = self._time.now_us()
        row = self._sessions.get(token_hash(token), now)
        if row is None:
            return None
        if not self.auth_enabled:
            return Session(token, row.access_key_id, access.Role.ADMIN, row.expires_us, True)
        key = self._keys.get(row.access_key_id)
        if key is None or not key.active:
            return None
        return Session(token, key.access_key_id, key.role, row.expires_us)

    def now_us(self) -> int:
        return self._time.now_us()

    def sign_out(self, session: Session) -> None:
        self._sessions.delete(token_hash(session.token))

    # -- checks on each form ---------------------------------------------------------------------

    def check_csrf(self, session: Session, submitted: str | None) -> None:
        if not submitted or not hmac.compare_digest(session.csrf_token, submitted):
            raise errors.CsrfTokenInvalid()

    def authorize(self, session: Session, action: str, *, admin: bool = False) -> None:
        """``errors.Forbidden`` unless the session's key may do ``action``: any change needs
        an operator or admin key, the emulator's controls an admin key."""
        allowed = session.is_admin if admin else session.can_change
        if not allowed:
            raise errors.Forbidden(f"console:{action}", session.access_key_id, session.role.value)

    def audit(
        self, access_key_id: str, action: str, target: str, status: int, outcome: str = ""
    ) -> None:
        """Record a sign-in, a sign-out or a console action, as the API records its
        mutating requests (method ``POST``: every console change is a form post)."""
        if self._audit_log is None:
            return
        self._audit_log.record(
            access.AuditEntry(
                time_us=self._time.now_us(),
                access_key_id=access_key_id[:MAX_ID_LENGTH],
                action=action,
                method="POST",
                target=target,
                request_id="",
                status=status,
                outcome=outcome,
            )
        )

    # -- inside ----------------------------------------------------------------------------------

    def _open(self, access_key_id: str, role: access.Role, now: int) -> Session:
        self._purge(now)
        token = secrets.token_urlsafe(32)
        expires = now + self._lifetime_us
        self._sessions.add(
            session_storage.SessionRow(token_hash(token), access_key_id, now, expires)
        )
        return Session(token, access_key_id, role, expires, not self.auth_enabled)

    def _check_not_blocked(self, buckets: tuple[str, ...], now: int) -> None:
        with self._blocked_lock:
            until = max((self._blocked.get(bucket, 0) for bucket in buckets), default=0)
        if until > now:
            raise errors.Throttled(max(1, (until - now) // 1000))

    def _failed(self, buckets: tuple[str, ...], now: int) -> None:
        for bucket in buckets:
            wait_ms = self._failures.take(bucket)
            if wait_ms is not None:
                with self._blocked_lock:
                    self._blocked[bucket] = now + wait_ms * 1000
                    for stale in [b for b, until in self._blocked.items() if until <= now]:
                        del self._blocked[stale]

    def _purge(self, now: int) -> None:
        if now - self._purged_us < PURGE_EVERY_US:
            return
        self._purged_us = now
        self._sessions.purge(now)
