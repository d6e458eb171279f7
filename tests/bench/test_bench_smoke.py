"""The bench scripts still run: each at its smallest sizes, in a subprocess.

No timing is asserted (figures on a shared CI machine mean nothing); only that each
script exits 0 and prints its figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def run(script: str, *args: str, timeout: float = 90) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_engine_bench_prints_transitions_per_second(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    out = run(
        "engine.py",
        "--tasks",
        "3",
        "--skip-postgres",
        "--skip-dbos",
        "--skip-temporal",
        "--json",
        str(results),
    )
    assert "raw SQLite commit loop" in out
    assert "clustertasks (SQLite)" in out
    assert "trans/s" in out
    assert '"engine"' in results.read_text()


@pytest.mark.timeout(180)
def test_read_path_bench_prints_rates_and_ratios() -> None:
    out = run(
        "read_path.py",
        "--small",
        "3",
        "--large",
        "6",
        "--results",
        "3",
        "--through-store",
        "2",
        "--requests",
        "20",
        "--concurrency",
        "2",
        "--workers",
        "2",
        "--rounds",
        "1",
        "--client",
        "raw",
        timeout=170,
    )
    assert "load generator: raw" in out
    assert "floor: FastAPI + SQLite" in out
    assert "GET /healthz" in out
    assert "DescribeTaskInfo" in out
    assert "DescribeTaskInfo signed / floor requests/s" in out
    assert "ratios (2 API worker processes):" in out
    assert " 0 not 200" in out
    assert "server CPU" in out


@pytest.mark.timeout(180)
def test_read_path_bench_runs_on_wrk_and_reports(tmp_path: Path) -> None:
    """wrk (scripts/ensure-wrk) sends each signed request once, for --seconds each; the
    figures go into docs/performance.md's block through bench/report.py."""
    results = tmp_path / "results.json"
    out = run(
        "read_path.py",
        *("--small", "3", "--large", "0", "--results", "3", "--through-store", "2"),
        *("--concurrency", "2", "--workers", "2", "--rounds", "2"),
        *("--client", "wrk", "--seconds", "1", "--json", str(results)),
        timeout=170,
    )
    assert "load generator: wrk" in out
    assert "DescribeTaskInfo signed / floor requests/s" in out
    assert "DescribeTaskInfo signed / healthz requests/s" in out
    assert "DescribeTaskInfo --auth off / floor requests/s" in out
    # Every signed request was fresh: a nonce sent twice would be a 400.
    assert out.count(" 0 not 200") == out.count(" not 200") > 0
    read = json.loads(results.read_text())["read_path"]
    # Each ratio is the median of its rounds, healthz measured in each round beside them.
    assert {k: len(v) for k, v in read["round_ratios"].items()} == {
        "signed": 2,
        "auth_off": 2,
        "signed_vs_healthz": 2,
        "auth_off_vs_healthz": 2,
    }
    assert read["healthz"]["requests"] > 0
    assert read["healthz"]["server_cpu_us"] > 0

    doc = tmp_path / "performance.md"
    run("report.py", str(results), str(doc), str(tmp_path / "performance.png"))
    text = doc.read_text()
    assert "| GET /healthz |" in text
    assert "server CPU µs/request" in text
    assert "÷ healthz = **" in text
    assert "; pairs " in text


def test_in_process_read_bench_prints_cpu_per_request() -> None:
    out = run("read_asgi.py", "--tasks", "2", "--requests", "32", "--repeat", "1")
    assert "DescribeTaskInfo, signed" in out
    assert "DescribeTaskInfo, --auth off" in out
    assert "µs of CPU per request" in out


def test_in_process_read_bench_runs_workers_on_one_database() -> None:
    out = run("read_asgi.py", "--tasks", "2", "--requests", "32", "--repeat", "1", "--workers", "2")
    assert out.count("DescribeTaskInfo, signed") == 2
    assert out.count("DescribeTaskInfo, --auth off") == 2
    assert "(process " in out


@pytest.mark.timeout(180)
def test_e2e_bench_prints_wall_time_and_peak_memory() -> None:
    out = run("e2e.py", "--scale-outs", "2", "--nodes", "1", "--pools-per-cluster", "2")
    assert "all ended after" in out
    assert "VmHWM" in out
    assert "0 rejected, 0 unfinished" in out


@pytest.mark.timeout(180)
def test_flood_bench_prints_the_other_clients_latency_and_memory(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    out = run(
        "flood.py",
        "--waiters",
        "30",
        "--seconds",
        "1",
        "--settle",
        "0.2",
        "--rate-seconds",
        "1",
        "--json",
        str(results),
    )
    assert "p99_ratio_flood_vs_baseline" in out
    assert '"held_vs_before"' in out
    figures = json.loads(out[out.index("{") :])
    assert figures["describe_rate"]["held_server_cpu_us"] > 0
    assert figures["describe_rate"]["after_rps"] > 0
    assert figures["describe_rate"]["held_vs_around"] > 0
    assert '"not_200": 0' in out
    assert '"peak_during"' in out
    assert '"prober_while_held"' in out
    assert '"flood-poll"' in results.read_text()
