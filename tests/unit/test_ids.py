from __future__ import annotations

import random

from clustertasks.domain import ids


def test_task_id_format_and_time_order() -> None:
    gen = ids.IdGenerator()
    base = 1_700_000_000_000_000
    made = [gen.task_id(base + i * 1_000_000) for i in range(50)]
    for task_id in made:
        assert ids.TASK_ID_RE.fullmatch(task_id), task_id
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    # The first 4 bytes are the creation second.
    assert int(made[0][2:10], 16) == base // 1_000_000


def test_task_ids_within_one_second_are_unique_and_ordered() -> None:
    gen = ids.IdGenerator()
    made = [gen.task_id(1_700_000_000_000_000) for _ in range(1000)]
    assert len(set(made)) == 1000
    # The counter wraps at 2**24; far from here, so the ids also sort in creation order.
    assert made == sorted(made) or made[0] > made[-1]


def test_two_generators_differ_in_their_random_part() -> None:
    a = ids.IdGenerator(random.Random(1)).task_id(0)
    b = ids.IdGenerator(random.Random(2)).task_id(0)
    assert a[10:20] != b[10:20]


def test_seeded_generators_repeat_every_id() -> None:
    def run(seed: int) -> list[str]:
        gen = ids.IdGenerator(random.Random(seed))
        return [
            gen.task_id(1_700_000_000_000_000),
            gen.cluster_id(),
            gen.nodepool_id(),
            gen.instance_id(),
        ]

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_resource_id_formats() -> None:
    gen = ids.IdGenerator()
    assert ids.CLUSTER_ID_RE.fullmatch(gen.cluster_id())
    assert ids.NODEPOOL_ID_RE.fullmatch(gen.nodepool_id())
    assert ids.INSTANCE_ID_RE.fullmatch(gen.instance_id())
    assert ids.node_name("cn-hangzhou", "192.168.0.12") == "cn-hangzhou.192.168.0.12"


def test_lookup_ids() -> None:
    for good in ("T-5faa48fb31b6b8078d000006", "install-addons-c3xxxxxx", "c1", "np-1.a:b"):
        assert ids.is_lookup_id(good)
    for bad in ("", "a/b", "a b", "x" * 129, "T-1\x00", "-leading", "ü"):
        assert not ids.is_lookup_id(bad)


def test_seeded_ids_repeat_for_the_same_calls_and_continue_after_a_restart() -> None:
    first = ids.SeededIds(42)
    again = ids.SeededIds(42)
    made = [first.task_id(0), first.cluster_id(), first.nodepool_id(), first.task_id(5)]
    assert made == [again.task_id(9), again.cluster_id(), again.nodepool_id(), again.task_id(1)]
    assert ids.TASK_ID_RE.fullmatch(made[0])
    assert ids.CLUSTER_ID_RE.fullmatch(made[1])
    assert ids.NODEPOOL_ID_RE.fullmatch(made[2])
    assert made[0] < made[3]  # creation order
    assert ids.SeededIds(43).cluster_id() != ids.SeededIds(42).cluster_id()
    # A restarted server is told how many ids were issued: it never repeats one.
    resumed = ids.SeededIds(42, {"task": 2, "cluster": 1, "nodepool": 1})
    assert resumed.task_id(0) not in made
    assert resumed.cluster_id() != made[1]
    assert ids.INSTANCE_ID_RE.fullmatch(ids.SeededIds(1).instance_id())
