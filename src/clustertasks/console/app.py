"""The web console, served under ``/console`` by the same process as the API.

Server-rendered pages (Jinja2) over the same services the API routes use, called directly,
never over HTTP. The console has its own sign-in (``service/sessions.py``): an AccessKey ID
and secret exchanged for a session cookie; the API's signed requests and their gateway are
untouched, since :class:`Mount` sends ``/console`` here before the API's middleware sees it.

Every page goes through :meth:`Console._page`: find the session (or send the browser to the
sign-in page), check a form's CSRF token and the key's role before the handler runs, audit
every change, and render errors as a page with the error's status and code.
"""

from __future__ import annotations

import logging
import pathlib
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount as StarletteMount
from starlette.routing import Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from clustertasks import errors, settings
from clustertasks.api import errors as api_errors
from clustertasks.api import services as api_services
from clustertasks.api import streams
from clustertasks.console import views
from clustertasks.domain import live, states, timefmt
from clustertasks.operations import base as operations
from clustertasks.service import sessions as session_service
from clustertasks.service import tasks as task_service

log = logging.getLogger("clustertasks.console")

PREFIX = "/console"
COOKIE = "clustertasks_console"
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 16 * 1024
PAGE_SIZE = 20
HERE = pathlib.Path(__file__).parent
SECURITY_HEADERS = {
    # Scripts and styles from this server only, no inline code: an injected tag runs nothing.
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
PAUSE_POLICIES = ("NotPause", "FirstBatch", "EveryBatch")

Handler = Callable[[Request, session_service.Session], Awaitable[Response]]


class Console:
    def __init__(
        self,
        services: api_services.Services,
        sessions: session_service.ConsoleSessions,
        registry: operations.Registry,
        wire: settings.WireSettings,
    ) -> None:
        self.services = services
        self.sessions = sessions
        self.registry = registry
        self.tz = wire.timezone
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals["prefix"] = PREFIX

    def app(self) -> Starlette:
        page = self._page
        routes = [
            Route("/", self.index),
            Route("/sign-in", self.sign_in_form, methods=["GET"]),
            Route("/sign-in", self.sign_in, methods=["POST"]),
            Route("/sign-out", page(self.sign_out, action="ConsoleSignOut"), methods=["POST"]),
            Route("/clusters", page(self.clusters)),
            Route("/clusters/{cluster_id}", page(self.cluster)),
            Route("/clusters/{cluster_id}/tasks", page(self.tasks)),
            Route(
                "/clusters/{cluster_id}/nodepools/{nodepool_id}/upgrade",
                page(self.upgrade, action="UpgradeClusterNodepool", change=True),
                methods=["POST"],
            ),
            Route("/tasks/{task_id}", page(self.task)),
            Route("/tasks/{task_id}/live", page(self.task_live)),
            Route("/tasks/{task_id}/stream", page(self.task_stream)),
            Route(
                "/tasks/{task_id}/pause",
                page(self.pause, action="PauseTask", change=True),
                methods=["POST"],
            ),
            Route(
                "/tasks/{task_id}/resume",
                page(self.resume, action="ResumeTask", change=True),
                methods=["POST"],
            ),
            Route(
                "/tasks/{task_id}/cancel",
                page(self.cancel, action="CancelTask", change=True),
                methods=["POST"],
            ),
            Route("/emulator", page(self.emulator, admin=True)),
            Route(
                "/emulator/clock",
                page(self.set_clock, action="EmulatorSetClock", admin=True),
                methods=["POST"],
            ),
            Route(
                "/emulator/clock/advance",
                page(self.advance_clock, action="EmulatorAdvanceClock", admin=True),
                methods=["POST"],
            ),
            Route(
                "/emulator/faults",
                page(self.add_fault, action="EmulatorAddFaultRule", admin=True),
                methods=["POST"],
            ),
            Route(
                "/emulator/faults/{fault_id}/delete",
                page(self.delete_fault, action="EmulatorDeleteFaultRule", admin=True),
                methods=["POST"],
            ),
            Route(
                "/emulator/reset",
                page(self.reset, action="EmulatorReset", admin=True),
                methods=["POST"],
            ),
            StarletteMount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ]
        return Starlette(
            routes=routes,
            exception_handlers={HTTPException: self._http_error},
        )

    # -- the wrapper every page goes through -----------------------------------------------------

    def _page(
        self, handler: Handler, *, action: str = "", change: bool = False, admin: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """``action``: a POST's name in the audit log; ``change``: needs an operator or
        admin key; ``admin``: needs an admin key (the emulator's controls)."""

        async def endpoint(request: Request) -> Response:
            try:
                session, fresh = await self._session(request)
            except errors.ClustertasksError as exc:  # the database is away
                return self._error(request, None, exc)
            if session is None:
                if request.method == "GET":
                    return _redirect(f"{PREFIX}/sign-in?next={urllib.parse.quote(_here(request))}")
                return self._error(request, None, errors.SignInRequired())
            try:
                if request.method == "POST":
                    form = await _form(request)
                    request.state.form = form
                    self.sessions.check_csrf(session, form.get(CSRF_FIELD))
                if change or admin:
                    self.sessions.authorize(session, action or "view", admin=admin)
                response = await handler(request, session)
            except errors.ClustertasksError as exc:
                response = self._error(request, session, exc)
            if request.method == "POST" and action:
                status = response.status_code
                outcome = getattr(request.state, "outcome", "") if status >= 400 else ""
                await self._audit(session.access_key_id, action, request, status, outcome)
            if fresh:
                self._set_cookie(request, response, session)
            return response

        return endpoint

    async def _audit(
        self, access_key_id: str, action: str, request: Request, status: int, outcome: str = ""
    ) -> None:
        """Record a console change after it was answered; a failure here is logged, as the
        API's gateway does, since the browser has its answer already."""
        try:
            await run_in_threadpool(
                self.sessions.audit, access_key_id, action, request.url.path, status, outcome
            )
        except errors.ClustertasksError as exc:
            log.error("could not record console action %s in the audit log: %s", action, exc)

    async def _session(self, request: Request) -> tuple[session_service.Session | None, bool]:
        """The request's session, and whether it was opened just now (``--auth off``)."""
        found = await run_in_threadpool(self.sessions.session, request.cookies.get(COOKIE))
        if found is not None or self.sessions.auth_enabled:
            return found, False
        return await run_in_threadpool(self.sessions.open_without_auth), True

    def _render(
        self,
        request: Request,
        session: session_service.Session | None,
        template: str,
        context: Mapping[str, Any],
        status: int = 200,
    ) -> Response:
        response = self.templates.TemplateResponse(
            request,
            template,
            {"session": session, "auth_enabled": self.sessions.auth_enabled, **context},
            status_code=status,
        )
        response.headers.update(SECURITY_HEADERS)
        return response

    def _error(
        self,
        request: Request,
        session: session_service.Session | None,
        exc: errors.ClustertasksError,
    ) -> Response:
        status = api_errors.status_of(exc)
        request.state.outcome = exc.code
        if status >= 500:
            log.error("console page %s failed: %s", request.url.path, exc)
        context = {"title": f"{status} {exc.code}", "code": exc.code, "message": exc.message}
        return self._render(request, session, "error.html", context, status)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = "InvalidApi.NotFound" if exc.status_code == 404 else f"HTTP{exc.status_code}"
        context = {"title": f"{exc.status_code} {code}", "code": code, "message": exc.detail}
        return self._render(request, None, "error.html", context, exc.status_code)

    def _set_cookie(
        self, request: Request, response: Response, session: session_service.Session
    ) -> None:
        lifetime = max(0, (session.expires_us - self.sessions.now_us()) // 1_000_000)
        response.set_cookie(
            COOKIE,
            session.token,
            max_age=lifetime,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    # -- signing in and out ----------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return _redirect(f"{PREFIX}/clusters")

    async def sign_in_form(self, request: Request) -> Response:
        session, fresh = await self._session(request)
        if session is not None:
            response = _redirect(_next(request.query_params.get("next")))
            if fresh:
                self._set_cookie(request, response, session)
            return response
        return self._render(
            request, None, "sign_in.html", {"next": _next(request.query_params.get("next"))}
        )

    async def sign_in(self, request: Request) -> Response:
        if not self.sessions.auth_enabled:
            return await self.sign_in_form(request)
        client = request.client.host if request.client else ""
        claimed = ""
        try:
            form = await _form(request)
            claimed = form.get("access_key_id", "")
            session = await run_in_threadpool(
                self.sessions.sign_in, claimed, form.get("access_key_secret", ""), client
            )
        except errors.ClustertasksError as exc:
            status = api_errors.status_of(exc)
            await self._audit(claimed, "ConsoleSignIn", request, status, exc.code)
            context = {"next": _next(request.query_params.get("next")), "error": exc.message}
            response = self._render(request, None, "sign_in.html", context, status)
            if isinstance(exc, errors.Throttled):
                response.headers["retry-after"] = str(max(1, exc.retry_after_ms // 1000))
            return response
        await self._audit(session.access_key_id, "ConsoleSignIn", request, 200)
        response = _redirect(_next(form.get("next")))
        self._set_cookie(request, response, session)
        return response

    async def sign_out(self, request: Request, session: session_service.Session) -> Response:
        await run_in_threadpool(self.sessions.sign_out, session)
        response = _redirect(f"{PREFIX}/sign-in")
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return response

    # -- clusters, node pools, nodes -------------------------------------------------------------

    async def clusters(self, request: Request, session: session_service.Session) -> Response:
        found = await run_in_threadpool(self.services.cloud.clusters)
        rows = [
            {"cluster": c, "created": timefmt.rfc3339(c.created_us, self.tz)}
            for c in sorted(found, key=lambda c: (c.spec.name, c.cluster_id))
            if c.state != "deleted"
        ]
        return self._render(request, session, "clusters.html", {"rows": rows})

    async def cluster(self, request: Request, session: session_service.Session) -> Response:
        cluster_id = request.path_params["cluster_id"]
        cluster = await run_in_threadpool(self.services.cloud.cluster, cluster_id)
        pools = await run_in_threadpool(self.services.cloud.nodepools, cluster.cluster_id)
        context = {
            "cluster": cluster,
            "pools": pools,
            "pause_policies": PAUSE_POLICIES,
        }
        return self._render(request, session, "cluster.html", context)

    async def upgrade(self, request: Request, session: session_service.Session) -> Response:
        form: dict[str, str] = request.state.form
        body = {
            "kubernetes_version": form.get("kubernetes_version", ""),
            "rolling_policy": {
                "max_parallelism": form.get("max_parallelism") or None,
                "pause_policy": form.get("pause_policy") or None,
            },
        }
        done = await run_in_threadpool(
            self.services.nodes.upgrade_nodepool,
            request.path_params["cluster_id"],
            request.path_params["nodepool_id"],
            body,
        )
        return _redirect(f"{PREFIX}/tasks/{done.task.task_id}")

    # -- tasks -----------------------------------------------------------------------------------

    async def tasks(self, request: Request, session: session_service.Session) -> Response:
        cluster_id = request.path_params["cluster_id"]
        cluster = await run_in_threadpool(self.services.cloud.cluster, cluster_id)
        query = request.query_params
        state = query.get("state") or None
        task_type = query.get("type") or None
        page = _page_number(query.get("page"))
        listed = await run_in_threadpool(
            self.services.tasks.list_cluster_tasks,
            task_service.ListTasksRequest(
                cluster.cluster_id,
                page_number=page,
                page_size=PAGE_SIZE,
                state=state,
                task_type=task_type,
            ),
        )
        pages = max(1, -(-listed.total_count // PAGE_SIZE))
        filters = {"state": state or "", "type": task_type or ""}
        context = {
            "cluster": cluster,
            "listed": listed,
            "rows": [
                {
                    "task": t,
                    "created": timefmt.rfc3339(t.created_us, self.tz),
                    "updated": timefmt.rfc3339(t.updated_us, self.tz),
                }
                for t in listed.tasks
            ],
            "filters": filters,
            "states": [s.value for s in states.TaskState],
            "task_types": self.registry.task_types(),
            "page": listed.page_number,
            "pages": pages,
            "page_link": lambda n: "?" + urllib.parse.urlencode({**filters, "page": n}),
        }
        return self._render(request, session, "tasks.html", context)

    async def task(self, request: Request, session: session_service.Session) -> Response:
        context = await self._task_context(request.path_params["task_id"])
        return self._render(request, session, "task.html", context)

    async def task_live(self, request: Request, session: session_service.Session) -> Response:
        """The changing part of the task page, which the page swaps in as the task moves."""
        context = await self._task_context(request.path_params["task_id"])
        return self._render(request, session, "task_live.html", context)

    async def task_stream(self, request: Request, session: session_service.Session) -> Response:
        """The task's event stream (the API's ``/tasks/{id}/stream``), for the page's
        EventSource; a reconnecting EventSource resumes with ``Last-Event-ID``."""
        resume = None
        header = request.headers.get("last-event-id")
        if header:
            try:
                resume = live.Position.parse(header)
            except ValueError as exc:
                raise errors.InvalidParameter("Last-Event-ID", str(exc)) from None
        stream = await self.services.live.open_stream(request.path_params["task_id"], resume)
        return streams.event_stream(self.services.live.follow(stream, self.tz))

    async def _task_context(self, task_id: str) -> dict[str, Any]:
        view = await run_in_threadpool(self.services.tasks.describe_task, task_id, poll=False)
        task = view.task
        operation = self.registry.get(task.task_type)
        begin, end, bars = views.timeline(view, self.sessions.now_us(), self.tz)
        return {
            "view": view,
            "task": task,
            "created": timefmt.rfc3339(task.created_us, self.tz),
            "updated": timefmt.rfc3339(task.updated_us, self.tz),
            "begin_us": begin,
            "end_us": end,
            "bars": bars,
            "events": [
                {"event": e, "time": timefmt.rfc3339(e.timestamp_us, self.tz)}
                for e in reversed(view.events)
            ],
            "controls": views.controls(
                task,
                pausable=operation is not None and operation.pausable,
                cancelable=operation is not None and operation.cancelable,
            ),
        }

    async def pause(self, request: Request, session: session_service.Session) -> Response:
        return await self._control(request, self.services.control.pause)

    async def resume(self, request: Request, session: session_service.Session) -> Response:
        return await self._control(request, self.services.control.resume)

    async def cancel(self, request: Request, session: session_service.Session) -> Response:
        return await self._control(request, self.services.control.cancel)

    async def _control(self, request: Request, act: Callable[[str], Any]) -> Response:
        task_id = request.path_params["task_id"]
        await run_in_threadpool(act, task_id)
        return _redirect(f"{PREFIX}/tasks/{task_id}")

    # -- the emulator's controls -----------------------------------------------------------------

    async def emulator(self, request: Request, session: session_service.Session) -> Response:
        emulator = self.services.emulator
        clock = await run_in_threadpool(emulator.clock.view)
        rules = await run_in_threadpool(emulator.faults.rules)
        context = {
            "clock": clock,
            "clock_now": timefmt.rfc3339(clock.now_us, self.tz),
            "rules": rules,
            "task_types": self.registry.task_types(),
            "notice": request.query_params.get("done", ""),
        }
        return self._render(request, session, "emulator.html", context)

    async def set_clock(self, request: Request, session: session_service.Session) -> Response:
        form: dict[str, str] = request.state.form
        body: dict[str, Any] = {"mode": form.get("mode", "")}
        if form.get("speed"):
            body["speed"] = form["speed"]
        await run_in_threadpool(self.services.emulator.clock.set, body)
        return _redirect(f"{PREFIX}/emulator?done=clock")

    async def advance_clock(self, request: Request, session: session_service.Session) -> Response:
        form: dict[str, str] = request.state.form
        await run_in_threadpool(
            self.services.emulator.clock.advance, {"seconds": form.get("seconds") or None}
        )
        return _redirect(f"{PREFIX}/emulator?done=advance")

    async def add_fault(self, request: Request, session: session_service.Session) -> Response:
        form: dict[str, str] = request.state.form
        match = {k: form[k] for k in ("task_type", "stage", "node_name") if form.get(k)}
        effect = {k: form[k] for k in ("error_code", "message") if form.get(k)}
        body: dict[str, Any] = {"match": match, "effect": effect}
        if form.get("count"):
            body["count"] = form["count"]
        await run_in_threadpool(self.services.emulator.faults.add, body)
        return _redirect(f"{PREFIX}/emulator?done=fault")

    async def delete_fault(self, request: Request, session: session_service.Session) -> Response:
        await run_in_threadpool(
            self.services.emulator.faults.remove, request.path_params["fault_id"]
        )
        return _redirect(f"{PREFIX}/emulator?done=deleted")

    async def reset(self, request: Request, session: session_service.Session) -> Response:
        await self.services.emulator.state.reset()
        return _redirect(f"{PREFIX}/emulator?done=reset")


class Mount:
    """The whole server: ``/console`` to the console, everything else (and the lifespan,
    which starts the executor) to the API, whose middleware then never sees the console."""

    def __init__(self, api: ASGIApp, console: ASGIApp) -> None:
        self.api = api
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            if path == PREFIX or path.startswith(PREFIX + "/"):
                # Starlette routes on the path below ``root_path``; the path stays whole.
                inner = dict(scope)
                inner["root_path"] = scope.get("root_path", "") + PREFIX
                inner["path"] = path if path != PREFIX else PREFIX + "/"
                await self.console(inner, receive, send)
                return
        await self.api(scope, receive, send)


# -- small parts -------------------------------------------------------------------------------


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (what the console's forms send), the
    last value of each field; ``errors.InvalidParameter`` for anything else."""
    _check_origin(request)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise errors.RequestTooLarge(f"The form is larger than {MAX_FORM_BYTES} bytes.")
    if not body:
        return {}  # no fields at all: then the missing CSRF token is what is wrong
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise errors.InvalidParameter("Content-Type", "must be application/x-www-form-urlencoded")
    try:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise errors.InvalidParameter("form", "must be UTF-8") from None
    return {key: value.strip() for key, value in pairs}


def _check_origin(request: Request) -> None:
    """A browser names the page a form was posted from; one of another site is refused
    before anything else (the sign-in form has no session to bind a CSRF token to)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    expected = f"{request.url.scheme}://{request.url.netloc}"
    if origin != expected:
        raise errors.CsrfTokenInvalid(
            f"The form was posted from {origin[:100]}, not from this console ({expected})."
        )


def _redirect(url: str) -> Response:
    response = RedirectResponse(url, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


def _here(request: Request) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{request.url.path}{query}"


def _next(value: str | None) -> str:
    """Where to go after signing in: a console page only, never another site."""
    safe = value is not None and value.startswith(PREFIX + "/")
    if safe and value is not None and "\\" not in value and "//" not in value:
        return value
    return f"{PREFIX}/clusters"


def _page_number(value: str | None) -> int:
    if not value:
        return 1
    if not value.isdigit() or not 1 <= int(value) <= 1_000_000:
        raise errors.InvalidParameter("page", "must be a whole number from 1")
    return int(value)
