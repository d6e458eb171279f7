"""Identifier formats (DESIGN.md §3).

Task ids are ``T-`` + 24 lowercase hex, laid out like a MongoDB ObjectId: 4 bytes of
seconds since the epoch, 5 random bytes fixed per generator, 3 bytes of a counter. They
therefore sort by creation time, and two generators almost never collide.

A :class:`SeededIds` generator (``--sim-seed``) makes every id a function of the seed and
of how many ids of that kind were issued before, so the same calls on a fresh database give
the same ids, and a restarted server continues the sequence instead of repeating it.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
import threading
from collections.abc import Mapping

TASK_ID_RE = re.compile(r"^T-[0-9a-f]{24}$")
CLUSTER_ID_RE = re.compile(r"^c[0-9a-f]{32}$")
NODEPOOL_ID_RE = re.compile(r"^np[0-9a-f]{32}$")
INSTANCE_ID_RE = re.compile(r"^i-[0-9a-z]{20}$")

# Ids we accept in a path: what ACK issues (T-…, install-addons-…, c…, np…) fits here.
# Anything else cannot name a stored resource, so it is answered "not found" at once.
LOOKUP_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

_INSTANCE_ALPHABET = string.ascii_lowercase + string.digits


class IdGenerator:
    """Makes every id clustertasks hands out.

    ``rng`` decides the random parts; pass a seeded ``random.Random`` for repeatable ids.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._machine = self._rng.getrandbits(40)
        self._counter = self._rng.getrandbits(24)
        self._lock = threading.Lock()

    def task_id(self, now_us: int) -> str:
        with self._lock:
            self._counter = (self._counter + 1) & 0xFFFFFF
            counter = self._counter
        seconds = (now_us // 1_000_000) & 0xFFFFFFFF
        return f"T-{seconds:08x}{self._machine:010x}{counter:06x}"

    def cluster_id(self) -> str:
        return "c" + self._hex(32)

    def nodepool_id(self) -> str:
        return "np" + self._hex(32)

    def instance_id(self) -> str:
        with self._lock:
            return "i-" + "".join(self._rng.choice(_INSTANCE_ALPHABET) for _ in range(20))

    def fault_id(self) -> str:
        """An emulator fault rule: ``F-`` + 16 lowercase hex."""
        return "F-" + self._hex(16)

    def restart(self, issued: Mapping[str, int]) -> None:
        """Continue as a generator made now would, given ``issued`` ids of each kind exist
        (after the emulator's state was reset or replaced). Random ids need nothing."""

    def _hex(self, digits: int) -> str:
        with self._lock:
            return f"{self._rng.getrandbits(digits * 4):0{digits}x}"


# Seeded task ids put this plus the sequence number where the creation second goes, so they
# still sort in creation order.
SEEDED_EPOCH = 0x60000000


class SeededIds(IdGenerator):
    """Repeatable ids: each is derived from the seed, its kind and its sequence number."""

    def __init__(self, seed: int, issued: dict[str, int] | None = None) -> None:
        super().__init__(random.Random(seed))
        self._seed = seed
        self._issued = dict(issued or {})

    def task_id(self, now_us: int) -> str:
        n = self._next("task")
        return f"T-{SEEDED_EPOCH + n:08x}{self._digest('task', n)[:16]}"

    def cluster_id(self) -> str:
        return "c" + self._digest("cluster", self._next("cluster"))[:32]

    def nodepool_id(self) -> str:
        return "np" + self._digest("nodepool", self._next("nodepool"))[:32]

    def instance_id(self) -> str:
        digest = int(self._digest("instance", self._next("instance"))[:40], 16)
        chars = []
        for _ in range(20):
            digest, index = divmod(digest, len(_INSTANCE_ALPHABET))
            chars.append(_INSTANCE_ALPHABET[index])
        return "i-" + "".join(chars)

    def fault_id(self) -> str:
        return "F-" + self._digest("fault", self._next("fault"))[:16]

    def restart(self, issued: Mapping[str, int]) -> None:
        with self._lock:
            self._issued = dict(issued)

    def _next(self, kind: str) -> int:
        with self._lock:
            n = self._issued.get(kind, 0)
            self._issued[kind] = n + 1
            return n

    def _digest(self, kind: str, n: int) -> str:
        return hashlib.sha256(f"{self._seed}:{kind}:{n}".encode()).hexdigest()


def node_name(region_id: str, ip_address: str) -> str:
    """ACK names a node ``<region>.<private ip>``, e.g. ``cn-hangzhou.192.168.0.12``."""
    return f"{region_id}.{ip_address}"


def is_lookup_id(value: str) -> bool:
    """True when ``value`` could be the id of a stored resource."""
    return LOOKUP_ID_RE.fullmatch(value) is not None
