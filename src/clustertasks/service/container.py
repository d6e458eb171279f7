"""The use cases an adapter (API, CLI) needs, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from clustertasks.service import tasks
from clustertasks.storage import store


@dataclass(frozen=True, slots=True)
class Services:
    tasks: tasks.TaskService
    task_store: store.TaskStore

    @classmethod
    def build(cls, task_store: store.TaskStore) -> Services:
        return cls(tasks=tasks.TaskService(task_store), task_store=task_store)

    def healthy(self) -> bool:
        return self.task_store.ping()
