"""Task routes: DescribeTaskInfo and DescribeClusterTasks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from clustertasks import errors
from clustertasks.api import conditional, deps, documents, render
from clustertasks.api import errors as api_errors
from clustertasks.api import services as api_services
from clustertasks.domain import wire
from clustertasks.service import tasks as task_service
from clustertasks.storage import store

router = APIRouter(tags=["tasks"])

DESCRIBE_TASK_INFO = "DescribeTaskInfo"
TASK_PREFIX = "/tasks/"
"""DescribeTaskInfo's path is this and the task id (api/fastpath.py answers it too)."""


def _parameter(name: str, where: str, description: str, *, required: bool = False) -> Any:
    """One parameter as FastAPI would document it from an annotated argument."""
    schema: dict[str, Any] = (
        {"type": "string"} if required else {"anyOf": [{"type": "string"}, {"type": "null"}]}
    )
    title = name if where == "header" else name.replace("_", " ").title()
    schema.update(description=description, title=title)
    return {
        "name": name,
        "in": where,
        "required": required,
        "schema": schema,
        "description": description,
    }


# The route reads its parameters itself (FastAPI's per-request work on four annotated
# arguments cost more than the rest of a cached answer); they are documented as FastAPI
# would have documented those arguments.
_DESCRIBE_OPENAPI = {
    "parameters": [
        _parameter(
            "task_id", "path", "The task id, e.g. T-5faa48fb31b6b8078d000006", required=True
        ),
        _parameter(
            "wait", "query", "Long-poll: seconds to wait for a change, 0 to 60, decimals allowed"
        ),
        _parameter(
            "since", "query", "Long-poll: the version (X-Clustertasks-Task-Version) already seen"
        ),
        _parameter(
            "If-None-Match",
            "header",
            'ETags already held (e.g. "<version>-json"), a list, or *',
        ),
    ],
    "responses": {
        "422": {
            "description": "Validation Error",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
            },
        }
    },
}


@router.get(
    TASK_PREFIX + "{task_id}",
    operation_id=DESCRIBE_TASK_INFO,
    summary="DescribeTaskInfo: a task with its stages, events, results and error",
    description=(
        "Conditional with `If-None-Match` (304 while the ETag still matches); a long-poll "
        "with `wait` and `since` (or `If-None-Match`): answers once the task has changed, "
        "or when `wait` seconds have passed."
    ),
    responses={
        304: {
            "description": "Not modified: an ETag in If-None-Match is the task's current one",
        }
    },
    openapi_extra=_DESCRIBE_OPENAPI,
)
async def describe_task_info(request: Request) -> Response:
    task_id: str = request.path_params["task_id"]
    query = request.query_params
    wait, since = query.get("wait"), query.get("since")
    representation = "xml" if render.wants_xml(request) else "json"
    seconds = conditional.wait_seconds(wait)
    seen = conditional.since_version(since)
    held = conditional.if_none_match(request)
    services = deps.services(request)

    plan = services.tasks.plan_read(
        task_id, wait_seconds=seconds, since=seen, conditional=bool(held)
    )
    seconds = plan.wait_seconds
    poll = not plan.counted
    # A tag names a version in a generation of the state (api/conditional.py): a
    # conditional read starts with both, in one read.
    stamp: store.Stamp | None = None
    if held:
        stamp = await deps.short_call(request, services.tasks.stamp, task_id, poll=poll)
        poll = False  # counted as one
        unmodified = conditional.unmodified(held, *stamp_tag(stamp, representation))
        if not seconds and unmodified is not None:
            return unmodified
    if seconds and (seen is not None or held):
        # ``since`` counts versions in the generation the wait starts in: a reset or an
        # import while it waits ends it (LiveTasks.wait_while).
        def unchanged(now: store.Stamp) -> bool:
            older = seen is not None and now.version <= seen
            return older or held.matches(
                conditional.etag(now.version, representation, now.generation)
            )

        # Only stamps are watched while waiting; the stamp is read again after it.
        await services.live.wait_while(task_id, unchanged, seconds)
        stamp = None
    tz = deps.timezone(request)
    kept = _documents(request)
    if representation == "json":
        # The version and the state's generation in one read: a kept document is the
        # answer only for both (a reset or an import in another process starts versions
        # again in a new generation).
        if stamp is None:
            stamp = await deps.short_call(request, services.tasks.stamp, task_id, poll=poll)
            poll = False  # counted as one
            unmodified = conditional.unmodified(held, *stamp_tag(stamp, representation))
            if unmodified is not None:
                return unmodified
        document = kept.get(task_id, tz, stamp)
        if document is not None:
            return _json_answer(request, document, stamp)
    stamped = await deps.short_call(
        request, services.tasks.describe_task_stamped, task_id, poll=poll
    )
    tag = stamp_tag(stamped.stamp, representation)
    unmodified = conditional.unmodified(held, *tag)
    if unmodified is not None:
        return unmodified
    body = wire.task_document(stamped.view, tz)
    if representation == "json":
        document = render.dumps(body)
        kept.put(task_id, tz, stamped.stamp, document)
        return _json_answer(request, document, stamped.stamp)
    # Not in the SDK model, but ecctl reads a request id from this document.
    body["requestId"] = api_errors.request_id(request)
    response = render.document(request, "DescribeTaskInfo", body)
    response.headers.update(conditional.headers(*tag))
    return response


def stamp_tag(stamp: store.Stamp, representation: str) -> tuple[int, str, int]:
    """What the task's ETag names: its version, the representation and the generation."""
    return stamp.version, representation, stamp.generation


def plain_document(
    services: api_services.Services, kept: documents.Documents, task_id: str, tz: str
) -> tuple[bytes, store.Stamp]:
    """The JSON document ``describe_task_info`` answers a plain read with (no ``wait``,
    ``since``, ``If-None-Match`` or ``format``), without its request id, and the stamp
    it is of: the same reads, made right here (api/fastpath.py calls it where store calls
    run inline)."""
    stamp = services.tasks.stamp(task_id, poll=True)
    document = kept.get(task_id, tz, stamp)
    if document is not None:
        return document, stamp
    stamped = services.tasks.describe_task_stamped(task_id, poll=False)
    document = render.dumps(wire.task_document(stamped.view, tz))
    kept.put(task_id, tz, stamped.stamp, document)
    return document, stamped.stamp


def _documents(request: Request) -> documents.Documents:
    kept: documents.Documents = request.app.state.documents
    return kept


def _json_answer(request: Request, document: bytes, stamp: store.Stamp) -> Response:
    # Not in the SDK model, but ecctl reads a request id from this document.
    body = documents.with_request_id(document, api_errors.request_id(request))
    response = Response(body, 200, media_type=render.JSON_TYPE)
    response.headers.update(conditional.headers(*stamp_tag(stamp, "json")))
    return response


def _control(request: Request, task_id: str, action: str) -> Response:
    control = deps.services(request).control
    {"pause": control.pause, "resume": control.resume, "cancel": control.cancel}[action](task_id)
    body = {"requestId": api_errors.request_id(request), "task_id": task_id}
    return render.document(request, f"{action.capitalize()}Task", body)


@router.post(
    "/tasks/{task_id}/pause",
    operation_id="PauseTask",
    summary="PauseTask: pause a running task at its next checkpoint",
)
def pause_task(request: Request, task_id: str) -> Response:
    return _control(request, task_id, "pause")


@router.post(
    "/tasks/{task_id}/resume",
    operation_id="ResumeTask",
    summary="ResumeTask: continue a paused task from where it stopped",
)
def resume_task(request: Request, task_id: str) -> Response:
    return _control(request, task_id, "resume")


@router.post(
    "/tasks/{task_id}/cancel",
    operation_id="CancelTask",
    summary="CancelTask: stop a running or paused task and undo what it left half-done",
)
def cancel_task(request: Request, task_id: str) -> Response:
    return _control(request, task_id, "cancel")


@router.get("/tasks/", include_in_schema=False)
def describe_task_info_without_id(request: Request) -> Response:
    raise errors.InvalidParameter("task_id", "must not be empty")


@router.get(
    "/clusters/{cluster_id}/tasks",
    operation_id="DescribeClusterTasks",
    summary="DescribeClusterTasks: a cluster's tasks, newest first",
)
def describe_cluster_tasks(
    request: Request,
    cluster_id: str,
    page_number: Annotated[int | None, Query(description="1-based page (default 1)")] = None,
    page_size: Annotated[int | None, Query(description="1-100 (default 10)")] = None,
    max_results: Annotated[int | None, Query(description="Token paging: 1-100")] = None,
    next_token: Annotated[str | None, Query(description="Token paging: from the last page")] = None,
    state: Annotated[str | None, Query(description="Only tasks in this state")] = None,
    task_type: Annotated[str | None, Query(description="Only tasks of this type")] = None,
) -> Response:
    services = deps.services(request)
    listing = services.tasks.list_cluster_tasks(
        task_service.ListTasksRequest(
            cluster_id=cluster_id,
            page_number=page_number,
            page_size=page_size,
            max_results=max_results,
            next_token=next_token,
            state=state,
            task_type=task_type,
        )
    )
    tz = deps.timezone(request)
    body = {
        "tasks": [wire.task_summary(task, tz) for task in listing.tasks],
        "page_info": {
            "page_number": listing.page_number,
            "page_size": listing.page_size,
            "total_count": listing.total_count,
        },
        "next_token": listing.next_token,
        "requestId": api_errors.request_id(request),
    }
    return render.document(request, "DescribeClusterTasks", body)
