"""A small HTTP client for the clustertasks API, used by the CLI's client commands."""

from __future__ import annotations

from typing import Any

import httpx

from clustertasks import errors


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


class ApiClient:
    def __init__(self, endpoint: str, timeout: float = 30.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._http = httpx.Client(base_url=self.endpoint, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._get(path, params)
        body: dict[str, Any] = response.json()
        return body

    def get_text(self, path: str, params: dict[str, Any] | None = None) -> str:
        return self._get(path, params).text

    def _get(self, path: str, params: dict[str, Any] | None) -> httpx.Response:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.get(path, params=clean)
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"cannot reach {self.endpoint}: {exc}") from exc
        if response.status_code >= 400:
            raise _api_error(response)
        return response


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
