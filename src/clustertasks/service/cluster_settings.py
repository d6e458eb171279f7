"""A cluster's settings after it exists: ModifyCluster (a task), tags and resource deletion
protection (changed at once, as ACK does), and the reads a managed cluster's refresh makes
(control-plane logging, kubeconfig, resources).

As everywhere in ``service``, a request is checked whole before anything changes.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from clustertasks import clock, errors
from clustertasks.domain import cluster_fields, params, records, specs, timefmt, world
from clustertasks.providers import inventory
from clustertasks.service import cloud, control, submission

MAX_TAGS = 20
PRO_EDITIONS = ("ack.pro.small", "ack.pro.xlarge", "ack.pro.2xlarge", "ack.pro.4xlarge")
PROTECTABLE = ("namespaces", "services")


class ClusterSettings:
    def __init__(
        self,
        provider: inventory.Inventory,
        task_control: control.TaskControl,
        clouds: cloud.CloudService,
        wall_clock: clock.Clock,
    ) -> None:
        self._cloud = provider
        self._control = task_control
        self._clouds = clouds
        self._clock = wall_clock

    # -- ModifyCluster ---------------------------------------------------------------------

    def modify_cluster(self, cluster_id: str, body: Mapping[str, Any]) -> submission.Submitted:
        cluster = self._modifiable(cluster_id)
        spec = cluster.spec
        name = params.text(body, "cluster_name", default=spec.name, max_length=63)
        if name != spec.name:
            for other in self._cloud.list_clusters():
                if other.spec.name == name and other.cluster_id != cluster.cluster_id:
                    raise errors.ClusterNameTaken(name, other.cluster_id)
        extra = cluster_fields.kept(body, spec.extra)
        vswitches = params.text_list(body, "vswitch_ids")
        new = dataclasses.replace(
            spec,
            name=name,
            deletion_protection=params.boolean(
                body, "deletion_protection", default=spec.deletion_protection
            ),
            resource_group_id=params.text(
                body, "resource_group_id", default=spec.resource_group_id
            ),
            timezone=params.text(body, "timezone", default=spec.timezone),
            cluster_spec=params.text(body, "cluster_spec", default=spec.cluster_spec),
            vswitch_ids=tuple(vswitches) if vswitches else spec.vswitch_ids,
            extra=extra,
        )
        outcome = self._control.submit(
            "cluster_update",
            cluster_id=cluster.cluster_id,
            target=records.Target(cluster.cluster_id, "cluster"),
            parameters={"spec": specs.to_json(new)},
            accepted=self._cloud.shown_at_once(cluster.cluster_id, cluster_state="updating"),
            client_token=params.text(body, "client_token", max_length=64) or None,
            # What the client asked for, not the spec it makes: a retry after the change
            # (or after another one) asks for the same. No password goes into the digest.
            request={
                "cluster_id": cluster.cluster_id,
                "body": {
                    k: v for k, v in body.items() if k != "client_token" and "password" not in k
                },
            },
        )
        return submission.Submitted(outcome.task, cluster_id=cluster.cluster_id)

    def _modifiable(self, cluster_id: str) -> world.Cluster:
        cluster = self._clouds.cluster(cluster_id)
        if cluster.state not in ("running", "updating"):
            raise errors.ClusterStateError(
                f"cluster {cluster.cluster_id} is {cluster.state}: only a running cluster "
                "can be modified"
            )
        return cluster

    def _update_extra(self, cluster: world.Cluster, key: str, value: Any) -> submission.Submitted:
        """A ``cluster_update`` task that sets ``extra[key]`` (the cluster ``updating`` from
        the answer on, as Terraform's wait for ``running`` expects)."""
        return self._update(cluster, {"extra": {key: value}}, "updating")

    def _update(
        self, cluster: world.Cluster, parameters: Mapping[str, Any], during: str
    ) -> submission.Submitted:
        outcome = self._control.submit(
            "cluster_update",
            cluster_id=cluster.cluster_id,
            target=records.Target(cluster.cluster_id, "cluster"),
            parameters={**parameters, "state": during},
            accepted=self._cloud.shown_at_once(cluster.cluster_id, cluster_state=during),
        )
        return submission.Submitted(outcome.task, cluster_id=cluster.cluster_id)

    # -- encryption and edition ------------------------------------------------------------

    def update_kms_encryption(
        self, cluster_id: str, body: Mapping[str, Any]
    ) -> submission.Submitted:
        """UpdateKMSEncryption: turn secret encryption on with ``kms_key_id``, or off with
        ``disable_encryption``; a task."""
        cluster = self._modifiable(cluster_id)
        disable = params.boolean(body, "disable_encryption")
        stored = dict(cluster.spec.extra.get("encryption", {}))
        key = params.text(
            body, "kms_key_id", default=str(stored.get("kms_key_id", "")), max_length=128
        )
        if not disable and not key:
            raise errors.InvalidParameter("kms_key_id", "is required to turn encryption on")
        return self._update_extra(cluster, "encryption", {"disabled": disable, "kms_key_id": key})

    def migrate_cluster(self, cluster_id: str, body: Mapping[str, Any]) -> submission.Submitted:
        """MigrateCluster: an ``ack.standard`` cluster becomes ``ack.pro.small`` (or the Pro
        edition ``spec`` names); ``migrating`` until its task ends, as Terraform waits."""
        cluster = self._modifiable(cluster_id)
        edition = params.text(body, "spec", default="ack.pro.small")
        if edition not in PRO_EDITIONS:
            raise errors.InvalidParameter("spec", f"must be one of {', '.join(PRO_EDITIONS)}")
        if cluster.spec.cluster_spec != "ack.standard":
            raise errors.ClusterStateError(
                f"cluster {cluster.cluster_id} is {cluster.spec.cluster_spec}: only an "
                "ack.standard cluster is migrated"
            )
        return self._update(cluster, {"cluster_spec": edition}, "migrating")

    # -- control-plane and audit logging ---------------------------------------------------

    def update_control_plane_log(
        self, cluster_id: str, body: Mapping[str, Any]
    ) -> submission.Submitted:
        """UpdateControlPlaneLog: a task; what is not sent keeps its value."""
        cluster = self._modifiable(cluster_id)
        config = cluster_fields.control_plane_log(
            body, cluster.spec.extra.get("control_plane_log", {})
        )
        return self._update_extra(cluster, "control_plane_log", config)

    def control_plane_log(self, cluster_id: str) -> dict[str, Any]:
        cluster = self._clouds.cluster(cluster_id)
        config = cluster_fields.merged(
            {"log_project": "", "log_ttl": "30", "components": []},
            cluster.spec.extra.get("control_plane_log", {}),
        )
        return {
            "aliuid": str(config.get("aliuid", "")),
            "components": list(config["components"]),
            "log_project": config["log_project"] or f"k8s-log-{cluster.cluster_id}",
            "log_ttl": str(config["log_ttl"]),
        }

    def update_audit_log_config(
        self, cluster_id: str, body: Mapping[str, Any]
    ) -> submission.Submitted:
        """UpdateClusterAuditLogConfig: a task; ``disable`` turns auditing off."""
        cluster = self._modifiable(cluster_id)
        stored = dict(cluster.spec.extra.get("audit_log", {}))
        config = {
            "enabled": not params.boolean(body, "disable"),
            "sls_project_name": params.text(
                body,
                "sls_project_name",
                default=str(stored.get("sls_project_name", "")),
                max_length=128,
            ),
        }
        return self._update_extra(cluster, "audit_log", config)

    def audit_project(self, cluster_id: str) -> dict[str, Any]:
        """GetClusterAuditProject: on unless turned off, in the cluster's default project."""
        cluster = self._clouds.cluster(cluster_id)
        config = dict(cluster.spec.extra.get("audit_log", {}))
        enabled = bool(config.get("enabled", False))
        project = str(config.get("sls_project_name", ""))
        if enabled and not project:
            project = f"k8s-log-{cluster.cluster_id}"
        return {"audit_enabled": enabled, "sls_project_name": project}

    # -- tags ------------------------------------------------------------------------------

    def modify_cluster_tags(self, cluster_id: str, tags: Any) -> None:
        """ModifyClusterTags: the body is the list of tags to add or change."""
        cluster = self._clouds.cluster(cluster_id)
        if not isinstance(tags, list):
            raise errors.InvalidParameter("body", "must be a list of tags")
        changes = _tags({"tags": tags}, "tags")
        self._edit_tags(cluster, lambda current: _upsert(current, changes))

    def tag_resources(self, body: Mapping[str, Any]) -> None:
        clusters = self._targets(body, params.text_list)
        tags = _tags(body, "tags")
        if not tags:
            raise errors.InvalidParameter("tags", "is required")
        for cluster in clusters:
            self._edit_tags(cluster, lambda current: _upsert(current, tags))

    def untag_resources(self, query: Mapping[str, Any]) -> None:
        clusters = self._targets(query, _json_texts)
        remove_all = params.boolean(query, "all")
        keys = set(_json_texts(query, "tag_keys"))
        if not keys and not remove_all:
            raise errors.InvalidParameter("tag_keys", "name at least one key, or set all=true")
        for cluster in clusters:
            self._edit_tags(
                cluster,
                lambda current: [] if remove_all else [t for t in current if t.key not in keys],
            )

    def list_tag_resources(self, query: Mapping[str, Any]) -> list[dict[str, str]]:
        clusters = self._targets(query, _json_texts)
        wanted = _tags({"tags": _json_value(query, "tags") or []}, "tags")
        rows = []
        for cluster in clusters:
            for tag in cluster.spec.tags:
                if wanted and not any(
                    w.key == tag.key and w.value in ("", tag.value) for w in wanted
                ):
                    continue
                rows.append(
                    {
                        "resource_id": cluster.cluster_id,
                        "resource_type": "CLUSTER",
                        "tag_key": tag.key,
                        "tag_value": tag.value,
                    }
                )
        return rows

    def _targets(self, source: Mapping[str, Any], read: Any) -> list[world.Cluster]:
        params.text(source, "region_id", required=True)
        kind = params.text(source, "resource_type", required=True)
        if kind.upper() != "CLUSTER":
            raise errors.InvalidParameter("resource_type", "must be CLUSTER")
        ids = read(source, "resource_ids")
        if not ids:
            raise errors.InvalidParameter("resource_ids", "is required")
        return [self._clouds.cluster(cluster_id) for cluster_id in ids]

    def _edit_tags(
        self,
        cluster: world.Cluster,
        change: Callable[[Sequence[world.Label]], Sequence[world.Label]],
    ) -> None:
        """Tags are changed on the spec as stored, not as read before: an add-on task
        writing the spec meanwhile loses nothing, nor does this."""

        def apply(spec: world.ClusterSpec) -> world.ClusterSpec:
            tags = tuple(change(spec.tags))
            if len(tags) > MAX_TAGS:
                raise errors.InvalidParameter("tags", f"a cluster has at most {MAX_TAGS} tags")
            return dataclasses.replace(spec, tags=tags)

        self._cloud.edit_cluster_spec(cluster.cluster_id, apply)

    # -- deletion protection of Kubernetes resources ---------------------------------------

    def update_resources_delete_protection(
        self, cluster_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        cluster = self._clouds.cluster(cluster_id)
        kind = params.text(body, "resource_type", required=True)
        if kind not in PROTECTABLE:
            raise errors.InvalidParameter("resource_type", "must be namespaces or services")
        namespace = params.text(body, "namespace", default="default")
        names = params.text_list(body, "resources")
        if not names:
            raise errors.InvalidParameter("resources", "is required")
        enable = params.boolean(body, "enable")
        scope = kind if kind == "namespaces" else f"services/{namespace}"

        def apply(spec: world.ClusterSpec) -> world.ClusterSpec:
            protected = {
                key: list(value)
                for key, value in dict(spec.extra.get("protected_resources", {})).items()
            }
            current = set(protected.get(scope, []))
            current = current | set(names) if enable else current - set(names)
            protected[scope] = sorted(current)
            return dataclasses.replace(spec, extra={**spec.extra, "protected_resources": protected})

        self._cloud.edit_cluster_spec(cluster.cluster_id, apply)
        return {
            "namespace": namespace if kind == "services" else "",
            "protection": "enabled" if enable else "disabled",
            "resource_type": kind,
            "resources": names,
        }

    # -- what a managed cluster's refresh reads --------------------------------------------

    def user_kubeconfig(
        self, cluster_id: str, private: bool, minutes: int | None
    ) -> dict[str, str]:
        """A kubeconfig for the simulated API server; its token is not a credential
        anything accepts."""
        cluster = self._clouds.cluster(cluster_id)
        lifetime = dt.timedelta(minutes=minutes) if minutes else dt.timedelta(days=3 * 365)
        expires_us = self._clock.now_us() + int(lifetime.total_seconds() * 1_000_000)
        host = "192.168.0.1" if private else f"{cluster.cluster_id}.k8s.clustertasks.local"
        authority = base64.b64encode(f"simulated CA of {cluster.cluster_id}".encode()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubernetes",
                    "cluster": {
                        "server": f"https://{host}:6443",
                        "certificate-authority-data": authority,
                    },
                }
            ],
            "contexts": [
                {
                    "name": f"kubernetes-admin-{cluster.cluster_id}",
                    "context": {"cluster": "kubernetes", "user": "kubernetes-admin"},
                }
            ],
            "current-context": f"kubernetes-admin-{cluster.cluster_id}",
            "users": [{"name": "kubernetes-admin", "user": {"token": "simulated"}}],
        }
        return {
            "config": json.dumps(config, indent=2),
            "expiration": timefmt.rfc3339(expires_us, "UTC"),
        }

    def cluster_resources(self, cluster_id: str) -> list[dict[str, Any]]:
        """The cloud resources ACK made for the cluster: its VPC and security group, and a
        scaling group per node pool."""
        cluster = self._clouds.cluster(cluster_id)
        created = timefmt.rfc3339(cluster.created_us, "UTC")

        def item(kind: str, resource_id: str) -> dict[str, Any]:
            return {
                "cluster_id": cluster.cluster_id,
                "created": created,
                "instance_id": resource_id,
                "resource_info": "",
                "resource_type": kind,
                "state": "Complete",
                "auto_create": 1,
                "dependencies": [],
                "associated_object": {},
                "delete_behavior": {},
                "creator_type": "",
                "extra_info": {},
            }

        found = [
            item("ALIYUN::ECS::VPC", cluster.vpc_id),
            item("ALIYUN::ECS::SecurityGroup", cluster.security_group_id),
        ]
        for pool in self._cloud.list_nodepools(cluster.cluster_id):
            found.append(item("ALIYUN::ESS::ScalingGroup", pool.scaling_group_id))
        return found


def _tags(parent: Mapping[str, Any], key: str) -> list[world.Label]:
    out = []
    for index, item in enumerate(params.object_list(parent, key, max_items=MAX_TAGS)):
        where = f"{key}[{index}]."
        out.append(
            world.Label(
                key=params.text(item, "key", where, required=True, max_length=128),
                value=params.text(item, "value", where, max_length=128),
            )
        )
    return out


def _upsert(current: Sequence[world.Label], changes: Sequence[world.Label]) -> list[world.Label]:
    merged = {tag.key: tag for tag in current}
    for tag in changes:
        merged[tag.key] = tag
    return list(merged.values())


def _json_value(source: Mapping[str, Any], key: str) -> Any:
    value = source.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise errors.InvalidParameter(key, "must be a JSON array") from None
    return value


def _json_texts(source: Mapping[str, Any], key: str) -> list[str]:
    """The SDK sends these lists as JSON text in the query string."""
    return params.text_list({key: _json_value(source, key)}, key)
