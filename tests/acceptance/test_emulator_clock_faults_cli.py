"""``clustertasks emulator clock|faults`` against a real server: every command, the output
formats, the configuration every client command shares, and refusals as one error line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.acceptance import cli as cli_support
from tests.support import signing
from tests.support.server import ServerProcess

NOWHERE = "http://127.0.0.1:1"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> cli_support.Cli:
    """The CLI with nothing configured, run in an empty working directory."""
    runner = cli_support.Cli(tmp_path / "cli")
    monkeypatch.chdir(runner.workdir)
    return runner


@pytest.fixture
def ct(cli: cli_support.Cli, server: ServerProcess) -> cli_support.Cli:
    """The CLI pointed at the server, with the test key, through the variables."""
    cli.env.update(cli_support.signed_env(server))
    return cli


def emulator(ct: cli_support.Cli, *args: str) -> Any:
    """``clustertasks emulator ARGS -o json``: its JSON output."""
    return ct.json("emulator", *args)


def test_clock_show_set_mode_and_advance(ct: cli_support.Cli) -> None:
    shown = emulator(ct, "clock", "show")
    assert {"mode", "speed", "now", "waiting", "request_id"} <= set(shown)
    assert shown["mode"] == "realtime"
    line = ct("emulator", "clock", "show")
    assert line.exit_code == 0, line.stderr
    assert line.stdout.startswith("mode realtime  speed ")

    # Advancing is for a manual clock: the server's refusal is one line, exit 4.
    refused = ct("emulator", "clock", "advance", "60")
    assert refused.exit_code == 4, refused.stdout
    assert refused.stdout == ""
    error = cli_support.error(refused.stderr)
    assert error["code"] == "IncorrectClockMode"
    assert error["rid"]

    manual = emulator(ct, "clock", "set-mode", "manual")
    assert manual["mode"] == "manual"
    advanced = emulator(ct, "clock", "advance", "3600")
    assert advanced["mode"] == "manual"
    assert advanced["now"] != manual["now"]
    as_yaml = ct("emulator", "clock", "advance", "60", "-o", "yaml")
    assert as_yaml.exit_code == 0, as_yaml.stderr
    assert yaml.safe_load(as_yaml.stdout)["mode"] == "manual"
    per_poll = ct("emulator", "clock", "set-mode", "per_poll")
    assert per_poll.exit_code == 0, per_poll.stderr
    assert per_poll.stdout.startswith("mode per_poll  ")
    assert emulator(ct, "clock", "show")["mode"] == "per_poll"


def test_faults_add_list_delete(ct: cli_support.Cli) -> None:
    made = emulator(
        ct, "faults", "add", "--task-type", "cluster_scaleout", "--instance-index", "3",
        "--error-code", "OperationDenied.NoStock", "--message", "no stock", "--count", "1",
    )  # fmt: skip
    assert made["fault_id"]
    assert made["match"] == {"task_type": "cluster_scaleout", "instance_index": 3}
    assert made["effect"] == {"error_code": "OperationDenied.NoStock", "message": "no stock"}
    assert (made["count"], made["remaining"], made["hits"]) == (1, 1, 0)
    slow = ct("emulator", "faults", "add", "--stage", "JoinNodes", "--latency", "30")
    assert slow.exit_code == 0, slow.stderr
    assert "added" in slow.stdout
    assert "stage=JoinNodes" in slow.stdout
    assert "latency_seconds=30" in slow.stdout

    listed = emulator(ct, "faults", "list")
    ids = [f["fault_id"] for f in listed["faults"]]
    assert ids[0] == made["fault_id"]
    assert len(ids) == 2
    as_yaml = ct("emulator", "faults", "list", "-o", "yaml")
    assert as_yaml.exit_code == 0, as_yaml.stderr
    assert yaml.safe_load(as_yaml.stdout)["faults"] == listed["faults"]
    table = ct("emulator", "faults", "list")
    assert table.exit_code == 0, table.stderr
    assert "fault rules — 2" in table.stdout
    assert all(fault_id in table.stdout for fault_id in ids)
    assert "error_code=OperationDenied.NoStock message=no stock" in table.stdout

    deleted = ct("emulator", "faults", "delete", made["fault_id"])
    assert deleted.exit_code == 0, deleted.stderr
    assert deleted.stdout == f"fault {made['fault_id']} deleted\n"
    assert [f["fault_id"] for f in emulator(ct, "faults", "list")["faults"]] == ids[1:]
    again = ct("emulator", "faults", "delete", made["fault_id"])
    assert again.exit_code == 4
    assert cli_support.error(again.stderr)["code"] == "ErrorFaultNotFound"

    assert emulator(ct, "faults", "delete", "--all")["removed"] == 1
    assert emulator(ct, "faults", "list")["faults"] == []
    emulator(ct, "faults", "add", "--node-name", "n2", "--node-not-ready")
    emulator(ct, "faults", "add", "--node-name", "n3", "--node-not-ready")
    assert emulator(ct, "faults", "clear")["removed"] == 2
    assert emulator(ct, "faults", "list")["faults"] == []


def test_reset_forgets_fault_rules(ct: cli_support.Cli) -> None:
    emulator(ct, "faults", "add", "--node-name", "n1", "--node-not-ready")
    emulator(ct, "reset")
    assert emulator(ct, "faults", "list")["faults"] == []


def test_a_profile_written_by_configure_is_used(
    cli: cli_support.Cli, server: ServerProcess
) -> None:
    saved = cli(
        "configure",
        "--endpoint",
        server.url,
        "--access-key-id",
        signing.KEY_ID,
        "--access-key-secret",
        signing.SECRET,
    )
    assert saved.exit_code == 0, saved.stderr
    away = cli("configure", "--profile", "away", "--endpoint", NOWHERE)
    assert away.exit_code == 0, away.stderr
    wrong = cli(
        "configure",
        "--profile",
        "wrong",
        "--endpoint",
        server.url,
        "--access-key-id",
        signing.KEY_ID,
        "--access-key-secret",
        "not-the-secret",
    )
    assert wrong.exit_code == 0, wrong.stderr

    # No flag, no variable: the default profile's server and key.
    shown = cli("emulator", "clock", "show", "-o", "json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["mode"] == "realtime"

    unreachable = cli("emulator", "faults", "list", "--profile", "away")
    assert unreachable.exit_code == 4
    assert cli_support.error(unreachable.stderr)["code"] == "ConnectionFailed"
    assert NOWHERE in unreachable.stderr
    refused = cli("emulator", "faults", "list", env={"CLUSTERTASKS_PROFILE": "wrong"})
    assert refused.exit_code == 4
    assert cli_support.error(refused.stderr)["code"] == "SignatureDoesNotMatch"
    missing = cli("emulator", "reset", "--profile", "prod")
    assert missing.exit_code == 4
    assert "no profile 'prod'" in cli_support.error(missing.stderr)["message"]
    # A flag beats the profile's setting.
    flagged = cli(
        "emulator", "faults", "list", "--profile", "wrong", "--access-key-secret", signing.SECRET
    )
    assert flagged.exit_code == 0, flagged.stderr
