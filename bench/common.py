"""Shared by the bench scripts: timing helpers, machine facts and the results file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {sys.platform}"


def percentile(samples: list[float], q: float) -> float:
    """``q`` in [0, 100], nearest-rank on sorted samples; 0.0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else 0.0


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else float("nan")


def save(path: str | None, name: str, figures: dict[str, Any]) -> None:
    """Merge ``figures`` under ``name`` into the JSON results file at ``path`` (if given)."""
    if not path:
        return
    target = Path(path)
    data: dict[str, Any] = json.loads(target.read_text()) if target.exists() else {}
    data[name] = figures
    data.setdefault("machine", machine())
    target.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def rss_peak_kib(pid: int) -> int | None:
    """The process's peak resident set (VmHWM) in KiB, or None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def json_line(command: list[str], timeout: float, what: str) -> dict[str, Any]:
    """Run ``command`` and return the last line of its output that is a JSON object;
    ``RuntimeError`` naming ``what`` (with the end of its output) when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        output = (done.stderr or done.stdout).strip()[-500:]
        raise RuntimeError(f"{what} failed: {output}")
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` and its children so far (Linux's
    /proc; 0 where there is none): a server's work per request, which a shared machine
    disturbs far less than its requests/s."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        proc = Path(f"/proc/{current}")
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in (proc / "task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total
