"""AccessKeys and roles: who may call what.

A key is an id (public, sent in every request) and a secret (shared with the client, never
sent). HMAC signing is symmetric, so the server must keep the secret itself, not a hash.
"""

from __future__ import annotations

import enum
import secrets
import string
from dataclasses import dataclass

# Not "LTAI…": secret scanners treat that prefix as a leaked Alibaba Cloud key, and ours
# are not Alibaba's.
KEY_ID_PREFIX = "CTAK"
_ALPHABET = string.ascii_letters + string.digits
KEY_ID_LENGTH = 24
SECRET_LENGTH = 30
MAX_FIELD_LENGTH = 128
"""Longest key id, secret or nonce we store (the database columns' width)."""


class Role(enum.StrEnum):
    ADMIN = "admin"
    """Everything, including ``/_emulator/*`` and key management."""
    OPERATOR = "operator"
    """Every ACK operation: Describe*, cluster, node-pool and task operations."""
    READONLY = "readonly"
    """Describe* only."""


class KeyStatus(enum.StrEnum):
    ACTIVE = "Active"
    INACTIVE = "Inactive"


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str
    secret: str
    role: Role
    name: str
    status: KeyStatus
    created_us: int

    @property
    def active(self) -> bool:
        return self.status is KeyStatus.ACTIVE

    def __repr__(self) -> str:
        # Keeps the secret out of logs and tracebacks that print the record.
        return f"AccessKey({self.access_key_id!r}, role={self.role.value}, {self.status.value})"


def new_key(role: Role, name: str, created_us: int) -> AccessKey:
    key_id = KEY_ID_PREFIX + "".join(
        secrets.choice(_ALPHABET) for _ in range(KEY_ID_LENGTH - len(KEY_ID_PREFIX))
    )
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    return AccessKey(key_id, secret, role, name, KeyStatus.ACTIVE, created_us)


READ_METHODS = frozenset({"GET", "HEAD"})
EMULATOR_PREFIX = "/_emulator/"


def permits(role: Role, action: str, method: str, path: str) -> bool:
    """Whether ``role`` may call ``action`` (``method path``).

    ``action`` is the route's operation name, taken from the route the server matched, never
    from the client's ``x-acs-action`` header, so a readonly key cannot relabel a write.
    """
    if role is Role.ADMIN:
        return True
    if path.startswith(EMULATOR_PREFIX):
        return False
    if role is Role.OPERATOR:
        return True
    return method.upper() in READ_METHODS and action.startswith(("Describe", "Healthz"))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One mutating request: who, what, on what, and how it ended."""

    time_us: int
    access_key_id: str
    action: str
    method: str
    target: str
    """The request path: the resource acted on."""
    request_id: str
    status: int
    outcome: str
    """Empty when the request succeeded, else the error code it was answered with."""
