"""Reading a JSON request body into a mapping, with ACK-style errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request

from clustertasks import errors
from clustertasks.domain import json_text

MAX_BODY_BYTES = 1 << 20


async def json_object(request: Request) -> Mapping[str, Any]:
    value = await json_value(request, {})
    if not isinstance(value, dict):
        raise errors.InvalidParameter("body", "must be a JSON object")
    return value


async def json_value(request: Request, empty: Any) -> Any:
    """The body's JSON value, whatever its kind; ``empty`` for an empty body."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise errors.InvalidParameter("body", f"must be at most {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return empty
    return json_text.parse(raw)
