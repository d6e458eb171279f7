"""Choosing JSON or XML and building the response."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import Request, Response

from clustertasks import errors
from clustertasks.api import xml

JSON_TYPE = "application/json;charset=utf-8"
XML_TYPE = "application/xml;charset=utf-8"


def wants_xml(request: Request) -> bool:
    """``?format=xml`` or ``Accept: application/xml`` (and no JSON in Accept) asks for XML."""
    fmt = request.query_params.get("format")
    if fmt is not None:
        lowered = fmt.lower()
        if lowered == "xml":
            return True
        if lowered == "json":
            return False
        raise errors.InvalidParameter("format", f"must be json or xml, got {fmt!r}")
    accept = request.headers.get("accept", "").lower()
    return "xml" in accept and "json" not in accept


def document(
    request: Request, operation: str, body: Mapping[str, Any], status_code: int = 200
) -> Response:
    """Render ``body`` as JSON, or as XML under ``<{operation}Response>`` when asked."""
    if wants_xml(request):
        return Response(xml.render(f"{operation}Response", body), status_code, media_type=XML_TYPE)
    return Response(dumps(body), status_code, media_type=JSON_TYPE)


def dumps(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
