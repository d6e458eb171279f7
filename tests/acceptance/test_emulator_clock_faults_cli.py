"""``clustertasks emulator clock|faults`` against a real server.

Not collected yet: the ``/_emulator/clock`` and ``/_emulator/faults`` routes are built
separately. Once they are in, rename this file to ``test_emulator_clock_faults_cli.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.support import signing
from tests.support.server import ServerProcess, clean_env


def emulator(server: ServerProcess, *args: str) -> Any:
    """Run ``clustertasks emulator ARGS -o json`` and return its JSON output."""
    result = subprocess.run(
        [sys.executable, "-m", "clustertasks", "emulator", *args, "--endpoint", server.url],
        capture_output=True,
        text=True,
        env=clean_env(COLUMNS="200", **signing.SERVER_ENV),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def test_clock_show_set_mode_and_advance(server: ServerProcess) -> None:
    shown = emulator(server, "clock", "-o", "json")
    assert {"mode", "speed", "now", "request_id"} <= set(shown)
    assert shown["mode"] == "realtime"
    manual = emulator(server, "clock", "set-mode", "manual", "-o", "json")
    assert manual["mode"] == "manual"
    advanced = emulator(server, "clock", "advance", "3600", "-o", "json")
    assert advanced["mode"] == "manual"
    assert advanced["now"] != manual["now"]
    per_poll = emulator(server, "clock", "set-mode", "per_poll", "-o", "json")
    assert per_poll["mode"] == "per_poll"


def test_faults_add_list_delete(server: ServerProcess) -> None:
    made = emulator(
        server,
        "faults",
        "add",
        "--task-type",
        "cluster_scaleout",
        "--instance-index",
        "3",
        "--error-code",
        "OperationDenied.NoStock",
        "--message",
        "no stock",
        "--count",
        "1",
        "-o",
        "json",
    )
    assert made["fault_id"]
    assert made["match"]["task_type"] == "cluster_scaleout"
    assert made["match"]["instance_index"] == 3
    assert made["effect"]["error_code"] == "OperationDenied.NoStock"
    assert made["effect"]["message"] == "no stock"
    assert (made["count"], made["hits"]) == (1, 0)
    slow = emulator(
        server, "faults", "add", "--stage", "JoinNodes", "--latency", "30", "-o", "json"
    )
    assert slow["effect"]["latency_seconds"] == 30

    listed = emulator(server, "faults", "list", "-o", "json")
    assert [f["fault_id"] for f in listed["faults"]] == [made["fault_id"], slow["fault_id"]]

    emulator(server, "faults", "delete", made["fault_id"])
    listed = emulator(server, "faults", "list", "-o", "json")
    assert [f["fault_id"] for f in listed["faults"]] == [slow["fault_id"]]
    emulator(server, "faults", "delete", "--all")
    assert emulator(server, "faults", "list", "-o", "json")["faults"] == []


def test_reset_forgets_fault_rules(server: ServerProcess) -> None:
    emulator(server, "faults", "add", "--node-name", "n1", "--node-not-ready", "-o", "json")
    emulator(server, "reset", "-o", "json")
    assert emulator(server, "faults", "list", "-o", "json")["faults"] == []
