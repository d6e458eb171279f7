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
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from clustertasks import errors
from clustertasks.cli import client

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0


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
        self.port = 0
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._api: client.ApiClient | None = None

    # -- where it is -----------------------------------------------------------------------

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
        self.port = _free_port()
        command = [
            sys.executable,
            "-m",
            "clustertasks",
            "serve",
            "--port",
            str(self.port),
            "--db",
            f"sqlite:///{self._workdir / 'clustertasks.db'}",
            "--sim-speed",
            str(self.speed),
            *(("--sim-seed", str(self.seed)) if self.seed is not None else ()),
            *(("--sim-clock", self.clock) if self.clock else ()),
            *self.extra_args,
        ]
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("CLUSTERTASKS_") and key.lower() not in _PROXIES
        }
        env["CLUSTERTASKS_ACCESS_KEY_ID"] = self.access_key_id
        env["CLUSTERTASKS_ACCESS_KEY_SECRET"] = self.access_key_secret
        log = (self._workdir / "server.log").open("ab")
        try:
            self._process = subprocess.Popen(
                command, cwd=self._workdir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        finally:
            log.close()
        self._api = client.ApiClient(
            self.url, client.SigningAuth(self.access_key_id, self.access_key_secret), timeout=600.0
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1.0, trust_env=False).is_success:
                    return self
            time.sleep(0.05)
        output = self.log()
        self.stop()
        raise errors.ConfigurationError(f"the emulator did not start:\n{output}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its database."""
        if self._api is not None:
            self._api.close()
            self._api = None
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def log(self) -> str:
        """What the server printed so far."""
        if self._workdir is None:
            return ""
        path = self._workdir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

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
_PROXIES = frozenset({"http_proxy", "https_proxy", "all_proxy"})


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
