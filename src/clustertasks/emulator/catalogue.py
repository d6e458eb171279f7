"""What the simulated cloud sells: instance types, regions and their zones, stock.

A small, realistic subset of Alibaba Cloud's catalogue. Every type is offered in every zone
with the same starting stock; ``SimCloud.set_stock`` changes one (type, zone) to provoke a
stock-out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from clustertasks import errors

DEFAULT_STOCK = 1_000
"""Instances of one type one zone can still supply before anyone calls ``set_stock``."""

VPC_CIDR = "192.168.0.0/16"
"""The private range node addresses come from (ACK's default VPC CIDR)."""


@dataclass(frozen=True, slots=True)
class InstanceType:
    name: str
    family: str
    vcpu: int
    memory_gib: int


def _types(*rows: tuple[str, int, int]) -> dict[str, InstanceType]:
    return {
        name: InstanceType(name=name, family=name.rsplit(".", 1)[0], vcpu=vcpu, memory_gib=memory)
        for name, vcpu, memory in rows
    }


INSTANCE_TYPES = _types(
    # general purpose: 1 vCPU : 4 GiB
    ("ecs.g7.large", 2, 8),
    ("ecs.g7.xlarge", 4, 16),
    ("ecs.g7.2xlarge", 8, 32),
    ("ecs.g7.4xlarge", 16, 64),
    ("ecs.g6.large", 2, 8),
    ("ecs.g6.xlarge", 4, 16),
    ("ecs.g8i.large", 2, 8),
    ("ecs.g8i.xlarge", 4, 16),
    # compute optimised: 1 vCPU : 2 GiB
    ("ecs.c7.large", 2, 4),
    ("ecs.c7.xlarge", 4, 8),
    ("ecs.c7.2xlarge", 8, 16),
    ("ecs.c6.large", 2, 4),
    # memory optimised: 1 vCPU : 8 GiB
    ("ecs.r7.large", 2, 16),
    ("ecs.r7.xlarge", 4, 32),
    ("ecs.r7.2xlarge", 8, 64),
)

REGIONS: dict[str, tuple[str, ...]] = {
    "cn-hangzhou": ("cn-hangzhou-h", "cn-hangzhou-i", "cn-hangzhou-j", "cn-hangzhou-k"),
    "cn-beijing": ("cn-beijing-g", "cn-beijing-h", "cn-beijing-i", "cn-beijing-k"),
    "cn-shanghai": ("cn-shanghai-e", "cn-shanghai-f", "cn-shanghai-g", "cn-shanghai-l"),
    "cn-shenzhen": ("cn-shenzhen-c", "cn-shenzhen-d", "cn-shenzhen-e"),
    "cn-zhangjiakou": ("cn-zhangjiakou-a", "cn-zhangjiakou-b", "cn-zhangjiakou-c"),
    "cn-hongkong": ("cn-hongkong-b", "cn-hongkong-c", "cn-hongkong-d"),
    "ap-southeast-1": ("ap-southeast-1a", "ap-southeast-1b", "ap-southeast-1c"),
    "ap-northeast-1": ("ap-northeast-1a", "ap-northeast-1b"),
    "eu-central-1": ("eu-central-1a", "eu-central-1b"),
    "us-west-1": ("us-west-1a", "us-west-1b"),
    "us-east-1": ("us-east-1a", "us-east-1b"),
}


# The image a pool's nodes boot when it names an OS (``image_type``) but no ``image_id``.
IMAGES: dict[str, str] = {
    "AliyunLinux3": "aliyun_3_x64_20G_alibase_20240819.vhd",
    "AliyunLinux3Arm64": "aliyun_3_arm64_20G_alibase_20240819.vhd",
    "ContainerOS": "lifsea_3_x64_10G_containerd_1_6_28_alibase_20240319.vhd",
    "Ubuntu": "ubuntu_22_04_x64_20G_alibase_20240710.vhd",
}


def image_for(image_type: str) -> str:
    return IMAGES.get(image_type, IMAGES["AliyunLinux3"])


def instance_type(name: str) -> InstanceType | None:
    return INSTANCE_TYPES.get(name)


def unknown_instance_types(names: Iterable[str]) -> list[str]:
    """The names that are not in the catalogue, in the order given."""
    return [name for name in names if name not in INSTANCE_TYPES]


# Alibaba Cloud region ids: cn-qingdao, ap-southeast-5, me-east-1, cn-hangzhou-finance …
_REGION_ID_RE = re.compile(r"^[a-z]{2,}(-[a-z0-9]+){1,3}$")


def zones(region_id: str) -> Sequence[str]:
    """The region's zones.

    A well-formed region the catalogue does not list gets zones ``<region>-a``, ``-b`` and
    ``-c``: clients under test may use any real region, and refusing one we merely did not
    list would fail them for nothing. Raises ``errors.InvalidParameter`` for anything that
    is not a region id.
    """
    found = REGIONS.get(region_id)
    if found is not None:
        return found
    if _REGION_ID_RE.fullmatch(region_id) is None:
        raise errors.InvalidParameter("region_id", f"{region_id!r} is not a region id")
    return tuple(f"{region_id}-{letter}" for letter in "abc")


def zone_of_vswitch(region_id: str, vswitch_id: str) -> str:
    """The zone a vSwitch lives in.

    A vSwitch id that names one of the region's zones (``vsw-cn-hangzhou-k-01``) is in that
    zone, so tests and users can place pools on purpose; any other id is hashed onto a zone,
    which keeps the answer the same on every run and every machine.
    """
    candidates = zones(region_id)
    named = [zone for zone in candidates if zone in vswitch_id]
    if named:
        return max(named, key=len)
    digest = hashlib.sha256(f"{region_id}:{vswitch_id}".encode()).digest()
    return candidates[int.from_bytes(digest[:8], "big") % len(candidates)]
