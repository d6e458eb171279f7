from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from clustertasks import clock, settings
from clustertasks.emulator import cloud as sim_cloud
from clustertasks.emulator import world_store
from clustertasks.storage import database as storage_database
from clustertasks.storage import store
from tests.support import server as server_support

# The SDK reads proxy variables itself and ignores NO_PROXY (reference/sdk-wire.md §8).
for _name in server_support.PROXY_VARIABLES:
    os.environ.pop(_name, None)


def _serve(db_url: str, tmp_path: Path, *args: str) -> Iterator[server_support.ServerProcess]:
    process = server_support.ServerProcess(db_url, tmp_path, *args).start()
    try:
        yield process
    finally:
        status = process.stop()
        assert status == 0, process.log()


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[server_support.ServerProcess]:
    """``clustertasks serve --sim-speed 0`` as a subprocess on a free port, running tasks;
    stopped with SIGTERM, which must end it cleanly (exit status 0)."""
    yield from _serve(db_url, tmp_path, "--sim-speed", "0")


@pytest.fixture
def read_server(db_url: str, tmp_path: Path) -> Iterator[server_support.ServerProcess]:
    """The same with ``--no-executor``: tasks the test writes stay exactly as written."""
    yield from _serve(db_url, tmp_path, "--no-executor")


@pytest.fixture
def sim(seeding_database: storage_database.Database) -> sim_cloud.SimCloud:
    """The simulated cloud on the server's database, to arrange the world (stock, quota)."""
    return sim_cloud.SimCloud(
        world_store.WorldStore(seeding_database.engine),
        settings.SimSettings(speed=0),
        clock.SystemClock(),
    )


@pytest.fixture
def seeding_database(db_url: str) -> Iterator[storage_database.Database]:
    """A second connection to the server's database, for writing tasks to read back."""
    opened = storage_database.Database.open(settings.StorageSettings(url=db_url))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def seeding_store(seeding_database: storage_database.Database) -> store.TaskStore:
    return seeding_database.tasks
