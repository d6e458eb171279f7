"""``--sim-seed``: the same calls on a fresh database give the same ids."""

from __future__ import annotations

from pathlib import Path

from alibabacloud_cs20151215 import models as cs_models

from tests.acceptance import sdk
from tests.support.server import ServerProcess


def _run(tmp_path: Path, name: str, seed: str) -> list[str]:
    db = f"sqlite:///{tmp_path / name}"
    with ServerProcess(db, tmp_path, "--sim-speed", "0", "--sim-seed", seed) as server:
        client = sdk.client(server)
        cluster_id, created = sdk.create_cluster(client, pool_size=1)
        pool_id = (
            client.describe_cluster_node_pools(
                cluster_id, cs_models.DescribeClusterNodePoolsRequest()
            )
            .body.nodepools[0]
            .nodepool_info.nodepool_id
        )
        scale = client.scale_cluster_node_pool(
            cluster_id, pool_id, cs_models.ScaleClusterNodePoolRequest(count=2)
        ).body
        scaled = sdk.wait_task(client, scale.task_id)
        nodes = client.describe_cluster_nodes(
            cluster_id, cs_models.DescribeClusterNodesRequest()
        ).body.nodes
        assert server.stop() == 0
    return [
        cluster_id,
        pool_id,
        created.task_id,
        scaled.task_id,
        *sorted(r.data for r in scaled.task_result),
        *sorted(f"{n.instance_id} {n.node_name}" for n in nodes),
    ]


# What seed 42 gives for the calls of ``_run``. Seeded ids are a promise to users' test
# suites: they must not change within a major version. A change here is a breaking change.
SEED_42 = [
    "cd382e755657e90b7db0afc3c13462736",
    "npb15c92faf167b86b41430269bfdccbac",
    "T-600000001edec81345263862",
    "T-600000017afcb6523e69d533",
    "i-6ysa79cse0daz8v1ijfk",
    "i-i9p88ehg2l9zdmvvp3pk",
    "i-6ysa79cse0daz8v1ijfk cn-hangzhou.192.168.136.64",
    "i-i9p88ehg2l9zdmvvp3pk cn-hangzhou.192.168.28.24",
    "i-j8iqcubagnlsy6gzn7iv cn-hangzhou.192.168.99.241",
]


def test_same_seed_same_ids_other_seed_other_ids(tmp_path: Path) -> None:
    first = _run(tmp_path, "a.db", "42")
    assert first == SEED_42
    assert _run(tmp_path, "b.db", "42") == SEED_42
    other = _run(tmp_path, "c.db", "7")
    assert not set(first) & set(other)
