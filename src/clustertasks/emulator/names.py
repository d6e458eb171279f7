"""Ids and addresses the simulated cloud derives from idempotency keys.

Hashed with a salt: the ``SimSettings.seed`` when there is one (so the same keys give the
same ids on every run), otherwise a random salt per cloud.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import string
from collections.abc import Set as AbstractSet

from clustertasks import errors
from clustertasks.emulator import catalogue

_BASE36 = string.digits + string.ascii_lowercase


class Names:
    """Ids and addresses derived from idempotency keys: the same salt and key always give
    the same answer, different keys practically never collide."""

    def __init__(self, salt: str) -> None:
        self._salt = salt

    def instance_id(self, key: str) -> str:
        return "i-" + self._base36("instance", key, 20)

    def vpc_id(self, key: str) -> str:
        return "vpc-" + self._base36("vpc", key, 24)

    def security_group_id(self, key: str) -> str:
        return "sg-" + self._base36("security-group", key, 20)

    def scaling_group_id(self, key: str) -> str:
        return "asg-" + self._base36("scaling-group", key, 20)

    def address(self, key: str, used: AbstractSet[str]) -> str:
        """A host address of the VPC not in ``used``.

        Probes start at a point derived from the key and step by a stride coprime with the
        number of hosts, so the probes visit every host once before repeating: the first
        free one is found whenever there is one, and it does not depend on the order in
        which other instances were made.
        """
        network = ipaddress.IPv4Network(catalogue.VPC_CIDR)
        hosts = network.num_addresses - 2  # neither the network nor the broadcast address
        digest = int.from_bytes(self._digest("address", key), "big")
        start = digest % hosts
        stride = (digest >> 64) % hosts | 1
        while math.gcd(stride, hosts) != 1:
            stride += 2
        first_host = int(network.network_address) + 1
        for probe in range(hosts):
            candidate = str(ipaddress.IPv4Address(first_host + (start + probe * stride) % hosts))
            if candidate not in used:
                return candidate
        raise errors.InstanceCreateFailed(f"no free address left in {catalogue.VPC_CIDR}")

    def _digest(self, kind: str, key: str) -> bytes:
        return hashlib.sha256(f"{self._salt}:{kind}:{key}".encode()).digest()

    def _base36(self, kind: str, key: str, length: int) -> str:
        number = int.from_bytes(self._digest(kind, key), "big")
        chars = []
        for _ in range(length):
            number, digit = divmod(number, 36)
            chars.append(_BASE36[digit])
        return "".join(chars)
