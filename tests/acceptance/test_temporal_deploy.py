"""The Temporal executor as deployed: API replicas and workers as processes on loopback,
one PostgreSQL, the session's Temporal dev server.

Two replicas take twenty scale-outs and a rolling upgrade (half through each); one of the
two workers is killed with kill -9 while they run (sim speed 0: no simulated waiting).
Every task ends as on one machine, no instance is created twice, and both replicas return
the same documents.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_tea_openapi.exceptions import ClientException
from darabonba.runtime import RuntimeOptions

from clustertasks import settings
from clustertasks.storage import database as storage_database
from tests.acceptance import sdk
from tests.acceptance import test_sdk_nodes as nodes_support
from tests.support import cloud, databases, polling, signing
from tests.support.server import ServerProcess
from tests.support.temporal import WorkerProcess

SCALE_OUTS = 20
NODES = 2
UPGRADE_NODES = 2


@pytest.fixture
def pg_url(all_databases: databases.Databases) -> Iterator[str]:
    url = all_databases.migrated(databases.POSTGRES)
    yield url
    all_databases.drop(url)


def _replica(url: str, tmp: Path, address: str, queue: str, *args: str) -> ServerProcess:
    return ServerProcess(
        url,
        tmp,
        "--executor",
        "temporal",
        "--temporal-address",
        address,
        "--task-queue",
        queue,
        *args,
    )


def _cluster_with_pools(client: Any, pools: int) -> tuple[str, list[str]]:
    request = cs_models.CreateClusterRequest(
        name="deploy",
        region_id="cn-hangzhou",
        cluster_type="ManagedKubernetes",
        kubernetes_version=nodes_support.NEW,
        vswitch_ids=["vsw-hangzhou-h"],
        nodepools=[
            cs_models.Nodepool(
                nodepool_info=cs_models.NodepoolNodepoolInfo(name=f"pool-{index}"),
                scaling_group=cs_models.NodepoolScalingGroup(
                    instance_types=["ecs.g7.large"], desired_size=0
                ),
            )
            for index in range(pools)
        ],
    )
    body = client.create_cluster(request).body
    created = sdk.wait_task(client, body.task_id)
    assert created.state == "success", (created.error.code, created.error.message)
    listed = client.describe_cluster_node_pools(
        body.cluster_id, cs_models.DescribeClusterNodePoolsRequest()
    ).body.nodepools
    return body.cluster_id, [pool.nodepool_info.nodepool_id for pool in listed]


def _document(replica: ServerProcess, task_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{replica.url}/tasks/{task_id}", trust_env=False, auth=signing.auth(), timeout=30
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    body.pop("RequestId", None)
    body.pop("requestId", None)
    return body


@pytest.mark.postgres
def test_replicas_and_workers_survive_a_worker_killed_mid_flight(
    pg_url: str, tmp_path: Path, temporal_address: str
) -> None:
    queue = f"deploy-{uuid.uuid4().hex}"
    fast = ("--sim-speed", "0")
    replicas = [_replica(pg_url, tmp_path, temporal_address, queue, *fast) for _ in range(2)]
    arranging = WorkerProcess(pg_url, tmp_path, temporal_address, queue, *fast)
    # Realistic durations, ten times faster: each task takes seconds.
    slow = ("--sim-speed", "10")
    workers = [WorkerProcess(pg_url, tmp_path, temporal_address, queue, *slow) for _ in range(2)]
    try:
        arranging.launch()
        for replica in replicas:
            replica.start()
        arranging.wait_ready()
        clients = [sdk.client(replica) for replica in replicas]
        # The world, through the first replica: a cluster with twenty empty pools, and a
        # cluster whose pool runs the old version under an upgraded control plane.
        cluster_id, pool_ids = _cluster_with_pools(clients[0], SCALE_OUTS)
        old_cluster, old_pool = nodes_support._cluster(
            clients[0], UPGRADE_NODES, version=nodes_support.OLD
        )
        nodes_support._upgrade_control_plane(clients[0], old_cluster)
        for worker in workers:
            worker.launch()
        arranging.kill()  # idle: its work is done
        for worker in workers:
            worker.wait_ready()

        task_ids = [
            clients[index % 2]
            .scale_cluster_node_pool(
                cluster_id, pool_id, cs_models.ScaleClusterNodePoolRequest(count=NODES)
            )
            .body.task_id
            for index, pool_id in enumerate(pool_ids)
        ]
        upgrade = (
            clients[1]
            .upgrade_cluster_nodepool(
                old_cluster,
                old_pool,
                cs_models.UpgradeClusterNodepoolRequest(
                    kubernetes_version=nodes_support.NEW,
                    rolling_policy=cs_models.UpgradeClusterNodepoolRequestRollingPolicy(
                        max_parallelism=1
                    ),
                ),
            )
            .body.task_id
        )
        polling.until(
            "tasks getting going (an instance created or a node upgraded)",
            lambda: [
                t
                for t in [*task_ids, upgrade]
                if any(
                    e["reason"] in ("InstanceCreated", "NodeUpgraded")
                    for e in _document(replicas[0], t)["events"]
                )
            ],
            lambda started: len(started) >= SCALE_OUTS // 4,
            interval=0.05,
        )
        workers[0].kill()
        states_at_kill = [_document(replicas[1], t)["state"] for t in [*task_ids, upgrade]]
        assert states_at_kill.count("running") >= 1, "the kill came too late to prove anything"

        finished = [sdk.wait_task(clients[i % 2], t, timeout=120) for i, t in enumerate(task_ids)]
        for task in finished:
            assert task.state == "success", (task.task_id, task.error.code, task.error.message)
            assert [r.status for r in task.task_result] == ["success"] * NODES
            assert len({r.data for r in task.task_result}) == NODES
            reasons = [e.reason for e in task.events]
            assert reasons.count("TaskStart") == 1
            assert reasons.count("InstanceCreated") == NODES
            assert reasons[-1] == "TaskSucceed"
        rolled = sdk.wait_task(clients[0], upgrade, timeout=120)
        assert rolled.state == "success", (rolled.error.code, rolled.error.message)
        assert [r.status for r in rolled.task_result] == ["success"] * UPGRADE_NODES
        assert [e.reason for e in rolled.events].count("TaskSucceed") == 1

        for task_id in [*task_ids, upgrade]:
            assert _document(replicas[0], task_id) == _document(replicas[1], task_id)

        # The rules that live in the database hold across replicas: a nonce spent on one is
        # refused by the other, and a pool busy through one is busy through the other.
        nonce = {"x-acs-signature-nonce": uuid.uuid4().hex}
        clients[0].describe_task_info_with_options(task_ids[0], nonce, RuntimeOptions())
        with pytest.raises(ClientException) as replayed:
            clients[1].describe_task_info_with_options(task_ids[0], nonce, RuntimeOptions())
        assert replayed.value.code == "SignatureNonceUsed"
        busy = clients[0].upgrade_cluster_nodepool(
            old_cluster,
            old_pool,
            cs_models.UpgradeClusterNodepoolRequest(kubernetes_version=nodes_support.NEW),
        )
        with pytest.raises(ClientException) as conflict:
            clients[1].scale_cluster_node_pool(
                old_cluster, old_pool, cs_models.ScaleClusterNodePoolRequest(count=1)
            )
        assert conflict.value.code == "ErrorTaskConflict"
        assert busy.body.task_id in conflict.value.message
    finally:
        for worker in [arranging, *workers]:
            worker.kill()
        for replica in replicas:
            replica.kill()

    db = storage_database.Database.open(settings.StorageSettings(url=pg_url))
    try:
        sim = cloud.sim_for(db)
        per_pool = collections.Counter(i.nodepool_id for i in sim.list_instances(cluster_id))
        assert per_pool == {pool_id: NODES for pool_id in pool_ids}  # none created twice
        nodes = sim.list_nodes(old_cluster)
        assert len(nodes) == UPGRADE_NODES
        assert {n.kubelet_version for n in nodes} == {nodes_support.NEW}
        assert all(n.schedulable and n.node_status == "Ready" for n in nodes)
    finally:
        db.close()
