"""Both signature schemes against captured vectors and the official SDK's own signer."""

from __future__ import annotations

import types
import urllib.parse

import pytest
from alibabacloud_tea_openapi import utils as sdk_utils

from clustertasks import errors
from clustertasks.domain import signing

# reference/sdk-wire.md §4.1: the captured remove_node_pool_nodes request.
CAPTURED_QUERY = (
    "concurrency=True&drain_node=True&instance_ids=%5B%22i-1%22%2C%22i-2%22%5D"
    "&nodes=%5B%22cn-hangzhou.10.0.0.1%22%2C%22cn-hangzhou.10.0.0.2%22%5D&release_node=False"
)
CAPTURED_HEADERS = {
    "host": "127.0.0.1:36467",
    "x-acs-version": "2015-12-15",
    "x-acs-action": "RemoveNodePoolNodes",
    "user-agent": "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2",
    "x-acs-date": "2026-11-28T18:51:18Z",
    "x-acs-signature-nonce": "ebf7ee0d4356368ef4d97a1d88e5cc3a",
    "accept": "application/json",
    "x-acs-content-sha256": signing.payload_hash("ACS3-HMAC-SHA256", b""),
    "x-acs-credentials-provider": "static_ak",
}
CAPTURED_CANONICAL = """DELETE
/clusters/c1/nodepools/np-1/nodes
concurrency=True&drain_node=True&instance_ids=%5B%22i-1%22%2C%22i-2%22%5D&nodes=%5B%22cn-hangzhou.10.0.0.1%22%2C%22cn-hangzhou.10.0.0.2%22%5D&release_node=False
accept:application/json
host:127.0.0.1:36467
user-agent:AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2
x-acs-action:RemoveNodePoolNodes
x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
x-acs-credentials-provider:static_ak
x-acs-date:2026-11-28T18:51:18Z
x-acs-signature-nonce:ebf7ee0d4356368ef4d97a1d88e5cc3a
x-acs-version:2015-12-15

accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-signature-nonce;x-acs-version
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"""
CAPTURED_SECRET = "test-ak-secret-123"
SIGNED = ";".join(sorted(CAPTURED_HEADERS))
NOW_US = 1_795_891_878 * 1_000_000  # 2026-11-28T18:51:18Z


def captured(**changes: object) -> signing.HttpRequest:
    base: dict[str, object] = {
        "method": "DELETE",
        "path": "/clusters/c1/nodepools/np-1/nodes",
        "query": CAPTURED_QUERY,
        "headers": tuple(CAPTURED_HEADERS.items()),
        "body": b"",
    }
    base.update(changes)
    return signing.HttpRequest(**base)  # type: ignore[arg-type]


def with_authorization(request: signing.HttpRequest, signature: str) -> signing.HttpRequest:
    value = f"ACS3-HMAC-SHA256 Credential=AK,SignedHeaders={SIGNED},Signature={signature}"
    return signing.HttpRequest(
        request.method,
        request.path,
        request.query,
        (*request.headers, ("authorization", value)),
        request.body,
    )


def test_captured_canonical_request_string_to_sign_and_signature() -> None:
    request = captured()
    canonical = signing.acs3_canonical_request(
        request, sorted(CAPTURED_HEADERS), CAPTURED_HEADERS["x-acs-content-sha256"]
    )
    assert canonical == CAPTURED_CANONICAL
    to_sign = signing.acs3_string_to_sign("ACS3-HMAC-SHA256", canonical)
    assert to_sign.startswith("ACS3-HMAC-SHA256\n434770ec")
    assert to_sign.endswith("0fe0")
    signature = signing.acs3_signature("ACS3-HMAC-SHA256", CAPTURED_SECRET, to_sign)
    assert signature.startswith("81a30969")
    assert signature.endswith("35c9")
    # And the verifier accepts exactly that request.
    signed = with_authorization(request, signature)
    signing.verify(signed, signing.parse(signed), CAPTURED_SECRET)


@pytest.mark.parametrize(
    "change",
    [
        {"method": "GET"},
        {"path": "/clusters/c1/nodepools/np-2/nodes"},
        {"query": CAPTURED_QUERY.replace("release_node=False", "release_node=True")},
        {"query": CAPTURED_QUERY + "&extra=1"},
        {
            "headers": tuple(
                (k, "1.2.3.4:80" if k == "host" else v) for k, v in CAPTURED_HEADERS.items()
            )
        },
        {
            "headers": tuple(
                (k, "ScaleClusterNodePool" if k == "x-acs-action" else v)
                for k, v in CAPTURED_HEADERS.items()
            )
        },
        {"body": b'{"count":3}'},
    ],
    ids=["method", "path", "query-value", "query-added", "host", "action", "body"],
)
def test_any_tampering_fails(change: dict[str, object]) -> None:
    genuine = signing.acs3_signature(
        "ACS3-HMAC-SHA256",
        CAPTURED_SECRET,
        signing.acs3_string_to_sign("ACS3-HMAC-SHA256", CAPTURED_CANONICAL),
    )
    tampered = with_authorization(captured(**change), genuine)
    with pytest.raises(errors.SignatureDoesNotMatch):
        signing.verify(tampered, signing.parse(tampered), CAPTURED_SECRET)


def test_wrong_secret_names_the_string_to_sign_but_never_the_secret() -> None:
    request = with_authorization(captured(), "0" * 64)
    with pytest.raises(errors.SignatureDoesNotMatch) as caught:
        signing.verify(request, signing.parse(request), CAPTURED_SECRET)
    assert "ACS3-HMAC-SHA256\\n434770ec" in caught.value.message
    assert CAPTURED_SECRET not in caught.value.message


# Values the issue names: spaces, +, /, ~, *, unicode and JSON arrays.
ODD_VALUES = {
    "next_token": "tok/=+ x",
    "name": "pool a~b*c",
    "label": "zone=杭州",
    "nodes": '["cn-hangzhou.10.0.0.1","n 2"]',
    "empty": "",
}


def test_canonical_query_decodes_and_reencodes_rfc3986() -> None:
    wire = urllib.parse.urlencode(ODD_VALUES)  # what the SDK sends: form style, + for space
    assert signing.canonical_query(wire) == (
        "empty=&label=zone%3D%E6%9D%AD%E5%B7%9E"
        "&name=pool%20a~b%2Ac"
        "&next_token=tok%2F%3D%2B%20x"
        "&nodes=%5B%22cn-hangzhou.10.0.0.1%22%2C%22n%202%22%5D"
    )


def _sdk_request(method: str, path: str, query: dict[str, str], headers: dict[str, str]) -> object:
    return types.SimpleNamespace(method=method, pathname=path, query=query, headers=headers)


@pytest.mark.parametrize("body", [b"", b'{"count":3,"name":"\xe6\x9d\xad"}'])
def test_acs3_matches_the_official_sdk_signer(body: bytes) -> None:
    headers = {
        "host": "127.0.0.1:8080",
        "x-acs-action": "DescribeClusterTasks",
        "x-acs-version": "2015-12-15",
        "x-acs-date": "2026-11-28T18:51:18Z",
        "x-acs-signature-nonce": "n-1",
        "accept": "application/json",
        "x-acs-content-sha256": signing.payload_hash("ACS3-HMAC-SHA256", body),
    }
    path = "/clusters/c%201%2Fx%2A~/tasks"
    authorization = sdk_utils.Utils.get_authorization(
        _sdk_request("GET", path, ODD_VALUES, headers),
        "ACS3-HMAC-SHA256",
        headers["x-acs-content-sha256"],
        "AK",
        "s3cret",
    )
    request = signing.HttpRequest(
        "GET",
        path,
        urllib.parse.urlencode(ODD_VALUES),
        (*headers.items(), ("authorization", authorization)),
        body,
    )
    credentials = signing.parse(request)
    assert credentials.access_key_id == "AK"
    signing.verify(request, credentials, "s3cret")
    with pytest.raises(errors.SignatureDoesNotMatch):
        signing.verify(request, credentials, "other")


def _roa_request(query: dict[str, str], content_type: str | None = None) -> signing.HttpRequest:
    headers = {
        "date": "Sat, 28 Nov 2026 18:51:19 GMT",
        "host": "127.0.0.1:8080",
        "accept": "application/json",
        "x-acs-signature-nonce": "6293abc",
        "x-acs-signature-method": "HMAC-SHA1",
        "x-acs-signature-version": "1.0",
        "x-acs-version": "2015-12-15",
        "x-acs-action": "DescribeClusterTasks",
        "user-agent": "AlibabaCloud",
        "x-acs-credentials-provider": "static_ak",
    }
    sdk = _sdk_request("GET", "/clusters/c1/tasks", query, headers)
    signature = sdk_utils.Utils.get_roasignature(sdk_utils.Utils.get_string_to_sign(sdk), "s3cret")
    sent = dict(headers, authorization=f"acs AK:{signature}")
    if content_type is not None:
        sent["content-type"] = content_type  # added after signing, as aiohttp does
    return signing.HttpRequest(
        "GET", "/clusters/c1/tasks", urllib.parse.urlencode(query), tuple(sent.items())
    )


def test_roa_captured_string_to_sign() -> None:
    request = _roa_request({"next_token": "a b", "page_number": "1", "page_size": "20"})
    assert signing.roa_strings_to_sign(request)[0] == (
        "GET\napplication/json\n\n\nSat, 28 Nov 2026 18:51:19 GMT\n"
        "x-acs-action:DescribeClusterTasks\nx-acs-credentials-provider:static_ak\n"
        "x-acs-signature-method:HMAC-SHA1\nx-acs-signature-nonce:6293abc\n"
        "x-acs-signature-version:1.0\nx-acs-version:2015-12-15\n"
        "/clusters/c1/tasks?next_token=a b&page_number=1&page_size=20"
    )


@pytest.mark.parametrize(
    "content_type", [None, "application/octet-stream"], ids=["sync", "aiohttp"]
)
def test_roa_matches_the_official_sdk_signer(content_type: str | None) -> None:
    request = _roa_request(ODD_VALUES, content_type)
    credentials = signing.parse(request)
    assert credentials.scheme is signing.Scheme.ROA
    signing.verify(request, credentials, "s3cret")
    with pytest.raises(errors.SignatureDoesNotMatch):
        signing.verify(request, credentials, "other")
    moved = signing.HttpRequest(
        "GET", "/clusters/c2/tasks", request.query, request.headers, request.body
    )
    with pytest.raises(errors.SignatureDoesNotMatch):
        signing.verify(moved, credentials, "s3cret")


def test_sign_acs3_round_trip_and_body_tamper() -> None:
    body = b'{"count":3}'
    unsigned = signing.HttpRequest(
        "POST",
        "/clusters/c1/nodepools/np1",
        "a=1%202&b=%E6%9D%AD",
        (("host", "h:1"), ("content-type", "application/json"), ("x-acs-action", "Scale")),
        body,
    )
    added = signing.sign_acs3(unsigned, "AK", "s3cret", now_us=NOW_US, nonce="n")
    request = signing.HttpRequest(
        unsigned.method, unsigned.path, unsigned.query, (*unsigned.headers, *added.items()), body
    )
    credentials = signing.parse(request)
    assert credentials.date_us == NOW_US
    assert credentials.nonce == "n"
    signing.verify(request, credentials, "s3cret")
    tampered = signing.HttpRequest(
        request.method, request.path, request.query, request.headers, b'{"count":300}'
    )
    with pytest.raises(errors.SignatureDoesNotMatch, match="x-acs-content-sha256"):
        signing.verify(tampered, credentials, "s3cret")


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        (None, errors.IncompleteSignature),
        ("", errors.IncompleteSignature),
        ("Bearer x", errors.InvalidSignatureMethod),
        ("ACS3-HMAC-SHA256 Credential=AK", errors.IncompleteSignature),
        (
            "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host,Signature=00",
            errors.IncompleteSignature,
        ),
        ("acs AK", errors.IncompleteSignature),
        ("acs :sig", errors.IncompleteSignature),
    ],
)
def test_malformed_authorization(authorization: str | None, error: type[Exception]) -> None:
    headers = [(k, v) for k, v in CAPTURED_HEADERS.items()]
    if authorization is not None:
        headers.append(("authorization", authorization))
    with pytest.raises(error):
        signing.parse(captured(headers=tuple(headers)))


@pytest.mark.parametrize("date", ["yesterday", "2026-11-28 18:51:18", "2026-13-40T99:00:00Z"])
def test_malformed_dates(date: str) -> None:
    headers = tuple((k, date if k == "x-acs-date" else v) for k, v in CAPTURED_HEADERS.items())
    request = with_authorization(captured(headers=headers), "0" * 64)
    with pytest.raises(errors.InvalidTimeStampFormat):
        signing.parse(request)


def test_unsigned_acs_header_is_refused() -> None:
    request = with_authorization(captured(), "0" * 64)
    extra = signing.HttpRequest(
        request.method,
        request.path,
        request.query,
        (*request.headers, ("x-acs-security-token", "t")),
        request.body,
    )
    with pytest.raises(errors.IncompleteSignature, match="x-acs-security-token"):
        signing.parse(extra)


def test_invalid_utf8_in_query_is_a_parameter_error() -> None:
    with pytest.raises(errors.InvalidParameter):
        signing.canonical_query("a=%ff%fe")
