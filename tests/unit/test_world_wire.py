"""The cluster, node pool and node documents carry every key sdk-shapes.md lists, with
the JSON type it gives.

The expected shapes below were copied by hand from reference/sdk-shapes.md (the detail
documents; each list item is its detail minus the keys named next to it). ``str``, ``int``,
``bool``, ``float`` are JSON scalars, ``dict`` a free-form object, ``[x]`` a list of ``x``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from clustertasks.domain import world, world_wire

Shape = Any

CLUSTER_DETAIL: Shape = {
    "auto_mode": {"enable": bool},
    "cluster_domain": str,
    "cluster_id": str,
    "cluster_spec": str,
    "cluster_type": str,
    "container_cidr": str,
    "control_plane_config": {
        "auto_renew": bool,
        "auto_renew_period": int,
        "charge_type": str,
        "cloud_monitor_flags": bool,
        "cpu_policy": str,
        "deploymentset_id": str,
        "image_id": str,
        "image_type": str,
        "instance_metadata_options": {"http_tokens": str},
        "instance_types": [str],
        "key_pair": str,
        "node_port_range": str,
        "period": int,
        "period_unit": str,
        "runtime": str,
        "security_hardening_os": bool,
        "size": int,
        "soc_enabled": bool,
        "system_disk_bursting_enabled": bool,
        "system_disk_category": str,
        "system_disk_performance_level": str,
        "system_disk_provisioned_iops": int,
        "system_disk_size": int,
        "system_disk_snapshot_policy_id": str,
    },
    "control_plane_endpoints_config": {
        "internal_dns_config": {"bind_vpcs": [str], "enabled": bool},
        "load_balancers_config": [{"endpoint": str, "endpoint_type": str, "load_balancer_id": str}],
    },
    "created": str,
    "current_version": str,
    "deletion_protection": bool,
    "docker_version": str,
    "external_loadbalancer_id": str,
    "extra_sans": [str],
    "init_version": str,
    "ip_stack": str,
    "maintenance_window": {
        "duration": str,
        "enable": bool,
        "exclusions": [
            {"description": str, "end_time": str, "name": str, "scope": str, "start_time": str}
        ],
        "maintenance_time": str,
        "recurrence": str,
        "weekly_period": str,
    },
    "master_url": str,
    "meta_data": str,
    "name": str,
    "network_mode": str,
    "next_version": str,
    "node_cidr_mask": str,
    "operation_policy": {"cluster_auto_upgrade": {"channel": str, "enabled": bool}},
    "parameters": dict,
    "private_zone": bool,
    "profile": str,
    "proxy_mode": str,
    "region_id": str,
    "resource_group_id": str,
    "rrsa_config": {
        "audience": str,
        "enabled": bool,
        "issuer": str,
        "jwks_url": str,
        "max_oidc_token_expiration": str,
        "oidc_arn": str,
        "oidc_name": str,
        "open_api_configuration_url": str,
    },
    "security_group_id": str,
    "service_cidr": str,
    "size": int,
    "state": str,
    "subnet_cidr": str,
    "tags": [{"key": str, "value": str}],
    "timezone": str,
    "updated": str,
    "vpc_id": str,
    "vswitch_id": str,
    "vswitch_ids": [str],
    "worker_ram_role_name": str,
    "zone_id": str,
}

# DescribeClustersV1 clusters[]: the detail without these keys.
CLUSTER_ITEM: Shape = {
    key: value
    for key, value in CLUSTER_DETAIL.items()
    if key
    not in {
        "auto_mode",
        "control_plane_config",
        "control_plane_endpoints_config",
        "extra_sans",
        "node_cidr_mask",
        "parameters",
        "rrsa_config",
    }
}

NODEPOOL_DETAIL: Shape = {
    "auto_mode": {"enable": bool},
    "auto_scaling": {
        "eip_bandwidth": int,
        "eip_internet_charge_type": str,
        "enable": bool,
        "is_bond_eip": bool,
        "max_instances": int,
        "min_instances": int,
        "type": str,
    },
    "eflo_node_group": {
        "auto_attach_enabled": bool,
        "cluster_id": str,
        "group_id": str,
        "worker_ram_role_name": str,
    },
    "host_network": bool,
    "interconnect_config": {
        "bandwidth": int,
        "ccn_id": str,
        "ccn_region_id": str,
        "cen_id": str,
        "improved_period": str,
    },
    "interconnect_mode": str,
    "intranet": bool,
    "kubernetes_config": {
        "cms_enabled": bool,
        "cpu_policy": str,
        "labels": [{"key": str, "value": str}],
        "node_name_mode": str,
        "pre_user_data": str,
        "runtime": str,
        "runtime_version": str,
        "taints": [{"effect": str, "key": str, "value": str}],
        "unschedulable": bool,
        "user_data": str,
    },
    "management": {
        "auto_fault_diagnosis": bool,
        "auto_repair": bool,
        "auto_repair_policy": {
            "approval_required": bool,
            "auto_repair_policy_id": str,
            "max_parallel_repairing_nodes": str,
            "max_unhealthy_nodes_threshold": str,
            "restart_node": bool,
        },
        "auto_upgrade": bool,
        "auto_upgrade_policy": {"auto_upgrade_kubelet": bool},
        "auto_vul_fix": bool,
        "auto_vul_fix_policy": {"exclude_packages": str, "restart_node": bool, "vul_level": str},
        "drift_enabled": bool,
        "enable": bool,
        "upgrade_config": {
            "auto_upgrade": bool,
            "max_unavailable": int,
            "surge": int,
            "surge_percentage": int,
        },
    },
    "max_nodes": int,
    "node_components": [
        {
            "config": {"custom_config": dict, "envs": [{"name": str, "value": str}]},
            "config_revision": str,
            "name": str,
            "version": str,
        }
    ],
    "node_config": {
        "kubelet_configuration": {
            "allowedUnsafeSysctls": [str],
            "clusterDNS": [str],
            "containerLogMaxFiles": int,
            "containerLogMaxSize": str,
            "containerLogMaxWorkers": int,
            "containerLogMonitorInterval": str,
            "cpuCFSQuota": bool,
            "cpuCFSQuotaPeriod": str,
            "cpuManagerPolicy": str,
            "eventBurst": int,
            "eventRecordQPS": int,
            "evictionHard": dict,
            "evictionSoft": dict,
            "evictionSoftGracePeriod": dict,
            "featureGates": dict,
            "imageGCHighThresholdPercent": int,
            "imageGCLowThresholdPercent": int,
            "kubeAPIBurst": int,
            "kubeAPIQPS": int,
            "kubeReserved": dict,
            "maxPods": int,
            "memoryManagerPolicy": str,
            "podPidsLimit": int,
            "readOnlyPort": int,
            "registryBurst": int,
            "registryPullQPS": int,
            "reservedMemory": [{"limits": dict, "numaNode": int}],
            "serializeImagePulls": bool,
            "serverTLSBootstrap": bool,
            "systemReserved": dict,
            "topologyManagerPolicy": str,
            "tracing": {"endpoint": str, "samplingRatePerMillion": int},
        },
        "node_os_config": {
            "hugepage": {
                "khugepagedAllocSleepMillisecs": int,
                "khugepagedDefrag": int,
                "khugepagedPagesToScan": int,
                "khugepagedScanSleepMillisecs": int,
                "transparentDefrag": str,
                "transparentEnabled": str,
            },
            "sysctl": dict,
        },
    },
    "nodepool_info": {
        "created": str,
        "is_default": bool,
        "name": str,
        "nodepool_id": str,
        "region_id": str,
        "resource_group_id": str,
        "type": str,
        "updated": str,
    },
    "scaling_group": {
        "auto_renew": bool,
        "auto_renew_period": int,
        "cis_enabled": bool,
        "compensate_with_on_demand": bool,
        "cpu_options": {"nested_virtualization": str},
        "data_disks": [
            {
                "auto_format": bool,
                "auto_snapshot_policy_id": str,
                "bursting_enabled": bool,
                "category": str,
                "device": str,
                "disk_name": str,
                "encrypted": str,
                "file_system": str,
                "kms_key_id": str,
                "mount_target": str,
                "performance_level": str,
                "provisioned_iops": int,
                "size": int,
                "snapshot_id": str,
            }
        ],
        "deploymentset_id": str,
        "desired_size": int,
        "disk_init": [
            {
                "disk_name": str,
                "local_disk": bool,
                "mkfs_type": str,
                "mount_for_runtime": bool,
                "mount_target": str,
            }
        ],
        "enable_high_density_mode": bool,
        "image_id": str,
        "image_type": str,
        "instance_charge_type": str,
        "instance_metadata_options": {"http_tokens": str},
        "instance_patterns": [
            {
                "architectures": [str],
                "burst_performance_option": str,
                "core": int,
                "cores": int,
                "cpu_architectures": [str],
                "excluded_instance_types": [str],
                "instance_categories": [str],
                "instance_family_level": str,
                "instance_type_families": [str],
                "max_cpu_cores": int,
                "max_memory_size": float,
                "max_price": float,
                "maximum_gpu_amount": int,
                "memory": float,
                "min_cpu_cores": int,
                "min_memory_size": float,
                "minimum_eni_ipv6_address_quantity": int,
                "minimum_eni_private_ip_address_quantity": int,
                "minimum_eni_quantity": int,
            }
        ],
        "instance_types": [str],
        "internet_charge_type": str,
        "internet_max_bandwidth_out": int,
        "key_pair": str,
        "login_as_non_root": bool,
        "login_password": str,
        "multi_az_policy": str,
        "on_demand_base_capacity": int,
        "on_demand_percentage_above_base_capacity": int,
        "period": int,
        "period_unit": str,
        "platform": str,
        "private_pool_options": {"id": str, "match_criteria": str},
        "ram_policy": str,
        "ram_role_name": str,
        "rds_instances": [str],
        "resource_pool_options": {"private_pool_ids": [str], "strategy": str},
        "scaling_group_id": str,
        "scaling_policy": str,
        "security_group_id": str,
        "security_group_ids": [str],
        "security_hardening_os": bool,
        "soc_enabled": bool,
        "spot_instance_pools": int,
        "spot_instance_remedy": bool,
        "spot_price_limit": [{"instance_type": str, "price_limit": str}],
        "spot_strategy": str,
        "system_disk_bursting_enabled": bool,
        "system_disk_categories": [str],
        "system_disk_category": str,
        "system_disk_encrypt_algorithm": str,
        "system_disk_encrypted": bool,
        "system_disk_kms_key_id": str,
        "system_disk_performance_level": str,
        "system_disk_provisioned_iops": int,
        "system_disk_size": int,
        "system_disk_snapshot_policy_id": str,
        "tags": [{"key": str, "value": str}],
        "vswitch_ids": [str],
    },
    "status": {
        "conditions": [
            {"last_transition_time": str, "message": str, "reason": str, "status": str, "type": str}
        ],
        "failed_nodes": int,
        "healthy_nodes": int,
        "initial_nodes": int,
        "offline_nodes": int,
        "removing_nodes": int,
        "serving_nodes": int,
        "state": str,
        "total_nodes": int,
    },
    "tee_config": {"tee_enable": bool},
}

# DescribeClusterNodePools nodepools[]: the detail without host_network, intranet,
# scaling_group.instance_metadata_options and status.conditions.
NODEPOOL_ITEM: Shape = {
    **{k: v for k, v in NODEPOOL_DETAIL.items() if k not in {"host_network", "intranet"}},
    "scaling_group": {
        k: v
        for k, v in NODEPOOL_DETAIL["scaling_group"].items()
        if k != "instance_metadata_options"
    },
    "status": {k: v for k, v in NODEPOOL_DETAIL["status"].items() if k != "conditions"},
}

NODE_ITEM: Shape = {
    "creation_time": str,
    "error_message": str,
    "expired_time": str,
    "host_name": str,
    "image_id": str,
    "instance_charge_type": str,
    "instance_id": str,
    "instance_name": str,
    "instance_role": str,
    "instance_status": str,
    "instance_type": str,
    "instance_type_family": str,
    "ip_address": [str],
    "is_aliyun_node": bool,
    "node_name": str,
    "node_status": str,
    "nodepool_id": str,
    "source": str,
    "spot_strategy": str,
    "state": str,
}


def assert_shape(value: Any, shape: Shape, path: str = "$", *, exact: bool = True) -> None:
    """``value`` has every key of ``shape`` with its type (and no other key, if ``exact``)."""
    if isinstance(shape, dict):
        assert isinstance(value, dict), f"{path} is {type(value).__name__}, not an object"
        missing = sorted(set(shape) - set(value))
        assert missing == [], f"{path} lacks {missing}"
        if exact:
            extra = sorted(set(value) - set(shape))
            assert extra == [], f"{path} has undocumented {extra}"
        for key, sub in shape.items():
            assert_shape(value[key], sub, f"{path}.{key}", exact=exact)
    elif isinstance(shape, list):
        assert isinstance(value, list), f"{path} is {type(value).__name__}, not a list"
        for index, item in enumerate(value):
            assert_shape(item, shape[0], f"{path}[{index}]", exact=exact)
    elif shape in (int, float):
        assert not isinstance(value, bool), f"{path}: {value!r} is a boolean, not a number"
        assert isinstance(value, int if shape is int else int | float), f"{path}: {value!r}"
    else:
        assert isinstance(value, shape), f"{path}: {value!r} is not {shape.__name__}"


def assert_json(document: dict[str, Any]) -> None:
    assert json.loads(json.dumps(document)) == document


CREATED = 1_744_266_337_285_530  # 2025-04-10T06:25:37.285530Z
CLUSTER_ID = "c78592bfe92244365b3c3ad47f1de0000"
POOL_ID = "np31da1b38983f4511b490fc62108a0000"


def _cluster(**changes: Any) -> world.Cluster:
    spec = world.ClusterSpec(
        name="prod",
        region_id="cn-hangzhou",
        kubernetes_version="1.31.1-aliyun.1",
        vswitch_ids=("vsw-a", "vsw-b"),
        tags=(world.Label("env", "prod"),),
    )
    cluster = world.Cluster(
        cluster_id=CLUSTER_ID,
        spec=spec,
        state="running",
        current_version="1.32.1-aliyun.1",
        created_us=CREATED,
        updated_us=CREATED + 60_000_000,
        node_quota=200,
        vpc_id="vpc-bp1kd7yn4qnrip4rx0000",
        security_group_id="sg-bp1000000000000000000",
        size=3,
    )
    return dataclasses.replace(cluster, **changes)


def _pool(**spec_changes: Any) -> world.NodePool:
    spec = world.NodePoolSpec(
        name="workers",
        instance_types=("ecs.g7.large", "ecs.c7.large"),
        vswitch_ids=("vsw-a",),
        labels=(world.Label("team", "a"),),
        taints=(world.Taint("dedicated", "gpu", "NoExecute"),),
    )
    return world.NodePool(
        nodepool_id=POOL_ID,
        cluster_id=CLUSTER_ID,
        spec=dataclasses.replace(spec, **spec_changes),
        state="scaling",
        desired_size=6,
        kubernetes_version="1.32.1-aliyun.1",
        scaling_group_id="asg-bp1000000000000000",
        created_us=CREATED,
        updated_us=CREATED + 1,
    )


def _instance(n: int, status: str = "Running", charge: str = "PostPaid") -> world.Instance:
    return world.Instance(
        instance_id=f"i-{n:020d}",
        cluster_id=CLUSTER_ID,
        nodepool_id=POOL_ID,
        instance_type="ecs.g7.large",
        zone_id="cn-hangzhou-h",
        vswitch_id="vsw-a",
        ip_address=f"192.168.0.{n}",
        status=status,
        created_us=CREATED,
        image_id="aliyun_3_x64_20G_alibase_20240819.vhd",
        instance_charge_type=charge,
    )


def _node(n: int, status: str = "Ready", schedulable: bool = True) -> world.Node:
    return world.Node(
        node_name=f"cn-hangzhou.192.168.0.{n}",
        cluster_id=CLUSTER_ID,
        nodepool_id=POOL_ID,
        instance_id=f"i-{n:020d}",
        node_status=status,
        schedulable=schedulable,
        kubelet_version="1.32.1-aliyun.1",
        labels=(world.Label("team", "a"),),
        created_us=CREATED,
    )


def test_cluster_detail_has_every_documented_key() -> None:
    doc = world_wire.cluster_document(_cluster())
    assert_shape(doc, CLUSTER_DETAIL)
    assert_json(doc)
    assert doc["created"] == "2025-04-10T06:25:37+00:00"
    assert doc["updated"] == "2025-04-10T06:26:37+00:00"
    assert (doc["cluster_id"], doc["state"], doc["size"]) == (CLUSTER_ID, "running", 3)
    assert (doc["init_version"], doc["current_version"]) == ("1.31.1-aliyun.1", "1.32.1-aliyun.1")
    assert doc["vswitch_ids"] == ["vsw-a", "vsw-b"]
    assert doc["vswitch_id"] == "vsw-a"
    assert doc["tags"] == [{"key": "env", "value": "prod"}]
    # Both are JSON text, as ACK sends them.
    assert json.loads(doc["meta_data"])["KubernetesVersion"] == "1.32.1-aliyun.1"
    assert isinstance(json.loads(doc["master_url"]), dict)


def test_cluster_times_follow_the_timezone_setting() -> None:
    doc = world_wire.cluster_document(_cluster(), "Asia/Shanghai")
    assert doc["created"] == "2025-04-10T14:25:37+08:00"


def test_cluster_list_item_has_exactly_its_documented_keys() -> None:
    item = world_wire.cluster_list_item(_cluster(), "UTC")
    assert_shape(item, CLUSTER_ITEM)
    assert_json(item)
    assert item["cluster_id"] == CLUSTER_ID


def test_a_cluster_without_vswitches_still_has_every_key() -> None:
    bare = _cluster(
        spec=world.ClusterSpec(name="x", region_id="cn-beijing", kubernetes_version="1")
    )
    doc = world_wire.cluster_document(bare)
    assert_shape(doc, CLUSTER_DETAIL)
    assert (doc["vswitch_id"], doc["vswitch_ids"], doc["tags"]) == ("", [], [])


def test_nodepool_detail_has_every_documented_key() -> None:
    instances = [_instance(1), _instance(2)]
    doc = world_wire.nodepool_document(
        _pool(), instances, [_node(1), _node(2)], "UTC", region_id="cn-hangzhou"
    )
    assert_shape(doc, NODEPOOL_DETAIL)
    assert_shape(doc, NODEPOOL_ITEM, exact=False)
    assert_json(doc)
    info = doc["nodepool_info"]
    assert (info["nodepool_id"], info["name"], info["region_id"]) == (
        POOL_ID,
        "workers",
        "cn-hangzhou",
    )
    assert (info["type"], info["is_default"]) == ("ess", False)
    group = doc["scaling_group"]
    assert group["desired_size"] == 6
    assert group["instance_types"] == ["ecs.g7.large", "ecs.c7.large"]
    assert group["vswitch_ids"] == ["vsw-a"]
    config = doc["kubernetes_config"]
    assert config["labels"] == [{"key": "team", "value": "a"}]
    assert config["taints"] == [{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]
    assert (config["runtime"], config["runtime_version"]) == ("containerd", "1.6.36")


def test_nodepool_times_keep_the_fraction_and_parse_as_rfc3339() -> None:
    doc = world_wire.nodepool_document(_pool(), [], [], "Asia/Shanghai")
    created = doc["nodepool_info"]["created"]
    assert created == "2025-04-10T14:25:37.285530+08:00"
    parsed = dt.datetime.fromisoformat(created)
    assert parsed.utcoffset() == dt.timedelta(hours=8)
    assert int(parsed.timestamp() * 1_000_000) == pytest.approx(CREATED, abs=1)


def test_nodepool_status_counts_every_instance_once_by_its_stage() -> None:
    instances = [
        _instance(1, "Pending"),
        _instance(2, "Running"),  # booted, not joined
        _instance(3, "Running"),  # joining: NotReady
        _instance(4, "Running"),
        _instance(5, "Running"),  # Ready but cordoned
        _instance(6, "Stopping"),
        _instance(7, "Running"),  # lost contact
    ]
    nodes = [
        _node(3, "NotReady", False),
        _node(4),
        _node(5, schedulable=False),
        _node(7, "Unknown"),
    ]
    status = world_wire.nodepool_document(_pool(), instances, nodes)["status"]
    assert status == {
        "state": "scaling",
        "total_nodes": 7,
        "healthy_nodes": 2,
        "serving_nodes": 1,
        "initial_nodes": 3,
        "failed_nodes": 0,
        "removing_nodes": 1,
        "offline_nodes": 1,
        "conditions": [],
    }


def test_nodepool_echoes_accepted_sections_but_the_record_wins() -> None:
    extra = {
        "auto_scaling": {"enable": True, "max_instances": 10},
        "management": {"enable": True},
        "scaling_group": {"key_pair": "ops", "login_password": "s3cret!", "desired_size": 99},
        "interconnect_mode": "improved",
    }
    doc = world_wire.nodepool_document(_pool(extra=extra), [], [])
    assert_shape(doc, NODEPOOL_DETAIL)
    assert (doc["auto_scaling"]["enable"], doc["auto_scaling"]["max_instances"]) == (True, 10)
    assert doc["auto_scaling"]["min_instances"] == 0
    assert doc["management"]["enable"] is True
    assert doc["interconnect_mode"] == "improved"
    assert doc["scaling_group"]["key_pair"] == "ops"
    assert doc["scaling_group"]["desired_size"] == 6
    assert doc["scaling_group"]["login_password"] == ""


def test_node_has_every_documented_key() -> None:
    doc = world_wire.node_document(_node(4), _instance(4), "UTC")
    assert_shape(doc, NODE_ITEM)
    assert_json(doc)
    assert doc["creation_time"] == "2025-04-10T06:25:37Z"
    assert (doc["state"], doc["instance_status"], doc["node_status"]) == (
        "running",
        "Running",
        "Ready",
    )
    assert doc["ip_address"] == ["192.168.0.4"]
    assert doc["node_name"] == "cn-hangzhou.192.168.0.4"
    assert (doc["instance_role"], doc["source"], doc["nodepool_id"]) == ("Worker", "ess", POOL_ID)
    assert doc["instance_type_family"] == "ecs.g7"
    assert doc["expired_time"] == "2099-12-31T15:59:00Z"


def test_an_instance_that_has_not_joined_is_listed_with_empty_node_fields() -> None:
    doc = world_wire.node_document(None, _instance(9, "Starting", "PrePaid"), "Asia/Shanghai")
    assert_shape(doc, NODE_ITEM)
    assert (doc["node_name"], doc["node_status"], doc["state"]) == ("", "Unknown", "starting")
    assert doc["expired_time"] == ""
    assert doc["creation_time"] == "2025-04-10T14:25:37+08:00"


def test_a_node_without_its_instance_still_has_every_key() -> None:
    doc = world_wire.node_document(_node(4), None)
    assert_shape(doc, NODE_ITEM)
    assert (doc["node_name"], doc["instance_id"], doc["node_status"]) == (
        "cn-hangzhou.192.168.0.4",
        f"i-{4:020d}",
        "Ready",
    )
    assert (doc["instance_status"], doc["ip_address"]) == ("", [])
