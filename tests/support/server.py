"""Running ``clustertasks serve`` as a real subprocess for acceptance tests.

:class:`ServerProcess` is the one way the suite starts a server: for a test of its own when
the process is the point (startup, signals, exit statuses, a kill -9 and a restart, flags no
other test uses), and through :class:`SharedServers` for every test that only needs a
running server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from clustertasks import clock, settings, testing
from clustertasks.cli import client
from clustertasks.domain import access, emulator
from clustertasks.emulator import clock_store as sim_clock
from clustertasks.storage import dialects, keys
from tests.support import signing

PROXY_VARIABLES = testing.PROXY_VARIABLES
clean_env = testing.clean_environment
free_port = testing.free_port


class ServerProcess(testing.ServerProcess):
    """The package's launcher as the suite calls it: ``ServerProcess(db_url, workdir,
    *args)``, every server knowing the key the SDK is configured with
    (tests/acceptance/sdk.py; a test may replace it through ``env``), and a client for the
    emulator's controls."""

    def __init__(
        self,
        db_url: str | None,
        workdir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        ca_cert: Path | None = None,
    ) -> None:
        super().__init__(
            args,
            workdir,
            db_url=db_url,
            env={**signing.SERVER_ENV, **(env or {})},
            ca_cert=ca_cert,
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def emulator(self, method: str, action: str, path: str, body: Any = None) -> dict[str, Any]:
        """Call one of the emulator's controls (``/_emulator/…``) with the test key, through
        the client ``clustertasks.testing.Emulator`` uses for the same calls. A connection
        of its own: one kept idle between tests could be closed by the server as it is used."""
        ca = str(self.ca_cert) if self.ca_cert is not None else None
        with client.ApiClient(self.url, signing.auth(), timeout=120.0, ca_cert=ca) as api:
            return api.call(method, action, path, json=body)

    def create_cluster(self, name: str) -> str:
        """A cluster made through the emulator's CreateCluster; the id of its task."""
        made = self.emulator(
            "POST",
            "CreateCluster",
            "/clusters",
            {"name": name, "region_id": "cn-hangzhou", "vswitch_ids": ["vsw-1"]},
        )
        return str(made["task_id"])


class SharedServers:
    """``clustertasks serve`` processes shared by the tests of one session (each pytest-xdist
    worker has a session of its own): one per backend and command line, started when a test
    first needs it, on a database of its own, and stopped when the session ends.

    Before each test the server is brought back to what a new server on a new database
    shows (:meth:`lease`); one that cannot be is replaced by a new one.
    """

    def __init__(
        self,
        workdir: Path,
        new_database: Callable[[str], str],
        drop_database: Callable[[str], None],
    ) -> None:
        """``new_database(backend)``: the URL of a new, migrated database, which
        ``drop_database(url)`` removes once its server has stopped."""
        self._workdir = workdir
        self._new_database = new_database
        self._drop_database = drop_database
        self._servers: dict[tuple[str, tuple[str, ...]], _Shared] = {}
        self._problems: list[str] = []

    def lease(self, backend: str, *args: str, ca_cert: Path | None = None) -> ServerProcess:
        """A running ``clustertasks serve ARGS`` on ``backend``, as if just started on a new
        database: no tasks, no world, no fault rules, a realtime clock reading the wall
        clock's time, only the test key. ``ca_cert``: ARGS serve HTTPS, signed by this CA."""
        key = (backend, (*args, str(ca_cert or "")))
        shared = self._servers.pop(key, None)
        if shared is not None:
            try:
                restored = shared.restore()
            except BaseException:
                self._retire(shared)
                raise
            if not restored:
                self._retire(shared)
                shared = None
        if shared is None:
            shared = _Shared.start(
                ServerProcess(self._new_database(backend), self._workdir, *args, ca_cert=ca_cert)
            )
        self._servers[key] = shared
        return shared.process

    def close(self) -> list[str]:
        """Stop every server; what went wrong on the way (a server that did not exit 0)."""
        while self._servers:
            self._retire(self._servers.popitem()[1])
        return self._problems

    def _retire(self, shared: _Shared) -> None:
        process = shared.process
        shared.close()
        status = process.stop()
        assert process.db_url is not None
        self._drop_database(process.db_url)
        if status != 0:
            self._problems.append(
                f"serve {' '.join(process.args)} exited with {status}:\n{process.log()}"
            )


@dataclasses.dataclass
class _Shared:
    process: ServerProcess
    engine: sa.Engine
    """The server's database, read to check what a reset does not restore."""
    keys: Sequence[access.AccessKey]
    """The AccessKeys the server started with."""

    @classmethod
    def start(cls, process: ServerProcess) -> _Shared:
        assert process.db_url is not None
        process.start()
        engine = dialects.create_engine(settings.StorageSettings(url=process.db_url))
        return cls(process, engine, keys.KeyStore(engine).keys())

    def restore(self) -> bool:
        """Reset the emulator, and put the clock back as a new server has it; False when the
        server is not as a new one would be even so (it exited, or its keys changed)."""
        if not self.process.running:
            return False
        # The world, the task history and the fault rules (the probability draws start
        # afresh, seeded ids start again); the clock keeps its mode and time.
        self.process.emulator("POST", "EmulatorReset", "/_emulator/reset")
        if not self._clock_is_new():
            self._renew_clock()
            if not self._clock_is_new():
                return False
        # A reset keeps AccessKeys; the nonces and the audit log too, which no test of a
        # shared server depends on (requests sign with random nonces, the one fixed nonce is
        # one test's, and the test that reads the audit log starts a server of its own).
        return list(keys.KeyStore(self.engine).keys()) == list(self.keys)

    def close(self) -> None:
        self.engine.dispose()

    def _clock_is_new(self) -> bool:
        """A new server's clock, as stored: realtime at speed 0 and never moved away from
        the wall clock (the simulated time it shows equals the wall-clock time)."""
        state = sim_clock.ClockStore(self.engine).load()
        return (
            state is not None
            and (state.mode, state.speed) == (emulator.REALTIME, 0.0)
            and state.sim_us == state.real_us
        )

    def _renew_clock(self) -> None:
        """Import the (reset) state with the clock of a server started now: an import is
        the one control that sets the clock's time, and the clock takes it at once."""
        document = self.process.emulator("GET", "EmulatorExportState", "/_emulator/state")
        now = clock.SystemClock().now_us()
        for row in document["tables"]["sim_clock"]:
            row.update(mode=emulator.REALTIME, speed=0.0, sim_us=now, real_us=now)
        self.process.emulator("POST", "EmulatorImportState", "/_emulator/state", document)
