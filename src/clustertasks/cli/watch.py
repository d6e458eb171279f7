"""Following a task until it ends: read it as it changes, show it live.

Reading (:class:`TaskFollower`): when the server sends ``X-Clustertasks-Task-Version`` with
the task, it can hold a read until the task changes, so each read asks
``?wait=20&since=VERSION`` and returns as soon as there is something new. A server without
that header is read once a second instead (with ``If-None-Match`` when it sends an ETag),
and a change is a document that differs. Either way the task is followed until it is
``success``, ``fail`` or ``canceled``, or ``paused`` (it then waits for a person).

Showing: on a terminal, a Rich live view (stages with state and duration, a progress bar
from the current stage's counters, the last events, the elapsed time); elsewhere (CI logs,
pipes) plain lines, one per change: the state, a stage's state, progress counters, and
each new event once. Both end with a summary: state, error, results.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from clustertasks.cli import client, output, views

VERSION_HEADER = "x-clustertasks-task-version"
LONG_POLL_SECONDS = 20
"""How long one read may wait for a change; the server caps it at 60."""
POLL_SECONDS = 1.0
"""Reads are at least this far apart unless the server says a change happened."""
PATIENCE_SECONDS = 60.0
"""Unreachable, throttled or failing (5xx) reads are retried for this long, then given up."""
TERMINAL_STATES = ("success", "fail", "canceled")
STOP_STATES = (*TERMINAL_STATES, "paused")
"""Where following ends by default: a paused task waits for a person."""
EXIT_CODES = {
    "success": output.ExitCode.OK,
    "fail": output.ExitCode.FAILED,
    "canceled": output.ExitCode.CANCELED,
    "paused": output.ExitCode.PAUSED,
}
LAST_EVENTS = 5


def exit_code(task: dict[str, Any]) -> int:
    return int(EXIT_CODES.get(str(task.get("state", "")), output.ExitCode.FAILED))


def follow(
    api: client.ApiClient,
    task_id: str,
    console: Console,
    stop_states: tuple[str, ...] = STOP_STATES,
) -> dict[str, Any]:
    """Follow the task until it reaches one of ``stop_states``, showing it on ``console``;
    returns its last document."""
    reporter: Reporter = LiveReporter(console) if console.is_terminal else PlainReporter(console)
    document: dict[str, Any] = {}
    followed = False
    try:
        for document in TaskFollower(api, task_id, stop_states=stop_states).documents():
            reporter.update(document)
        followed = True
    finally:
        # A summary only for a task followed to its end, not when reading was given up.
        reporter.close(document if followed else {})
    return document


# -- reading -----------------------------------------------------------------------------------


class TaskFollower:
    """Reads one task until it reaches one of ``stop_states``, yielding each new version."""

    def __init__(
        self,
        api: client.ApiClient,
        task_id: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        poll_seconds: float = POLL_SECONDS,
        patience_seconds: float = PATIENCE_SECONDS,
        stop_states: tuple[str, ...] = STOP_STATES,
    ) -> None:
        self._api = api
        self._stop_states = stop_states
        self._path = f"/tasks/{client.segment(task_id)}"
        self._sleep = sleep
        self._monotonic = monotonic
        self._poll_seconds = poll_seconds
        self._patience_seconds = patience_seconds
        self._version: str | None = None
        self._etag: str | None = None

    def documents(self) -> Iterator[dict[str, Any]]:
        # No retries for the first read: a wrong endpoint or task id is said at once.
        current = self._read(long_poll=False, patient=False)
        if current is None:
            raise client.InvalidResponse(f"GET {self._path} answered 304 to a plain read")
        yield current
        while current.get("state") not in self._stop_states:
            started = self._monotonic()
            long_poll = self._version is not None
            new = self._read(long_poll=long_poll)
            if new is not None and _comparable(new) != _comparable(current):
                current = new
                yield current
                if long_poll or current.get("state") in self._stop_states:
                    continue
            # Without long-poll, or when a long-poll answered early with nothing new (a
            # server that does not hold reads), keep reads a poll interval apart.
            remaining = self._poll_seconds - (self._monotonic() - started)
            if remaining > 0:
                self._sleep(remaining)

    def _read(self, *, long_poll: bool, patient: bool = True) -> dict[str, Any] | None:
        """The task's document, or None when the server said it has not changed (304)."""
        params: dict[str, Any] = {}
        headers: dict[str, str] = {}
        timeout: float | None = None
        if long_poll:
            params = {"wait": LONG_POLL_SECONDS, "since": self._version}
            timeout = LONG_POLL_SECONDS + 15.0
        elif self._etag:
            headers["if-none-match"] = self._etag
        send = self._retrying if patient else _once
        response = send(
            lambda: self._api.request(
                "GET",
                "DescribeTaskInfo",
                self._path,
                params=params,
                headers=headers,
                timeout=timeout,
            )
        )
        self._version = response.headers.get(VERSION_HEADER)
        self._etag = response.headers.get("etag") or self._etag
        if response.status_code == 304:
            return None
        return client.document(response)

    def _retrying(self, send: Callable[[], Any]) -> Any:
        """``send()``; a failure that may pass (no answer, throttling, 5xx) is retried with
        a growing pause, for up to ``patience_seconds`` in a row."""
        deadline = self._monotonic() + self._patience_seconds
        delay = 0.5
        while True:
            try:
                return send()
            except client.ConnectionFailed:
                if self._monotonic() + delay > deadline:
                    raise
            except client.ApiError as exc:
                if exc.status != 429 and exc.status < 500:
                    raise
                if self._monotonic() + delay > deadline:
                    raise
            self._sleep(delay)
            delay = min(delay * 2, 5.0)


def _once(send: Callable[[], Any]) -> Any:
    return send()


def _comparable(document: dict[str, Any]) -> dict[str, Any]:
    # Every answer carries a new request id; that is not a change of the task.
    return {k: v for k, v in document.items() if k not in ("requestId", "request_id")}


# -- what a document says ------------------------------------------------------------------------


def current_stage(task: dict[str, Any]) -> dict[str, Any] | None:
    stages = [s for s in task.get("stages") or [] if isinstance(s, dict)]
    name = task.get("current_stage")
    named = [s for s in stages if name and s.get("name") == name]
    if named:
        return named[0]
    running = [s for s in stages if s.get("state") == "running"]
    if running:
        return running[0]
    reached = [s for s in stages if s.get("state") not in ("pending", "", None)]
    return reached[-1] if reached else None


def progress(outputs: dict[str, Any]) -> tuple[str, int, int] | None:
    """``(what, done, total)`` from a stage's counters: ``X_total`` with ``X_done``, else
    with another ``X_…`` count (``instances_created``); None without such a pair."""
    fallback = None
    for key, total in outputs.items():
        if not key.endswith("_total") or not _count(total):
            continue
        stem = key.removesuffix("_total")
        done = outputs.get(f"{stem}_done")
        if isinstance(done, int) and _count(done):
            return stem, done, int(total)
        others = [
            v for k, v in outputs.items() if k.startswith(f"{stem}_") and k != key and _count(v)
        ]
        if others and fallback is None:
            fallback = (stem, int(others[0]), int(total))
    return fallback


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def stage_seconds(task: dict[str, Any], stage: dict[str, Any], now: float) -> float | None:
    """How long the stage ran (so far, when it runs); None before it started."""
    zone = _zone(task)
    start = _stage_time(str(stage.get("start_time") or ""), zone)
    if start is None:
        return None
    end = _stage_time(str(stage.get("end_time") or ""), zone)
    finish = end.timestamp() if end is not None else now
    return max(0.0, finish - start.timestamp())


def task_seconds(task: dict[str, Any], now: float) -> float | None:
    created = _rfc3339(str(task.get("created") or ""))
    if created is None:
        return None
    ended = task.get("state") in STOP_STATES
    updated = _rfc3339(str(task.get("updated") or "")) if ended else None
    finish = updated.timestamp() if updated is not None else now
    return max(0.0, finish - created.timestamp())


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def results(task: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in task.get("task_result") or []:
        status = str(result.get("status", ""))
        counts[status] = counts.get(status, 0) + 1
    return counts


def summary_lines(task: dict[str, Any], now: float) -> list[str]:
    """The end of a follow: state and time, the error, the results by status."""
    state = str(task.get("state", ""))
    lines = [f"result: {task.get('task_id', '')} {state} after {duration(task_seconds(task, now))}"]
    error = task.get("error") or {}
    if error.get("code") or error.get("message"):
        lines.append(f"error: {error.get('code', '')}: {error.get('message', '')}")
    counts = results(task)
    if counts:
        described = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        lines.append(f"resources: {sum(counts.values())} ({described})")
    if state == "paused":
        task_id = task.get("task_id", "")
        lines.append(
            f"paused: continue with 'clustertasks task resume {task_id} --wait', "
            f"or stop with 'clustertasks task cancel {task_id}'"
        )
    return lines


def _zone(task: dict[str, Any]) -> datetime.tzinfo:
    """Stage times carry no offset; they are in the zone of the task's RFC 3339 times."""
    for key in ("created", "updated"):
        parsed = _rfc3339(str(task.get(key) or ""))
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.tzinfo
    return datetime.UTC


def _rfc3339(value: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _stage_time(value: str, zone: datetime.tzinfo) -> datetime.datetime | None:
    try:
        parsed = datetime.datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return parsed.replace(tzinfo=zone)


# -- showing -------------------------------------------------------------------------------------


class Reporter:
    def update(self, task: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self, task: dict[str, Any]) -> None:
        raise NotImplementedError


class PlainReporter(Reporter):
    """One line per change, for logs: nothing is repeated, nothing redrawn."""

    def __init__(self, console: Console, now: Callable[[], float] = time.time) -> None:
        self._console = console
        self._now = now
        self._last: dict[str, Any] | None = None
        self._events_seen = 0

    def update(self, task: dict[str, Any]) -> None:
        previous = self._last or {}
        if not previous:
            target = task.get("target") or {}
            self._line(
                f"task {task.get('task_id', '')} {task.get('task_type', '')} "
                f"on {target.get('type', '')} {target.get('id', '')}"
            )
        before = {s.get("name"): s for s in previous.get("stages") or []}
        for stage in task.get("stages") or []:
            self._stage(task, before.get(stage.get("name")), stage)
        events = task.get("events") or []
        for event in events[self._events_seen :]:
            self._line(
                f"event {event.get('level', '')} {event.get('reason', '')}: "
                f"{event.get('message', '')}"
            )
        self._events_seen = max(self._events_seen, len(events))
        if previous.get("state") != task.get("state"):
            self._line(f"state: {task.get('state', '')}")
        self._last = task

    def _stage(
        self, task: dict[str, Any], before: dict[str, Any] | None, stage: dict[str, Any]
    ) -> None:
        name = stage.get("name", "")
        state = stage.get("state", "")
        was = (before or {}).get("state", "pending")
        if state != was and state != "pending":
            line = f"stage {name}: {state}"
            if state not in ("running", "pending"):
                took = duration(stage_seconds(task, stage, self._now()))
                line += f" ({took})" if took else ""
                if stage.get("message"):
                    line += f": {stage['message']}"
            self._line(line)
        counted = progress(stage.get("outputs") or {})
        if counted and counted != progress((before or {}).get("outputs") or {}):
            what, done, total = counted
            self._line(f"progress {name}: {what} {done}/{total}")

    def close(self, task: dict[str, Any]) -> None:
        if task:
            for line in summary_lines(task, self._now()):
                self._line(line)

    def _line(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False, soft_wrap=True)


class LiveReporter(Reporter):
    """A Rich live view, redrawn as the task changes and as time passes."""

    def __init__(self, console: Console, now: Callable[[], float] = time.time) -> None:
        self._console = console
        self._now = now
        self._view = TaskView(now=now)
        self._live = Live(self._view, console=console, refresh_per_second=4, transient=False)
        self._live.start()

    def update(self, task: dict[str, Any]) -> None:
        self._view.task = task
        self._live.refresh()

    def close(self, task: dict[str, Any]) -> None:
        if task:
            self._view.task = task
        self._live.stop()
        if task:
            style = views.STATE_STYLE.get(str(task.get("state", "")), "")
            for index, line in enumerate(summary_lines(task, self._now())):
                self._console.print(
                    Text(line, style=f"bold {style}" if index == 0 else ""), soft_wrap=True
                )


class TaskView:
    """What the live view shows of a task; drawn anew at each refresh, so that running
    durations and the elapsed time move on between changes."""

    def __init__(self, task: dict[str, Any] | None = None, now: Callable[[], float] = time.time):
        self.task: dict[str, Any] = task or {}
        self._now = now

    def __rich__(self) -> RenderableType:
        task = self.task
        if not task:
            return Text("reading the task…", style="dim")
        now = self._now()
        target = task.get("target") or {}
        header = Text.assemble(
            (str(task.get("task_id", "")), "bold"),
            f"  {task.get('task_type', '')} on {target.get('type', '')} {target.get('id', '')}  ",
            views.state_text(str(task.get("state", ""))),
            f"  elapsed {duration(task_seconds(task, now))}",
        )
        parts: list[RenderableType] = [header, self._stages(task, now)]
        stage = current_stage(task)
        counted = progress((stage or {}).get("outputs") or {})
        if stage is not None and counted is not None:
            what, done, total = counted
            bar = Table.grid(padding=(0, 1))
            bar.add_row(
                Text(f"{stage.get('name', '')} {what}"),
                ProgressBar(total=max(total, 1), completed=min(done, total), width=40),
                Text(f"{done}/{total}"),
            )
            parts.append(bar)
        events = (task.get("events") or [])[-LAST_EVENTS:]
        if events:
            recent = Table(title="last events", title_justify="left", show_header=False, box=None)
            for event in events:
                level = str(event.get("level", ""))
                recent.add_row(
                    Text(level, style="yellow" if level == "Warning" else ""),
                    Text(str(event.get("reason", ""))),
                    Text(str(event.get("message", ""))),
                )
            parts.append(recent)
        return Group(*parts)

    def _stages(self, task: dict[str, Any], now: float) -> Table:
        table = Table(title="stages", title_justify="left")
        table.add_column("stage")
        table.add_column("state")
        table.add_column("duration", justify="right")
        for stage in task.get("stages") or []:
            table.add_row(
                Text(str(stage.get("name", ""))),
                views.state_text(str(stage.get("state", ""))),
                Text(duration(stage_seconds(task, stage, now))),
            )
        return table
