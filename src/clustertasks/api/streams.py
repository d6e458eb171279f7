"""A task's changes as server-sent events: ``GET /tasks/{task_id}/stream``.

Messages (``event:`` names, JSON ``data:``, ``id:`` positions) are described in
``clustertasks.domain.live`` and docs/live-progress.md. Errors found before the stream
starts (an unknown task, a malformed ``Last-Event-ID``) are ordinary JSON errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from starlette.responses import StreamingResponse
from starlette.types import Send

from clustertasks import errors
from clustertasks.api import deps, render
from clustertasks.domain import live

router = APIRouter(tags=["tasks"])

EVENT_STREAM_TYPE = "text/event-stream; charset=utf-8"
KEEP_ALIVE = b": keep-alive\n\n"


@router.get(
    "/tasks/{task_id}/stream",
    operation_id="DescribeTaskStream",
    summary="A task's changes as server-sent events, until it ends",
    description=(
        "Opens with a `snapshot` (the DescribeTaskInfo document), then one message per "
        "change: `task`, `stage`, `event`, `result`; `end` once the task has finished. "
        "Resume with the last `id:` received, in `Last-Event-ID` or `last_event_id`."
    ),
    response_class=Response,
    responses={
        200: {
            "description": "The event stream",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def describe_task_stream(
    request: Request,
    task_id: Annotated[str, Path(description="The task id, e.g. T-5faa48fb31b6b8078d000006")],
    last_event_id: Annotated[
        str | None,
        Query(description="Resume after this message id (<version>.<event seq>)"),
    ] = None,
    last_event_id_header: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="Resume after this message id (wins)"),
    ] = None,
) -> Response:
    resume, field = _resume_point(request, last_event_id)
    services = deps.services(request)
    stream = await services.live.open_stream(task_id, resume, resume_field=field)
    messages = services.live.follow(stream, deps.timezone(request))
    return _EventStream(messages)


def _resume_point(request: Request, query: str | None) -> tuple[live.Position | None, str]:
    """Where the client resumes: the ``Last-Event-ID`` header (what an EventSource sends
    when it reconnects) before the query parameter; an empty one is no position."""
    header = request.headers.get("last-event-id")
    field, text = ("Last-Event-ID", header) if header else ("last_event_id", query)
    if not text:
        return None, field
    try:
        return live.Position.parse(text), field
    except ValueError as exc:
        raise errors.InvalidParameter(field, str(exc)) from None


def _frame(message: live.Message) -> bytes:
    # Compact JSON holds no newline, so each data field is one line.
    data = render.dumps(message.data).decode()
    return f"id: {message.position}\nevent: {message.kind}\ndata: {data}\n\n".encode()


async def _frames(
    messages: AsyncGenerator[live.Message | None, None],
) -> AsyncGenerator[bytes, None]:
    async with contextlib.aclosing(messages):
        async for message in messages:
            yield KEEP_ALIVE if message is None else _frame(message)


def event_stream(messages: AsyncGenerator[live.Message | None, None]) -> Response:
    """The response that sends ``messages`` as server-sent events (the web console's task
    page follows a task through this too)."""
    return _EventStream(messages)


class _EventStream(StreamingResponse):
    """Closes the stream's generators however the response ends, so a client that goes
    away stops following the task at once."""

    def __init__(self, messages: AsyncGenerator[live.Message | None, None]) -> None:
        self._frames = _frames(messages)
        super().__init__(
            self._frames,
            media_type=EVENT_STREAM_TYPE,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            await self._frames.aclose()
