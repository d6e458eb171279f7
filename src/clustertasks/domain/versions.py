"""Kubernetes versions as ACK writes them (``1.31.1-aliyun.1``), compared as numbers."""

from __future__ import annotations

import re

_PARTS = re.compile(r"\d+")


def key(version: str) -> tuple[int, ...]:
    """Sort key: every number in the version, in order (``1.31.1-aliyun.1`` → 1, 31, 1, 1)."""
    return tuple(int(part) for part in _PARTS.findall(version))


def minor(version: str) -> tuple[int, ...]:
    """``(major, minor)``: what the skew rules between control plane and nodes compare."""
    return key(version)[:2]
