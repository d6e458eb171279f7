"""SimCloud: the simulated ACK cloud kept in the database. It is the cloud port
(``providers.base.CloudPort``) the stages act through and the ``providers.inventory``
the request services read, and has controls of its own (clock, faults, workloads, stock,
free instances) that only the emulator's code uses.

Everything it knows lives in the WorldStore, so a restarted process (or a second SimCloud
on the same database) sees the same clusters, pools, instances and nodes. Inventory reads
are plain synchronous lookups. The port's methods run their database calls in a worker
thread, because a blocking call on the event loop would stall every other task, and wait
for the simulated durations of ``timing`` on the simulated clock (``simclock``: realtime,
manual or per poll). Each action a task makes passes the emulator's fault rules first
(``faults``).

Instance ids come from the caller's idempotency key (``names``). A repeated call with a key
finds the first result by the key itself, never by recomputing the id, which is why ids
stay unique across restarts either way.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from clustertasks import clock, errors, settings
from clustertasks.domain import emulator, ids, workloads, world
from clustertasks.emulator import catalogue, faults, inventory, nodes, simclock, timing
from clustertasks.emulator import world_store as world_storage
from clustertasks.providers import base as providers
from clustertasks.providers import inventory as inventory_port
from clustertasks.storage import changes

# The idempotency_key columns hold this many characters.
MAX_KEY_LENGTH = 256

T = TypeVar("T")


class SimCloud(inventory.SimInventory):
    """The simulated cloud: a ``providers.base.CloudPort`` and a
    ``providers.inventory.Inventory`` (checked at the end of this module)."""

    def __init__(
        self,
        world_store: world_storage.WorldStore,
        settings: settings.SimSettings,
        clock: clock.Clock,
        *,
        durations: timing.Durations = timing.REALISTIC,
        sim_clock: simclock.SimClock | None = None,
        report: faults.Report | None = None,
    ) -> None:
        """``clock`` stamps the world's records (pass ``sim_clock`` for simulated time);
        ``sim_clock`` paces the waits (default: realtime at ``settings.speed``, in memory)."""
        super().__init__(world_store, settings, clock)
        self.sim_clock = sim_clock or simclock.SimClock.realtime(settings.speed)
        self._timing = timing.Timing(self.sim_clock, durations)
        self._nodes = nodes.NodeActions(world_store, clock, self._timing)
        self._faults = faults.FaultInjector(
            world_store.fault_store(),
            world_store,
            self.sim_clock,
            stamps=clock,
            seed=settings.seed,
            report=report,
        )

    # -- the port: reads --------------------------------------------------------------------

    async def describe(self, cluster_id: str, nodepool_id: str | None = None) -> world.CloudView:
        return await asyncio.to_thread(self._store.view, cluster_id, nodepool_id)

    async def describe_node(self, cluster_id: str, node_name: str) -> world.NodeView:
        return await asyncio.to_thread(self._describe_node, cluster_id, node_name)

    def _describe_node(self, cluster_id: str, node_name: str) -> world.NodeView:
        node = self._nodes.get_node(cluster_id, node_name)
        return world.NodeView(node, tuple(self._nodes.list_pods(cluster_id, node_name)))

    # -- the port: clusters ------------------------------------------------------------------

    async def create_cluster(
        self, key: str, cluster_id: str, spec: world.ClusterSpec
    ) -> world.Cluster:
        """What ``register_cluster`` does, for a task: its VPC and security group ids derive
        from the cluster id, so they are the same however the cluster was recorded."""
        _check_key(key)
        await self._faults.before("create_cluster", subject=key, cluster_id=cluster_id)
        return await asyncio.to_thread(self.register_cluster, cluster_id, spec)

    async def provision_control_plane(self, key: str, cluster_id: str) -> world.Cluster:
        """``initial`` → (the control plane's boot time) → ``running``; any other state is
        left alone, so a re-run after the cluster came up returns at once."""
        _check_key(key)
        await self._faults.before("provision_control_plane", subject=key, cluster_id=cluster_id)
        cluster = await asyncio.to_thread(self._store.get_cluster, cluster_id)
        if cluster.state != "initial":
            return cluster
        await self._timing.wait(self._timing.durations.control_plane)
        return await asyncio.to_thread(
            self._store.set_cluster_state,
            cluster_id,
            "running",
            self._clock.now_us(),
            from_state="initial",
        )

    async def update_cluster(
        self,
        cluster_id: str,
        *,
        state: str | None = None,
        kubernetes_version: str | None = None,
        edit: world.SpecEdit | None = None,
    ) -> world.Cluster:
        """The spec, the state, then the version; each passes the fault rules under the
        name it has as an action of its own (``set_cluster_spec``, ``set_cluster_state``,
        ``upgrade_control_plane``)."""
        cluster: world.Cluster | None = None
        if edit is not None:
            await self._faults.before("set_cluster_spec", subject=cluster_id, cluster_id=cluster_id)
            cluster = await asyncio.to_thread(
                self._store.edit_cluster_spec, cluster_id, edit, self._clock.now_us()
            )
        if state is not None:
            cluster = await self._set_cluster_state(cluster_id, state)
        if kubernetes_version is not None:
            await self._faults.before(
                "upgrade_control_plane", subject=kubernetes_version, cluster_id=cluster_id
            )
            cluster = await self._nodes.upgrade_control_plane(cluster_id, kubernetes_version)
        if cluster is None:
            cluster = await asyncio.to_thread(self._store.get_cluster, cluster_id)
        return cluster

    async def _set_cluster_state(self, cluster_id: str, state: str) -> world.Cluster:
        if state not in world.CLUSTER_STATES or state == "deleted":
            # "deleted" only through delete_cluster, which checks that the pools are gone.
            raise errors.InvalidParameter("state", f"cannot set a cluster to {state!r}")
        await self._faults.before("set_cluster_state", subject=state, cluster_id=cluster_id)
        return await asyncio.to_thread(
            self._store.set_cluster_state, cluster_id, state, self._clock.now_us()
        )

    async def delete_cluster(self, key: str, cluster_id: str) -> None:
        """Raises ``errors.ResourceInUse`` while pools or instances remain; a cluster already
        deleted stays deleted without complaint."""
        _check_key(key)
        await self._faults.before("delete_cluster", subject=key, cluster_id=cluster_id)
        await asyncio.to_thread(self._store.delete_cluster, cluster_id, self._clock.now_us())

    async def deleting_cluster(self, key: str, cluster_id: str) -> None:
        """``providers.base.SettlesWithTask``: :meth:`delete_cluster` but the deletion
        itself, which the task's end writes (``settling`` the cluster ``deleted``)."""
        _check_key(key)
        await self._faults.before("delete_cluster", subject=key, cluster_id=cluster_id)
        await asyncio.to_thread(self._store.check_deletable, cluster_id)

    # -- the port: node pools ----------------------------------------------------------------

    async def create_nodepool(
        self, key: str, cluster_id: str, nodepool_id: str, spec: world.NodePoolSpec
    ) -> world.NodePool:
        """What ``register_nodepool`` does, for a task: recorded at once, no wait (the
        pool's instances are the slow part). A pool without vSwitches gets the cluster's."""
        _check_key(key)
        await self._faults.before("create_nodepool", subject=key, cluster_id=cluster_id)
        return await asyncio.to_thread(self.register_nodepool, cluster_id, nodepool_id, spec)

    async def update_nodepool(
        self,
        cluster_id: str,
        nodepool_id: str,
        *,
        state: str | None = None,
        desired_size: int | None = None,
        spec: world.NodePoolSpec | None = None,
        kubernetes_version: str | None = None,
    ) -> world.NodePool:
        """The version first (fault rules name it ``set_pool_version``), then the state,
        size and spec (``update_nodepool``)."""
        if kubernetes_version is not None:
            await self._faults.before("set_pool_version", subject=nodepool_id)
            await self._nodes.set_pool_version(nodepool_id, kubernetes_version)
            if state is None and desired_size is None and spec is None:
                return await asyncio.to_thread(self._store.get_nodepool, cluster_id, nodepool_id)
        if state is not None and state not in world.NODEPOOL_STATES:
            raise errors.InvalidParameter("status.state", f"unknown node pool state {state!r}")
        if desired_size is not None and desired_size < 0:
            raise errors.InvalidParameter(
                "scaling_group.desired_size", f"must be >= 0, got {desired_size}"
            )
        if spec is not None:
            self.check_instance_types(spec.instance_types)

        def update() -> world.NodePool:
            return self._store.update_nodepool(
                cluster_id,
                nodepool_id,
                self._clock.now_us(),
                state=state,
                desired_size=desired_size,
                spec=spec,
            )

        return await self._acting(
            "update_nodepool", update, subject=nodepool_id, cluster_id=cluster_id
        )

    def settling(
        self,
        cluster_id: str,
        *,
        cluster_state: str | None = None,
        nodepool_states: Mapping[str, str] | None = None,
    ) -> changes.Also:
        """``providers.base.SettlesWithTask``: the world is in the task store's database, so
        the states a task leaves are written in the transaction that ends it."""
        if cluster_state is not None and cluster_state not in world.CLUSTER_STATES:
            raise errors.InvalidParameter("state", f"cannot set a cluster to {cluster_state!r}")
        for state in (nodepool_states or {}).values():
            if state not in world.NODEPOOL_STATES and state != world_storage.DELETED_POOL:
                raise errors.InvalidParameter("status.state", f"unknown node pool state {state!r}")
        return world_storage.marking_states(
            cluster_id,
            self._clock.now_us,
            cluster_state=cluster_state,
            nodepool_states=nodepool_states,
        )

    async def delete_nodepool(self, key: str, cluster_id: str, nodepool_id: str) -> None:
        """Raises ``errors.ResourceInUse`` while the pool has instances; deleting a deleted
        pool does nothing."""
        await self.deleting_nodepool(key, cluster_id, nodepool_id)
        await asyncio.to_thread(
            self._store.delete_nodepool, cluster_id, nodepool_id, self._clock.now_us()
        )

    async def deleting_nodepool(self, key: str, cluster_id: str, nodepool_id: str) -> None:
        """``providers.base.SettlesWithTask``: :meth:`delete_nodepool` but the deletion
        itself, which the task's end writes (``settling`` the pool ``deleted``)."""
        _check_key(key)
        await self._faults.before("delete_nodepool", subject=key, cluster_id=cluster_id)
        remaining = await asyncio.to_thread(self._store.list_instances, cluster_id, nodepool_id)
        if remaining:
            names = ", ".join(i.instance_id for i in remaining)
            raise errors.ResourceInUse(f"the node pool {nodepool_id} still has instances: {names}")
        await self._timing.wait(self._timing.durations.pool_delete)

    # -- instances and nodes -----------------------------------------------------------------

    async def create_instance(self, key: str, cluster_id: str, nodepool_id: str) -> world.Instance:
        """Zones in the order of the pool's vSwitches (ACK's ``PRIORITY`` multi-zone policy),
        and in each zone the instance types in the pool's order."""
        _check_key(key)
        launch = functools.partial(self._create_instance, key, cluster_id, nodepool_id)
        return await self._acting("create_instance", launch, subject=key, cluster_id=cluster_id)

    def _create_instance(self, key: str, cluster_id: str, nodepool_id: str) -> world.Instance:
        placements: list[world_storage.Placement] = []

        def plan(cluster: world.Cluster, pool: world.NodePool) -> world_storage.Launch:
            region = cluster.spec.region_id
            placements[:] = [
                world_storage.Placement(instance_type, catalogue.zone_of_vswitch(region, vsw), vsw)
                for vsw in pool.spec.vswitch_ids
                for instance_type in pool.spec.instance_types
            ]
            return world_storage.Launch(
                key=key,
                instance_id=self._names.instance_id(key),
                cluster_id=cluster_id,
                nodepool_id=nodepool_id,
                vpc_id=cluster.vpc_id,
                placements=list(placements),
                default_stock=catalogue.DEFAULT_STOCK,
                choose_address=lambda used: self._names.address(key, used),
                image_id=pool.spec.image_id or catalogue.image_for(pool.spec.image_type),
                instance_charge_type=pool.spec.instance_charge_type,
            )

        # One transaction: an instance made with the key earlier, else the cluster and pool
        # read and the instance launched.
        made = self._store.launch_in_pool(key, cluster_id, nodepool_id, plan, self._clock.now_us())
        if made is None and not placements:
            raise errors.InstanceCreateFailed(
                f"the node pool {nodepool_id} has no vSwitch or no instance type to launch in"
            )
        if made is None:
            types = ", ".join(dict.fromkeys(p.instance_type for p in placements))
            zones = ", ".join(dict.fromkeys(p.zone_id for p in placements))
            raise errors.InstanceCreateFailed(
                f"no stock for {types} in {zones} (node pool {nodepool_id})"
            )
        return made

    async def wait_instance_running(self, instance_id: str) -> world.Instance:
        """Raises ``errors.InstanceBootFailed`` if the instance is (or becomes) anything but
        on its way to ``Running``, e.g. released meanwhile."""
        steps = (
            ("Pending", "Starting", self._timing.durations.instance_pending),
            ("Starting", "Running", self._timing.durations.instance_starting),
        )
        where = {"subject": instance_id, "instance_id": instance_id}
        if self._timing.instant(*(seconds for _, _, seconds in steps)):
            # No wait between the steps: the instance boots in one worker thread.
            boot = functools.partial(self._boot_at_once, instance_id, steps)
            instance = await self._acting("wait_instance_running", boot, **where)
        else:
            get = functools.partial(self._store.get_instance, instance_id)
            instance = await self._acting("wait_instance_running", get, **where)
            for from_status, to_status, seconds in steps:
                if instance.status == from_status:
                    await self._timing.wait(seconds)
                    instance = await asyncio.to_thread(
                        self._advance, instance_id, from_status, to_status
                    )
        if instance.status != "Running":
            raise errors.InstanceBootFailed(
                f"the instance {instance_id} is {instance.status}, not Running"
            )
        return instance

    async def join_node(self, key: str, instance_id: str) -> world.Node:
        """The node registers ``NotReady`` and unschedulable with the pool's labels, taints
        and Kubernetes version, then turns ``Ready`` (schedulable unless the pool says
        otherwise) after ``node_join``. One node per instance, whatever the key."""
        _check_key(key)
        if self._timing.instant(self._timing.durations.node_join):
            # No wait between registering and Ready: one worker thread does both, unless a
            # fault rule may apply (then the rules' own way, below).
            join = functools.partial(self._join_at_once, key, instance_id)
            quick = await asyncio.to_thread(self._unless_rules, "join_node", join)
            if quick is not None:
                return quick[0]
        fired = await self._faults.before("join_node", subject=key, instance_id=instance_id)
        node = await self._join_node(key, instance_id)
        changed = await self._faults.after(fired, node.cluster_id, node.node_name)
        return changed or node

    async def _join_node(self, key: str, instance_id: str) -> world.Node:
        registered, schedulable = await asyncio.to_thread(self._register_node, key, instance_id)
        if schedulable is None:
            return registered  # Ready already
        await self._timing.wait(self._timing.durations.node_join)
        return await asyncio.to_thread(self._node_ready, registered, schedulable, instance_id)

    def _join_at_once(self, key: str, instance_id: str) -> world.Node:
        registered, schedulable = self._register_node(key, instance_id)
        if schedulable is None:
            return registered
        return self._node_ready(registered, schedulable, instance_id)

    def _register_node(self, key: str, instance_id: str) -> tuple[world.Node, bool | None]:
        """The instance's node, registered ``NotReady`` if it was not yet, and whether it
        will be schedulable once ``Ready`` (None: it is ``Ready`` already)."""
        instance, node, cluster, pool = self._store.joining(instance_id)
        if node is not None and node.node_status == "Ready":
            return node, None
        if instance.status != "Running" or cluster is None:
            raise errors.NodeJoinFailed(
                f"the instance {instance_id} is {instance.status}: only a Running instance "
                "can join the cluster"
            )
        if node is None:
            registering = world.Node(
                node_name=ids.node_name(cluster.spec.region_id, instance.ip_address),
                cluster_id=instance.cluster_id,
                nodepool_id=instance.nodepool_id,
                instance_id=instance_id,
                node_status="NotReady",
                schedulable=False,
                kubelet_version=pool.kubernetes_version if pool else cluster.current_version,
                labels=tuple(pool.spec.labels) if pool else (),
                taints=tuple(pool.spec.taints) if pool else (),
                created_us=self._clock.now_us(),
            )
            node = self._store.add_node(key, registering)
        return node, not (pool.spec.unschedulable if pool else False)

    def _node_ready(self, node: world.Node, schedulable: bool, instance_id: str) -> world.Node:
        try:
            ready = self._store.update_node(
                node.cluster_id,
                node.node_name,
                self._clock.now_us(),
                node_status="Ready",
                schedulable=schedulable,
            )
            # DaemonSets get a pod on the new node; Pending pods may fit on it.
            self._nodes.reconcile(node.cluster_id)
            return ready
        except errors.NotFound as exc:
            raise errors.NodeJoinFailed(
                f"the node {node.node_name} left the cluster while joining "
                f"(instance {instance_id} released)"
            ) from exc

    async def update_node(
        self,
        cluster_id: str,
        node_name: str,
        *,
        labels: Sequence[world.Label] | None = None,
        taints: Sequence[world.Taint] | None = None,
        schedulable: bool | None = None,
    ) -> world.Node:
        """Labels and taints first (fault rules name it ``update_node``), then cordon or
        uncordon (``set_schedulable``); raises ``errors.NotFound`` for a node that is not
        (or no longer) in the cluster."""
        node: world.Node | None = None
        if labels is not None or taints is not None:
            node = await self._relabel(cluster_id, node_name, labels, taints)
        if schedulable is not None:
            node = await self._set_schedulable(cluster_id, node_name, schedulable)
        if node is None:
            node = await asyncio.to_thread(self._nodes.get_node, cluster_id, node_name)
        return node

    async def _relabel(
        self,
        cluster_id: str,
        node_name: str,
        labels: Sequence[world.Label] | None,
        taints: Sequence[world.Taint] | None,
    ) -> world.Node:
        fired = await self._faults.before(
            "update_node", subject=node_name, cluster_id=cluster_id, node_name=node_name
        )
        node = await asyncio.to_thread(
            self._store.update_node,
            cluster_id,
            node_name,
            self._clock.now_us(),
            labels=None if labels is None else tuple(labels),
            taints=None if taints is None else tuple(taints),
        )
        return await self._faults.after(fired, cluster_id, node_name) or node

    async def release_instance(self, key: str, instance_id: str) -> None:
        """The node leaves at once and the instance is ``Stopping``; after ``release`` it is
        ``Released`` and its stock returns. Releasing a released instance does nothing."""
        _check_key(key)
        await self._faults.before("release_instance", subject=key, instance_id=instance_id)
        instance = await asyncio.to_thread(self._store.get_instance, instance_id)
        if instance.status == world_storage.RELEASED:
            return
        await asyncio.to_thread(self._store.stop_instance, instance_id, self._clock.now_us())
        await self._timing.wait(self._timing.durations.release)
        await asyncio.to_thread(self._store.release_instance, instance_id, self._clock.now_us())

    # -- nodes and workloads (emulator/nodes.py does the work) ------------------------------

    async def wait(self, seconds: float) -> None:
        await self._timing.wait(seconds)

    # -- the emulator's own reads and controls (in neither protocol) ------------------------

    def get_node(self, cluster_id: str, node_name: str) -> world.Node:
        return self._nodes.get_node(cluster_id, node_name)

    def list_pods(self, cluster_id: str, node_name: str | None = None) -> Sequence[workloads.Pod]:
        return self._nodes.list_pods(cluster_id, node_name)

    def list_workloads(self, cluster_id: str) -> Sequence[workloads.Workload]:
        return self._nodes.list_workloads(cluster_id)

    def list_budgets(self, cluster_id: str) -> Sequence[workloads.DisruptionBudget]:
        return self._nodes.list_budgets(cluster_id)

    def declare_workloads(
        self,
        cluster_id: str,
        declared: Sequence[workloads.Workload],
        budgets: Sequence[workloads.DisruptionBudget],
    ) -> None:
        self._nodes.declare_workloads(cluster_id, declared, budgets)

    def free_instances(self) -> Sequence[world.Instance]:
        return self._nodes.free_instances()

    def set_node_status(self, cluster_id: str, node_name: str, status: str) -> world.Node:
        return self._nodes.set_node_status(cluster_id, node_name, status)

    async def _set_schedulable(
        self, cluster_id: str, node_name: str, schedulable: bool
    ) -> world.Node:
        fired = await self._faults.before(
            "set_schedulable", subject=node_name, cluster_id=cluster_id, node_name=node_name
        )
        node = await self._nodes.set_schedulable(cluster_id, node_name, schedulable)
        return await self._faults.after(fired, cluster_id, node_name) or node

    async def evict_pod(
        self, cluster_id: str, pod_name: str, node_name: str, *, force: bool = False
    ) -> workloads.Eviction:
        fired = await self._faults.before(
            "evict_pod", subject=pod_name, cluster_id=cluster_id, node_name=node_name
        )
        eviction = await self._nodes.evict_pod(cluster_id, pod_name, node_name, force=force)
        await self._faults.after(fired, cluster_id, node_name)
        return eviction

    async def upgrade_node(
        self,
        cluster_id: str,
        node_name: str,
        *,
        kubernetes_version: str,
        image_id: str = "",
        replace: bool = False,
    ) -> world.Node:
        fired = await self._faults.before(
            "upgrade_node", subject=node_name, cluster_id=cluster_id, node_name=node_name
        )
        node = await self._nodes.upgrade_node(
            cluster_id,
            node_name,
            kubernetes_version=kubernetes_version,
            image_id=image_id,
            replace=replace,
        )
        return await self._faults.after(fired, cluster_id, node_name) or node

    async def repair_node(self, cluster_id: str, node_name: str) -> world.Node:
        fired = await self._faults.before(
            "repair_node", subject=node_name, cluster_id=cluster_id, node_name=node_name
        )
        node = await self._nodes.repair_node(cluster_id, node_name)
        return await self._faults.after(fired, cluster_id, node_name) or node

    async def remove_node(
        self, key: str, cluster_id: str, instance_id: str, *, release: bool
    ) -> None:
        """The node leaves (its pods rescheduled); the instance is released, or stays
        running as a free ECS instance outside any pool."""
        _check_key(key)
        await self._faults.before(
            "remove_node", subject=key, cluster_id=cluster_id, instance_id=instance_id
        )
        await self._nodes.detach_node(cluster_id, instance_id)
        if release:
            await self.release_instance(key, instance_id)
        else:
            await self._nodes.free_instance(instance_id)

    async def attach_instance(
        self, key: str, cluster_id: str, nodepool_id: str, instance_id: str
    ) -> world.Node:
        """A free instance joins the pool as a node (``errors.InstanceNotFound`` or
        ``errors.InstanceNotFree`` otherwise)."""
        fired = await self._faults.before(
            "attach_instance", subject=key, cluster_id=cluster_id, instance_id=instance_id
        )
        await self._nodes.claim_instance(instance_id, cluster_id, nodepool_id)
        node = await self.join_node(key, instance_id)
        return await self._faults.after(fired, node.cluster_id, node.node_name) or node

    async def create_free_instance(
        self, key: str, cluster_id: str, instance_type: str = ""
    ) -> world.Instance:
        """A running ECS instance in the cluster's VPC that belongs to no pool."""
        _check_key(key)
        made = await asyncio.to_thread(self._store.instance_by_key, key)
        if made is None:
            cluster = await asyncio.to_thread(self._store.get_cluster, cluster_id)
            launch = nodes.free_launch(
                cluster,
                key,
                self._names.instance_id(key),
                instance_type or "ecs.g7.large",
                lambda used: self._names.address(key, used),
            )
            self.check_instance_types([launch.placements[0].instance_type])
            made = await asyncio.to_thread(
                self._store.launch_instance, launch, self._clock.now_us()
            )
        if made is None:
            raise errors.InstanceCreateFailed(f"no stock for {instance_type} in {cluster_id}")
        return await self.wait_instance_running(made.instance_id)

    # -- the emulator's clock and fault reports ----------------------------------------------

    def clock(self) -> emulator.ClockView:
        return self.sim_clock.view()

    def set_clock(self, mode: str, speed: float | None = None) -> emulator.ClockView:
        return self.sim_clock.set_mode(mode, speed)

    def advance_clock(self, seconds: float) -> emulator.ClockView:
        return self.sim_clock.advance(seconds)

    def task_polled(self, task_id: str) -> bool:
        return self.sim_clock.poll(task_id)

    def reload_emulator_state(self) -> None:
        self.sim_clock.reload()
        self._faults.forget_draws()

    # -- acting in a worker thread -----------------------------------------------------------

    async def _acting(
        self,
        operation: str,
        act: Callable[[], T],
        *,
        subject: str = "",
        cluster_id: str = "",
        instance_id: str = "",
    ) -> T:
        """Pass the fault rules for ``operation``, then ``act()`` in a worker thread.

        One trip to a worker thread when no rule can match (the rules are read there, just
        before acting); otherwise the rules apply on the event loop (their latency, their
        error) and ``act()`` runs after them, as it would without the shortcut.
        """
        quick = await asyncio.to_thread(self._unless_rules, operation, act)
        if quick is not None:
            return quick[0]
        await self._faults.before(
            operation, subject=subject, cluster_id=cluster_id, instance_id=instance_id
        )
        return await asyncio.to_thread(act)

    def _unless_rules(self, operation: str, act: Callable[[], T]) -> tuple[T] | None:
        """``(act(),)`` when no fault rule can match ``operation`` for the calling task;
        None (nothing done) when one may."""
        if not self._faults.idle(operation):
            return None
        return (act(),)

    def _advance(self, instance_id: str, from_status: str, to_status: str) -> world.Instance:
        return self._store.advance_instance(
            instance_id, from_status, to_status, self._clock.now_us()
        )

    def _boot_at_once(
        self, instance_id: str, steps: Sequence[tuple[str, str, float]]
    ) -> world.Instance:
        """The boot steps of ``wait_instance_running`` with nothing to wait between them,
        in one transaction."""
        moves = [(from_status, to_status) for from_status, to_status, _ in steps]
        return self._store.boot_instance(instance_id, moves, self._clock.now_us)


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise errors.InvalidParameter(
            "idempotency key", f"must have 1 to {MAX_KEY_LENGTH} characters, got {len(key)}"
        )


def _conforms(
    cloud: SimCloud,
) -> tuple[providers.CloudPort, providers.SettlesWithTask, inventory_port.Inventory]:
    """mypy checks here that SimCloud is the port (settling with a task's end) and the
    inventory."""
    return cloud, cloud, cloud
