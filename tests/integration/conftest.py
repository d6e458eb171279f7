from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from clustertasks import bootstrap, settings
from clustertasks.api import app as api_app
from clustertasks.api import services as api_services
from clustertasks.operations import base as operations
from clustertasks.operations import catalog
from clustertasks.storage import database as storage_database
from tests.support import cloud, databases, signing


def services_for(
    db: storage_database.Database, registry: operations.Registry | None = None
) -> api_services.Services:
    """Services on the test's database with the real operations and a simulated cloud."""
    return bootstrap.build_services(db, registry or catalog.registry(), cloud.sim_for(db))


@pytest.fixture
def api(database: storage_database.Database) -> Iterator[TestClient]:
    """The ASGI app in-process, on the test's database (no executor: tasks stay put); every
    request is signed with the test key, as the official SDK would sign it."""
    app = api_app.create_app(
        services_for(database),
        settings.WireSettings(),
        authenticator=signing.authenticator(database),
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        client.auth = signing.auth()
        yield client


@pytest.fixture
def pg_database(all_databases: databases.Databases) -> Iterator[storage_database.Database]:
    """A freshly migrated database on the suite's PostgreSQL server, dropped afterwards."""
    url = all_databases.migrated(databases.POSTGRES)
    opened = storage_database.Database.open(settings.StorageSettings(url=url))
    try:
        yield opened
    finally:
        opened.close()
        all_databases.drop(url)
