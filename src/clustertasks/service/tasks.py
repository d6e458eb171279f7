"""Reading tasks: DescribeTaskInfo and DescribeClusterTasks."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from clustertasks import errors
from clustertasks.domain import ids, json_text, records, states
from clustertasks.storage import store

_T = TypeVar("_T")

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
_TOKEN_VERSION = 1


@dataclass(frozen=True, slots=True)
class ListTasksRequest:
    """DescribeClusterTasks' parameters, as the client sent them (already typed)."""

    cluster_id: str
    page_number: int | None = None
    page_size: int | None = None
    max_results: int | None = None
    next_token: str | None = None
    state: str | None = None
    task_type: str | None = None


@dataclass(frozen=True, slots=True)
class TaskList:
    tasks: list[records.Task]
    page_number: int
    page_size: int
    total_count: int
    next_token: str


@dataclass(frozen=True, slots=True)
class ReadPlan:
    wait_seconds: float | None
    """How long a long-poll may hold the answer (0 or None: answer now)."""
    counted: bool
    """The request counted as a poll already: reading the document is not another one."""


def _not_watched(_task_id: str) -> bool:
    """Nobody needs to know that a task was read."""
    return False


class TaskService:
    def __init__(
        self, task_store: store.TaskStore, *, polled: Callable[[str], bool] = _not_watched
    ) -> None:
        self._store = task_store
        self._polled = polled

    def describe_task(self, task_id: str, *, poll: bool = True) -> records.TaskView:
        """The task; reading it counts as a poll (the simulated cloud's per-poll clock
        lets the task's pending waits complete, after this answer was read) unless
        ``poll`` is False (the request counted as one already)."""
        return self._read(task_id, poll, self._store.describe_task)

    def describe_task_stamped(self, task_id: str, *, poll: bool = True) -> store.StampedView:
        """``describe_task`` with the state's generation it was read in (what a kept
        document is kept by, with the version)."""
        return self._read(task_id, poll, self._store.describe_task_stamped)

    def stamp(self, task_id: str, *, poll: bool = True) -> store.Stamp:
        """The task's version and the state's generation (one statement), read as
        ``describe_task`` reads the document: counting as a poll unless ``poll`` is False.
        A client (or a process) that has the document of this stamp has the whole answer."""
        return self._read(task_id, poll, self._store.task_stamp)

    def _read(self, task_id: str, poll: bool, read: Callable[[str], _T]) -> _T:
        """``read(task_id)``, counted as a poll of the task unless ``poll`` is False; an id
        that cannot name a task is not looked up."""
        if not ids.is_lookup_id(task_id):
            raise errors.TaskNotFound(task_id)
        found = read(task_id)
        if poll:
            self._polled(task_id)
        return found

    def plan_read(
        self, task_id: str, *, wait_seconds: float | None, since: int | None, conditional: bool
    ) -> ReadPlan:
        """How a DescribeTaskInfo is answered. A conditional read or a long-poll counts as
        a poll before the document is read (a 304 or a held request is a poll all the same,
        so a waiting client moves the per-poll clock on). When the task moves on polls only
        there is nothing to wait for: holding the request would only hold the task back, so
        it is answered at once and the client's next read is the task's next step."""
        counted = conditional or bool(wait_seconds and since is not None)
        if counted and ids.is_lookup_id(task_id) and self._polled(task_id):
            wait_seconds = 0.0
        return ReadPlan(wait_seconds=wait_seconds, counted=counted)

    def list_cluster_tasks(self, request: ListTasksRequest) -> TaskList:
        """Newest first; page-number paging, or token paging with ``max_results``/``next_token``.

        Both styles return a ``next_token`` while more tasks remain, so a client may start
        with pages and continue with tokens.
        """
        _check_range("page_number", request.page_number, 1, None)
        _check_range("page_size", request.page_size, 1, MAX_PAGE_SIZE)
        _check_range("max_results", request.max_results, 1, MAX_PAGE_SIZE)
        state = _check_state(request.state)
        task_type = _check_text("task_type", request.task_type)
        if not ids.is_lookup_id(request.cluster_id):
            return TaskList([], request.page_number or 1, request.page_size or 10, 0, "")

        scope = _token_scope(request.cluster_id, state, task_type)
        limit = request.max_results or request.page_size or DEFAULT_PAGE_SIZE
        if request.next_token:
            cursor, page_number = _decode_token(request.next_token, scope)
            query = store.TaskQuery(
                cluster_id=request.cluster_id,
                limit=limit,
                state=state,
                task_type=task_type,
                after=cursor,
            )
        else:
            page_number = request.page_number or 1
            query = store.TaskQuery(
                cluster_id=request.cluster_id,
                limit=limit,
                offset=(page_number - 1) * limit,
                state=state,
                task_type=task_type,
            )
        page = self._store.list_cluster_tasks(query)
        next_token = ""
        if page.has_more and page.tasks:
            last = page.tasks[-1]
            next_token = _encode_token((last.created_us, last.task_id), page_number + 1, scope)
        return TaskList(
            tasks=list(page.tasks),
            page_number=page_number,
            page_size=limit,
            total_count=page.total_count,
            next_token=next_token,
        )


def _check_range(name: str, value: int | None, low: int, high: int | None) -> None:
    if value is None:
        return
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise errors.InvalidParameter(name, f"must be {bound}, got {value}")


def _check_state(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        return states.TaskState(value.lower()).value
    except ValueError:
        allowed = ", ".join(s.value for s in states.TaskState)
        raise errors.InvalidParameter("state", f"must be one of {allowed}") from None


def _check_text(name: str, value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > 64 or not value.isprintable():
        raise errors.InvalidParameter(name, "must be at most 64 printable characters")
    return value


def _token_scope(cluster_id: str, state: str | None, task_type: str | None) -> str:
    return f"{cluster_id}|{state or ''}|{task_type or ''}"


def _encode_token(cursor: tuple[int, str], page_number: int, scope: str) -> str:
    payload = {"v": _TOKEN_VERSION, "c": cursor[0], "t": cursor[1], "p": page_number, "s": scope}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, scope: str) -> tuple[tuple[int, str], int]:
    problem = "is not a token returned by this API"
    try:
        padded = token + "=" * (-len(token) % 4)
        payload: Any = json_text.parse(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (errors.InvalidParameter, ValueError, binascii.Error, UnicodeError):
        raise errors.InvalidParameter("next_token", problem) from None
    if not isinstance(payload, dict) or payload.get("v") != _TOKEN_VERSION:
        raise errors.InvalidParameter("next_token", problem)
    created, task_id, page = payload.get("c"), payload.get("t"), payload.get("p")
    if not (
        isinstance(created, int)
        and not isinstance(created, bool)
        and isinstance(task_id, str)
        and isinstance(page, int)
        and not isinstance(page, bool)
        and page >= 1
    ):
        raise errors.InvalidParameter("next_token", problem)
    if payload.get("s") != scope:
        raise errors.InvalidParameter(
            "next_token", "belongs to a listing with another cluster_id, state or task_type"
        )
    return (created, task_id), page
