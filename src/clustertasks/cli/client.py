"""A small HTTP client for the clustertasks API, used by the CLI's client commands."""

from __future__ import annotations

import ssl
from collections.abc import Generator
from typing import Any
from urllib.parse import quote

import httpx

from clustertasks import __version__, clock, errors
from clustertasks.domain import signing


class ApiError(errors.ClustertasksError):
    """The server answered with an error."""

    def __init__(self, status: int, code: str, message: str, request_id: str) -> None:
        self.status = status
        self.code = code
        self.request_id = request_id
        super().__init__(message)


class ConnectionFailed(errors.ClustertasksError):
    """The server could not be reached."""

    code = "ConnectionFailed"


class InvalidResponse(errors.ClustertasksError):
    """The server's answer is not the JSON document expected."""

    code = "InvalidResponse"


class SigningAuth(httpx.Auth):
    """Signs each request with ACS3-HMAC-SHA256, as the official SDK does."""

    requires_request_body = True

    def __init__(
        self, access_key_id: str, access_key_secret: str, time: clock.Clock | None = None
    ) -> None:
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self._time = time or clock.SystemClock()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield self(request)

    def __call__(self, request: Any) -> Any:
        """Sign ``request`` in place and return it. Callable too, so that any httpx-style
        client taking an auth function can use it (Starlette's test client, for one)."""
        unsigned = signing.HttpRequest(
            method=request.method,
            path=request.url.raw_path.split(b"?", 1)[0].decode("ascii"),
            query=request.url.query.decode("ascii"),
            headers=tuple((k.lower(), v) for k, v in request.headers.multi_items()),
            body=request.content,
        )
        added = signing.sign_acs3(
            unsigned, self.access_key_id, self._secret, now_us=self._time.now_us()
        )
        request.headers.update(added)
        return request


class ApiClient:
    def __init__(
        self,
        endpoint: str,
        auth: SigningAuth | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        ca_cert: str | None = None,
    ) -> None:
        """``transport``: where requests go instead of the network (an in-process app);
        ``ca_cert``: a PEM file of CAs to trust for HTTPS instead of the system's."""
        self.endpoint = endpoint.rstrip("/")
        verify: ssl.SSLContext | bool = True
        if ca_cert is not None:
            try:
                verify = ssl.create_default_context(cafile=ca_cert)
            except (OSError, ssl.SSLError) as exc:
                raise errors.ConfigurationError(
                    f"cannot read the CA certificate {ca_cert!r}: {exc}"
                ) from None
        try:
            self._http = httpx.Client(
                base_url=self.endpoint,
                timeout=timeout,
                trust_env=False,
                auth=auth,
                transport=transport,
                verify=verify,
                headers={"user-agent": f"clustertasks-cli/{__version__}"},
            )
        except httpx.InvalidURL as exc:
            raise errors.ConfigurationError(f"endpoint {endpoint!r} is not a URL: {exc}") from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def get_json(
        self, action: str, path: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return document(self._get(action, path, params))

    def get_text(self, action: str, path: str, params: dict[str, Any] | None = None) -> str:
        return self._get(action, path, params).text

    def _get(self, action: str, path: str, params: dict[str, Any] | None) -> httpx.Response:
        return self.request("GET", action, path, params=params)

    def call(
        self,
        method: str,
        action: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> dict[str, Any]:
        """Send one signed request and return its JSON body (an ``ApiError`` on 4xx/5xx)."""
        response = self.request(method, action, path, params=params, json=json)
        if not response.content:
            return {}
        return document(response)

    def request(
        self,
        method: str,
        action: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one signed request; an ``ApiError`` on 4xx/5xx, ``ConnectionFailed`` when
        there is no answer. ``timeout`` (seconds) replaces the client's for this request."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        sent = {"x-acs-action": action, **(headers or {})}
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            response = self._http.request(
                method, path, params=clean, json=json, headers=sent, **extra
            )
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise ConnectionFailed(f"cannot reach {self.endpoint}: {reason}") from exc
        if response.status_code >= 400:
            raise _api_error(response)
        return response


def segment(value: str) -> str:
    """``value`` as one path segment: ``/`` and everything else unsafe percent-encoded."""
    return quote(value, safe="")


def document(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object; ``InvalidResponse`` when it is something else."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        kind = response.headers.get("content-type", "no content type")
        raise InvalidResponse(
            f"{response.request.method} {response.request.url.path} answered "
            f"HTTP {response.status_code} with {kind}, not a JSON object"
        )
    return body


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiError(
        response.status_code,
        str(body.get("code") or body.get("Code") or response.status_code),
        str(body.get("message") or body.get("Message") or response.reason_phrase),
        str(body.get("requestId") or response.headers.get("x-acs-request-id", "")),
    )
