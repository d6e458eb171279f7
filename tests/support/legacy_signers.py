"""Requests signed exactly as clients that cannot be installed here sign them.

Each function reproduces, from that client's source, the headers it sends and the legacy ROA
string to sign (HMAC-SHA1, ``Authorization: acs AK:signature``):

* :func:`go_sdk` — alibaba-cloud-sdk-go ``sdk/auth/roa_signature_composer.go``
  (``completeROASignParams``, ``buildRoaStringToSign``) with the headers of
  ``sdk/requests/acs_request.go`` (``defaultBaseRequest``), ``roa_request.go``
  (``InitWithApiInfo``, ``buildQueries``: the path and the *decoded* query sorted by name,
  a parameter without a value written as its bare name; ``BuildUrl``: ``url.Values.Encode``
  on the wire) and ``sdk/client.go`` (``x-sdk-core-version``). No nonce.
* :func:`aliyun_cli` — aliyun-cli ``openapi/restful.go`` (``RestfulInvoker.Prepare``: a
  ``CommonRequest`` with ``x-acs-region-id``, no ``x-acs-action``, Content-Type
  ``application/json`` for a body starting with ``{``), then signed by the Go SDK as above;
  ``requests/common_request.go`` sets ``x-sdk-invoke-type: common``. No nonce.
* :func:`aliyungo` — denverdino/aliyungo ``cs/client.go`` (``Invoke``) and
  ``cs/signature.go`` (``signRequest``: the string to sign ends with
  ``request.URL.RequestURI()``, the path and query *as sent*; ``util.Encode`` sorts the
  query and writes a parameter without a value as its bare name). It sends a nonce.

Header names keep the spelling each client puts on the wire (Go's ``Header.Set``
canonicalises ``Content-MD5`` to ``Content-Md5``; direct map writes keep lower case).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import secrets
import urllib.parse
from dataclasses import dataclass

API_VERSION = "2015-12-15"
GO_SDK_VERSION = "1.63.22"
"""``sdk/version.go`` of the snapshot read."""
OCTET_STREAM = "application/octet-stream"
JSON = "application/json"
NONCE_ALPHABET = "_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
"""aliyungo ``util.CreateRandomString``'s dictionary (32 characters are drawn)."""


@dataclass(frozen=True)
class Key:
    key_id: str
    secret: str


@dataclass(frozen=True)
class Signed:
    method: str
    target: str
    """Path and query, as on the request line."""
    headers: dict[str, str]
    body: bytes
    string_to_sign: str


def http_date(now_s: float) -> str:
    """Go's ``http.TimeFormat`` / the SDK's RFC 2616 format: ``Mon, 02 Jan 2006 15:04:05 GMT``."""
    return email.utils.formatdate(now_s, usegmt=True)


def go_query_escape(value: str) -> str:
    """Go's ``url.QueryEscape``: space as ``+``, ``~`` kept, everything else unreserved kept."""
    return urllib.parse.quote_plus(value, safe="~")


def go_values_encode(query: dict[str, str]) -> str:
    """Go's ``url.Values.Encode``: sorted by name, ``name=value`` even when empty."""
    return "&".join(f"{go_query_escape(k)}={go_query_escape(v)}" for k, v in sorted(query.items()))


def aliyungo_encode(query: dict[str, str]) -> str:
    """aliyungo ``util.Encode``: sorted, a parameter without a value as its bare name."""
    return "&".join(
        go_query_escape(k) + (f"={go_query_escape(v)}" if v else "")
        for k, v in sorted(query.items())
    )


def _sign(secret: str, string_to_sign: str) -> str:
    digest = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def _acs_lines(headers: dict[str, str]) -> str:
    names = sorted(k for k in headers if k.startswith("x-acs-"))
    return "".join(f"{name}:{headers[name]}\n" for name in names)


def go_sdk(
    method: str,
    path: str,
    *,
    key: Key,
    now_s: float,
    action: str | None,
    query: dict[str, str] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    invoke_type: str = "normal",
    extra: dict[str, str] | None = None,
) -> Signed:
    """A ROA request of alibaba-cloud-sdk-go (a generated ``cs`` request, or with
    ``invoke_type="common"`` a ``CommonRequest``)."""
    query = query or {}
    headers: dict[str, str] = {
        "x-sdk-client": "golang/1.0.0",
        "x-sdk-invoke-type": invoke_type,
        "Accept-Encoding": "identity",
        "x-acs-version": API_VERSION,
        **({"x-acs-action": action} if action else {}),
        **(extra or {}),
    }
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers["x-sdk-core-version"] = GO_SDK_VERSION
    # completeROASignParams
    headers["x-acs-credentials-provider"] = "static_ak"
    headers["Date"] = http_date(now_s)
    headers["x-acs-signature-method"] = "HMAC-SHA1"
    headers["x-acs-signature-version"] = "1.0"
    headers["Content-MD5"] = _md5(body)
    headers.setdefault("Content-Type", OCTET_STREAM)
    headers["Accept"] = JSON
    # buildRoaStringToSign: appendIfContain skips an absent or empty header entirely.
    head = "".join(
        f"{headers[name]}\n"
        for name in ("Accept", "Content-MD5", "Content-Type", "Date")
        if headers.get(name)
    )
    resource = path
    if query:
        resource += "?" + "&".join(k + (f"={v}" if v else "") for k, v in sorted(query.items()))
    string_to_sign = f"{method}\n{head}{_acs_lines(headers)}{resource}"
    headers["Authorization"] = f"acs {key.key_id}:{_sign(key.secret, string_to_sign)}"
    # buildRequestWithSigner sets the User-Agent after signing.
    headers["User-Agent"] = f"AlibabaCloud (linux; amd64) Golang/1.22.5 Core/{GO_SDK_VERSION}"
    wire_query = go_values_encode(query)
    target = f"{path}?{wire_query}" if wire_query else path
    return Signed(method, target, headers, body, string_to_sign)


def aliyun_cli(
    method: str,
    path: str,
    *,
    key: Key,
    now_s: float,
    region: str = "cn-hangzhou",
    query: dict[str, str] | None = None,
    body: bytes = b"",
) -> Signed:
    """``aliyun cs METHOD PATH [--name value…] [--body JSON] --endpoint HOST:PORT``."""
    content_type = None
    if body.startswith(b"{"):
        content_type = JSON
    elif body.startswith(b"<"):
        content_type = "application/xml"
    return go_sdk(
        method,
        path,
        key=key,
        now_s=now_s,
        action=None,
        query=query,
        body=body,
        content_type=content_type,
        invoke_type="common",
        extra={"x-acs-region-id": region},
    )


def aliyungo(
    method: str,
    path: str,
    *,
    key: Key,
    now_s: float,
    query: dict[str, str] | None = None,
    args: bytes | None = None,
    region: str = "",
    nonce: str | None = None,
) -> Signed:
    """``cs.Client.Invoke(region, method, path, query, args, …)``; ``path`` may carry a
    query of its own, as some of its calls build it (``/clusters/ID/nodes?pageNumber=1…``)."""
    target = path
    if query:
        target += "?" + aliyungo_encode(query)
    headers: dict[str, str] = {}
    if region:
        headers["x-acs-region-id"] = region
    if args is not None:
        headers["Content-Type"] = JSON
        headers["Content-Md5"] = _md5(args)
    headers["Date"] = http_date(now_s)
    headers["Accept"] = JSON
    headers["x-acs-version"] = API_VERSION
    headers["x-acs-signature-version"] = "1.0"
    headers["x-acs-signature-nonce"] = nonce or "".join(
        secrets.choice(NONCE_ALPHABET) for _ in range(32)
    )
    headers["x-acs-signature-method"] = "HMAC-SHA1"
    string_to_sign = (
        f"{method}\n{headers['Accept']}\n{headers.get('Content-Md5', '')}\n"
        f"{headers.get('Content-Type', '')}\n{headers['Date']}\n{_acs_lines(headers)}{target}"
    )
    headers["Authorization"] = f"acs {key.key_id}:{_sign(key.secret, string_to_sign)}"
    headers["User-Agent"] = "Go-http-client/1.1"
    return Signed(method, target, headers, args or b"", string_to_sign)
