"""Schema-driven fuzzing of every operation in /openapi.json, signed like the SDK.

Bounded in examples per operation and derandomized, so it runs in seconds and the same way
every time. Whatever the input: never a 5xx, and always an ``x-acs-request-id``.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import hypothesis
import pytest
import schemathesis

from clustertasks import settings
from clustertasks.api import app as api_app
from clustertasks.domain import signing
from clustertasks.storage import database as storage_database
from tests.integration.conftest import services_for
from tests.support import signing as test_signing


def _sign(prepared: Any) -> Any:
    """A ``requests`` auth (schemathesis sends through requests): sign as the SDK would."""
    url = urllib.parse.urlsplit(prepared.url)
    prepared.headers["Host"] = url.netloc
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    unsigned = signing.HttpRequest(
        prepared.method,
        url.path or "/",
        url.query,
        signing.lower_headers(dict(prepared.headers)),
        body,
    )
    prepared.headers.update(
        signing.sign_acs3(
            unsigned,
            test_signing.KEY_ID,
            test_signing.SECRET,
            now_us=test_signing.clock_now_us(),
        )
    )
    return prepared


@pytest.fixture
def api_schema(database: storage_database.Database) -> Any:
    app = api_app.create_app(
        services_for(database),
        settings.WireSettings(),
        authenticator=test_signing.authenticator(database),
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app)


SETTINGS = hypothesis.settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)


def _check(case: Any) -> None:
    response = case.call(auth=_sign)
    where = (case.method, case.formatted_path)
    assert response.status_code < 500, (*where, response.text)
    assert response.headers.get("x-acs-request-id"), where
    if response.status_code >= 400:
        # Signed correctly, so never refused for the signature itself.
        code = response.json()["code"]
        assert code not in {"SignatureDoesNotMatch", "IncompleteSignature"}, (*where, code)


def test_no_5xx_and_always_a_request_id(api_schema: Any) -> None:
    # A plain loop, not schemathesis' pytest plugin: the plugin does not support this
    # pytest's node API, and one test per backend is all we need.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        run = hypothesis.given(case=operation.as_strategy())(_check)
        SETTINGS(run)()
