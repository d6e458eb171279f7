from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from clustertasks import settings
from clustertasks.api import app as api_app
from clustertasks.operations import base as operations
from clustertasks.operations import catalog
from clustertasks.service import container
from clustertasks.storage import store
from tests.support import cloud, signing


def services_for(
    task_store: store.TaskStore, registry: operations.Registry | None = None
) -> container.Services:
    """Services on the test's database with the real operations and a simulated cloud."""
    return container.Services.build(
        task_store, registry or catalog.registry(), cloud.sim_for(task_store)
    )


@pytest.fixture
def api(task_store: store.TaskStore) -> Iterator[TestClient]:
    """The ASGI app in-process, on the test's database (no executor: tasks stay put); every
    request is signed with the test key, as the official SDK would sign it."""
    app = api_app.create_app(
        services_for(task_store),
        settings.WireSettings(),
        authenticator=signing.authenticator(task_store),
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        client.auth = signing.auth()
        yield client
