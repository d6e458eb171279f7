"""Every operation clustertasks can run, registered by task type."""

from __future__ import annotations

from clustertasks.operations import (
    addons,
    attach,
    base,
    clusters,
    node_config,
    nodepools,
    remove_nodes,
    repair,
    upgrade,
)


def registry() -> base.Registry:
    return base.Registry(
        [
            *clusters.OPERATIONS,
            *nodepools.OPERATIONS,
            *remove_nodes.OPERATIONS,
            *upgrade.OPERATIONS,
            *repair.OPERATIONS,
            *attach.OPERATIONS,
            *node_config.OPERATIONS,
            *addons.OPERATIONS,
        ]
    )
