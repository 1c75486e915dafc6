"""The central's machine-readable API description, served at `GET /v1/openapi.json`.

It covers what gateways and operators' tools call: the ingest endpoint (PROTOCOL §3), the
command long-poll (PROTOCOL §4), the operators' event listing, the registry's buttons (what
`mashang device` calls) and the health check. This file
states the routes, their parameters and which model answers which status; the schemas are
generated from the pydantic models (JSON Schema 2020-12, which OpenAPI 3.1 uses as is), so the
document cannot drift from the code. Wired into the app by `add_openapi_route(app)`.

tests/test_central_openapi.py runs schemathesis against the served document and the real
central: no answer may be a 500, and every documented answer must match its schema.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from cloud_bridge.registry.api import ButtonPut, RegistryChange
from mashang.wire import (
    FACTS_PARAM,
    CommandPage,
    ErrorBody,
    IngestRequest,
    IngestResult,
    WireEvent,
)

OPENAPI_PATH = "/v1/openapi.json"


class StoredEvent(WireEvent):
    """An event as the central holds it: as the gateway sent it, plus where and when it came."""

    seq: int = Field(ge=1)
    gateway_id: str
    arrived_at: float = Field(description="Unix time the central stored it.")


class EventPage(BaseModel):
    """The answer to `GET /v1/events`: events the central holds, oldest first."""

    events: list[StoredEvent]
    next: int = Field(ge=0, description="Pass as `after` for the next page.")


class Health(BaseModel):
    ok: bool
    error: str | None = None  # why not, when the store takes no write (503)


Mode = Literal["validation", "serialization"]


def _json(model: type[BaseModel], mode: Mode) -> dict[str, Any]:
    # The (model, mode) pair is replaced by a $ref to its generated schema in `build`.
    return {"application/json": {"schema": (model, mode)}}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": _json(model, "validation")}


def _answer(description: str, model: type[BaseModel] = ErrorBody) -> dict[str, Any]:
    return {"description": description, "content": _json(model, "serialization")}


def _query(name: str, schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    return parameter | ({"description": description} if description else {})


_SIGNED: list[dict[str, list[str]]] = [
    {"gatewayId": [], "gatewayTimestamp": [], "gatewaySignature": []}
]
_BAD_SIGNATURE = "Missing, bad, stale or replayed signature; unknown gateway."

PATHS: dict[str, Any] = {
    "/healthz": {"get": {
        "operationId": "healthz",
        "summary": "Liveness of the central",
        "security": [],
        "responses": {"200": _answer("The central is up and its store takes writes.", Health),
                      "503": _answer("The store takes no write (disk full, database gone, "
                                     "read-only or locked): `error` says which.", Health)},
    }},
    "/v1/ingest": {"post": {
        "operationId": "ingest",
        "summary": "A batch of events from one gateway (PROTOCOL §3)",
        "security": _SIGNED,
        "requestBody": _body(IngestRequest),
        "responses": {
            "200": _answer("Every id in the batch is now safe.", IngestResult),
            "400": _answer("The body is not JSON."),
            "401": _answer(_BAD_SIGNATURE),
            "403": _answer("gateway_id in the body is not the signed gateway."),
            "413": _answer("Body larger than the central accepts: split the batch."),
            "422": _answer("JSON, but not an ingest request (invalid fields)."),
        },
    }},
    "/v1/events": {"get": {
        "operationId": "listEvents",
        "summary": "Events the central holds, oldest first (operators)",
        "security": [{"adminToken": []}],
        "parameters": [
            _query("after", {"type": "integer", "minimum": 0, "maximum": 2**62},
                   "Only events after this position (the `next` of a page)."),
            _query("limit", {"type": "integer", "minimum": 0, "maximum": 10000, "default": 1000}),
            _query("type", {"type": "string"}, "Only events of this type, e.g. button.press."),
        ],
        "responses": {
            "200": _answer("A page of events.", EventPage),
            "400": _answer("after or limit is not a whole number in range."),
            "401": _answer("Missing or wrong admin token."),
        },
    }},
    "/v1/gateways/{gateway_id}/commands": {"get": {
        "operationId": "pollCommands",
        "summary": "Long-poll for the gateway's commands (PROTOCOL §4)",
        "security": [{**_SIGNED[0], "gatewayNonce": []}],
        "parameters": [
            {"name": "gateway_id", "in": "path", "required": True,
             "schema": {"type": "string", "minLength": 1}},
            _query("after", {"type": "string", "pattern": "^[0-9]*$"},
                   "The cursor of the last answer; absent or 0 for a new gateway, which is sent "
                   "the registry first."),
            _query("wait", {"type": "integer", "minimum": 0, "maximum": 120, "default": 0},
                   "Seconds to hold the request while there is no command."),
            _query(FACTS_PARAM, {"type": "string", "contentMediaType": "application/json"},
                   "The gateway's facts (PROTOCOL §6) as compact JSON, the GatewayFacts "
                   "schema; facts that do not validate are ignored, never refused."),
        ],
        "responses": {
            "200": _answer("Commands after the cursor (possibly none).", CommandPage),
            "400": _answer("after or wait is out of range."),
            "401": _answer(_BAD_SIGNATURE),
            "403": _answer("The gateway in the path is not the signed gateway."),
        },
    }},
}

_DEVICE_ID = {"name": "device_id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"}}
PATHS["/v1/registry/buttons/{device_id}"] = {
    "put": {
        "operationId": "putButton",
        "summary": "Add a button to the registry, or change one (operators: mashang device add)",
        "security": [{"adminToken": []}],
        "parameters": [_DEVICE_ID],
        "requestBody": _body(ButtonPut),
        "responses": {
            "200": _answer("The registry, one version up, holds the button.", RegistryChange),
            "400": _answer("The body is not JSON."),
            "401": _answer("Missing or wrong admin token."),
            "409": _answer("The registry lacks the resident's building, or its file is "
                           "damaged."),
            "422": _answer("Invalid fields or a bad device id."),
        },
    },
    "delete": {
        "operationId": "deleteButton",
        "summary": "Take a button out of the registry (operators: mashang device remove)",
        "security": [{"adminToken": []}],
        "parameters": [_DEVICE_ID],
        "responses": {
            "200": _answer("The registry, one version up, no longer holds it.", RegistryChange),
            "401": _answer("Missing or wrong admin token."),
            "404": _answer("No such button in the registry."),
            "409": _answer("The central's registry file is damaged."),
            "422": _answer("A bad device id."),
        },
    },
}

SECURITY_SCHEMES: dict[str, Any] = {
    "gatewayId": {"type": "apiKey", "in": "header", "name": "X-Mashang-Gateway",
                  "description": "The gateway's id, as configured at the central."},
    "gatewayTimestamp": {"type": "apiKey", "in": "header", "name": "X-Mashang-Timestamp",
                         "description": "Unix seconds; within 300 s of the central."},
    "gatewaySignature": {"type": "apiKey", "in": "header", "name": "X-Mashang-Signature",
                         "description": "hex HMAC-SHA256(key, timestamp + '\\n' + raw body); "
                                        "for a poll, over timestamp, nonce and 'GET ' + path "
                                        "and query."},
    "gatewayNonce": {"type": "apiKey", "in": "header", "name": "X-Mashang-Nonce",
                     "description": "A command poll's nonce: 16 random bytes, hex, used once."},
    "adminToken": {"type": "http", "scheme": "bearer",
                   "description": "central.admin_token from the central's config."},
}

INFO: dict[str, Any] = {
    "title": "Mashang central (码上 reference central)",
    "version": "1",
    "description": (
        "Receives events from Mashang Edge gateways and hands them commands. Gateways sign "
        "every request: X-Mashang-Signature is the hex HMAC-SHA256, under the gateway's own "
        "key, of X-Mashang-Timestamp, a newline and the raw body. A command poll is signed "
        "the v1.1 way instead: over X-Mashang-Timestamp, a newline, X-Mashang-Nonce (16 "
        "random bytes, hex, used once), a newline and 'GET ' with the path and query as sent. "
        "A bad signature, a timestamp more than 300 s away, an unknown gateway, a v1 poll or a "
        "replayed request is answered 401 and changes nothing. Every command served carries "
        "`sig`, the central's Ed25519 signature over its canonical JSON (PROTOCOL §6)."
    ),
}


def build(paths: dict[str, Any]) -> dict[str, Any]:
    """The document: `paths` with each (model, mode) turned into a $ref to its schema."""
    models: dict[tuple[type[BaseModel], Mode], None] = {}

    def collect(node: Any) -> None:
        if isinstance(node, tuple):
            models[node] = None
        elif isinstance(node, dict | list):
            for child in node.values() if isinstance(node, dict) else node:
                collect(child)

    collect(paths)
    refs, schemas = models_json_schema(list(models), ref_template="#/components/schemas/{model}")

    def resolve(node: Any) -> Any:
        if isinstance(node, tuple):
            return dict(refs[node])
        if isinstance(node, dict):
            return {key: resolve(value) for key, value in node.items()}
        return [resolve(child) for child in node] if isinstance(node, list) else node

    return {
        "openapi": "3.1.0",
        "info": INFO,
        "paths": resolve(paths),
        "components": {"securitySchemes": SECURITY_SCHEMES, "schemas": schemas["$defs"]},
    }


DOCUMENT = build(PATHS)


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)


def add_openapi_route(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, openapi_document)
