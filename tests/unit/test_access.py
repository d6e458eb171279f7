"""Roles and the per-key rate limit: pure rules, no I/O."""

from __future__ import annotations

import pytest

from clustertasks import clock
from clustertasks.domain import access
from clustertasks.service import auth as auth_service

ADMIN, OPS, RO = access.Role.ADMIN, access.Role.OPERATOR, access.Role.READONLY


@pytest.mark.parametrize(
    ("role", "action", "method", "path", "allowed"),
    [
        (RO, "DescribeTaskInfo", "GET", "/tasks/T-1", True),
        (RO, "DescribeClusterNodePools", "GET", "/clusters/c/nodepools", True),
        (RO, "ScaleClusterNodePool", "POST", "/clusters/c/nodepools/np", False),
        (RO, "CancelTask", "POST", "/tasks/T-1/cancel", False),
        (RO, "DeleteCluster", "DELETE", "/clusters/c", False),
        (OPS, "ScaleClusterNodePool", "POST", "/clusters/c/nodepools/np", True),
        (OPS, "DeleteCluster", "DELETE", "/clusters/c", True),
        (OPS, "SetFault", "POST", "/_emulator/faults", False),
        (RO, "DescribeFaults", "GET", "/_emulator/faults", False),
        (ADMIN, "SetFault", "POST", "/_emulator/faults", True),
        (ADMIN, "DeleteCluster", "DELETE", "/clusters/c", True),
    ],
)
def test_permits(role: access.Role, action: str, method: str, path: str, allowed: bool) -> None:
    assert access.permits(role, action, method, path) is allowed


def test_new_keys_are_unique_and_their_repr_hides_the_secret() -> None:
    keys = {access.new_key(RO, "", 0).access_key_id for _ in range(100)}
    assert len(keys) == 100
    key = access.new_key(ADMIN, "ci", 0)
    assert key.access_key_id.startswith("CTAK")
    assert len(key.secret) == access.SECRET_LENGTH
    assert key.secret not in repr(key)


def test_rate_limiter_allows_a_burst_then_refills_at_the_rate() -> None:
    time = clock.FixedClock(0)
    limiter = auth_service.RateLimiter(rate_per_second=2.0, burst=3, time=time)
    assert [limiter.take("k") for _ in range(3)] == [None, None, None]
    wait_ms = limiter.take("k")
    assert wait_ms is not None
    assert 499 <= wait_ms <= 501
    assert limiter.take("other") is None  # buckets are per key
    time.advance(wait_ms / 1000)
    assert limiter.take("k") is None
    assert limiter.take("k") is not None
    time.advance(60)
    assert [limiter.take("k") for _ in range(3)] == [None, None, None]  # never beyond the burst
    assert limiter.take("k") is not None
