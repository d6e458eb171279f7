"""``clustertasks.testing.Emulator``: the ready-made server a test suite starts."""

from __future__ import annotations

from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_cs20151215.client import Client
from alibabacloud_tea_openapi.utils_models import Config

from clustertasks.testing import Emulator
from tests.acceptance import sdk


def _pool(client: Client, cluster_id: str) -> str:
    pools = client.describe_cluster_node_pools(
        cluster_id, cs_models.DescribeClusterNodePoolsRequest()
    ).body.nodepools
    return str(pools[0].nodepool_info.nodepool_id)


def _clusters(client: Client) -> list[str]:
    found = client.describe_clusters_v1(cs_models.DescribeClustersV1Request()).body.clusters
    return [c.cluster_id for c in found]


def test_a_seeded_emulator_with_faults_snapshots_and_reset() -> None:
    with Emulator(seed=42) as ack:
        client = Client(Config(**ack.sdk_config()))
        cluster_id, created = sdk.create_cluster(client, pool_size=1)
        assert created.state == "success"
        pool_id = _pool(client, cluster_id)

        fault = ack.add_fault(
            task_type="cluster_scaleout",
            instance_index=2,
            error_code="OperationDenied.NoStock",
            count=1,
        )
        task_id = client.scale_cluster_node_pool(
            cluster_id, pool_id, cs_models.ScaleClusterNodePoolRequest(count=3)
        ).body.task_id
        scaled = sdk.wait_task(client, task_id)
        assert (scaled.state, scaled.error.code) == ("fail", "OperationDenied.NoStock")
        assert [(f["fault_id"], f["hits"]) for f in ack.faults()] == [(fault["fault_id"], 1)]

        saved = ack.export_state()
        assert ack.reset()["clusters_deleted"] == 1
        assert _clusters(client) == []
        assert ack.faults() == []
        ack.import_state(saved)
        assert _clusters(client) == [cluster_id]
        assert client.describe_task_info(task_id).body.error.code == "OperationDenied.NoStock"

    # Stopped: nothing answers there any more. The same seed gives the same ids again.
    with Emulator(seed=42) as again:
        client = Client(Config(**again.sdk_config()))
        assert sdk.create_cluster(client, pool_size=1)[0] == cluster_id


def test_after_a_seeded_reset_a_task_with_a_reused_id_reads_as_itself() -> None:
    """A reset restarts seeded ids and task versions: the task that gets an id again, at a
    version its predecessor also had, must not be answered with the predecessor's document."""
    with Emulator(seed=42) as ack:
        client = Client(Config(**ack.sdk_config()))
        _, first = sdk.create_cluster(client, name="first", pool_size=1)
        assert client.describe_task_info(first.task_id).body.parameters["spec"]["name"] == "first"
        ack.reset()
        _, second = sdk.create_cluster(client, name="second", pool_size=1)
        assert second.task_id == first.task_id
        assert client.describe_task_info(second.task_id).body.parameters["spec"]["name"] == "second"
