"""What the routes use: the task services and the emulator's, built once by the composition
root (``clustertasks.bootstrap.build_services``) and never changed afterwards."""

from __future__ import annotations

from dataclasses import dataclass

from clustertasks.api import documents
from clustertasks.emulator import controls, state
from clustertasks.service import (
    addons,
    changes,
    cloud,
    cluster_settings,
    control,
    events,
    live,
    nodes,
    tasks,
)
from clustertasks.storage import database


@dataclass(frozen=True, slots=True)
class EmulatorServices:
    """The emulator's own service, behind the ``/_emulator/`` routes."""

    clock: controls.ClockControls
    faults: controls.FaultRules
    world: controls.WorldControls
    state: state.EmulatorState


@dataclass(frozen=True, slots=True)
class Services:
    tasks: tasks.TaskService
    control: control.TaskControl
    cloud: cloud.CloudService
    nodes: nodes.NodeService
    cluster_settings: cluster_settings.ClusterSettings
    addons: addons.AddonService
    events: events.EventService
    changes: changes.ChangeHub
    live: live.LiveTasks
    emulator: EmulatorServices
    database: database.Database
    documents: documents.Documents
    """DescribeTaskInfo's rendered documents, kept by task version."""

    def healthy(self) -> bool:
        return self.database.ping()

    @property
    def inline(self) -> bool:
        """Short store calls run on the event loop (a local SQLite file): a hand-over to a
        thread and back, and the GIL's with it, would cost more than the call."""
        return self.database.dialect == "sqlite"
