"""Responses are encoded by orjson where it gives exactly the standard library's bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clustertasks.api import documents, render
from clustertasks.domain import wire
from clustertasks.storage import store
from tests.unit import test_wire


def _standard(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _values, max_size=6))
def test_any_document_has_the_standard_librarys_bytes(body: dict[str, Any]) -> None:
    try:
        expected = _standard(body)
    except UnicodeEncodeError:  # a lone surrogate: refused alike
        with pytest.raises(UnicodeEncodeError):
            render.dumps(body)
        return
    assert render.dumps(body) == expected


@pytest.mark.parametrize(
    "value",
    [1e-05, 1.5e-06, -3.2e-08, 1e-4, 1e16, 1.2345678901234568e16, float("nan"), 2**70, 0.1],
)
def test_floats_and_integers_orjson_spells_otherwise(value: Any) -> None:
    assert render.dumps({"v": value, "s": "node-1e-5"}) == _standard({"v": value, "s": "node-1e-5"})


def test_a_kept_document_with_its_request_id_is_the_whole_document() -> None:
    document = wire.task_document(test_wire._view())
    kept = render.dumps(document)
    whole = _standard({**document, "requestId": "C0FFEE00-1111-4222-8333-444455556666"})
    assert documents.with_request_id(kept, "C0FFEE00-1111-4222-8333-444455556666") == whole
    # Ids of any spelling (a client's own, quotes and all) come out as JSON writes them.
    for rid in ("abc", 'a"b\\c', "é-ü", "tab\there", "\x7f", "-"):
        assert documents.with_request_id(kept, rid) == _standard({**document, "requestId": rid})


def test_kept_documents_are_used_for_their_version_only() -> None:
    kept = documents.Documents(max_documents=2)
    kept.put("T-1", "UTC", store.Stamp(3, 0), b'{"v":3}')
    assert kept.get("T-1", "UTC", store.Stamp(3, 0)) == b'{"v":3}'
    assert kept.get("T-1", "UTC", store.Stamp(4, 0)) is None
    assert kept.get("T-1", "Asia/Shanghai", store.Stamp(3, 0)) is None
    kept.put("T-1", "UTC", store.Stamp(2, 0), b'{"v":2}')  # an older render that finished late
    assert kept.get("T-1", "UTC", store.Stamp(3, 0)) == b'{"v":3}'
    kept.put("T-2", "UTC", store.Stamp(1, 0), b"{}")
    kept.put("T-3", "UTC", store.Stamp(1, 0), b"{}")
    assert kept.get("T-1", "UTC", store.Stamp(3, 0)) is None  # the least recently used went


def test_kept_documents_are_used_for_their_generation_only() -> None:
    """After a reset or an import (a new generation) a task id can come back at a version
    it had before, with other content."""
    kept = documents.Documents()
    kept.put("T-1", "UTC", store.Stamp(3, 0), b'{"v":"old"}')
    assert kept.get("T-1", "UTC", store.Stamp(3, 1)) is None
    kept.put("T-1", "UTC", store.Stamp(2, 1), b'{"v":"new"}')  # newer, whatever its version
    assert kept.get("T-1", "UTC", store.Stamp(2, 1)) == b'{"v":"new"}'
    kept.put("T-1", "UTC", store.Stamp(3, 0), b'{"v":"old"}')  # a late render of the old
    assert kept.get("T-1", "UTC", store.Stamp(2, 1)) == b'{"v":"new"}'
