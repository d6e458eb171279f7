"""Cluster, node pool and node documents exactly as ACK puts them on the wire
(reference/sdk-shapes.md: DescribeClusterDetail, DescribeClustersV1, DescribeClusterNodePools,
DescribeClusterNodePoolDetail, DescribeClusterNodes).

Every documented key is always present, with ``""``, ``0``, ``False``, ``{}`` or ``[]`` for
what the simulation does not model, because clients index into these documents without
checking. A node pool's ``status`` counts are derived here from its instances and nodes;
nothing stores them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from clustertasks.domain import timefmt, world

# Keys of one DescribeClustersV1 ``clusters[]`` item: the detail document minus these.
_DETAIL_ONLY_CLUSTER_KEYS = frozenset(
    {
        "auto_mode",
        "control_plane_config",
        "control_plane_endpoints_config",
        "extra_sans",
        "node_cidr_mask",
        "parameters",
        "rrsa_config",
    }
)
# Pay-as-you-go ECS instances report this far-future expiry.
_POSTPAID_EXPIRY = "2099-12-31T15:59:00Z"


# -- clusters ----------------------------------------------------------------------------------


def cluster_document(cluster: world.Cluster, tz: str = "UTC") -> dict[str, Any]:
    """The DescribeClusterDetail body."""
    spec = cluster.spec
    extra = spec.extra
    return {
        "auto_mode": {"enable": False},
        "cluster_domain": "cluster.local",
        "cluster_id": cluster.cluster_id,
        "cluster_spec": spec.cluster_spec,
        "cluster_type": spec.cluster_type,
        "container_cidr": spec.container_cidr,
        "control_plane_config": _deep(_control_plane_config(), extra.get("control_plane_config")),
        "control_plane_endpoints_config": _deep(
            {
                "internal_dns_config": {"bind_vpcs": [], "enabled": False},
                "load_balancers_config": [],
            },
            extra.get("control_plane_endpoints_config"),
        ),
        "created": timefmt.rfc3339(cluster.created_us, tz),
        "current_version": cluster.current_version,
        "deletion_protection": spec.deletion_protection,
        "docker_version": "",
        "external_loadbalancer_id": "",
        "extra_sans": list(extra.get("extra_sans", [])),
        "init_version": spec.kubernetes_version,
        "ip_stack": "ipv4",
        "maintenance_window": _deep(
            {
                "duration": "",
                "enable": False,
                "exclusions": [],
                "maintenance_time": "",
                "recurrence": "",
                "weekly_period": "",
            },
            extra.get("maintenance_window"),
        ),
        # ACK sends these two as JSON text inside the JSON document.
        "master_url": json.dumps(
            {
                "api_server_endpoint": "",
                "dashboard_endpoint": "",
                "intranet_api_server_endpoint": "",
            }
        ),
        "meta_data": json.dumps(
            {
                "Addons": [],
                "Capabilities": _capabilities(extra),
                "KubernetesVersion": cluster.current_version,
                "ServiceCIDR": spec.service_cidr,
            }
        ),
        "name": spec.name,
        "network_mode": "vpc",
        "next_version": "",
        "node_cidr_mask": "26",
        "operation_policy": _deep(
            {"cluster_auto_upgrade": {"channel": "", "enabled": False}},
            extra.get("operation_policy"),
        ),
        "parameters": {},
        "private_zone": False,
        "profile": spec.profile,
        "proxy_mode": "ipvs",
        "region_id": spec.region_id,
        "resource_group_id": spec.resource_group_id,
        "rrsa_config": {
            "audience": "",
            "enabled": bool(extra.get("enable_rrsa", False)),
            "issuer": "",
            "jwks_url": "",
            "max_oidc_token_expiration": "",
            "oidc_arn": "",
            "oidc_name": "",
            "open_api_configuration_url": "",
        },
        "security_group_id": str(extra.get("security_group_id") or cluster.security_group_id),
        "service_cidr": spec.service_cidr,
        "size": cluster.size,
        "state": cluster.state,
        "subnet_cidr": spec.container_cidr,
        "tags": [{"key": tag.key, "value": tag.value} for tag in spec.tags],
        "timezone": spec.timezone,
        "updated": timefmt.rfc3339(cluster.updated_us, tz),
        "vpc_id": cluster.vpc_id,
        # Deprecated single vSwitch: ACK reports the first one.
        "vswitch_id": spec.vswitch_ids[0] if spec.vswitch_ids else "",
        "vswitch_ids": list(spec.vswitch_ids),
        "worker_ram_role_name": _worker_role(cluster.cluster_id),
        "zone_id": "",
    }


def cluster_list_item(cluster: world.Cluster, tz: str = "UTC") -> dict[str, Any]:
    """One item of DescribeClustersV1's ``clusters[]``: exactly its documented keys."""
    detail = cluster_document(cluster, tz)
    return {key: value for key, value in detail.items() if key not in _DETAIL_ONLY_CLUSTER_KEYS}


def _control_plane_config() -> dict[str, Any]:
    # Managed clusters: Alibaba runs the control plane, so none of this is the user's.
    return {
        "auto_renew": False,
        "auto_renew_period": 0,
        "charge_type": "",
        "cloud_monitor_flags": False,
        "cpu_policy": "",
        "deploymentset_id": "",
        "image_id": "",
        "image_type": "",
        "instance_metadata_options": {"http_tokens": ""},
        "instance_types": [],
        "key_pair": "",
        "node_port_range": "30000-32767",
        "period": 0,
        "period_unit": "",
        "runtime": "",
        "security_hardening_os": False,
        "size": 0,
        "soc_enabled": False,
        "system_disk_bursting_enabled": False,
        "system_disk_category": "",
        "system_disk_performance_level": "",
        "system_disk_provisioned_iops": 0,
        "system_disk_size": 0,
        "system_disk_snapshot_policy_id": "",
    }


def _worker_role(cluster_id: str) -> str:
    """``KubernetesWorkerRole-<uuid>``, the uuid spelled from the cluster id's hex."""
    hex32 = (cluster_id[1:] + "0" * 32)[:32]
    uuid = f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"
    return f"KubernetesWorkerRole-{uuid}"


# -- node pools --------------------------------------------------------------------------------


def nodepool_document(
    pool: world.NodePool,
    instances: Sequence[world.Instance],
    nodes: Sequence[world.Node],
    tz: str = "UTC",
    *,
    region_id: str = "",
) -> dict[str, Any]:
    """The DescribeClusterNodePoolDetail body, also one item of DescribeClusterNodePools'
    ``nodepools[]`` (the detail has four more keys; the SDK ignores extra keys).

    ``instances`` and ``nodes`` are the pool's, not released; ``region_id`` is the cluster's.
    Sections the request carried but the simulation does not act on (``spec.extra``) are
    echoed over the defaults; what the pool record says wins over both.
    """
    spec = pool.spec
    extra = spec.extra
    defaults = nodepool_section_defaults()
    record: dict[str, dict[str, Any]] = {
        "kubernetes_config": {
            "labels": [{"key": label.key, "value": label.value} for label in spec.labels],
            "runtime": spec.runtime,
            "runtime_version": spec.runtime_version,
            "taints": [{"effect": t.effect, "key": t.key, "value": t.value} for t in spec.taints],
            "unschedulable": spec.unschedulable,
        },
        "nodepool_info": {
            "created": _precise_time(pool.created_us, tz),
            "is_default": spec.is_default,
            "name": spec.name,
            "nodepool_id": pool.nodepool_id,
            "region_id": region_id,
            "type": spec.type,
            "updated": _precise_time(pool.updated_us, tz),
        },
        "scaling_group": {
            "desired_size": pool.desired_size,
            "image_id": spec.image_id,
            "image_type": spec.image_type,
            "instance_charge_type": spec.instance_charge_type,
            "instance_types": list(spec.instance_types),
            # A secret is never echoed, whatever the request carried.
            "login_password": "",
            "scaling_group_id": pool.scaling_group_id,
            "system_disk_category": spec.system_disk_category,
            "system_disk_size": spec.system_disk_size,
            "vswitch_ids": list(spec.vswitch_ids),
        },
    }
    document: dict[str, Any] = {}
    for key, default in defaults.items():
        if isinstance(default, dict):
            document[key] = _section(extra, key, default, **record.get(key, {}))
        elif isinstance(default, list):
            document[key] = list(extra.get(key, default))
        else:
            document[key] = type(default)(extra.get(key, default))
    document["status"] = _pool_status(pool, instances, nodes)
    return dict(sorted(document.items()))


def nodepool_section_defaults() -> dict[str, Any]:
    """What a node pool document shows for each request section nobody set: its keys and
    their types are also what a request's sections are checked against."""
    return {
        "auto_mode": {"enable": False},
        "auto_scaling": {
            "eip_bandwidth": 0,
            "eip_internet_charge_type": "",
            "enable": False,
            "is_bond_eip": False,
            "max_instances": 0,
            "min_instances": 0,
            "type": "cpu",
        },
        "eflo_node_group": {
            "auto_attach_enabled": False,
            "cluster_id": "",
            "group_id": "",
            "worker_ram_role_name": "",
        },
        "host_network": False,
        "interconnect_config": {
            "bandwidth": 0,
            "ccn_id": "",
            "ccn_region_id": "",
            "cen_id": "",
            "improved_period": "",
        },
        "interconnect_mode": "basic",
        "intranet": False,
        "kubernetes_config": {
            "cms_enabled": False,
            "cpu_policy": "none",
            "node_name_mode": "",
            "pre_user_data": "",
            "user_data": "",
        },
        "management": _management(),
        "max_nodes": 0,
        "node_components": [],
        "node_config": {
            "kubelet_configuration": _kubelet_configuration(),
            "node_os_config": _node_os(),
        },
        "nodepool_info": {"resource_group_id": ""},
        "scaling_group": _scaling_group_defaults(),
        "tee_config": {"tee_enable": False},
    }


def _pool_status(
    pool: world.NodePool, instances: Sequence[world.Instance], nodes: Sequence[world.Node]
) -> dict[str, Any]:
    """Counts over the pool's instances: one node per instance, whatever stage it is at."""
    node_of = {node.instance_id: node for node in nodes}
    counts = dict.fromkeys(("initial", "healthy", "serving", "failed", "removing", "offline"), 0)
    for instance in instances:
        node = node_of.get(instance.instance_id)
        if instance.status == "Stopping":
            counts["removing"] += 1
        elif instance.status == "Stopped":
            counts["failed"] += 1
        elif node is None or node.node_status == "NotReady":
            # Booting, or joining: a node registers NotReady before kubelet is up.
            counts["initial"] += 1
        elif node.node_status == "Ready":
            counts["healthy"] += 1
            counts["serving"] += int(node.schedulable)
        else:
            counts["offline"] += 1
    return {
        "state": pool.state,
        "total_nodes": len(instances),
        "healthy_nodes": counts["healthy"],
        "serving_nodes": counts["serving"],
        "initial_nodes": counts["initial"],
        "failed_nodes": counts["failed"],
        "removing_nodes": counts["removing"],
        "offline_nodes": counts["offline"],
        "conditions": [],
    }


def _management() -> dict[str, Any]:
    return {
        "auto_fault_diagnosis": False,
        "auto_repair": False,
        "auto_repair_policy": {
            "approval_required": False,
            "auto_repair_policy_id": "",
            "max_parallel_repairing_nodes": "",
            "max_unhealthy_nodes_threshold": "",
            "restart_node": False,
        },
        "auto_upgrade": False,
        "auto_upgrade_policy": {"auto_upgrade_kubelet": False},
        "auto_vul_fix": False,
        "auto_vul_fix_policy": {"exclude_packages": "", "restart_node": False, "vul_level": ""},
        "drift_enabled": False,
        "enable": False,
        "upgrade_config": {
            "auto_upgrade": False,
            "max_unavailable": 0,
            "surge": 0,
            "surge_percentage": 0,
        },
    }


def _kubelet_configuration() -> dict[str, Any]:
    # Kubernetes' own KubeletConfiguration names, hence camelCase.
    return {
        "allowedUnsafeSysctls": [],
        "clusterDNS": [],
        "containerLogMaxFiles": 0,
        "containerLogMaxSize": "",
        "containerLogMaxWorkers": 0,
        "containerLogMonitorInterval": "",
        "cpuCFSQuota": False,
        "cpuCFSQuotaPeriod": "",
        "cpuManagerPolicy": "",
        "eventBurst": 0,
        "eventRecordQPS": 0,
        "evictionHard": {},
        "evictionSoft": {},
        "evictionSoftGracePeriod": {},
        "featureGates": {},
        "imageGCHighThresholdPercent": 0,
        "imageGCLowThresholdPercent": 0,
        "kubeAPIBurst": 0,
        "kubeAPIQPS": 0,
        "kubeReserved": {},
        "maxPods": 0,
        "memoryManagerPolicy": "",
        "podPidsLimit": 0,
        "readOnlyPort": 0,
        "registryBurst": 0,
        "registryPullQPS": 0,
        "reservedMemory": [],
        "serializeImagePulls": False,
        "serverTLSBootstrap": False,
        "systemReserved": {},
        "topologyManagerPolicy": "",
        "tracing": {"endpoint": "", "samplingRatePerMillion": 0},
    }


def _node_os() -> dict[str, Any]:
    return {
        "hugepage": {
            "khugepagedAllocSleepMillisecs": 0,
            "khugepagedDefrag": 0,
            "khugepagedPagesToScan": 0,
            "khugepagedScanSleepMillisecs": 0,
            "transparentDefrag": "",
            "transparentEnabled": "",
        },
        "sysctl": {},
    }


def _scaling_group_defaults() -> dict[str, Any]:
    return {
        "auto_renew": False,
        "auto_renew_period": 0,
        "cis_enabled": False,
        "compensate_with_on_demand": False,
        "cpu_options": {"nested_virtualization": ""},
        "data_disks": [],
        "deploymentset_id": "",
        "disk_init": [],
        "enable_high_density_mode": False,
        "instance_metadata_options": {"http_tokens": ""},
        "instance_patterns": [],
        "internet_charge_type": "",
        "internet_max_bandwidth_out": 0,
        "key_pair": "",
        "login_as_non_root": False,
        "login_password": "",
        "multi_az_policy": "PRIORITY",
        "on_demand_base_capacity": 0,
        "on_demand_percentage_above_base_capacity": 0,
        "period": 0,
        "period_unit": "",
        "platform": "linux",
        "private_pool_options": {"id": "", "match_criteria": ""},
        "ram_policy": "",
        "ram_role_name": "",
        "rds_instances": [],
        "resource_pool_options": {"private_pool_ids": [], "strategy": ""},
        "scaling_policy": "release",
        "security_group_id": "",
        "security_group_ids": [],
        "security_hardening_os": False,
        "soc_enabled": False,
        "spot_instance_pools": 0,
        "spot_instance_remedy": False,
        "spot_price_limit": [],
        "spot_strategy": "NoSpot",
        "system_disk_bursting_enabled": False,
        "system_disk_categories": [],
        "system_disk_encrypt_algorithm": "",
        "system_disk_encrypted": False,
        "system_disk_kms_key_id": "",
        "system_disk_performance_level": "",
        "system_disk_provisioned_iops": 0,
        "system_disk_snapshot_policy_id": "",
        "tags": [],
    }


def _deep(defaults: Mapping[str, Any], given: object) -> dict[str, Any]:
    """``defaults`` with what was given over them, object by object."""
    out = dict(defaults)
    for key, value in _mapping(given).items():
        old = out.get(key)
        out[key] = _deep(old, value) if isinstance(old, Mapping) else value
    return out


def _section(
    extra: Mapping[str, Any], section: str, defaults: Mapping[str, Any], /, **record: Any
) -> dict[str, Any]:
    """``defaults``, then what the request carried under ``section``, then the record's."""
    return {**defaults, **_mapping(extra.get(section)), **record}


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# -- nodes -------------------------------------------------------------------------------------


def node_document(
    node: world.Node | None, instance: world.Instance | None, tz: str = "UTC"
) -> dict[str, Any]:
    """One item of DescribeClusterNodes' ``nodes[]``, from a node and the instance under it.

    Either may be missing: an instance that has not joined yet is listed already (ACK does
    too), with empty node fields; a node whose instance is unknown gets empty instance
    fields.
    """
    doc: dict[str, Any] = {
        "creation_time": _node_time(node.created_us, tz) if node else "",
        "error_message": "",
        "expired_time": "",
        "host_name": "",
        "image_id": "",
        "instance_charge_type": "",
        "instance_id": node.instance_id if node else "",
        "instance_name": "",
        "instance_role": "Worker",
        "instance_status": "",
        "instance_type": "",
        "instance_type_family": "",
        "ip_address": [],
        "is_aliyun_node": True,
        "node_name": node.node_name if node else "",
        "node_status": node.node_status if node else "Unknown",
        "nodepool_id": node.nodepool_id if node else "",
        "source": "ess" if node and node.nodepool_id else "manual",
        "spot_strategy": "NoSpot",
        "state": "",
    }
    if instance is not None:
        doc.update(
            creation_time=_node_time(instance.created_us, tz),
            expired_time=_POSTPAID_EXPIRY if instance.instance_charge_type == "PostPaid" else "",
            # ECS's default host name for an instance.
            host_name=f"iZ{instance.instance_id.removeprefix('i-')}Z",
            image_id=instance.image_id,
            instance_charge_type=instance.instance_charge_type,
            instance_id=instance.instance_id,
            instance_name=f"worker-k8s-for-cs-{instance.cluster_id}",
            instance_status=instance.status,
            instance_type=instance.instance_type,
            instance_type_family=instance.instance_type.rsplit(".", 1)[0],
            ip_address=[instance.ip_address],
            nodepool_id=instance.nodepool_id,
            source="ess" if instance.nodepool_id else "manual",
            state=instance.status.lower(),
        )
    return doc


# -- time --------------------------------------------------------------------------------------


def _as_datetime(us: int, tz: str) -> dt.datetime:
    seconds, micros = divmod(us, 1_000_000)
    return dt.datetime.fromtimestamp(seconds, timefmt.zone(tz)).replace(microsecond=micros)


def _precise_time(us: int, tz: str) -> str:
    """Node pool times: RFC 3339 with a fraction, ``2025-04-10T14:25:37.285530+08:00``."""
    return _as_datetime(us, tz).isoformat(timespec="microseconds")


def _node_time(us: int, tz: str) -> str:
    """Node times: ``2025-04-16T07:28:00Z`` in UTC, a numeric offset elsewhere."""
    moment = _as_datetime(us, tz).replace(microsecond=0)
    if moment.utcoffset() == dt.timedelta(0):
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.isoformat()


def _capabilities(extra: Mapping[str, Any]) -> dict[str, Any]:
    """``meta_data.Capabilities``: where Terraform reads a cluster's secret encryption."""
    encryption = extra.get("encryption")
    if not isinstance(encryption, Mapping):
        return {}
    return {
        "DisableEncryption": bool(encryption.get("disabled", False)),
        "EncryptionKMSKeyId": str(encryption.get("kms_key_id", "")),
    }
