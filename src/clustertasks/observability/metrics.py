"""The Prometheus metrics of one server, on a registry of its own.

Counters and histograms move as things happen (hooks in ``telemetry`` and the API's
middleware call the ``observe_*``/``count_*`` methods); gauges that describe state (tasks by
type and state, the executor's load, open watches) are read when Prometheus scrapes, from
the callables the composition root hands to :meth:`Metrics.watch_tasks` and friends.

``serve`` is one process (uvicorn runs the app in it, with no worker processes), so one
registry per process is the whole truth of that process; several replicas are several
targets, told apart by Prometheus' ``instance`` label. The task gauges come from the shared
database and so read the same on every replica (aggregate them with ``max``, not ``sum``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    exposition,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("clustertasks.observability")

PREFIX = "clustertasks"
CONTENT_TYPE = exposition.CONTENT_TYPE_LATEST

# Stages run from milliseconds (sim speed 0) to tens of minutes (a realistic drain).
STAGE_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)

TaskCounts = Callable[[], Iterable[tuple[str, str, int]]]
"""(task_type, state, count) for every pair that has tasks."""
ExecutorLoad = Callable[[], tuple[int, int]]
"""(running, waiting): tasks a runner works on now, and runnable ones waiting for a slot."""
Count = Callable[[], int]
M = TypeVar("M", Counter, Gauge, Histogram)
MAX_KEPT_CHILDREN = 1024


class Children(Generic[M]):
    """A labelled metric's children, each looked up once (``labels()`` takes a lock and
    builds its key on every call, which costs more than a count). At most ``limit`` are
    kept: label values that come from requests (keys, codes) are not a bounded set."""

    def __init__(self, metric: M, limit: int = MAX_KEPT_CHILDREN) -> None:
        self._metric: M = metric
        self._limit = limit
        self._kept: dict[tuple[str, ...], M] = {}

    def __call__(self, *labels: str) -> M:
        child = self._kept.get(labels)
        if child is None:
            child = self._metric.labels(*labels)
            if len(self._kept) < self._limit:
                self._kept[labels] = child
        return child


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.stage_duration = Histogram(
            f"{PREFIX}_stage_duration_seconds",
            "Time one attempt of a stage took, by task type, stage and outcome "
            "(success, retry, fail, timeout, interrupted).",
            ["task_type", "stage", "outcome"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.tasks_finished = Counter(
            f"{PREFIX}_tasks_finished",
            "Tasks that reached an end state (success, fail, canceled), by task type.",
            ["task_type", "state"],
            registry=r,
        )
        self.stage_retries = Counter(
            f"{PREFIX}_stage_retries",
            "Stage attempts that failed and were retried, by task type, stage and error code.",
            ["task_type", "stage", "code"],
            registry=r,
        )
        self.stage_timeouts = Counter(
            f"{PREFIX}_stage_timeouts",
            "Stages that ran out of time (the task fails with StageTimeout).",
            ["task_type", "stage"],
            registry=r,
        )
        self.cloud_calls = Histogram(
            f"{PREFIX}_cloud_call_duration_seconds",
            "Calls the stages made to the cloud provider, by operation and outcome "
            "(ok or the error code).",
            ["operation", "outcome"],
            buckets=API_BUCKETS,
            registry=r,
        )
        self.api_requests = Counter(
            f"{PREFIX}_api_requests",
            "API requests answered, by operation, HTTP status, error code ('' on success) "
            "and AccessKey id ('' when unsigned or refused before the key was known).",
            ["operation", "status", "code", "access_key_id"],
            registry=r,
        )
        self.api_duration = Histogram(
            f"{PREFIX}_api_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by operation.",
            ["operation"],
            buckets=API_BUCKETS,
            registry=r,
        )
        self.api_in_flight = Gauge(
            f"{PREFIX}_api_requests_in_flight",
            "Requests being answered now, by operation (DescribeTaskStream: open event "
            "streams; DescribeTaskInfo includes long-polls).",
            ["operation"],
            registry=r,
        )
        self.auth_failures = Counter(
            f"{PREFIX}_auth_failures",
            "Requests refused by the signature check, by reason (the error code).",
            ["reason"],
            registry=r,
        )
        self.throttled = Counter(
            f"{PREFIX}_throttled_requests",
            "Requests refused for load, by reason (Throttling.User: an AccessKey's rate; "
            "ServiceUnavailable: too many open long-polls and streams).",
            ["reason"],
            registry=r,
        )
        self.db_transactions = Histogram(
            f"{PREFIX}_db_transaction_duration_seconds",
            "Database transactions from BEGIN to COMMIT or ROLLBACK, by backend and outcome.",
            ["backend", "outcome"],
            buckets=DB_BUCKETS,
            registry=r,
        )
        self._transaction_series = Children(self.db_transactions)  # told after every one
        self._state = _StateCollector()
        r.register(self._state)
        # The process's own figures (CPU, memory, open files; Python's GC and version), as
        # the default registry would have them.
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        PlatformCollector(registry=r)

    def watch_tasks(self, counts: TaskCounts) -> None:
        """Report ``clustertasks_tasks{task_type,state}`` from ``counts`` at each scrape."""
        self._state.tasks = counts

    def watch_executor(self, executor: str, load: ExecutorLoad) -> None:
        """Report the load of ``executor`` (``local``, ``temporal``…) at each scrape; every
        executor reports under the same names, told apart by the ``executor`` label."""
        self._state.executors[executor] = load

    def watch_watchers(self, count: Count) -> None:
        """Report the long-polls and event streams following tasks at each scrape."""
        self._state.watchers = count

    def observe_transaction(self, backend: str, seconds: float, outcome: str) -> None:
        self._transaction_series(backend, outcome).observe(seconds)

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return exposition.generate_latest(self.registry)


class _StateCollector(Collector):
    """Gauges read at scrape time; a source that fails is left out of that scrape (and
    logged) rather than failing the scrape."""

    def __init__(self) -> None:
        self.tasks: TaskCounts | None = None
        self.executors: dict[str, ExecutorLoad] = {}
        self.watchers: Count | None = None

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # read at scrape time; nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tasks = GaugeMetricFamily(
            f"{PREFIX}_tasks",
            "Tasks in the database, by task type and state.",
            labels=["task_type", "state"],
        )
        if self.tasks is not None:
            try:
                for task_type, state, count in self.tasks():
                    tasks.add_metric([task_type, state], count)
            except Exception:
                log.exception("counting tasks for /metrics failed")
        yield tasks
        running = GaugeMetricFamily(
            f"{PREFIX}_executor_running_tasks",
            "Tasks an executor is running now.",
            labels=["executor"],
        )
        backlog = GaugeMetricFamily(
            f"{PREFIX}_executor_backlog_tasks",
            "Runnable tasks an executor has picked up and that wait for a free slot.",
            labels=["executor"],
        )
        for name, load in sorted(self.executors.items()):
            now_running, waiting = load()
            running.add_metric([name], now_running)
            backlog.add_metric([name], waiting)
        yield running
        yield backlog
        if self.watchers is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_open_watches",
                "Long-polls and event streams following a task now.",
                value=self.watchers(),
            )
