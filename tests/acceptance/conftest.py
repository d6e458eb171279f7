"""Servers for the acceptance tests.

``server``, ``read_server`` and ``seeded_server`` are shared by the tests of a session (one
process per backend and command line, ``tests/support/server.SharedServers``), reset before
each test to what a new server on a new database shows. A test whose subject is the process
itself (startup, signals, exit statuses, restarts) or a flag no other test uses starts a
``ServerProcess`` of its own on ``db_url``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from clustertasks import settings
from clustertasks.emulator import cloud as sim_cloud
from clustertasks.service import certificates
from clustertasks.storage import database as storage_database
from clustertasks.storage import store
from tests.acceptance import sdk
from tests.support import cloud, databases, executors
from tests.support import server as server_support

# The SDK reads proxy variables itself and ignores NO_PROXY (reference/sdk-wire.md §8).
for _name in server_support.PROXY_VARIABLES:
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def shared_servers(
    tmp_path_factory: pytest.TempPathFactory, all_databases: databases.Databases
) -> Iterator[server_support.SharedServers]:
    servers = server_support.SharedServers(
        tmp_path_factory.mktemp("servers"), all_databases.migrated, all_databases.drop
    )
    yield servers
    # Each must end cleanly on SIGTERM (exit status 0), after all the tests it served.
    problems = servers.close()
    assert not problems, "\n\n".join(problems)


def _lease(
    servers: server_support.SharedServers, backend: str, *args: str, ca_cert: Path | None = None
) -> Iterator[server_support.ServerProcess]:
    process = servers.lease(backend, *args, ca_cert=ca_cert)
    sdk.close_connections()
    yield process
    assert process.running, f"the server exited during the test:\n{process.log()}"


@pytest.fixture
def server(
    shared_servers: server_support.SharedServers, backend: str
) -> Iterator[server_support.ServerProcess]:
    """``clustertasks serve --sim-speed 0`` as a subprocess on a free port, running tasks."""
    yield from _lease(shared_servers, backend, "--sim-speed", "0")


@pytest.fixture
def executor_server(
    shared_servers: server_support.SharedServers, backend: str, engine: executors.Choice
) -> Iterator[server_support.ServerProcess]:
    """``server`` on each executor (the conformance suite): the local one, or Temporal's
    with ``--temporal-dev`` (a dev server and a worker beside the API)."""
    if engine.kind == executors.TEMPORAL:
        args = ("--executor", "temporal", "--temporal-dev", "--sim-speed", "0")
        yield from _lease(shared_servers, backend, *args)
    else:
        yield from _lease(shared_servers, backend, "--sim-speed", "0")


@pytest.fixture
def read_server(
    shared_servers: server_support.SharedServers, backend: str
) -> Iterator[server_support.ServerProcess]:
    """The same with ``--no-executor``: tasks the test writes stay exactly as written."""
    yield from _lease(shared_servers, backend, "--no-executor")


@pytest.fixture
def seeded_server(
    shared_servers: server_support.SharedServers, backend: str
) -> Iterator[server_support.ServerProcess]:
    """The issue's CI set-up: ``serve --sim-speed 0 --sim-seed 42``."""
    yield from _lease(shared_servers, backend, "--sim-speed", "0", "--sim-seed", "42")


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> certificates.TlsFiles:
    """A local CA and a server certificate for 127.0.0.1, as ``clustertasks tls init``
    makes them."""
    return certificates.make_local_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(
    shared_servers: server_support.SharedServers, backend: str, tls_files: certificates.TlsFiles
) -> Iterator[server_support.ServerProcess]:
    """``server`` over HTTPS: ``--tls-cert``/``--tls-key`` from ``tls_files``."""
    yield from _lease(
        shared_servers,
        backend,
        "--sim-speed",
        "0",
        "--tls-cert",
        str(tls_files.cert),
        "--tls-key",
        str(tls_files.key),
        ca_cert=tls_files.ca,
    )


def _database(url: str | None) -> Iterator[storage_database.Database]:
    assert url is not None
    opened = storage_database.Database.open(settings.StorageSettings(url=url))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def seeding_store(read_server: server_support.ServerProcess) -> Iterator[store.TaskStore]:
    """A second connection to the read server's database, for writing tasks to read back."""
    for opened in _database(read_server.db_url):
        yield opened.tasks


@pytest.fixture
def sim(server: server_support.ServerProcess) -> Iterator[sim_cloud.SimCloud]:
    """The simulated cloud on the server's database."""
    for opened in _database(server.db_url):
        yield cloud.sim_for(opened)


@pytest.fixture
def executor_sim(executor_server: server_support.ServerProcess) -> Iterator[sim_cloud.SimCloud]:
    """The simulated cloud on ``executor_server``'s database."""
    for opened in _database(executor_server.db_url):
        yield cloud.sim_for(opened)
