"""The use cases an adapter (API, CLI) needs, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from clustertasks import clock, settings
from clustertasks.domain import ids
from clustertasks.operations import base as operations
from clustertasks.providers import base as providers
from clustertasks.service import (
    changes,
    cloud,
    control,
    emulator_state,
    faults,
    live,
    nodes,
    sim_clock,
    tasks,
)
from clustertasks.storage import store


@dataclass(frozen=True, slots=True)
class Services:
    tasks: tasks.TaskService
    control: control.TaskControl
    cloud: cloud.CloudService
    task_store: store.TaskStore
    nodes: nodes.NodeService
    faults: faults.FaultService
    emulator_clock: sim_clock.ClockService
    emulator: emulator_state.EmulatorState
    changes: changes.ChangeHub
    live: live.LiveTasks

    @classmethod
    def build(
        cls,
        task_store: store.TaskStore,
        registry: operations.Registry,
        provider: providers.CloudProvider,
        *,
        time: clock.Clock | None = None,
        id_generator: ids.IdGenerator | None = None,
        live_settings: settings.LiveSettings | None = None,
    ) -> Services:
        time = time or clock.SystemClock()
        id_generator = id_generator or ids.IdGenerator()
        hub = changes.ChangeHub(task_store, live_settings)
        task_control = control.TaskControl(
            task_store, registry, time=time, id_generator=id_generator, on_commit=hub.notify
        )
        clouds = cloud.CloudService(provider, task_control, id_generator)
        fault_service = faults.FaultService(
            task_store.fault_store(), task_store, registry, time=time, id_generator=id_generator
        )

        # The cloud reports injected faults into the tasks' events through this service,
        # and whoever follows those tasks live hears of it at once.
        def report_fault(task_id: str, reason: str, message: str) -> None:
            fault_service.report(task_id, reason, message)
            hub.notify((task_id,))

        provider.set_event_sink(report_fault)
        emulator_clock = sim_clock.ClockService(provider)
        emulator = emulator_state.EmulatorState(task_store, time=time, id_generator=id_generator)
        # A reset or an imported state brings the clock and the seeded draws back with it.
        emulator.after_change.append(emulator_clock.reload)
        return cls(
            tasks=tasks.TaskService(task_store, polled=provider.task_polled),
            control=task_control,
            cloud=clouds,
            task_store=task_store,
            nodes=nodes.NodeService(provider, task_control, clouds),
            faults=fault_service,
            emulator_clock=emulator_clock,
            emulator=emulator,
            changes=hub,
            live=live.LiveTasks(task_store, hub),
        )

    def healthy(self) -> bool:
        return self.task_store.ping()
