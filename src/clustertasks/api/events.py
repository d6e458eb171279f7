"""Cluster events as the official SDK reads them: DescribeClusterEvents, DescribeEvents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from clustertasks.api import deps, render
from clustertasks.api import errors as api_errors
from clustertasks.service import events as event_service

router = APIRouter(tags=["events"])


def _render(request: Request, operation: str, found: event_service.EventList) -> Response:
    return render.document(
        request,
        operation,
        {
            "events": found.events,
            "next_token": "",
            "page_info": {
                "page_number": found.page_number,
                "page_size": found.page_size,
                "total_count": found.total_count,
            },
            "request_id": api_errors.request_id(request),
        },
    )


@router.get("/clusters/{cluster_id}/events", operation_id="DescribeClusterEvents")
def describe_cluster_events(
    request: Request,
    cluster_id: str,
    task_id: Annotated[str | None, Query()] = None,
    page_size: Annotated[str | None, Query()] = None,
    page_number: Annotated[str | None, Query()] = None,
) -> Response:
    query = {"task_id": task_id, "page_size": page_size, "page_number": page_number}
    found = deps.services(request).events.list_events(
        query, cluster_id=cluster_id, tz=deps.timezone(request)
    )
    return _render(request, "DescribeClusterEvents", found)


@router.get("/events", operation_id="DescribeEvents")
def describe_events(
    request: Request,
    cluster_id: Annotated[str | None, Query()] = None,
    event_type: Annotated[str | None, Query(alias="type")] = None,
    page_size: Annotated[str | None, Query()] = None,
    page_number: Annotated[str | None, Query()] = None,
) -> Response:
    query = {"type": event_type, "page_size": page_size, "page_number": page_number}
    found = deps.services(request).events.list_events(
        query, cluster_id=cluster_id or None, tz=deps.timezone(request)
    )
    return _render(request, "DescribeEvents", found)
