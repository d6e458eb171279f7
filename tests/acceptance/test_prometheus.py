"""A real Prometheus (Debian's package, installed by scripts/ensure-prometheus) scrapes a
``clustertasks serve --metrics-public`` with the alert rules of docs/observability, and is
asked over its HTTP API what it saw after a scale-out."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.acceptance import test_observability as observed
from tests.support import polling
from tests.support import server as server_support
from tests.support.server import ServerProcess

DOCS = Path(__file__).resolve().parents[2] / "docs" / "observability"
ALERT_RULES = DOCS / "alerts.yml"
DASHBOARD = DOCS / "grafana-dashboard.json"


class Prometheus:
    def __init__(self, workdir: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed: run scripts/ensure-prometheus"
        self.port = server_support.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERT_RULES)],
            "scrape_configs": [
                {"job_name": "clustertasks", "static_configs": [{"targets": [target]}]}
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_support.clean_env(),
            )

    def query(self, expression: str) -> list[dict[str, Any]] | None:
        """The result vector of an instant query; None while Prometheus is not up yet."""
        try:
            response = httpx.get(
                f"{self.url}/api/v1/query", params={"query": expression}, trust_env=False
            )
        except httpx.TransportError:
            assert self.process.poll() is None, self.log_path.read_text()
            return None
        if response.status_code != 200:
            return None
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def check(self, expression: str) -> str:
        """Prometheus' verdict on a query: ``success``, or its error."""
        response = httpx.get(
            f"{self.url}/api/v1/query", params={"query": expression}, trust_env=False
        )
        document = response.json()
        return str(document["status"] if response.status_code == 200 else document["error"])

    def rules(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/rules", trust_env=False)
        response.raise_for_status()
        return [rule for group in response.json()["data"]["groups"] for rule in group["rules"]]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def prometheus(
    tmp_path: Path, observed_server: ServerProcess
) -> Iterator[tuple[Prometheus, ServerProcess]]:
    running = Prometheus(tmp_path, observed_server.endpoint)
    try:
        yield running, observed_server
    finally:
        running.stop()


observed_server = observed.observed_server


def _value(result: list[dict[str, Any]] | None) -> float | None:
    return float(result[0]["value"][1]) if result else None


@pytest.mark.one_backend
def test_prometheus_scrapes_the_server_and_answers_queries(
    prometheus: tuple[Prometheus, ServerProcess],
) -> None:
    scraper, server = prometheus
    polling.until(
        "Prometheus scraping the server",
        lambda: _value(scraper.query('up{job="clustertasks"}')),
        lambda up: up == 1,
    )

    observed.scale_out(server)

    scaled = 'clustertasks_tasks{task_type="cluster_scaleout",state="success"}'
    polling.until(
        "Prometheus seeing the finished scale-out",
        lambda: _value(scraper.query(scaled)),
        lambda value: value == 1,
    )
    finished = scraper.query(
        'clustertasks_tasks_finished_total{task_type="cluster_scaleout",state="success"}'
    )
    assert _value(finished) is not None
    assert _value(finished) >= 1  # type: ignore[operator]
    # p99 of each stage, as the dashboard asks for it.
    p99 = scraper.query(
        "histogram_quantile(0.99, sum by (le, stage) "
        '(clustertasks_stage_duration_seconds_bucket{task_type="cluster_scaleout"}))'
    )
    assert p99 is not None
    assert {series["metric"]["stage"] for series in p99} == set(observed.SCALE_OUT_STAGES)
    requests = scraper.query(
        'sum by (access_key_id) (clustertasks_api_requests_total{operation="ScaleClusterNodePool"})'
    )
    assert requests
    assert requests[0]["metric"]["access_key_id"] == "test-ak"
    # The documented alert rules load and evaluate cleanly; nothing fires after a success.
    rules = polling.until(
        "the alert rules evaluated",
        scraper.rules,
        # Never evaluated yet: lastEvaluation is Go's zero time, year 0001.
        lambda rules: (
            bool(rules) and not any(r["lastEvaluation"].startswith("0001") for r in rules)
        ),
    )
    names = {rule["name"] for rule in rules}
    documented = yaml.safe_load(ALERT_RULES.read_text())
    assert names == {r["alert"] for g in documented["groups"] for r in g["rules"]}
    assert all(rule["health"] == "ok" for rule in rules), rules
    firing = [r["name"] for r in rules if r["state"] == "firing"]
    # Every query of the documented dashboard is valid PromQL for these names.
    verdicts = {query: scraper.check(query) for query in _dashboard_queries()}
    assert verdicts
    assert all(verdict == "success" for verdict in verdicts.values()), verdicts
    assert "ClustertasksTasksFailing" not in firing
    assert "ClustertasksTasksStuck" not in firing


def _dashboard_queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard, its variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        target["expr"].replace("$__rate_interval", "1m").replace("$task_type", ".*")
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]
