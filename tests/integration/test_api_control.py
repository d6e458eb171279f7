"""PauseTask, ResumeTask and CancelTask over HTTP (no executor: requests are recorded)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from clustertasks import settings
from clustertasks.api import app as api_app
from clustertasks.api import services as api_services
from clustertasks.domain import records
from clustertasks.storage import database as storage_database
from clustertasks.storage import store
from tests.integration.conftest import services_for
from tests.support import operations as ops
from tests.support import signing

CLUSTER = "c0123456789abcdef0123456789abcdef"


@pytest.fixture
def setup(
    database: storage_database.Database,
) -> Iterator[tuple[TestClient, api_services.Services]]:
    services = services_for(database, ops.REGISTRY)
    app = api_app.create_app(
        services, settings.WireSettings(), authenticator=signing.authenticator(database)
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        client.auth = signing.auth()
        yield client, services


def _submit(services: api_services.Services, task_type: str, pool: str) -> str:
    return services.control.submit(
        task_type, cluster_id=CLUSTER, target=records.Target(pool, "nodepool"), parameters={}
    ).task.task_id


def test_pause_resume_cancel_answer_200_with_a_request_id(
    setup: tuple[TestClient, api_services.Services], task_store: store.TaskStore
) -> None:
    client, services = setup
    task_id = _submit(services, "test_batches", "np1")
    response = client.post(f"/tasks/{task_id}/pause")
    assert response.status_code == 200
    assert response.json()["requestId"] == response.headers["x-acs-request-id"]
    assert task_store.get_task(task_id).requested_action == "pause"

    second = client.post(f"/tasks/{task_id}/cancel")
    assert second.status_code == 200
    assert task_store.get_task(task_id).requested_action == "cancel"


def test_errors(setup: tuple[TestClient, api_services.Services]) -> None:
    client, services = setup
    missing = client.post("/tasks/T-000000000000000000000000/pause")
    assert missing.status_code == 404
    assert missing.json()["code"] == "ErrorTaskNotFound"

    running = _submit(services, "test_batches", "np1")
    resume = client.post(f"/tasks/{running}/resume")
    assert resume.status_code == 409
    assert resume.json()["code"] == "ErrorTaskState"
    assert "running" in resume.json()["message"]

    nap = _submit(services, "test_nap", "np2")
    unsupported = client.post(f"/tasks/{nap}/pause")
    assert unsupported.status_code == 400
    assert unsupported.json()["code"] == "ErrorTaskNotSupported"

    assert client.get(f"/tasks/{nap}").json()["state"] == "running"
    assert client.get("/tasks/x/cancel").status_code == 405
