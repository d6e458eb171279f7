"""``clustertasks worker`` as a child process, beside ``ServerProcess`` replicas."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Self

from clustertasks import testing
from tests.support import signing

READY = "clustertasks worker on Temporal"
START_TIMEOUT = 60.0


class WorkerProcess(testing.ChildProcess):
    def __init__(
        self, db_url: str, workdir: Path, temporal_address: str, task_queue: str, *args: str
    ) -> None:
        self.command = [
            sys.executable,
            "-m",
            "clustertasks",
            "worker",
            "--db",
            db_url,
            "--temporal-address",
            temporal_address,
            "--task-queue",
            task_queue,
            *args,
        ]
        self.workdir = workdir
        self.log_path = workdir / f"worker-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> Self:
        """Start the process without waiting for it (start several, then :meth:`wait_ready`)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                env=testing.clean_environment(**signing.SERVER_ENV),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> Self:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while READY not in self.log():
            if self.process.poll() is not None:
                raise AssertionError(f"the worker exited:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker did not start within {timeout:g}s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def __enter__(self) -> Self:
        return self.launch().wait_ready()
