"""Submitting tasks and asking running ones to pause, resume or cancel.

The service never runs anything: it writes to the store and tells the executor to look
(``notify``), which the composition root wires to the executor when there is one; and it
tells whoever follows the task that it changed (``on_commit``).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Collection, Mapping
from typing import Any

from clustertasks import clock, errors
from clustertasks.domain import ids, records, states
from clustertasks.observability import logs, tracing
from clustertasks.operations import base as operations
from clustertasks.storage import store

Notify = Callable[[str], None]
Committed = Callable[[Collection[str]], None]


def no_executor(_task_id: str) -> None:
    """With ``--no-executor`` another server's executor finds the work on its next scan."""


def _nobody_follows(_task_ids: Collection[str]) -> None:
    """Without a change hub nobody waits for a task to change."""


class TaskControl:
    def __init__(
        self,
        task_store: store.TaskStore,
        registry: operations.Registry,
        *,
        time: clock.Clock | None = None,
        id_generator: ids.IdGenerator | None = None,
        notify: Notify = no_executor,
        on_commit: Committed = _nobody_follows,
    ) -> None:
        self._store = task_store
        self._registry = registry
        self._clock = time or clock.SystemClock()
        self._ids = id_generator or ids.IdGenerator(random.Random())
        self._notify = notify
        self._on_commit = on_commit

    def submit(
        self,
        task_type: str,
        *,
        cluster_id: str,
        target: records.Target,
        parameters: Mapping[str, Any],
        client_token: str | None = None,
        request: Mapping[str, Any] | None = None,
        accepted: store.Accepted | None = None,
    ) -> store.SubmitOutcome:
        """Create a task of ``task_type`` (or return the one ``client_token`` created).

        ``request``: what the client sent, normalised, without anything the server drew
        (new ids): a retry with the token must ask for the same. By default the target and
        the parameters. ``accepted``: what the cloud shows at once, committed with the task.
        """
        operation = self._operation(task_type)
        if client_token is not None and (len(client_token) > 64 or not client_token.isprintable()):
            raise errors.InvalidParameter("client_token", "must be at most 64 printable characters")
        digest = None
        if client_token:
            if request is None:
                request = {
                    "cluster_id": cluster_id,
                    "target": [target.id, target.type],
                    "parameters": parameters,
                }
            digest = request_digest(task_type, request)
        now = self._clock.now_us()
        task = records.Task(
            task_id=self._ids.task_id(now),
            cluster_id=cluster_id,
            task_type=task_type,
            state=states.TaskState.RUNNING,
            created_us=now,
            updated_us=now,
            target=target,
            parameters=dict(parameters),
            client_token=client_token or None,
            # The task's runs continue the trace of the request that submitted it.
            trace_parent=tracing.current_traceparent(),
            request_digest=digest,
        )
        outcome = self._store.submit_task(
            task, records.plan_stages(operation.stage_names()), accepted
        )
        tracing.annotate(**{"clustertasks.task_id": outcome.task.task_id})
        logs.bind(task_id=outcome.task.task_id)
        if outcome.created:
            self._committed(task.task_id)
        return outcome

    def pause(self, task_id: str) -> records.Task:
        self._supported(task_id, "pause")
        task = self._store.request_action(task_id, records.PAUSE, self._clock.now_us())
        self._committed(task_id)
        return task

    def resume(self, task_id: str) -> records.Task:
        self._supported(task_id, "resume")
        task = self._store.resume(task_id, self._clock.now_us())
        self._committed(task_id)
        return task

    def cancel(self, task_id: str) -> records.Task:
        self._supported(task_id, "cancel")
        task = self._store.request_action(task_id, records.CANCEL, self._clock.now_us())
        self._committed(task_id)
        return task

    def _committed(self, task_id: str) -> None:
        self._notify(task_id)
        self._on_commit((task_id,))

    def _operation(self, task_type: str) -> operations.Operation:
        operation = self._registry.get(task_type)
        if operation is None:
            raise errors.InvalidParameter("task_type", f"unknown task type {task_type!r}")
        return operation

    def _supported(self, task_id: str, action: str) -> None:
        if not ids.is_lookup_id(task_id):
            raise errors.TaskNotFound(task_id)
        task = self._store.get_task(task_id)
        operation = self._registry.get(task.task_type)
        allowed = operation is not None and (
            operation.cancelable if action == "cancel" else operation.pausable
        )
        if not allowed:
            raise errors.TaskNotSupported(
                f"the task {task_id} ({task.task_type}) does not support {action}"
            )


def request_digest(task_type: str, request: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a normalised request: equal for requests that ask for the same."""
    text = json.dumps([task_type, request], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
