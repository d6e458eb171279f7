"""Request signatures exactly as Alibaba Cloud SDKs compute them (reference/sdk-wire.md §4).

Two schemes:

* **ACS3-HMAC-SHA256** (the SDK's default; also ``ACS3-HMAC-SM3``): HMAC over the SHA-256 of
  a canonical request built from the method, the raw path, the decoded-and-re-encoded query,
  the headers named in ``SignedHeaders`` and the body hash in ``x-acs-content-sha256``.
* **Legacy ROA** (``signature_algorithm="v2"``): ``Authorization: acs AK:base64(HMAC-SHA1)``
  over method, Accept, Content-MD5, Content-Type, Date, the ``x-acs-*`` headers and the path
  with its query. It does not cover the body or the host; that is the scheme's weakness, not
  ours to fix.

Pure functions only: the server's verifier and the CLI's signer share them, and nothing here
reads a clock or a database (times come in as arguments).
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import datetime
import email.utils
import enum
import functools
import hashlib
import hmac
import re
import secrets
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from clustertasks import errors
from clustertasks.domain import access

ACS3_HASHES = {"ACS3-HMAC-SHA256": "sha256", "ACS3-HMAC-SM3": "sm3"}
"""Algorithm name -> hashlib name, for both the payload hash and the HMAC."""
DEFAULT_ALGORITHM = "ACS3-HMAC-SHA256"
API_VERSION = "2015-12-15"
ACS3_DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
CONTENT_HASH_HEADER = "x-acs-content-sha256"
NONCE_HEADER = "x-acs-signature-nonce"
ACS3_REQUIRED_SIGNED = ("host", "x-acs-date", NONCE_HEADER, CONTENT_HASH_HEADER)
"""Headers an ACS3 signature must cover; besides these, every ``x-acs-*`` header sent."""
MAX_QUERY_FIELDS = 1_000
# aiohttp (the SDK's *_async methods) adds this unsigned Content-Type to body-less requests
# after signing; the legacy scheme signs Content-Type, so we also try it without.
UNSIGNED_ASYNC_CONTENT_TYPE = "application/octet-stream"


class _EmptyPayloadHashes(dict[str, str]):
    """The hash of an empty body per algorithm, computed at its first use (an algorithm
    this OpenSSL lacks fails there as it did each time)."""

    def __missing__(self, algorithm: str) -> str:
        digest = self[algorithm] = hashlib.new(ACS3_HASHES[algorithm], b"").hexdigest()
        return digest


_EMPTY_PAYLOAD_HASHES = _EmptyPayloadHashes()


class Scheme(enum.StrEnum):
    ACS3 = "ACS3"
    ROA = "ROA"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request as received: nothing decoded that the signature covers in encoded form."""

    method: str
    path: str
    """The raw, still percent-encoded path."""
    query: str
    """The raw query string as sent, without ``?``."""
    headers: tuple[tuple[str, str], ...]
    """Lower-case names, values as received (several entries for a repeated header)."""
    body: bytes = b""
    _values: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Each header's value as ``header`` gives it, gathered at the first lookup (a
    signature check makes a dozen)."""

    def header(self, name: str) -> str | None:
        """The header's value; a repeated header's values sorted and joined with ``,``."""
        values = self._values
        if not values and self.headers:
            repeated: dict[str, list[str]] = {}
            for key, value in self.headers:
                if key in values:
                    repeated.setdefault(key, [values[key]]).append(value.strip())
                else:
                    values[key] = value.strip()
            for key, many in repeated.items():  # rare: sorted and joined
                values[key] = ",".join(sorted(many))
        return values.get(name)


def received(
    method: str,
    path: str,
    query: str,
    headers: tuple[tuple[str, str], ...],
    values: dict[str, str],
) -> HttpRequest:
    """A body-less request whose headers' values (stripped, one per name: no header
    repeated) the caller has gathered already, as ``HttpRequest.header`` would."""
    request = HttpRequest(method, path, query, headers)
    request._values.update(values)
    return request


@functools.lru_cache(maxsize=64)
def _signed_headers(listed: str) -> tuple[tuple[str, ...], frozenset[str], tuple[str, ...]]:
    """``SignedHeaders``: the names, as a set, and the required ones it lacks (clients
    send the same list with every request)."""
    signed = tuple(name.strip().lower() for name in listed.split(";"))
    missing = tuple(h for h in ACS3_REQUIRED_SIGNED if h not in signed)
    return signed, frozenset(signed), missing


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the Authorization and freshness headers claim, parsed but not yet verified."""

    scheme: Scheme
    algorithm: str
    access_key_id: str
    signature: str
    signed_headers: tuple[str, ...]
    nonce: str
    """Empty when a legacy request carried none: then only the date window limits a replay."""
    date_us: int


# -- parsing ---------------------------------------------------------------------------------


def parse(request: HttpRequest) -> Credentials:
    """Read the signature headers; raise IncompleteSignature & co. when they are unusable."""
    authorization = request.header("authorization")
    if not authorization:
        raise errors.IncompleteSignature(
            "The request is not signed: send an Authorization header "
            "(ACS3-HMAC-SHA256 or legacy 'acs AccessKeyId:Signature')."
        )
    if authorization.startswith("acs "):
        return _parse_roa(request, authorization)
    algorithm, _, rest = authorization.partition(" ")
    if algorithm not in ACS3_HASHES:
        raise errors.InvalidSignatureMethod(
            f"The signature method {_shown(algorithm)} is not supported: use "
            f"{', '.join(ACS3_HASHES)} or the legacy 'acs' scheme."
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    missing = [f for f in ("Credential", "SignedHeaders", "Signature") if not fields.get(f)]
    if missing:
        raise errors.IncompleteSignature(
            f"The Authorization header lacks {', '.join(missing)}: expected "
            f"'{algorithm} Credential=AK,SignedHeaders=a;b,Signature=hex'."
        )
    signed, signed_set, lacking = _signed_headers(fields["SignedHeaders"])
    unsigned = list(lacking)
    extra = {
        key
        for key, _ in request.headers
        if key.startswith("x-acs-") and key not in signed_set and key not in lacking
    }
    if extra:
        unsigned += sorted(extra)
    if unsigned:
        raise errors.IncompleteSignature(
            f"The signature must cover the header(s) {', '.join(unsigned)} (SignedHeaders)."
        )
    absent = [name for name in signed if request.header(name) is None]
    if absent:
        raise errors.IncompleteSignature(
            f"The signed header(s) {', '.join(absent)} are not in the request."
        )
    date = request.header("x-acs-date") or ""
    return Credentials(
        Scheme.ACS3,
        algorithm,
        _key_id(fields["Credential"]),
        fields["Signature"],
        signed,
        _nonce(request),
        _parse_acs3_date(date),
    )


def _parse_roa(request: HttpRequest, authorization: str) -> Credentials:
    key_id, sep, signature = authorization[len("acs ") :].strip().partition(":")
    if not sep or not key_id or not signature:
        raise errors.IncompleteSignature(
            "The Authorization header must be 'acs AccessKeyId:Signature'."
        )
    method = request.header("x-acs-signature-method")
    if method is not None and method != "HMAC-SHA1":
        raise errors.InvalidSignatureMethod(
            f"The signature method {_shown(method)} is not supported: use HMAC-SHA1."
        )
    date = request.header("date")
    if not date:
        raise errors.IncompleteSignature("The legacy 'acs' scheme needs a Date header.")
    # The older SDKs (aliyun-python-sdk-core, alibaba-cloud-sdk-go and the aliyun CLI on it)
    # send no nonce; the gateway accepts them within the date window, and so do we.
    nonce = _nonce(request) if request.header(NONCE_HEADER) is not None else ""
    return Credentials(
        Scheme.ROA, "HMAC-SHA1", _key_id(key_id), signature, (), nonce, _http_date(date)
    )


def _key_id(value: str) -> str:
    if not value or len(value) > access.MAX_FIELD_LENGTH or not value.isprintable():
        raise errors.IncompleteSignature("The AccessKey id in the Authorization header is invalid.")
    return value


def _nonce(request: HttpRequest) -> str:
    nonce = request.header(NONCE_HEADER)
    if not nonce:
        raise errors.IncompleteSignature(f"The header {NONCE_HEADER} is required.")
    if len(nonce) > access.MAX_FIELD_LENGTH or not nonce.isascii() or not nonce.isprintable():
        raise errors.IncompleteSignature(
            f"The header {NONCE_HEADER} must be at most {access.MAX_FIELD_LENGTH} printable "
            "ASCII characters."
        )
    return nonce


_CANONICAL_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


@functools.lru_cache(maxsize=64)
def _parse_acs3_date(value: str) -> int:
    # What every SDK sends, read without strptime (which costs more than the rest of the
    # signature check); any other spelling strptime accepts is read by it, as before.
    canonical = _CANONICAL_DATE.fullmatch(value)
    if canonical is not None:
        year, month, day, hour, minute, second = (int(part) for part in canonical.groups())
        with contextlib.suppress(ValueError):
            stamp = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
            return int(stamp.timestamp()) * 1_000_000
    try:
        parsed = time.strptime(value, ACS3_DATE_FORMAT)
    except ValueError:
        raise errors.InvalidTimeStampFormat(
            f"The x-acs-date {_shown(value)} is not UTC 'YYYY-MM-DDTHH:MM:SSZ'."
        ) from None
    return calendar.timegm(parsed) * 1_000_000


def _http_date(value: str) -> int:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        raise errors.InvalidTimeStampFormat(
            f"The Date {_shown(value)} is not an RFC 1123 date, e.g. "
            "'Sat, 28 Nov 2026 18:46:37 GMT'."
        ) from None
    # A date without a zone ("-0000") is UTC, as HTTP dates always are.
    return calendar.timegm(parsed.utctimetuple()) * 1_000_000


def _shown(value: str, limit: int = 64) -> str:
    """A client-supplied value, quoted and cut short, for an error message."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


# -- canonical forms -------------------------------------------------------------------------


def query_pairs(query: str) -> list[tuple[str, str]]:
    """Decode a form-encoded query (``+`` is a space), keeping empty values."""
    try:
        return urllib.parse.parse_qsl(
            query,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except UnicodeDecodeError:
        raise errors.InvalidParameter("query", "is not valid percent-encoded UTF-8") from None
    except ValueError:
        raise errors.InvalidParameter(
            "query", f"has more than {MAX_QUERY_FIELDS} parameters"
        ) from None


def canonical_query(query: str) -> str:
    """ACS3: decoded pairs sorted by name, values re-encoded RFC 3986 style (space = %20)."""
    if not query:  # every DescribeTaskInfo poll
        return ""
    return "&".join(
        f"{key}={urllib.parse.quote(value, safe='~')}" for key, value in sorted(query_pairs(query))
    )


def acs3_canonical_request(
    request: HttpRequest, signed_headers: Sequence[str], payload_hash: str
) -> str:
    names, listed = _sorted_names(tuple(signed_headers))
    header = request.header
    headers = "".join([f"{name}:{header(name) or ''}\n" for name in names])
    return "\n".join(
        (
            request.method.upper(),
            request.path or "/",
            canonical_query(request.query),
            headers,
            listed,
            payload_hash,
        )
    )


@functools.lru_cache(maxsize=64)
def _sorted_names(signed_headers: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
    """The signed header names sorted, and joined with ``;`` (clients send the same list
    with every request)."""
    names = tuple(sorted(signed_headers))
    return names, ";".join(names)


_HASHES = {"sha256": hashlib.sha256}
"""Hash constructors called directly (``hashlib.new`` looks the name up on every call);
any other algorithm through ``hashlib.new``."""


def acs3_string_to_sign(algorithm: str, canonical_request: str) -> str:
    name = ACS3_HASHES[algorithm]
    constructor = _HASHES.get(name)
    data = canonical_request.encode()
    hashed = constructor(data) if constructor is not None else hashlib.new(name, data)
    return f"{algorithm}\n{hashed.hexdigest()}"


def acs3_signature(algorithm: str, secret: str, string_to_sign: str) -> str:
    # One call into OpenSSL (hmac.new builds a Python HMAC object around two hash objects).
    return hmac.digest(secret.encode(), string_to_sign.encode(), ACS3_HASHES[algorithm]).hex()


def payload_hash(algorithm: str, body: bytes) -> str:
    if not body:  # every GET: the hash of nothing, computed once
        return _EMPTY_PAYLOAD_HASHES[algorithm]
    return hashlib.new(ACS3_HASHES[algorithm], body).hexdigest()


def roa_strings_to_sign(request: HttpRequest) -> list[str]:
    """Every legacy string to sign a genuine client may have used, most likely first.

    Clients differ: the Tea SDK signs the decoded query sorted by name, aliyungo the query
    exactly as sent; aiohttp adds an unsigned Content-Type to body-less requests.
    """
    acs_headers = sorted({key for key, _ in request.headers if key.startswith("x-acs-")})
    canonical_headers = "".join(f"{name}:{request.header(name)}\n" for name in acs_headers)
    resources = [request.path]
    if request.query:
        decoded = "&".join(
            key if value == "" else f"{key}={value}"
            for key, value in sorted(query_pairs(request.query))
        )
        resources = [f"{request.path}?{decoded}", f"{request.path}?{request.query}"]
    content_type = request.header("content-type") or ""
    content_types = [content_type]
    if not request.body and content_type == UNSIGNED_ASYNC_CONTENT_TYPE:
        content_types.append("")
    head = (
        request.method.upper(),
        request.header("accept") or "",
        request.header("content-md5") or "",
    )
    date = request.header("date") or ""
    return [
        "\n".join((*head, ct, date, "")) + canonical_headers + resource
        for ct in content_types
        for resource in resources
    ]


def roa_signature(secret: str, string_to_sign: str) -> str:
    digest = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# -- verification ----------------------------------------------------------------------------


def verify(request: HttpRequest, credentials: Credentials, secret: str) -> None:
    """Raise SignatureDoesNotMatch unless ``secret`` signed this request; constant time."""
    if credentials.scheme is Scheme.ACS3:
        _verify_acs3(request, credentials, secret)
    else:
        _verify_roa(request, credentials, secret)


def _verify_acs3(request: HttpRequest, credentials: Credentials, secret: str) -> None:
    algorithm = credentials.algorithm
    claimed = (request.header(CONTENT_HASH_HEADER) or "").lower()
    if not _same(claimed, payload_hash(algorithm, request.body)):
        raise errors.SignatureDoesNotMatch(
            f"The {CONTENT_HASH_HEADER} header does not match the request body: the body was "
            "changed after signing, or its hash was computed wrongly."
        )
    canonical = acs3_canonical_request(request, credentials.signed_headers, claimed)
    string_to_sign = acs3_string_to_sign(algorithm, canonical)
    expected = acs3_signature(algorithm, secret, string_to_sign)
    if not _same(credentials.signature.lower(), expected):
        raise errors.SignatureDoesNotMatch(
            "Specified signature is not matched with our calculation. Server string to sign "
            f"is: {string_to_sign!r}, over the canonical request {canonical!r}."
        )


def _verify_roa(request: HttpRequest, credentials: Credentials, secret: str) -> None:
    content_md5 = request.header("content-md5")
    if content_md5 is not None:
        actual = base64.b64encode(hashlib.md5(request.body).digest()).decode()  # noqa: S324
        if not _same(content_md5, actual):
            raise errors.SignatureDoesNotMatch(
                "The Content-MD5 header does not match the request body."
            )
    candidates = roa_strings_to_sign(request)
    # Check every candidate, so the time taken does not say which form nearly matched.
    matched = [_same(credentials.signature, roa_signature(secret, s)) for s in candidates]
    if not any(matched):
        raise errors.SignatureDoesNotMatch(
            "Specified signature is not matched with our calculation. Server string to sign "
            f"is: {candidates[0]!r}."
        )


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


# -- signing (clients) -------------------------------------------------------------------------


def acs3_date(now_us: int) -> str:
    return time.strftime(ACS3_DATE_FORMAT, time.gmtime(now_us // 1_000_000))


def new_nonce() -> str:
    return secrets.token_hex(16)


def sign_acs3(
    request: HttpRequest,
    access_key_id: str,
    secret: str,
    *,
    now_us: int,
    nonce: str | None = None,
    algorithm: str = DEFAULT_ALGORITHM,
) -> dict[str, str]:
    """The headers to add so that ``request`` is signed as the official SDK signs it.

    Signs ``host``, ``content-type`` when present, and every ``x-acs-*`` header, including
    the date, nonce, body hash and (unless already set) API version added here.
    """
    added = {
        "x-acs-date": acs3_date(now_us),
        NONCE_HEADER: nonce or new_nonce(),
        CONTENT_HASH_HEADER: payload_hash(algorithm, request.body),
    }
    if request.header("x-acs-version") is None:
        added["x-acs-version"] = API_VERSION
    headers = tuple((k, v) for k, v in request.headers if k not in added) + tuple(added.items())
    full = HttpRequest(request.method, request.path, request.query, headers, request.body)
    signed = sorted(
        {key for key, _ in headers if key.startswith("x-acs-") or key in ("host", "content-type")}
    )
    canonical = acs3_canonical_request(full, signed, added[CONTENT_HASH_HEADER])
    signature = acs3_signature(algorithm, secret, acs3_string_to_sign(algorithm, canonical))
    added["authorization"] = (
        f"{algorithm} Credential={access_key_id},SignedHeaders={';'.join(signed)},"
        f"Signature={signature}"
    )
    return added


def lower_headers(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((key.lower(), value) for key, value in headers.items())
