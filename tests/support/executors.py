"""Which executor a conformance test runs on: the local one, or Temporal's."""

from __future__ import annotations

from dataclasses import dataclass

LOCAL = "local"
TEMPORAL = "temporal"


@dataclass(frozen=True)
class Choice:
    kind: str
    temporal_address: str | None = None
    """The session's Temporal dev server, for ``temporal``."""


LOCAL_CHOICE = Choice(LOCAL)
