"""Rolling updates (UpgradeClusterNodepool, UpgradeCluster): when a rollout pauses itself."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class PausePolicy(enum.StrEnum):
    """``rolling_policy.pause_policy``: pause after the first batch, after every batch, or
    never (the default)."""

    FirstBatch = "FirstBatch"
    EveryBatch = "EveryBatch"
    NotPause = "NotPause"


PAUSE_POLICIES = tuple(policy.value for policy in PausePolicy)


def pause_policy(parameters: Mapping[str, Any]) -> str:
    """``rolling_policy.pause_policy`` as UpgradeClusterNodepool sends it (or top level)."""
    rolling = parameters.get("rolling_policy")
    if isinstance(rolling, Mapping) and rolling.get("pause_policy") in PAUSE_POLICIES:
        return str(rolling["pause_policy"])
    top = parameters.get("pause_policy")
    return str(top) if top in PAUSE_POLICIES else PausePolicy.NotPause.value
