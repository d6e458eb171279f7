"""The ``clustertasks`` command line, run in-process (Typer's runner) or as a subprocess,
isolated from the developer's shell: no ``CLUSTERTASKS_*`` variable, profile directory or
credentials file leaks in unless the test puts it there."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from clustertasks.cli import main
from tests.support import server as server_support
from tests.support import signing

CLIENT_VARIABLES = (
    "CLUSTERTASKS_ENDPOINT",
    "CLUSTERTASKS_ACCESS_KEY_ID",
    "CLUSTERTASKS_ACCESS_KEY_SECRET",
    "CLUSTERTASKS_PROFILE",
    "CLUSTERTASKS_CA_CERT",
)
ERROR_LINE = re.compile(
    r"Error: (?P<code>[\w.]+): (?P<message>.+?)(?: \(request id (?P<rid>.+)\))?"
)


class Cli:
    """Runs commands with ``env`` (plus per-call overrides) in ``workdir``, with its own
    ``XDG_CONFIG_HOME``."""

    def __init__(self, workdir: Path, env: Mapping[str, str | None] | None = None) -> None:
        self.workdir = workdir
        self.config_home = workdir / "xdg"
        workdir.mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str | None] = {name: None for name in CLIENT_VARIABLES}
        self.env.update(XDG_CONFIG_HOME=str(self.config_home), COLUMNS="200")
        self.env.update(env or {})

    @property
    def config_file(self) -> Path:
        return self.config_home / "clustertasks" / "config.toml"

    def __call__(
        self, *args: str, env: Mapping[str, str | None] | None = None, input: str | None = None
    ) -> Result:
        """Run in this process; the working directory must be ``workdir`` (monkeypatch)."""
        assert Path.cwd() == self.workdir, "chdir to the Cli's workdir first"
        result = CliRunner().invoke(
            main.app, list(args), env={**self.env, **(env or {})}, input=input
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(
                "the command raised:\n"
                + "".join(traceback.format_exception(result.exception))
                + f"\nstderr: {result.stderr}"
            )
        return result

    def json(self, *args: str, env: Mapping[str, str | None] | None = None) -> Any:
        result = self(*args, "-o", "json", env=env)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    def subprocess(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run as ``python -m clustertasks``, stdout and stderr pipes (not terminals)."""
        base = {k: v for k, v in self.env.items() if v is not None}
        return subprocess.run(
            [sys.executable, "-m", "clustertasks", *args],
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env=server_support.clean_env(**{**base, **(env or {})}),
            timeout=90,
            check=False,
        )


def signed_env(server: server_support.ServerProcess) -> dict[str, str | None]:
    """The server's endpoint and the test key, as variables."""
    return {
        "CLUSTERTASKS_ENDPOINT": server.url,
        "CLUSTERTASKS_ACCESS_KEY_ID": signing.KEY_ID,
        "CLUSTERTASKS_ACCESS_KEY_SECRET": signing.SECRET,
    }


def value(stdout: str, key: str) -> str:
    """From a mutating command's ``key value`` lines, the value of ``key``."""
    for line in stdout.splitlines():
        name, _, rest = line.partition(" ")
        if name == key:
            return rest.strip()
    raise AssertionError(f"no {key} line in:\n{stdout}")


def error(stderr: str) -> dict[str, str]:
    """The one error line, parsed; it must be the whole of stderr."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    found = ERROR_LINE.fullmatch(lines[0])
    assert found is not None, lines[0]
    return {k: v or "" for k, v in found.groupdict().items()}
