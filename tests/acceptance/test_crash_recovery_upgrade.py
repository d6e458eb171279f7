"""kill -9 the server in the middle of a rolling upgrade; a restarted server finishes it
with every node upgraded once and none left cordoned."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from alibabacloud_cs20151215 import models as cs_models

from clustertasks.storage import database as storage_database
from tests.acceptance import sdk
from tests.acceptance import test_sdk_nodes as nodes_support
from tests.support import cloud, polling
from tests.support.server import ServerProcess

NODES = 6


def test_kill_9_mid_rollout_then_the_upgrade_finishes(
    db_url: str, tmp_path: Path, database: storage_database.Database
) -> None:
    sim = cloud.sim_for(database)
    with ServerProcess(db_url, tmp_path, "--sim-speed", "0") as setup:
        client = sdk.client(setup)
        cluster_id, pool_id = nodes_support._cluster(client, NODES, version=nodes_support.OLD)
        nodes_support._upgrade_control_plane(client, cluster_id)
        assert setup.stop() == 0

    # Realistic durations, ten times faster: each batch of two nodes takes seconds.
    with ServerProcess(db_url, tmp_path, "--sim-speed", "10") as running:
        client = sdk.client(running)
        task_id = client.upgrade_cluster_nodepool(
            cluster_id,
            pool_id,
            cs_models.UpgradeClusterNodepoolRequest(
                kubernetes_version=nodes_support.NEW,
                rolling_policy=cs_models.UpgradeClusterNodepoolRequestRollingPolicy(
                    max_parallelism=2
                ),
            ),
        ).body.task_id

        def going(task: Any) -> bool:
            if any(r.status == "success" for r in task.task_result):
                return True
            assert task.state == "running", (task.state, task.error.message)
            return False

        task = polling.until(
            "the rollout getting going (a node upgraded)",
            lambda: client.describe_task_info(task_id).body,
            going,
            interval=0.05,
            show=lambda task: task.state,
        )
        running.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    done_before = sum(r.status == "success" for r in task.task_result)
    assert done_before < NODES, "the kill came too late to prove anything"

    with ServerProcess(db_url, tmp_path, "--sim-speed", "0") as restarted:
        client = sdk.client(restarted)
        finished = sdk.wait_task(client, task_id, timeout=120)
        assert finished.state == "success", (finished.error.code, finished.error.message)
        assert [r.status for r in finished.task_result] == ["success"] * NODES
        reasons = [e.reason for e in finished.events]
        assert reasons.count("TaskStart") == 1
        assert reasons.count("NodeUpgraded") == NODES
        assert reasons.count("TaskSucceed") == 1
    nodes = sim.list_nodes(cluster_id)
    assert len(nodes) == NODES
    assert {n.kubelet_version for n in nodes} == {nodes_support.NEW}
    assert all(n.schedulable and n.node_status == "Ready" for n in nodes)
    assert sim.get_nodepool(cluster_id, pool_id).kubernetes_version == nodes_support.NEW
