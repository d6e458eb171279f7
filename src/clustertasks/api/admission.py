"""Admission for waiting clients: long-polls (``GET /tasks/{id}?wait=…``) and event
streams (``GET /tasks/{id}/stream``).

A wait holds a connection, an asyncio task and some memory for up to a minute (a stream:
until its task ends). Waits are counted per AccessKey and in all as they arrive, before
anything else is done for them, and refused beyond the caps (``LiveSettings``): ``429
Throttling.User`` for a key that has its share open, ``503 ServiceUnavailable`` when the
server has its all; both with ``Retry-After`` (seconds) and ``x-acs-retry-after``
(milliseconds, what the SDK's retry policy reads) and ``Connection: close``. A refusal
costs a few microseconds and no signature check; a slot is free again the moment its
response ends, however it ends. The key a wait is counted under is the one its
``Authorization`` header names; a forged header only spends its own sender's connections,
since the signature is checked next. Ordinary requests are neither counted nor refused
here. On SQLite every signature check runs on the event loop (``auth``), briefly; on
PostgreSQL those of waits run on threads of their own, so a flood of waits cannot queue
ahead of ordinary requests for the shared ones.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from clustertasks import errors, settings
from clustertasks.api import errors as api_errors
from clustertasks.api import memory

log = logging.getLogger("clustertasks.api")

RETRY_AFTER_SECONDS = 1
_RELEASE_AFTER = 256
"""Waits open at once, at least, before their end is worth returning memory for."""
WAIT_STATE = "clustertasks.wait"
"""Set in a scope's state for a request admitted as a wait."""

_ACS3_CREDENTIAL = re.compile(r"Credential=([^,\s/]{1,128})")
_LEGACY = re.compile(r"acs\s+([^:\s]{1,128}):")


def is_wait(scope: Scope) -> bool:
    """A long-poll (a ``wait`` above 0) or an event stream of a task."""
    if scope["method"] != "GET" or not scope["path"].startswith("/tasks/"):
        return False
    if scope["path"].endswith("/stream"):
        return True
    raw = scope.get("query_string", b"")
    if b"wait=" not in raw:
        return False
    values = parse_qs(raw.decode("latin-1")).get("wait", [])
    try:
        return bool(values) and float(values[-1]) > 0
    except ValueError:
        return False  # the route refuses it with a 400 naming wait


def access_key_id(scope: Scope) -> str:
    """The AccessKey an ``Authorization`` header names (ACS3 or the legacy ROA form)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            text = value.decode("latin-1")
            found = _ACS3_CREDENTIAL.search(text) or _LEGACY.match(text)
            return found.group(1) if found else ""
    return ""


class WaitAdmission:
    """Counts the waits open, per AccessKey and in all, and refuses those over the caps."""

    def __init__(self, app: ASGIApp, config: settings.LiveSettings) -> None:
        self.app = app
        self.config = config
        self.open = 0
        self.per_key: dict[str, int] = {}
        self._high_water = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_wait(scope):
            await self.app(scope, receive, send)
            return
        key = access_key_id(scope)
        held = self.per_key.get(key, 0)
        refusal: errors.ClustertasksError | None = None
        if self.open >= self.config.max_watchers:
            refusal = errors.Busy(
                f"the server has {self.open} long-polls and event streams open, the most it "
                f"takes; retry after {RETRY_AFTER_SECONDS} s, or poll without wait"
            )
        elif held >= self.config.max_watchers_per_key:
            refusal = errors.TooManyWaits(
                key or "(none)", self.config.max_watchers_per_key, RETRY_AFTER_SECONDS * 1000
            )
        if refusal is not None:
            await _refuse(scope, receive, send, refusal)
            return
        self.open += 1
        self._high_water = max(self._high_water, self.open)
        self.per_key[key] = held + 1
        scope.setdefault("state", {})[WAIT_STATE] = True
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1
            left = self.per_key[key] - 1
            if left:
                self.per_key[key] = left
            else:
                del self.per_key[key]
            if self._high_water >= _RELEASE_AFTER and self.open <= self._high_water // 4:
                # Most of a crowd of waits has gone: give their memory back to the system
                # rather than keep the process at its peak for ever.
                self._high_water = self.open
                memory.release_soon()


async def _refuse(
    scope: Scope, receive: Receive, send: Send, exc: errors.ClustertasksError
) -> None:
    response = api_errors.error_response(Request(scope), exc)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.headers["x-acs-retry-after"] = str(RETRY_AFTER_SECONDS * 1000)
    # The refused client is told to come back later: its connection is not kept meanwhile.
    response.headers["Connection"] = "close"
    await response(scope, receive, send)
