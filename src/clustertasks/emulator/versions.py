"""The Kubernetes versions the simulated cloud offers (DescribeKubernetesVersionMetadata).

Four consecutive minor versions, oldest first; the newest is the default for new clusters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Release:
    version: str
    release_date: str
    expiration_date: str
    runtime_version: str


RELEASES: Sequence[Release] = (
    Release("1.29.3-aliyun.1", "2024-04-16T00:00:00Z", "2025-06-30T00:00:00Z", "1.6.28"),
    Release("1.30.1-aliyun.1", "2024-07-23T00:00:00Z", "2025-10-31T00:00:00Z", "1.6.34"),
    Release("1.31.1-aliyun.1", "2024-11-19T00:00:00Z", "2026-03-31T00:00:00Z", "1.6.36"),
    Release("1.32.1-aliyun.1", "2025-03-11T00:00:00Z", "2026-08-31T00:00:00Z", "1.6.36"),
)

DEFAULT = RELEASES[-1].version
