"""What the administrative commands (``keys``, ``audit``) need: the database and nothing else.

Kept apart from ``bootstrap`` so that these short commands do not load the web application,
the engine and the emulator before doing one query.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from clustertasks import clock, settings
from clustertasks.domain import access
from clustertasks.service import auth as auth_service
from clustertasks.storage import database


def key_admin(db: database.Database) -> auth_service.KeyAdmin:
    return auth_service.KeyAdmin(db.keys, clock.SystemClock())


@contextlib.contextmanager
def key_admin_for(config: settings.Settings) -> Iterator[auth_service.KeyAdmin]:
    """Key management directly on the database (``clustertasks keys``)."""
    db = database.Database.open(config.storage)
    try:
        yield key_admin(db)
    finally:
        db.close()


@contextlib.contextmanager
def audit_entries_for(
    config: settings.Settings, since_us: int, limit: int
) -> Iterator[list[access.AuditEntry]]:
    """The audit log's entries, read directly from the database (``clustertasks audit``)."""
    db = database.Database.open(config.storage)
    try:
        yield list(db.audit.entries(since_us, limit))
    finally:
        db.close()
