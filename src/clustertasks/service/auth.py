"""Who is calling, may they, and not too often: the gateway's checks, in one place.

Order of checks, cheapest and least revealing first: the signature headers are well formed;
the key exists and is active; the date is fresh; the signature is right; the key is within
its rate; the nonce, if the request has one (the legacy scheme's older clients send none), is
new. Only a request that passed the signature check can spend a nonce
or a token, so a stranger who knows a key id can neither burn its nonces nor its rate.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Sequence

from clustertasks import clock, errors, settings
from clustertasks.domain import access, signing
from clustertasks.storage import audit as audit_storage
from clustertasks.storage import keys as key_storage

MAX_TRACKED_KEYS = 10_000
"""Rate buckets kept in memory; the least recently used are forgotten beyond this."""


class RateLimiter:
    """A token bucket per AccessKey, in this process (each API replica limits on its own)."""

    def __init__(self, rate_per_second: float, burst: int, time: clock.Clock) -> None:
        self._rate = rate_per_second
        self._burst = float(burst)
        self._time = time
        self._buckets: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> int | None:
        """Spend one token; None when allowed, else the milliseconds until one is free."""
        now = self._time.now_us()
        with self._lock:
            tokens, then = self._buckets.pop(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - then) / 1e6 * self._rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                allowed = True
            else:
                self._buckets[key] = (tokens, now)
                allowed = False
            while len(self._buckets) > MAX_TRACKED_KEYS:
                self._buckets.popitem(last=False)
        if allowed:
            return None
        # Round up: a client that waits exactly this long finds a whole token.
        return max(1, int((1.0 - tokens) / self._rate * 1000) + 1)


@dataclasses.dataclass(frozen=True, slots=True)
class Nonce:
    """A request's nonce, still to be spent; and what its key's checks ran on, to run them
    again on the key as it stands when the nonce is spent (``Authenticator.admit``)."""

    nonce: str
    expires_us: int
    now_us: int
    request: signing.HttpRequest
    credentials: signing.Credentials


@dataclasses.dataclass(frozen=True, slots=True)
class Checked:
    """A request whose signature holds: its key, and the nonce it has still to spend."""

    key: access.AccessKey
    nonce: Nonce | None


def key_id(checked: Checked) -> str:
    return checked.key.access_key_id


def _refuse_replay(fresh: bool, nonce: Nonce) -> None:
    if not fresh:
        raise errors.SignatureNonceUsed(
            f"The signature nonce {nonce.nonce} has been used before: every request "
            "needs a new one."
        )


class Authenticator:
    def __init__(
        self,
        key_store: key_storage.KeyStore,
        config: settings.AuthSettings,
        time: clock.Clock,
        audit_log: audit_storage.AuditLog | None = None,
    ) -> None:
        self.config = config
        self._keys = key_store
        self._time = time
        self._audit_log = audit_log
        self._limiter = RateLimiter(config.rate_per_second, config.burst, time)
        self._skew_us = config.max_skew_seconds * 1_000_000

    @property
    def inline(self) -> bool:
        """``authenticate_async`` may run on the event loop: no check reaches a database
        across a network (``--auth off``, or keys in a local SQLite file)."""
        return not self.config.enabled or self._keys.local

    def authenticate(self, request: signing.HttpRequest) -> access.AccessKey:
        """The key that signed ``request``; raises the gateway's error when there is none."""
        checked = self.check(request)
        if checked.nonce is not None:
            nonce = checked.nonce
            fresh = self._keys.use_nonce(
                key_id(checked), nonce.nonce, nonce.expires_us, nonce.now_us
            )
            _refuse_replay(fresh, nonce)
        return checked.key

    async def authenticate_async(self, request: signing.HttpRequest) -> access.AccessKey:
        """``authenticate`` on an event loop: the checks run here, the nonce waits for its
        batch to commit without holding a thread."""
        return await self.admit(self.verified(request, remembered=True))

    async def admit(self, checked: Checked) -> access.AccessKey:
        """The second half of ``authenticate_async``, the checks that spend something: a
        token of the key's rate, then its nonce (the nonce's batch committed on the loop).
        ``verified`` changed nothing, so a caller may take a request that fails it another
        way; once here, the request is counted.

        The key comes back as it stood when the nonce was written: when it changed since
        the request's checks read it (disabled, deleted, given a new secret or role by any
        process), the checks run again on it, and the caller authorizes the key returned."""
        self._throttle(checked.key.access_key_id)
        key = checked.key
        if checked.nonce is not None:
            nonce = checked.nonce
            spent = await self._keys.spend_nonce(key, nonce.nonce, nonce.expires_us, nonce.now_us)
            if spent.key != key:
                if spent.key is None:
                    raise _not_found(key.access_key_id)
                key = self._key_checks(
                    nonce.request, nonce.credentials, spent.key, nonce.now_us
                ).key
            _refuse_replay(spent.fresh, nonce)
        return key

    def check(self, request: signing.HttpRequest) -> Checked:
        """Every check but the nonce's: the key, its date, its signature, its rate; and the
        nonce the request still has to spend (None when it has none to spend)."""
        checked = self.verified(request)
        self._throttle(checked.key.access_key_id)
        return checked

    def verified(self, request: signing.HttpRequest, *, remembered: bool = False) -> Checked:
        """The checks that read and change nothing but the key's row: the signature headers,
        the key, its date, its signature; and the nonce the request still has to spend
        (None when it has none). The rate is ``check``'s and ``admit``'s.

        ``remembered``: for a caller that spends the nonce with ``admit``, which checks the
        key again as it stands then: a request with a nonce is checked against the key as
        this process last read it, when it has (``KeyStore.remembered``), and the key is
        read only when it has not, or when it fails a check (it may have changed). So the
        first request after a key's change that passes against the former key (its old
        secret, say) spends a token of the key's rate before ``admit`` refuses it; the
        process then remembers the key as stored."""
        credentials = signing.parse(request)
        now_us = self._time.now_us()
        if not self.config.enabled:
            anyone = access.AccessKey(
                credentials.access_key_id,
                "",
                access.Role.ADMIN,
                "--auth off",
                access.KeyStatus.ACTIVE,
                now_us,
            )
            return Checked(anyone, None)
        if remembered and credentials.nonce:
            known = self._keys.remembered(credentials.access_key_id)
            if known is not None:
                try:
                    return self._key_checks(request, credentials, known, now_us)
                except errors.ClustertasksError:
                    pass  # perhaps changed since: its checks run again on the stored key
        key = self._keys.get(credentials.access_key_id)
        if key is None:
            raise _not_found(credentials.access_key_id)
        return self._key_checks(request, credentials, key, now_us)

    def _key_checks(
        self,
        request: signing.HttpRequest,
        credentials: signing.Credentials,
        key: access.AccessKey,
        now_us: int,
    ) -> Checked:
        if not key.active:
            raise errors.AccessKeyInactive(f"Specified access key {key.access_key_id} is disabled.")
        skew_s = abs(now_us - credentials.date_us) // 1_000_000
        if skew_s > self.config.max_skew_seconds:
            raise errors.TimeStampExpired(
                f"The request date is {skew_s} seconds away from the server time "
                f"({signing.acs3_date(now_us)}); at most {self.config.max_skew_seconds} "
                "are allowed. Check the client's clock."
            )
        signing.verify(request, credentials, key.secret)
        if not credentials.nonce:
            return Checked(key, None)
        # Remember the nonce for as long as its request could still pass the date check.
        expires_us = credentials.date_us + self._skew_us
        return Checked(key, Nonce(credentials.nonce, expires_us, now_us, request, credentials))

    def authorize(self, key: access.AccessKey, action: str, method: str, path: str) -> None:
        """Raise Forbidden unless ``key``'s role allows ``action``."""
        if not access.permits(key.role, action, method, path):
            raise errors.Forbidden(f"cs:{action}", key.access_key_id, key.role.value)

    def now_us(self) -> int:
        return self._time.now_us()

    def audit(self, entry: access.AuditEntry) -> None:
        """Record a mutating request (no-op without an audit log)."""
        if self._audit_log is not None:
            self._audit_log.record(entry)

    def _throttle(self, access_key_id: str) -> None:
        wait_ms = self._limiter.take(access_key_id)
        if wait_ms is not None:
            raise errors.Throttled(wait_ms)


class KeyAdmin:
    """Key management: the ``clustertasks keys`` commands and ``serve``'s first key."""

    def __init__(self, key_store: key_storage.KeyStore, time: clock.Clock) -> None:
        self._keys = key_store
        self._time = time

    def create(self, role: access.Role, name: str = "") -> access.AccessKey:
        key = access.new_key(role, _checked("name", name, allow_empty=True), self._time.now_us())
        self._keys.put(key)
        return key

    def keys(self) -> Sequence[access.AccessKey]:
        return self._keys.keys()

    def disable(self, access_key_id: str) -> None:
        self._set_status(access_key_id, access.KeyStatus.INACTIVE)

    def enable(self, access_key_id: str) -> None:
        self._set_status(access_key_id, access.KeyStatus.ACTIVE)

    def delete(self, access_key_id: str) -> None:
        if not self._keys.delete(access_key_id):
            raise _not_found(access_key_id)

    def ensure_admin(self, access_key_id: str, secret: str) -> access.AccessKey:
        """Create or update an active admin key with exactly this id and secret."""
        existing = self._keys.get(_checked("access key id", access_key_id))
        key = access.AccessKey(
            access_key_id,
            _checked("access key secret", secret),
            access.Role.ADMIN,
            existing.name if existing else "from CLUSTERTASKS_ACCESS_KEY_ID",
            access.KeyStatus.ACTIVE,
            existing.created_us if existing else self._time.now_us(),
        )
        self._keys.put(key)
        return key

    def first_key(self) -> access.AccessKey | None:
        """An admin key when the database has none at all, else None."""
        if self._keys.count() > 0:
            return None
        return self.create(access.Role.ADMIN, "created by serve")

    def _set_status(self, access_key_id: str, status: access.KeyStatus) -> None:
        if not self._keys.set_status(access_key_id, status):
            raise _not_found(access_key_id)


def _not_found(access_key_id: str) -> errors.AccessKeyNotFound:
    return errors.AccessKeyNotFound(f"Specified access key {access_key_id} is not found.")


def _checked(what: str, value: str, *, allow_empty: bool = False) -> str:
    if (not value and not allow_empty) or len(value) > access.MAX_FIELD_LENGTH:
        raise errors.ConfigurationError(
            f"the {what} must be 1 to {access.MAX_FIELD_LENGTH} characters"
        )
    if value and not (value.isascii() and value.isprintable()) and what != "name":
        raise errors.ConfigurationError(f"the {what} must be printable ASCII")
    return value
