"""DescribeTaskInfo below the framework's routing: the hot read, same answer, fewer steps.

A poll of one task (``GET /tasks/{task_id}`` without ``wait``) is most of what a busy
server answers, and FastAPI's way to it cost more than the answer: the router matches the
path against every route, its request handler solves the route's parameters, and the
metrics middleware and the signature check each matched the route again to name the
operation. ``FastPath`` wraps the API application and knows such a request from its method
and path alone; it hands it to the very parts the application would, in the same order —
the server-error handler, the API's own middlewares (built from the application's list:
request id, metrics, wait admission, signature check), the exception handlers and the
route function ``tasks.describe_task_info`` — with the operation named in advance and
without the router. Every other request (other paths and methods, ``HEAD``, long-polls,
event streams, lifespan) goes to the application unchanged.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from clustertasks.api import admission, auth, tasks


class FastPath:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._stack: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            task_id = describe_target(scope)
            if task_id is not None and not admission.is_wait(scope):
                # What Starlette's application and router would have put in the scope.
                scope["app"] = self.app
                scope["path_params"] = {"task_id": task_id}
                scope.setdefault("state", {})[auth.OPERATION_STATE] = tasks.DESCRIBE_TASK_INFO
                stack = self._stack or self._build()
                await stack(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _build(self) -> ASGIApp:
        """The application's middleware stack as Starlette builds it (at the first request,
        when every middleware and handler is in), with the route function in place of the
        router."""
        handlers = dict(self.app.exception_handlers)
        on_error = handlers.pop(Exception, None) or handlers.pop(500, None)
        stack: ASGIApp = ExceptionMiddleware(_describe, handlers=handlers)
        for cls, args, kwargs in reversed(self.app.user_middleware):
            stack = cls(stack, *args, **kwargs)
        self._stack = ServerErrorMiddleware(stack, handler=on_error)
        return self._stack


def describe_target(scope: Scope) -> str | None:
    """The task id of a request FastAPI's router would hand to DescribeTaskInfo (its path
    is ``/tasks/`` and one non-empty segment), else None."""
    path: str = scope["path"]
    if scope.get("root_path") or not path.startswith(tasks.TASK_PREFIX):
        return None
    task_id = path[len(tasks.TASK_PREFIX) :]
    if not task_id or "/" in task_id:
        return None
    return task_id


async def _describe(scope: Scope, receive: Receive, send: Send) -> None:
    response = await tasks.describe_task_info(Request(scope, receive))
    await response(scope, receive, send)
