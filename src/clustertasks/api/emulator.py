"""The emulator's own endpoints (not ACK's): arrange and inspect the simulated world.

- ``POST /_emulator/clusters/{cluster_id}/workloads``: declare Deployments, DaemonSets and
  PodDisruptionBudgets (created or replaced by name); ``GET`` lists them with their pods.
- ``POST /_emulator/instances``: create free ECS instances to attach; ``GET`` lists them.
- ``POST /_emulator/clusters/{cluster_id}/nodes/{node_name}/status``: set a node's status
  (``NotReady`` to have something to repair).
- ``POST /_emulator/clusters/{cluster_id}/nodes/{node_name}/faults``: make ``upgrade`` or
  ``repair`` fail on that node from now on (a fault rule, listed by ``GET /_emulator/faults``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from clustertasks.api import body, deps, render
from clustertasks.api import errors as api_errors
from clustertasks.domain import world
from clustertasks.emulator import controls

router = APIRouter(prefix="/_emulator", tags=["emulator"])


def _world(request: Request) -> controls.WorldControls:
    return deps.services(request).emulator.world


def _instance(instance: world.Instance) -> dict[str, Any]:
    return {
        "instance_id": instance.instance_id,
        "cluster_id": instance.cluster_id,
        "instance_type": instance.instance_type,
        "zone_id": instance.zone_id,
        "ip_address": instance.ip_address,
        "status": instance.status,
    }


@router.post("/clusters/{cluster_id}/workloads", operation_id="EmulatorDeclareWorkloads")
async def declare_workloads(request: Request, cluster_id: str) -> Response:
    document = await body.json_object(request)
    service = _world(request)
    await run_in_threadpool(service.declare_workloads, cluster_id, document)
    found = await run_in_threadpool(service.workloads, cluster_id)
    return render.document(
        request, "DeclareWorkloads", {**found, "request_id": api_errors.request_id(request)}
    )


@router.get("/clusters/{cluster_id}/workloads", operation_id="EmulatorListWorkloads")
def list_workloads(request: Request, cluster_id: str) -> Response:
    found = _world(request).workloads(cluster_id)
    return render.document(
        request, "ListWorkloads", {**found, "request_id": api_errors.request_id(request)}
    )


@router.post("/instances", operation_id="EmulatorCreateInstances")
async def create_instances(request: Request) -> Response:
    document = await body.json_object(request)
    made = await _world(request).create_free_instances(document)
    return render.document(
        request,
        "CreateInstances",
        {"instances": [_instance(i) for i in made], "request_id": api_errors.request_id(request)},
    )


@router.get("/instances", operation_id="EmulatorListFreeInstances")
def list_free_instances(request: Request) -> Response:
    free = _world(request).free_instances()
    return render.document(
        request,
        "ListFreeInstances",
        {"instances": [_instance(i) for i in free], "request_id": api_errors.request_id(request)},
    )


@router.post(
    "/clusters/{cluster_id}/nodes/{node_name}/status", operation_id="EmulatorSetNodeStatus"
)
async def set_node_status(request: Request, cluster_id: str, node_name: str) -> Response:
    document = await body.json_object(request)
    node = await run_in_threadpool(_world(request).set_node_status, cluster_id, node_name, document)
    # A pool with auto repair on starts repairing a node that is not Ready.
    repair = await run_in_threadpool(
        deps.services(request).nodes.repair_automatically, node.cluster_id, node.node_name
    )
    return render.document(
        request,
        "SetNodeStatus",
        {
            "node_name": node.node_name,
            "node_status": node.node_status,
            "repair_task_id": repair.task_id if repair else "",
            "request_id": api_errors.request_id(request),
        },
    )


@router.post("/clusters/{cluster_id}/nodes/{node_name}/faults", operation_id="EmulatorAddFault")
async def add_fault(request: Request, cluster_id: str, node_name: str) -> Response:
    document = await body.json_object(request)
    await run_in_threadpool(_world(request).add_node_fault, cluster_id, node_name, document)
    return render.document(request, "AddFault", {"request_id": api_errors.request_id(request)})
