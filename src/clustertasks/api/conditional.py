"""Conditional and waiting reads of a task: ETags, ``If-None-Match`` and long-poll parameters.

A task's ETag is strong and names its version and representation, ``"<version>-json"`` or
``"<version>-xml"``: the version changes with every write to the task or its parts, and
the two representations of one version are different bytes. After a reset or an import
of the emulator's state, versions start again in a new generation of the state (a task of
the same id may be a different task at the same version), and the tag names that
generation too: ``"<version>-json-<generation>"``. A tag from before a reset therefore
never matches a task after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import Request, Response

from clustertasks import errors
from clustertasks.service import live

VERSION_HEADER = "X-Clustertasks-Task-Version"
_WAIT = re.compile(r"[0-9]{1,3}(?:\.[0-9]{0,9})?")
_SINCE = re.compile(r"[0-9]{1,18}")


def etag(version: int, representation: str, generation: int = 0) -> str:
    if generation:
        return f'"{version}-{representation}-{generation}"'
    return f'"{version}-{representation}"'


@dataclass(frozen=True, slots=True)
class IfNoneMatch:
    """The entity tags a client already has (compared weakly, as RFC 9110 §13.1.2 says)."""

    tags: frozenset[str] = frozenset()
    any: bool = False
    """``*``: any current representation matches."""

    def __bool__(self) -> bool:
        return self.any or bool(self.tags)

    def matches(self, tag: str) -> bool:
        return self.any or _opaque(tag) in self.tags


def if_none_match(request: Request) -> IfNoneMatch:
    """Every ``If-None-Match`` header, each a ``*`` or a comma-separated list of tags, weak
    (``W/"…"``) or strong. Members that are not tags match nothing."""
    tags: set[str] = set()
    wildcard = False
    for header in request.headers.getlist("if-none-match"):
        for member in header.split(","):
            member = member.strip()
            if member == "*":
                wildcard = True
            elif member:
                tags.add(_opaque(member))
    return IfNoneMatch(frozenset(tags), wildcard)


def unmodified(
    held: IfNoneMatch, version: int, representation: str, generation: int
) -> Response | None:
    """:func:`not_modified` when ``held`` names the tag of this version, else None."""
    if held.matches(etag(version, representation, generation)):
        return not_modified(version, representation, generation)
    return None


def not_modified(version: int, representation: str, generation: int) -> Response:
    """304: no body; the ETag and version the client's copy still has."""
    return Response(status_code=304, headers=headers(version, representation, generation))


def headers(version: int, representation: str, generation: int) -> dict[str, str]:
    return {"ETag": etag(version, representation, generation), VERSION_HEADER: str(version)}


def wait_seconds(value: str | None) -> float | None:
    """``wait``: seconds from 0 to 60, decimals allowed."""
    if value is None:
        return None
    problem = f"must be a number of seconds from 0 to {live.MAX_WAIT_SECONDS:g}, got {value!r}"
    if not _WAIT.fullmatch(value):
        raise errors.InvalidParameter("wait", problem)
    seconds = float(value)
    if seconds > live.MAX_WAIT_SECONDS:
        raise errors.InvalidParameter("wait", problem)
    return seconds


def since_version(value: str | None) -> int | None:
    """``since``: a task version (``X-Clustertasks-Task-Version``), a non-negative integer."""
    if value is None:
        return None
    if not _SINCE.fullmatch(value):
        raise errors.InvalidParameter(
            "since", f"must be a task version, a non-negative integer, got {value!r}"
        )
    return int(value)


def _opaque(tag: str) -> str:
    """The tag's opaque part: without ``W/`` and without its quotes."""
    if tag[:2] in ("W/", "w/"):
        tag = tag[2:]
    if len(tag) >= 2 and tag[0] == '"' and tag[-1] == '"':
        tag = tag[1:-1]
    return tag
