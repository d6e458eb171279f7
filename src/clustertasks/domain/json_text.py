"""Parsing JSON a client sent: ``InvalidParameter`` naming the field for anything that is
not a document we take, never a parser's own error.

Nesting is limited before parsing: Python's parser recurses once per level, and 10,000
nested ``[`` would end in a ``RecursionError`` (a 500) instead of a refusal.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from typing import Any

from clustertasks import errors

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects a client document may have; ACK's requests use
fewer than ten levels."""

_STRINGS = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKETS = re.compile(rb"[^\[\]{}]++")
# Per byte: +1 opens a level, -1 closes one (only brackets are left when this is used).
_STEP = [0] * 256
for _open in b"[{":
    _STEP[_open] = 1
for _close in b"]}":
    _STEP[_close] = -1


def depth(raw: bytes | str) -> int:
    """How deeply ``raw`` nests arrays and objects (brackets inside strings do not count)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    brackets = _NOT_BRACKETS.sub(b"", _STRINGS.sub(b"", data))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets), initial=0))


def parse(
    raw: bytes | str,
    field: str = "body",
    *,
    parse_constant: Callable[[str], Any] | None = None,
) -> Any:
    """The JSON value in ``raw``; ``InvalidParameter`` naming ``field`` when it is not
    JSON or nests deeper than ``MAX_DEPTH``."""
    if depth(raw) > MAX_DEPTH:
        raise errors.InvalidParameter(
            field, f"nests arrays and objects deeper than {MAX_DEPTH} levels"
        )
    try:
        if parse_constant is None:
            return json.loads(raw)
        return json.loads(raw, parse_constant=parse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise errors.InvalidParameter(field, "is not valid JSON") from None
