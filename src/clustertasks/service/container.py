"""The use cases an adapter (API, CLI) needs, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from clustertasks import clock
from clustertasks.domain import ids
from clustertasks.operations import base as operations
from clustertasks.providers import base as providers
from clustertasks.service import cloud, control, emulator_state, nodes, tasks
from clustertasks.storage import store


@dataclass(frozen=True, slots=True)
class Services:
    tasks: tasks.TaskService
    control: control.TaskControl
    cloud: cloud.CloudService
    task_store: store.TaskStore
    nodes: nodes.NodeService
    emulator: emulator_state.EmulatorState

    @classmethod
    def build(
        cls,
        task_store: store.TaskStore,
        registry: operations.Registry,
        provider: providers.CloudProvider,
        *,
        time: clock.Clock | None = None,
        id_generator: ids.IdGenerator | None = None,
    ) -> Services:
        task_control = control.TaskControl(
            task_store, registry, time=time, id_generator=id_generator
        )
        clouds = cloud.CloudService(provider, task_control, id_generator)
        return cls(
            tasks=tasks.TaskService(task_store),
            control=task_control,
            cloud=clouds,
            task_store=task_store,
            nodes=nodes.NodeService(provider, task_control, clouds),
            emulator=emulator_state.EmulatorState(task_store, time=time, id_generator=id_generator),
        )

    def healthy(self) -> bool:
        return self.task_store.ping()
