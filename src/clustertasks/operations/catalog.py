"""Every operation clustertasks can run, registered by task type."""

from __future__ import annotations

from clustertasks.operations import base, clusters, nodepools


def registry() -> base.Registry:
    return base.Registry([*clusters.OPERATIONS, *nodepools.OPERATIONS])
