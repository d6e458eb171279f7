"""A real, throwaway PostgreSQL server for the test suite.

The server is built from the machine's own PostgreSQL binaries (``scripts/ensure-postgres``
installs them), lives in a fresh temporary directory (in memory, under ``/dev/shm``, when the
machine has room there), listens on a free loopback port and trusts every local connection.
It trades durability for speed (``fsync=off`` and friends): nothing in it is meant to
survive ``stop()``.

    with PostgresServer() as server:
        url = server.create_database("tasks_test")
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, NamedTuple, Self
from urllib.parse import quote

import psycopg
from psycopg import sql

__all__ = ["PostgresServer", "find_bindir"]

HOST = "127.0.0.1"
# The account the server runs as when the suite runs as root: PostgreSQL refuses root.
SYSTEM_USER = "postgres"
STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 10.0
_POLL_INTERVAL = 0.1
# Another process can take the port between our probe and the server's bind.
_BIND_ATTEMPTS = 3
# sun_path holds 108 bytes, and the server appends "/.s.PGSQL.<port>" to the directory.
_MAX_SOCKET_DIR_LEN = 90
# Identifiers longer than NAMEDATALEN - 1 bytes are silently truncated by the server.
_MAX_IDENTIFIER_BYTES = 63
_SERVER_BINARIES = ("initdb", "postgres")
# Creating a database copies megabytes of files: about ten times slower on a disk than in
# memory, and the suite creates one per test. The data directory goes into this RAM-backed
# file system when it has room for it (the server's files, databases dropped as it goes).
RAM_DIRECTORY = Path("/dev/shm")
_RAM_NEEDED = 1 << 30


def find_bindir() -> Path | None:
    """Return the directory holding ``initdb`` and ``postgres``, or None if there is none.

    ``pg_config`` comes first because it names the installation the headers belong to, but
    it is also shipped with client-only packages, so its answer counts only when the server
    binaries are really there.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            result = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            if result.stdout.strip():
                candidates.append(Path(result.stdout.strip()))
    candidates.extend(
        sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    )
    initdb = shutil.which("initdb")
    if initdb is not None:
        # A PATH entry may be a lone symlink to initdb (as in /usr/local/bin); its target's
        # directory is where postgres lives too.
        candidates += [Path(initdb).parent, Path(initdb).resolve().parent]
    return next((path for path in candidates if _has_server_binaries(path)), None)


class PostgresServer:
    """One PostgreSQL server process and its data directory, both gone after ``stop()``.

    ``url`` and ``admin_url`` both point at the ``postgres`` maintenance database as the
    superuser; use ``admin_url`` for server-wide work and ``create_database()`` to give each
    test its own database.
    """

    def __init__(self, *, superuser: str = "postgres", bindir: Path | None = None) -> None:
        self.superuser = superuser
        self.bindir = bindir
        self.tmpdir: Path | None = None
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PostgresServer {state} port={self._port} dir={self.tmpdir}>"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the PostgreSQL server has not been started")
        return self._port

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    @property
    def admin_url(self) -> str:
        return self.url_for("postgres")

    @property
    def log_path(self) -> Path | None:
        return None if self.tmpdir is None else self.tmpdir / "postgres.log"

    def url_for(self, database: str) -> str:
        """The URL of ``database`` on this server, usable by SQLAlchemy and psycopg alike."""
        user = quote(self.superuser, safe="")
        return f"postgresql://{user}@{HOST}:{self.port}/{quote(database, safe='')}"

    def start(self) -> Self:
        if self._proc is not None:
            raise RuntimeError("the PostgreSQL server is already running")
        bindir = self.bindir or find_bindir()
        if bindir is None:
            raise RuntimeError(
                "PostgreSQL server binaries (initdb, postgres) not found: "
                "run scripts/ensure-postgres"
            )
        owner = _server_account() if os.geteuid() == 0 else None
        self.tmpdir = Path(tempfile.mkdtemp(prefix="clustertasks-pg-", dir=_tempdir_base(owner)))
        # Registered before anything can fail, so that a half-started server is cleaned up too.
        atexit.register(self.stop)
        try:
            if owner is not None:
                os.chown(self.tmpdir, owner.pw_uid, owner.pw_gid)
            self._log = open(self.tmpdir / "postgres.log", "ab")  # noqa: SIM115 - server-long
            self._initdb(bindir, owner)
            for _ in range(_BIND_ATTEMPTS):
                self._port = _free_port()
                log_offset = self._log.tell()
                self._proc = self._spawn(bindir, owner)
                if self._wait_until_ready(time.monotonic() + STARTUP_TIMEOUT):
                    return self
                self._proc = None
                if "Address already in use" not in self._read_log(log_offset):
                    break
            raise RuntimeError(f"PostgreSQL exited during startup; log tail:\n{self._log_tail()}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server and remove its directory. Safe to call more than once."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """Create an empty database called exactly ``name`` and return its URL."""
        if not name or "\x00" in name or len(name.encode()) > _MAX_IDENTIFIER_BYTES:
            raise ValueError(f"invalid PostgreSQL database name: {name!r}")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def _initdb(self, bindir: Path, owner: pwd.struct_passwd | None) -> None:
        assert self.tmpdir is not None
        assert self._log is not None
        who = _Identity.of(owner)
        command = [str(bindir / "initdb"), "-D", str(self.tmpdir / "data"), "-U", self.superuser]
        command += ["--auth=trust", "-E", "UTF8", "--no-locale"]
        self._log.write(b"$ " + " ".join(command).encode() + b"\n")
        self._log.flush()
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.tmpdir,
            env=_child_env(),
            timeout=120,
            check=False,
            user=who.user,
            group=who.group,
            extra_groups=who.extra_groups,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed with exit code {result.returncode}; log tail:\n{self._log_tail()}"
            )

    def _spawn(self, bindir: Path, owner: pwd.struct_passwd | None) -> subprocess.Popen[bytes]:
        assert self.tmpdir is not None
        assert self._log is not None
        who = _Identity.of(owner)
        socket_dir = str(self.tmpdir) if len(str(self.tmpdir)) <= _MAX_SOCKET_DIR_LEN else ""
        command = [str(bindir / "postgres"), "-D", str(self.tmpdir / "data")]
        command += ["-p", str(self.port), "-h", HOST, "-k", socket_dir]
        for setting in (
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=200",
        ):
            command += ["-c", setting]
        self._log.write(b"$ " + " ".join(command).encode() + b"\n")
        self._log.flush()
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.tmpdir,
            env=_child_env(),
            # Its own process group, so that a hung server and its backends can be killed
            # together, and so that a Ctrl-C meant for pytest does not race our shutdown.
            start_new_session=True,
            user=who.user,
            group=who.group,
            extra_groups=who.extra_groups,
        )

    def _wait_until_ready(self, deadline: float) -> bool:
        """True once the server accepts connections; False if it exited first."""
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None:
                return False
            with (
                contextlib.suppress(psycopg.OperationalError),
                psycopg.connect(self.admin_url, connect_timeout=2),
            ):
                return True
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"PostgreSQL did not accept connections within {STARTUP_TIMEOUT:.0f} s; "
                    f"log tail:\n{self._log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _read_log(self, offset: int = 0) -> str:
        if self.log_path is None:
            return ""
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def _log_tail(self, lines: int = 40) -> str:
        return "\n".join(self._read_log().splitlines()[-lines:])


class _Identity(NamedTuple):
    """subprocess's ``user``, ``group`` and ``extra_groups``: who the child runs as.

    Chosen over ``runuser``: runuser stays as the parent of the server, hides the
    postmaster's pid from us and SIGKILLs its child two seconds after it is asked to stop,
    which would cut a clean shutdown short.
    """

    user: int | None
    group: int | None
    extra_groups: list[int] | None

    @classmethod
    def of(cls, owner: pwd.struct_passwd | None) -> _Identity:
        if owner is None:
            return cls(None, None, None)
        return cls(owner.pw_uid, owner.pw_gid, [])


def _child_env() -> dict[str, str]:
    # PG* variables (PGDATA, PGPORT, ...) from the caller must not steer the throwaway server,
    # and messages must be in English: startup failures are recognised by their text.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    # SIGINT is PostgreSQL's "fast" shutdown: it ends open sessions (a leaked connection pool
    # must not block it), whereas SIGTERM waits for every client to disconnect by itself.
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        # The postmaster is not yet reaped, so its process group id cannot have been reused.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _server_account() -> pwd.struct_passwd:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SYSTEM_USER)
    command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    result = subprocess.run(
        [*command, SYSTEM_USER], capture_output=True, text=True, timeout=60, check=False
    )
    try:
        # Checked again rather than trusting the exit code: a concurrent run may have won.
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise RuntimeError(
            f"PostgreSQL cannot run as root and creating the {SYSTEM_USER!r} user failed: "
            f"{result.stderr.strip()}"
        ) from None


def _tempdir_base(owner: pwd.struct_passwd | None) -> str | None:
    """Where to make the server's directory: in memory if there is room; else the default,
    unless ``owner`` cannot reach it."""
    if _has_room(RAM_DIRECTORY, owner):
        return str(RAM_DIRECTORY)
    if owner is None:
        return None
    default = Path(tempfile.gettempdir()).resolve()
    for directory in (default, *default.parents):
        try:
            if not directory.stat().st_mode & stat.S_IXOTH:
                return "/tmp"
        except OSError:
            return "/tmp"
    return None


def _has_room(directory: Path, owner: pwd.struct_passwd | None) -> bool:
    """True when ``directory`` takes a new directory that ``owner`` (or we) can enter."""
    try:
        if not os.access(directory, os.W_OK | os.X_OK):
            return False
        if owner is not None and not directory.stat().st_mode & stat.S_IXOTH:
            return False
        free = os.statvfs(directory)
    except OSError:
        return False
    return free.f_bavail * free.f_frsize >= _RAM_NEEDED


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _has_server_binaries(directory: Path) -> bool:
    return all(
        (directory / name).is_file() and os.access(directory / name, os.X_OK)
        for name in _SERVER_BINARIES
    )


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))
