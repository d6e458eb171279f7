"""The add-ons the simulated ACK offers (ListAddons, DescribeAddon) and how a cluster's
installed add-ons are kept: in its spec's ``extra["addons"]``, by name, each
``{name, version, config, state, task_id}``.

Add-on ``state``: ``installing``, ``active``, ``upgrading``, ``updating``, ``deleting`` or
``failed``. The catalogue is data: versions oldest first, the last one current.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ACTIONS = ("install", "upgrade", "uninstall", "modify")


@dataclass(frozen=True, slots=True)
class AddonInfo:
    name: str
    category: str
    versions: Sequence[str]
    install_by_default: bool = False
    managed: bool = False
    config_schema: str = "{}"

    @property
    def latest(self) -> str:
        return self.versions[-1]

    def newer(self, version: str) -> list[str]:
        """The versions after ``version`` (all of them when it is not one of ours)."""
        if version not in self.versions:
            return list(self.versions)
        return list(self.versions[self.versions.index(version) + 1 :])


CATALOGUE: tuple[AddonInfo, ...] = (
    AddonInfo("ack-node-problem-detector", "logging", ("1.2.19", "1.2.20")),
    # What Terraform's serverless cluster adds when sls_project_name is set.
    AddonInfo("alibaba-log-controller", "logging", ("v0.5.0.0-aliyun", "v0.6.0.0-aliyun")),
    AddonInfo("arms-prometheus", "monitor", ("1.1.20", "1.1.21")),
    AddonInfo(
        "coredns",
        "network",
        ("v1.11.3.2-f57ea7ed6-aliyun", "v1.11.3.5-9d1f6bd2-aliyun"),
        install_by_default=True,
        managed=True,
    ),
    AddonInfo(
        "csi-plugin",
        "storage",
        ("v1.30.1-98960f2-aliyun", "v1.31.3-b3b8a3c-aliyun"),
        install_by_default=True,
    ),
    AddonInfo(
        "csi-provisioner",
        "storage",
        ("v1.30.1-98960f2-aliyun", "v1.31.3-b3b8a3c-aliyun"),
        install_by_default=True,
        managed=True,
    ),
    AddonInfo("flannel", "network", ("v0.15.1.22-20a397e6-aliyun", "v0.15.1.24-aliyun")),
    AddonInfo("logtail-ds", "logging", ("v1.7.4.0-aliyun", "v1.8.0.0-aliyun")),
    AddonInfo(
        "metrics-server",
        "system",
        ("v0.3.9.4-ff225cd-aliyun", "v0.3.9.7-7d8ba04-aliyun"),
        install_by_default=True,
        managed=True,
    ),
    AddonInfo(
        "nginx-ingress-controller",
        "network",
        ("v1.9.3-aliyun.1", "v1.10.2-aliyun.1"),
        config_schema='{"type": "object", "properties": {"replicas": {"type": "integer"}}}',
    ),
    AddonInfo("terway-eniip", "network", ("v1.8.2", "v1.9.0")),
)
_BY_NAME = {info.name: info for info in CATALOGUE}


def find(name: str) -> AddonInfo | None:
    return _BY_NAME.get(name)


def installed(extra: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A cluster's add-ons by name, from its spec's ``extra``."""
    found = extra.get("addons", {})
    if not isinstance(found, Mapping):
        return {}
    return {str(name): dict(record) for name, record in found.items()}
