"""The Eviction API's arithmetic and the scheduler's choice, as pure functions."""

from __future__ import annotations

import pytest

from clustertasks.domain import versions, workloads


def _pod(name: str, node: str = "n1", app: str = "web") -> workloads.Pod:
    phase = workloads.RUNNING if node else workloads.PENDING
    return workloads.Pod("c1", name, app, workloads.DEPLOYMENT, node, phase, 100, {"app": app})


def _budget(**limits: int) -> workloads.DisruptionBudget:
    return workloads.DisruptionBudget("c1", "web-pdb", {"app": "web"}, **limits)


PODS = [_pod("web-0", "n1"), _pod("web-1", "n2"), _pod("web-2", ""), _pod("db-0", "n1", "db")]


@pytest.mark.parametrize(
    ("limits", "allowed"),
    [
        ({"min_available": 1}, 1),
        ({"min_available": 2}, 0),
        ({"max_unavailable": 1}, 0),
        ({"max_unavailable": 2}, 1),
        ({}, 3),
    ],
)
def test_disruptions_allowed_counts_healthy_pods_of_the_selector(
    limits: dict[str, int], allowed: int
) -> None:
    assert workloads.disruptions_allowed(_budget(**limits), PODS) == allowed


def test_the_first_budget_that_allows_nothing_blocks() -> None:
    loose = workloads.DisruptionBudget("c1", "loose", {"app": "web"}, min_available=0)
    tight = _budget(min_available=2)
    assert workloads.blocking_budget(PODS[0], [loose, tight], PODS) == tight
    assert workloads.blocking_budget(PODS[3], [loose, tight], PODS) is None
    assert not workloads.matches({}, {"app": "web"})


def test_choose_node_takes_the_emptiest_that_fits() -> None:
    assert workloads.choose_node(500, {"n1": 600, "n2": 1500, "n3": 1500}) == "n2"
    assert workloads.choose_node(2000, {"n1": 600}) == ""


def test_versions_compare_as_numbers() -> None:
    assert versions.key("1.31.10-aliyun.1") > versions.key("1.31.9-aliyun.1")
    assert versions.minor("1.32.1-aliyun.1") == (1, 32)
