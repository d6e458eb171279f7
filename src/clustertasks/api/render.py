"""Choosing JSON or XML and building the response."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import Request, Response

from clustertasks import errors
from clustertasks.api import xml

JSON_TYPE = "application/json;charset=utf-8"
_SHORT_EXPONENT = re.compile(rb"[0-9]e-[0-9](?![0-9])")
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
    """Compact JSON in UTF-8, exactly the bytes of ``json.dumps(body, ensure_ascii=False,
    separators=(",", ":")).encode()``, made by orjson where that gives the same bytes.

    orjson writes the same for strings, integers and most floats, but spells some floats
    below 1e-4 as decimals (``0.00001``, not ``1e-05``) and others with a one-digit
    exponent (``1.5e-6``, not ``1.5e-06``), NaN and infinities as ``null``, and refuses
    integers beyond 64 bits and keys that are not strings: a document with any of those
    (or anything that looks like them: a ``null``, a ``0.0000``, a digit, ``e-`` and one
    digit) is written by the standard library instead.
    """
    try:
        encoded = orjson.dumps(body)
    except orjson.JSONEncodeError:
        return _standard(body)
    if b"null" in encoded or b"0.0000" in encoded or _SHORT_EXPONENT.search(encoded):
        return _standard(body)
    return encoded


def _standard(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
