"""The use cases an adapter (API, CLI) needs, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from clustertasks import clock, settings
from clustertasks.domain import ids
from clustertasks.operations import base as operations
from clustertasks.providers import base as providers
from clustertasks.service import changes, cloud, control, live, nodes, tasks
from clustertasks.storage import store


@dataclass(frozen=True, slots=True)
class Services:
    tasks: tasks.TaskService
    control: control.TaskControl
    cloud: cloud.CloudService
    task_store: store.TaskStore
    nodes: nodes.NodeService
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
        hub = changes.ChangeHub(task_store, live_settings)
        task_control = control.TaskControl(
            task_store, registry, time=time, id_generator=id_generator, on_commit=hub.notify
        )
        clouds = cloud.CloudService(provider, task_control, id_generator)
        return cls(
            tasks=tasks.TaskService(task_store),
            control=task_control,
            cloud=clouds,
            task_store=task_store,
            nodes=nodes.NodeService(provider, task_control, clouds),
            changes=hub,
            live=live.LiveTasks(task_store, hub),
        )

    def healthy(self) -> bool:
        return self.task_store.ping()
