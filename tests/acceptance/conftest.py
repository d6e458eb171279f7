from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from clustertasks import settings
from clustertasks.storage import store
from tests.support import server as server_support

# The SDK reads proxy variables itself and ignores NO_PROXY (reference/sdk-wire.md §8).
for _name in server_support.PROXY_VARIABLES:
    os.environ.pop(_name, None)


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[server_support.ServerProcess]:
    """``clustertasks serve`` as a subprocess on a free port; stopped with SIGTERM, which
    must end it cleanly (exit status 0)."""
    process = server_support.ServerProcess(db_url, tmp_path).start()
    try:
        yield process
    finally:
        status = process.stop()
        assert status == 0, process.log()


@pytest.fixture
def seeding_store(db_url: str) -> Iterator[store.TaskStore]:
    """A second connection to the server's database, for writing tasks to read back."""
    opened = store.TaskStore.open(settings.StorageSettings(url=db_url))
    try:
        yield opened
    finally:
        opened.close()
