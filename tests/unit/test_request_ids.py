"""Request ids: upper-case UUIDs version 4, spelled exactly as ``uuid`` spells them."""

from __future__ import annotations

import random
import uuid

from clustertasks.api import errors as api_errors


def test_request_id_text_is_uuids_own() -> None:
    draws = random.Random(16)
    samples = [0, (1 << 128) - 1, *(draws.getrandbits(128) for _ in range(1_000))]
    for bits in samples:
        assert api_errors.uuid4_text(bits) == str(uuid.UUID(int=bits, version=4)).upper()


def test_new_request_ids_are_version_4_and_differ() -> None:
    ids = {api_errors.new_request_id() for _ in range(1_000)}
    assert len(ids) == 1_000
    for rid in ids:
        parsed = uuid.UUID(rid)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed).upper() == rid
