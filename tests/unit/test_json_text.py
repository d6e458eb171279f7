"""Client JSON: depth counted outside strings, refused past the limit with the field named."""

from __future__ import annotations

import pytest

from clustertasks import errors
from clustertasks.domain import json_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", 0),
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a": "[[[[{{{{"}', 1),
        (b'["\\"[[[", [[]]]', 3),
        ("[\u00e9[]]", 2),
    ],
)
def test_depth(raw: bytes | str, expected: int) -> None:
    assert json_text.depth(raw) == expected


def test_parse_refuses_too_deep_and_invalid_naming_the_field() -> None:
    assert json_text.parse(b"[" * 64 + b"]" * 64) is not None
    with pytest.raises(errors.InvalidParameter) as deep:
        json_text.parse(b"[" * 65 + b"]" * 65, "nodes")
    assert deep.value.field == "nodes"
    assert "64 levels" in deep.value.message
    with pytest.raises(errors.InvalidParameter) as bad:
        json_text.parse(b"{", "body")
    assert bad.value.field == "body"
