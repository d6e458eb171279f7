"""The official SDK, configured for a local clustertasks server."""

from __future__ import annotations

from typing import Any

from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_cs20151215.client import Client
from alibabacloud_tea_openapi.utils_models import Config
from darabonba.core import DaraCore

from tests.support import polling
from tests.support.server import ServerProcess

TERMINAL = ("success", "fail", "canceled")


def client(
    server: ServerProcess,
    signature_algorithm: str | None = None,
    *,
    access_key_id: str = "test-ak",
    access_key_secret: str = "test-secret",
) -> Client:
    config = Config(
        access_key_id=access_key_id,
        access_key_secret=access_key_secret,
        endpoint=server.endpoint,
        protocol="http",
        region_id="cn-hangzhou",
    )
    if signature_algorithm:
        config.signature_algorithm = signature_algorithm
    return Client(config)


def close_connections() -> None:
    """Close the keep-alive connections the SDK pools for the whole process (one
    ``requests`` session per endpoint, ``DaraCore._sessions``). A test on a shared server
    then starts on new connections, as it did on a new server: a connection left idle by an
    earlier test may be closed by the server (after its keep-alive timeout) just as it is
    used again, and a POST is not retried."""
    for session in DaraCore._sessions.values():
        session.close()


def wait_task(
    sdk: Client, task_id: str, timeout: float = 60.0, states: tuple[str, ...] = TERMINAL
) -> Any:
    """Poll DescribeTaskInfo as Terraform does (bounded), until the task reaches ``states``."""
    return polling.until(
        f"task {task_id}",
        lambda: sdk.describe_task_info(task_id).body,
        lambda body: body.state in states,
        timeout=timeout,
        interval=0.05,
        show=lambda body: body.state,
    )


def pool_request(name: str, size: int, types: list[str] | None = None, **kube: Any) -> Any:
    return cs_models.CreateClusterNodePoolRequest(
        nodepool_info=cs_models.CreateClusterNodePoolRequestNodepoolInfo(name=name),
        scaling_group=cs_models.CreateClusterNodePoolRequestScalingGroup(
            instance_types=types or ["ecs.g7.large"],
            vswitch_ids=["vsw-hangzhou-h"],
            desired_size=size,
        ),
        kubernetes_config=cs_models.CreateClusterNodePoolRequestKubernetesConfig(**kube)
        if kube
        else None,
    )


def create_cluster(sdk: Client, name: str = "demo", pool_size: int = 2) -> tuple[str, Any]:
    request = cs_models.CreateClusterRequest(
        name=name,
        region_id="cn-hangzhou",
        cluster_type="ManagedKubernetes",
        kubernetes_version="1.32.1-aliyun.1",
        vswitch_ids=["vsw-hangzhou-h"],
        nodepools=[
            cs_models.Nodepool(
                nodepool_info=cs_models.NodepoolNodepoolInfo(name="pool-a"),
                scaling_group=cs_models.NodepoolScalingGroup(
                    instance_types=["ecs.g7.large"], desired_size=pool_size
                ),
            )
        ],
    )
    body = sdk.create_cluster(request).body
    return body.cluster_id, wait_task(sdk, body.task_id)
