"""Schemathesis against the real central, driven by the document it serves at /v1/openapi.json.

Every operation is called with generated requests twice: once as an outsider (no signature, no
token) and once as the configured gateway or operator, signed over the exact bytes sent, so
that generated events go past authentication into validation and the store. The signer claims
each generated batch for the test gateway (a batch naming another gateway is refused before it
reaches the store) and caps the long-poll's `wait` at 1 s, so that the run stays short.

Checks: schemathesis's defaults (no 5xx, documented status codes, content types and response
schemas, auth not ignored...), every answer within 30 s (no hang), and the central still
running with no traceback in its log afterwards (no crash).

MASHANG_API_EXAMPLES sets the examples per operation and mode (default 30).
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import ignored_auth, negative_data_rejection

from cloud_bridge.receiver.openapi import DOCUMENT
from mashang.signing import signed_headers
from tests.helpers.support import ADMIN_TOKEN, GATEWAY_ID, GATEWAY_KEY, Central, get_json

pytestmark = [pytest.mark.system, pytest.mark.central]

EXAMPLES = int(os.environ.get("MASHANG_API_EXAMPLES", "30"))
TIMEOUT = 30


class GatewaySigner(requests.auth.AuthBase):
    """Signs each prepared request as the test gateway, over the body exactly as sent."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        if body:
            try:
                document = json.loads(body)
            except ValueError:
                document = None
            if isinstance(document, dict) and "gateway_id" in document:
                document["gateway_id"] = GATEWAY_ID
                body = json.dumps(document).encode()
                request.body = body
                request.headers["Content-Length"] = str(len(body))
        url = urllib.parse.urlsplit(request.url or "")
        query = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        query = [(k, "1" if k == "wait" and v.isdigit() and int(v) > 1 else v) for k, v in query]
        request.url = url._replace(query=urllib.parse.urlencode(query)).geturl()
        request.headers.update(signed_headers(GATEWAY_ID, GATEWAY_KEY.encode(), body))
        return request


@pytest.fixture
def api_central(tmp_path: Path, central_database: str | None) -> Iterator[Central]:
    central = Central(tmp_path / "central", database=central_database)
    central.start()
    yield central
    central.kill()
    log = central.output()
    assert "Traceback" not in log, log[-4000:]


# (path, method, generation mode): an operation without parameters has no invalid request.
OPERATIONS = [
    (path, method.upper(), mode)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or "parameters" in operation or "requestBody" in operation
]
# The insider's signer repairs what negative generation breaks (it adds the signature headers
# a case left out, and signs again what schemathesis re-sends to see if auth is ignored): those
# two checks judge the outsider's calls only.
SIGNER_BLIND = [negative_data_rejection, ignored_auth]


@pytest.mark.parametrize(("path", "method", "mode"), OPERATIONS,
                         ids=[f"{m} {p} {g.value}" for p, m, g in OPERATIONS])
def test_the_central_answers_every_generated_request_as_documented(
    api_central: Central, path: str, method: str, mode: GenerationMode
):
    document = get_json(f"{api_central.url}/v1/openapi.json")
    assert document is not None, "the central does not serve /v1/openapi.json"
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=api_central.url)
    operation = schema[path][method]
    admin = operation.definition.raw.get("security") == [{"adminToken": []}]
    outsider = requests.Session()
    insider = requests.Session()
    if admin:
        insider.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    else:
        insider.auth = GatewaySigner()

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def call(case) -> None:
        case.call_and_validate(session=outsider, timeout=TIMEOUT)
        case.call_and_validate(session=insider, timeout=TIMEOUT, excluded_checks=SIGNER_BLIND)
        assert api_central.running(), f"the central died:\n{api_central.output()[-3000:]}"

    call()
    if path == "/v1/ingest" and mode is GenerationMode.POSITIVE:
        assert api_central.events(), "no generated batch got past authentication to the store"
