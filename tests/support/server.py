"""Running ``clustertasks serve`` as a real subprocess for acceptance tests.

:class:`ServerProcess` is the one way the suite starts a server: for a test of its own when
the process is the point (startup, signals, exit statuses, a kill -9 and a restart, flags no
other test uses), and through :class:`SharedServers` for every test that only needs a
running server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx
import sqlalchemy as sa

from clustertasks import clock, settings
from clustertasks.cli import client
from clustertasks.domain import access, emulator
from clustertasks.storage import dialects, keys, sim_clock
from tests.support import signing

PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child: no proxies (the SDK honours them even for 127.0.0.1),
    no CLUSTERTASKS_* settings leaking in from the developer's shell."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in PROXY_VARIABLES and not k.startswith("CLUSTERTASKS_")
    }
    env.update(extra)
    return env


class ServerProcess:
    def __init__(
        self, db_url: str | None, workdir: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        """``db_url`` None: let the server take its database from ``env`` or its default."""
        self.db_url = db_url
        self.env = env or {}
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.endpoint}"
        self.workdir = workdir
        self.args = args
        self.log_path = workdir / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30.0) -> Self:
        self._log = self.log_path.open("ab")
        command = [sys.executable, "-m", "clustertasks", "serve", *self.args]
        # Every server knows the key the SDK is configured with (tests/acceptance/sdk.py);
        # a test may replace it through ``env``.
        env = clean_env(CLUSTERTASKS_PORT=str(self.port), **{**signing.SERVER_ENV, **self.env})
        if self.db_url is not None:
            command += ["--db", self.db_url]
        self.process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1.0, trust_env=False).is_success:
                    return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Ask the server to stop; return its exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_log()
        return self.process.returncode

    def kill(self) -> None:
        """kill -9: no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def emulator(self, method: str, action: str, path: str, body: Any = None) -> dict[str, Any]:
        """Call one of the emulator's controls (``/_emulator/…``) with the test key, through
        the client ``clustertasks.testing.Emulator`` uses for the same calls. A connection
        of its own: one kept idle between tests could be closed by the server as it is used."""
        with client.ApiClient(self.url, signing.auth(), timeout=120.0) as api:
            return api.call(method, action, path, json=body)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()


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

    def lease(self, backend: str, *args: str) -> ServerProcess:
        """A running ``clustertasks serve ARGS`` on ``backend``, as if just started on a new
        database: no tasks, no world, no fault rules, a realtime clock reading the wall
        clock's time, only the test key."""
        key = (backend, args)
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
            shared = _Shared.start(ServerProcess(self._new_database(backend), self._workdir, *args))
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
