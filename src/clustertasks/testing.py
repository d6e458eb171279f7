"""A clustertasks emulator for a test suite: ``clustertasks serve`` in a subprocess.

Each :class:`Emulator` runs its own server on a free loopback port with a database of its
own (SQLite in a temporary directory), a fixed ``--sim-seed``, ``--sim-speed 0`` (nothing
waits) and an admin AccessKey made for it, and stops it again::

    import pytest
    from clustertasks.testing import Emulator

    @pytest.fixture(scope="session")
    def ack():
        with Emulator(seed=42) as emulator:
            yield emulator

    @pytest.fixture
    def ack_client(ack):
        ack.reset()  # a clean slate for every test
        from alibabacloud_cs20151215.client import Client
        from alibabacloud_tea_openapi.utils_models import Config
        return Client(Config(**ack.sdk_config()))

The controls of ``/_emulator/`` are methods: :meth:`Emulator.reset`,
:meth:`Emulator.set_clock`, :meth:`Emulator.advance`, :meth:`Emulator.add_fault`,
:meth:`Emulator.export_state` and :meth:`Emulator.import_state`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from clustertasks import errors
from clustertasks.cli import client

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0


class ChildProcess:
    """A ``clustertasks`` command run as a child process, its output in ``log_path``: how it
    is stopped, killed and read. :class:`ServerProcess` builds on it, and so do test
    launchers of other commands (a Temporal worker)."""

    process: subprocess.Popen[bytes] | None = None
    log_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        """Send ``sig`` (SIGKILL after ``timeout`` seconds); returns the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """kill -9: the process gets no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        """What the process printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()


class ServerProcess(ChildProcess):
    """``clustertasks serve`` as a child process on a free loopback port.

    The one launcher of the package: :class:`Emulator` builds on it, and so does the
    project's own test suite. The child gets a clean environment (no proxy variables, which
    the official SDK honours even for 127.0.0.1, and no ``CLUSTERTASKS_*`` setting from the
    caller's shell) plus ``env``; its output goes to ``server-PORT.log`` in ``workdir``.
    """

    def __init__(
        self,
        args: Sequence[str],
        workdir: Path,
        *,
        db_url: str | None = None,
        env: Mapping[str, str] | None = None,
        ca_cert: Path | None = None,
    ) -> None:
        """``db_url`` None: the server takes its database from ``env`` or its default;
        ``ca_cert``: the server speaks HTTPS (``args`` carry ``--tls-cert``/``--tls-key``)
        with a certificate this CA signed."""
        self.ca_cert = ca_cert
        self.args = tuple(args)
        self.workdir = workdir
        self.db_url = db_url
        self.env = dict(env or {})
        self.port = free_port()
        self.log_path = workdir / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """``host:port``, as the SDK's ``Config(endpoint=…)`` wants it (no scheme)."""
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "http" if self.ca_cert is None else "https"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.endpoint}"

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> Self:
        """Start the server and wait until ``/healthz`` answers; raises
        ``errors.ConfigurationError`` with its output if it exits or does not answer."""
        command = [sys.executable, "-m", "clustertasks", "serve", *self.args]
        if self.db_url is not None:
            command += ["--db", self.db_url]
        env = clean_environment(CLUSTERTASKS_PORT=str(self.port), **self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise errors.ConfigurationError(
                    f"the server exited with status {self.process.returncode}:\n{self.log()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                verify: ssl.SSLContext | bool = True
                if self.ca_cert is not None:
                    verify = ssl.create_default_context(cafile=str(self.ca_cert))
                health = httpx.get(
                    f"{self.url}/healthz", timeout=1.0, trust_env=False, verify=verify
                )
                if health.is_success:
                    return self
            time.sleep(0.05)
        self.kill()
        raise errors.ConfigurationError(
            f"the server did not answer within {timeout:g}s:\n{self.log()}"
        )

    def __enter__(self) -> Self:
        return self.start()


class Emulator:
    def __init__(
        self,
        *,
        seed: int | None = 42,
        speed: float = 0.0,
        clock: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """``clock``: ``realtime``, ``manual`` or ``per_poll`` (default: realtime)."""
        self.seed = seed
        self.speed = speed
        self.clock = clock
        self.extra_args = extra_args
        self.access_key_id = "CTAKtest" + secrets.token_hex(8)
        self.access_key_secret = secrets.token_urlsafe(24)
        self._workdir: Path | None = None
        self._server: ServerProcess | None = None
        self._api: client.ApiClient | None = None

    # -- where it is -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.port if self._server is not None else 0

    @property
    def endpoint(self) -> str:
        """``host:port``, as the SDK's ``Config(endpoint=…)`` wants it (no scheme)."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def sdk_config(self) -> dict[str, str]:
        """Keyword arguments for the official SDK's ``Config``."""
        return {
            "access_key_id": self.access_key_id,
            "access_key_secret": self.access_key_secret,
            "endpoint": self.endpoint,
            "protocol": "http",
        }

    def environment(self) -> dict[str, str]:
        """What the ``clustertasks`` CLI (and scripts) need to talk to this emulator."""
        return {
            "CLUSTERTASKS_ENDPOINT": self.url,
            "CLUSTERTASKS_ACCESS_KEY_ID": self.access_key_id,
            "CLUSTERTASKS_ACCESS_KEY_SECRET": self.access_key_secret,
        }

    # -- starting and stopping -------------------------------------------------------------

    def start(self) -> Self:
        self._workdir = Path(tempfile.mkdtemp(prefix="clustertasks-emulator-"))
        args = [
            "--sim-speed",
            str(self.speed),
            *(("--sim-seed", str(self.seed)) if self.seed is not None else ()),
            *(("--sim-clock", self.clock) if self.clock else ()),
            *self.extra_args,
        ]
        self._server = ServerProcess(
            args,
            self._workdir,
            db_url=f"sqlite:///{self._workdir / 'clustertasks.db'}",
            env={
                "CLUSTERTASKS_ACCESS_KEY_ID": self.access_key_id,
                "CLUSTERTASKS_ACCESS_KEY_SECRET": self.access_key_secret,
            },
        )
        try:
            self._server.start()
        except errors.ConfigurationError as exc:
            self.stop()
            raise errors.ConfigurationError(f"the emulator did not start: {exc.message}") from None
        self._api = client.ApiClient(
            self.url, client.SigningAuth(self.access_key_id, self.access_key_secret), timeout=600.0
        )
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its database."""
        if self._api is not None:
            self._api.close()
            self._api = None
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def log(self) -> str:
        """What the server printed so far."""
        return self._server.log() if self._server is not None else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the emulator's controls -----------------------------------------------------------

    def reset(self) -> dict[str, Any]:
        """Empty the world and the task history (keys, clock mode stay)."""
        return self._call("POST", "EmulatorReset", "/_emulator/reset")

    def set_clock(self, mode: str) -> dict[str, Any]:
        """``realtime``, ``manual`` or ``per_poll``."""
        return self._call("POST", "EmulatorSetClock", "/_emulator/clock", {"mode": mode})

    def advance(self, seconds: float) -> dict[str, Any]:
        """Move a manual clock forward; tasks waiting on simulated time continue."""
        body = {"seconds": seconds}
        return self._call("POST", "EmulatorAdvanceClock", "/_emulator/clock/advance", body)

    def add_fault(
        self,
        *,
        count: int | None = None,
        probability: float | None = None,
        **match_and_effect: Any,
    ) -> dict[str, Any]:
        """A fault rule: match keys (``task_type``, ``stage``, ``instance_index``,
        ``node_name``, ``operation``) and effect keys (``error_code``, ``message``,
        ``latency_seconds``, ``node_not_ready``) as keyword arguments."""
        match = {k: v for k, v in match_and_effect.items() if k in _MATCH_KEYS}
        effect = {k: v for k, v in match_and_effect.items() if k not in _MATCH_KEYS}
        rule: dict[str, Any] = {"match": match, "effect": effect}
        if count is not None:
            rule["count"] = count
        if probability is not None:
            rule["probability"] = probability
        return self._call("POST", "EmulatorAddFaultRule", "/_emulator/faults", rule)

    def faults(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call(
            "GET", "EmulatorListFaultRules", "/_emulator/faults"
        )["faults"]
        return found

    def clear_faults(self) -> dict[str, Any]:
        return self._call("DELETE", "EmulatorDeleteFaultRules", "/_emulator/faults")

    def export_state(self) -> dict[str, Any]:
        """The whole world and task history, as :meth:`import_state` takes it back."""
        return self._call("GET", "EmulatorExportState", "/_emulator/state")

    def import_state(self, document: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "EmulatorImportState", "/_emulator/state", document)

    def _call(self, method: str, action: str, path: str, body: Any = None) -> dict[str, Any]:
        if self._api is None:
            raise errors.ConfigurationError("the emulator is not running: start() it first")
        return self._api.call(method, action, path, json=body)


_MATCH_KEYS = frozenset({"task_type", "stage", "instance_index", "node_name", "operation"})
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
)


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without proxies and ``CLUSTERTASKS_*`` settings, plus
    ``extra``: what a child server or CLI should start from."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in PROXY_VARIABLES and not key.startswith("CLUSTERTASKS_")
    }
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
