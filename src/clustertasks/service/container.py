"""The use cases an adapter (API, CLI) needs, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from clustertasks import clock
from clustertasks.domain import ids
from clustertasks.operations import base as operations
from clustertasks.service import control, tasks
from clustertasks.storage import store


@dataclass(frozen=True, slots=True)
class Services:
    tasks: tasks.TaskService
    control: control.TaskControl
    task_store: store.TaskStore

    @classmethod
    def build(
        cls,
        task_store: store.TaskStore,
        registry: operations.Registry | None = None,
        *,
        time: clock.Clock | None = None,
        id_generator: ids.IdGenerator | None = None,
    ) -> Services:
        return cls(
            tasks=tasks.TaskService(task_store),
            control=control.TaskControl(
                task_store, registry or operations.Registry(), time=time, id_generator=id_generator
            ),
            task_store=task_store,
        )

    def healthy(self) -> bool:
        return self.task_store.ping()
