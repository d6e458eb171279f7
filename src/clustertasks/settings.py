"""Settings: grouped, frozen, documented; read once at the edge and passed down.

Each field's docstring says what it does. The CLI reads flags, then ``CLUSTERTASKS_*``
environment variables, then these defaults, and builds a :class:`Settings`.
"""

from __future__ import annotations

import enum
import os
import zoneinfo
from dataclasses import dataclass, field

from clustertasks import errors

DEFAULT_DB_URL = "sqlite:///./clustertasks.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class ClockMode(enum.StrEnum):
    """How the simulated clock runs. Defined here, the lowest layer that needs it (the start
    mode is a setting); ``domain.emulator`` and the CLI use these names.

    ``realtime``: simulated time runs at ``speed`` times the wall clock; ``manual``: it moves
    only when advanced; ``per_poll``: it stands still, and each DescribeTaskInfo of a task
    lets that task's pending waits complete."""

    realtime = "realtime"
    manual = "manual"
    per_poll = "per_poll"


SIM_CLOCK_MODES = tuple(mode.value for mode in ClockMode)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = DEFAULT_HOST
    """Address the HTTP server binds to (``CLUSTERTASKS_HOST``)."""

    port: int = DEFAULT_PORT
    """TCP port the HTTP server listens on (``CLUSTERTASKS_PORT``)."""

    log_level: str = "info"
    """Server log level: debug, info, warning or error (``CLUSTERTASKS_LOG_LEVEL``)."""

    read_timeout_seconds: float = 30.0
    """Seconds a connection has to send a whole request, from when it opens or its previous
    response ends; a slower or silent one is closed (``CLUSTERTASKS_READ_TIMEOUT``)."""

    keep_alive_seconds: float = 5.0
    """Seconds an idle keep-alive connection stays open between requests
    (``CLUSTERTASKS_KEEP_ALIVE``)."""

    tls_cert: str | None = None
    """PEM certificate (chain) to serve HTTPS with, or None for plain HTTP
    (``CLUSTERTASKS_TLS_CERT``)."""

    tls_key: str | None = None
    """PEM private key of ``tls_cert`` (``CLUSTERTASKS_TLS_KEY``)."""

    workers: int = 1
    """API processes sharing the listening socket; the executor runs in the first one
    only (``CLUSTERTASKS_WORKERS``)."""

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise errors.ConfigurationError(
                "set both --tls-cert and --tls-key (CLUSTERTASKS_TLS_CERT, CLUSTERTASKS_TLS_KEY)"
                ", or neither"
            )
        for what, path in (("certificate", self.tls_cert), ("key", self.tls_key)):
            if path is not None and not os.path.isfile(path):
                raise errors.ConfigurationError(f"the TLS {what} {path!r} is not a readable file")

        if not (1 <= self.workers <= 64):
            raise errors.ConfigurationError(f"--workers must be 1 to 64, got {self.workers}")
        for name, value in (
            ("read timeout", self.read_timeout_seconds),
            ("keep-alive timeout", self.keep_alive_seconds),
        ):
            if not (0 < value <= 3600):
                raise errors.ConfigurationError(
                    f"the {name} must be > 0 and <= 3600 seconds, got {value}"
                )

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


@dataclass(frozen=True, slots=True)
class StorageSettings:
    url: str = DEFAULT_DB_URL
    """Database URL: ``sqlite:///path`` or ``postgresql://user:pass@host:port/db``
    (``CLUSTERTASKS_DB_URL``)."""

    sqlite_busy_timeout_ms: int = 5_000
    """How long a SQLite connection waits for a lock held by another one, in milliseconds."""


@dataclass(frozen=True, slots=True)
class WireSettings:
    timezone: str = "UTC"
    """IANA time zone used for every timestamp on the wire (``CLUSTERTASKS_TIMEZONE``)."""

    def __post_init__(self) -> None:
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise errors.ConfigurationError(f"unknown time zone {self.timezone!r}") from exc


@dataclass(frozen=True, slots=True)
class SimSettings:
    speed: float = 1.0
    """Every simulated duration is divided by this; 0 means no waiting at all
    (``CLUSTERTASKS_SIM_SPEED``)."""

    seed: int | None = None
    """Makes ids and random choices repeatable (``CLUSTERTASKS_SIM_SEED``)."""

    node_quota: int = 200
    """Most worker nodes one simulated cluster may have (``QuotaExceeded.Node`` beyond)."""

    clock: str | None = None
    """The simulated clock's mode at start: ``realtime``, ``manual`` or ``per_poll``; None
    keeps the mode the database remembers (``realtime`` on a new one)
    (``CLUSTERTASKS_SIM_CLOCK``)."""

    def __post_init__(self) -> None:
        if self.speed < 0:
            raise errors.ConfigurationError(f"sim speed must be >= 0, got {self.speed}")
        if self.clock is not None and self.clock not in SIM_CLOCK_MODES:
            raise errors.ConfigurationError(
                f"sim clock must be one of {', '.join(SIM_CLOCK_MODES)}, got {self.clock!r}"
            )
        if self.node_quota < 0:
            raise errors.ConfigurationError(f"node quota must be >= 0, got {self.node_quota}")


@dataclass(frozen=True, slots=True)
class TemporalSettings:
    """Where the Temporal executor's workflows run (``serve --executor temporal``, ``worker``)."""

    address: str = "127.0.0.1:7233"
    """The Temporal frontend, HOST:PORT (``CLUSTERTASKS_TEMPORAL_ADDRESS``)."""

    namespace: str = "default"
    """The Temporal namespace (``CLUSTERTASKS_TEMPORAL_NAMESPACE``)."""

    task_queue: str = "clustertasks"
    """The task queue the workers poll (``CLUSTERTASKS_TASK_QUEUE``)."""

    dev: bool = False
    """Start ``temporal server start-dev`` and a worker in this process (a one-machine trial)."""

    def __post_init__(self) -> None:
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise errors.ConfigurationError(
                f"the Temporal address must be HOST:PORT, got {self.address!r}"
            )
        if not self.task_queue:
            raise errors.ConfigurationError("the task queue must not be empty")


@dataclass(frozen=True, slots=True)
class EngineSettings:
    executor: bool = True
    """Run tasks in this process; False serves the API only (``--no-executor``)."""

    max_running_tasks: int = 64
    """Tasks run at once; the rest wait their turn (``CLUSTERTASKS_MAX_RUNNING_TASKS``)."""

    temporal: TemporalSettings | None = None
    """Run tasks on Temporal rather than in this process (``--executor temporal``)."""

    def __post_init__(self) -> None:
        if self.max_running_tasks < 1:
            raise errors.ConfigurationError(
                f"max running tasks must be at least 1, got {self.max_running_tasks}"
            )


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """Following a task as it changes: long-polls and event streams."""

    heartbeat_seconds: float = 15.0
    """Seconds between keep-alive comments on an idle event stream, so that proxies and
    clients do not take a quiet task for a dead connection (``CLUSTERTASKS_SSE_HEARTBEAT``)."""

    poll_seconds: float = 0.5
    """How often the versions of followed tasks are re-read, to see changes committed by
    another process on the same database (an executor elsewhere, another replica)."""

    max_watchers: int = 2_000
    """Long-polls and event streams open at once, in all; more are refused with 503 and
    ``Retry-After`` until some end (``CLUSTERTASKS_MAX_WAITS``). Each costs the server some
    30-40 KiB while it waits."""

    max_watchers_per_key: int = 200
    """Long-polls and event streams one AccessKey may have open at once; more are refused
    with 429 and ``Retry-After`` (``CLUSTERTASKS_MAX_WAITS_PER_KEY``)."""

    def __post_init__(self) -> None:
        if not (0 < self.heartbeat_seconds <= 3600):
            raise errors.ConfigurationError(
                f"the SSE heartbeat must be > 0 and <= 3600 seconds, got {self.heartbeat_seconds}"
            )
        if not (0 < self.poll_seconds <= 60):
            raise errors.ConfigurationError(
                f"the change poll must be > 0 and <= 60 seconds, got {self.poll_seconds}"
            )
        if self.max_watchers < 1 or self.max_watchers_per_key < 1:
            raise errors.ConfigurationError(
                f"the most waits, in all and per AccessKey, must be at least 1, got "
                f"{self.max_watchers} and {self.max_watchers_per_key}"
            )


@dataclass(frozen=True, slots=True)
class AuthSettings:
    enabled: bool = True
    """Verify signatures, dates and nonces; False (``--auth off``) accepts any well-formed
    signature, for local emulation on a loopback address only (``CLUSTERTASKS_AUTH``)."""

    max_skew_seconds: int = 900
    """How far a request's date may be from the server clock (the gateway's 15 minutes); a
    nonce is remembered this long after its request's date."""

    rate_per_second: float = 50.0
    """Requests per second each AccessKey may make, on average (``CLUSTERTASKS_RATE_LIMIT``)."""

    burst: int = 100
    """Requests an AccessKey may make at once above its rate (``CLUSTERTASKS_RATE_BURST``)."""

    max_body_bytes: int = 1 << 20
    """Largest request body accepted; larger ones get 413 before being read in full."""

    max_state_bytes: int = 64 << 20
    """Largest state document ``POST /_emulator/state`` accepts (a whole world and task
    history; 413 beyond)."""

    access_key_id: str | None = None
    """An admin key created or updated at start, with ``access_key_secret`` (CI)
    (``CLUSTERTASKS_ACCESS_KEY_ID``)."""

    access_key_secret: str | None = field(default=None, repr=False)
    """The secret of ``access_key_id`` (``CLUSTERTASKS_ACCESS_KEY_SECRET``)."""

    credentials_file: str = "./clustertasks.credentials"
    """Where ``serve`` saves the key it creates when the database has none (mode 0600)."""

    def __post_init__(self) -> None:
        if self.rate_per_second <= 0 or self.burst < 1:
            raise errors.ConfigurationError("the rate limit must be > 0 with a burst of >= 1")
        if self.max_skew_seconds < 1 or self.max_body_bytes < 1 or self.max_state_bytes < 1:
            raise errors.ConfigurationError("the skew window and body limit must be positive")
        if (self.access_key_id is None) != (self.access_key_secret is None):
            raise errors.ConfigurationError(
                "set both CLUSTERTASKS_ACCESS_KEY_ID and CLUSTERTASKS_ACCESS_KEY_SECRET, or neither"
            )


LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    """Metrics, logs and traces (docs/observability.md)."""

    metrics_public: bool = False
    """Answer ``GET /metrics`` without a signature, for a Prometheus that cannot sign
    (``--metrics-public``, ``CLUSTERTASKS_METRICS_PUBLIC``)."""

    log_format: str = "text"
    """``text`` or ``json`` (one object per line, with the request, task and stage ids)
    (``CLUSTERTASKS_LOG_FORMAT``)."""

    tracing: bool = False
    """Export spans over OTLP/HTTP; on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, and configured by the standard
    ``OTEL_*`` variables."""

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise errors.ConfigurationError(
                f"log format must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}"
            )


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    wire: WireSettings = field(default_factory=WireSettings)
    sim: SimSettings = field(default_factory=SimSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    live: LiveSettings = field(default_factory=LiveSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
