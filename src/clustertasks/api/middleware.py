"""Every response carries ``x-acs-request-id``, errors included."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clustertasks.api import errors as api_errors


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        rid = state.setdefault("request_id", api_errors.new_request_id())
        await self.app(scope, receive, sending_id(send, str(rid)))


def sending_id(send: Send, request_id: str) -> Send:
    """``send`` adding the request id header to a response that has none."""
    header = (api_errors.REQUEST_ID_HEADER.encode(), request_id.encode())

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if not any(name.lower() == header[0] for name, _ in headers):
                headers.append(header)
            message["headers"] = headers
        await send(message)

    return send_with_id
