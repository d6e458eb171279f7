from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from clustertasks import settings
from clustertasks.api import app as api_app
from clustertasks.service import container
from clustertasks.storage import store


@pytest.fixture
def api(task_store: store.TaskStore) -> Iterator[TestClient]:
    """The ASGI app in-process, on the test's database."""
    app = api_app.create_app(container.Services.build(task_store), settings.WireSettings())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
