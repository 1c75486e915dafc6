"""The central's machine-readable API description, served at `GET /v1/openapi.json`.

It covers what gateways and operators' tools call: the ingest endpoint (PROTOCOL §3), the
command long-poll (PROTOCOL §4), the operators' event listing and the health check. Wire it
into the app with one line in `create_central_app`:

    add_openapi_route(app)

tests/test_central_openapi.py runs schemathesis against the served document and the real
central: no answer may be a 500, and every documented answer must match its schema.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

OPENAPI_PATH = "/v1/openapi.json"


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}
        },
    }


_EVENT_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string", "minLength": 1, "maxLength": 64,
           "description": "Stable across retries (PROTOCOL §2); the central deduplicates on it."},
    "kind": {"type": "string", "enum": ["alert", "log"]},
    "type": {"type": "string", "minLength": 1, "maxLength": 64,
             "examples": ["button.press", "scan.accepted", "gateway.evicted"]},
    "priority": {"type": "string", "enum": ["critical", "high", "normal", "low"]},
    "device_id": {"type": ["string", "null"], "maxLength": 128},
    "occurred_at": {"type": "string", "format": "date-time"},
    "received_at": {"type": "string", "format": "date-time"},
    "data": {"type": "object", "additionalProperties": True,
             "description": "The device message's fields as received, plus what the gateway "
                            "added (resident, building, stall, reason...)."},
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Mashang central (码上 reference central)",
        "version": "1",
        "description": (
            "Receives events from Mashang Edge gateways and hands them commands. Gateways sign "
            "every request: X-Mashang-Signature is the hex HMAC-SHA256, under the gateway's own "
            "key, of X-Mashang-Timestamp, a newline and the raw body (empty for GET). A bad "
            "signature, a timestamp more than 300 s away, an unknown gateway or a replayed "
            "request is answered 401 and changes nothing."
        ),
    },
    "paths": {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness of the central",
                "security": [],
                "responses": {"200": _ok("The central is up.", "Health")},
            }
        },
        "/v1/ingest": {
            "post": {
                "operationId": "ingest",
                "summary": "A batch of events from one gateway (PROTOCOL §3)",
                "security": [{"gatewayId": [], "gatewayTimestamp": [], "gatewaySignature": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/IngestRequest"}
                        }
                    },
                },
                "responses": {
                    "200": _ok(
                        "Every id in the batch is now safe: new ones under accepted, ids the "
                        "central already held under duplicates.",
                        "IngestResult",
                    ),
                    "400": _error("The body is not JSON."),
                    "401": _error("Missing, bad, stale or replayed signature; unknown gateway."),
                    "403": _error("gateway_id in the body is not the signed gateway."),
                    "413": _error("Body larger than the central accepts: split the batch."),
                    "422": _error("JSON, but not an ingest request (invalid fields)."),
                },
            }
        },
        "/v1/events": {
            "get": {
                "operationId": "listEvents",
                "summary": "Events the central holds, oldest first (operators)",
                "security": [{"adminToken": []}],
                "parameters": [
                    {"name": "after", "in": "query", "required": False,
                     "description": "Only events after this position (the `next` of a page).",
                     "schema": {"type": "integer", "minimum": 0, "maximum": 2**62}},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 0, "maximum": 10000,
                                "default": 1000}},
                    {"name": "type", "in": "query", "required": False,
                     "description": "Only events of this type, e.g. button.press.",
                     "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _ok("A page of events.", "EventPage"),
                    "400": _error("after or limit is not a whole number in range."),
                    "401": _error("Missing or wrong admin token."),
                },
            }
        },
        "/v1/gateways/{gateway_id}/commands": {
            "get": {
                "operationId": "pollCommands",
                "summary": "Long-poll for the gateway's commands (PROTOCOL §4)",
                "security": [{"gatewayId": [], "gatewayTimestamp": [], "gatewaySignature": []}],
                "parameters": [
                    {"name": "gateway_id", "in": "path", "required": True,
                     "schema": {"type": "string", "minLength": 1}},
                    {"name": "after", "in": "query", "required": False,
                     "description": "The cursor of the last answer; absent or 0 for a new "
                                    "gateway, which is sent the registry first.",
                     "schema": {"type": "string", "pattern": "^[0-9]*$"}},
                    {"name": "wait", "in": "query", "required": False,
                     "description": "Seconds to hold the request while there is no command.",
                     "schema": {"type": "integer", "minimum": 0, "maximum": 120, "default": 0}},
                ],
                "responses": {
                    "200": _ok("Commands after the cursor (possibly none).", "CommandPage"),
                    "400": _error("after or wait is out of range."),
                    "401": _error("Missing, bad, stale or replayed signature; unknown gateway."),
                    "403": _error("The gateway in the path is not the signed gateway."),
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "gatewayId": {"type": "apiKey", "in": "header", "name": "X-Mashang-Gateway",
                          "description": "The gateway's id, as configured at the central."},
            "gatewayTimestamp": {"type": "apiKey", "in": "header",
                                 "name": "X-Mashang-Timestamp",
                                 "description": "Unix seconds; within 300 s of the central."},
            "gatewaySignature": {
                "type": "apiKey", "in": "header", "name": "X-Mashang-Signature",
                "description": "hex HMAC-SHA256(key, timestamp + '\\n' + raw body).",
            },
            "adminToken": {"type": "http", "scheme": "bearer",
                           "description": "central.admin_token from the central's config."},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            },
            "Health": {
                "type": "object",
                "required": ["ok"],
                "properties": {"ok": {"type": "boolean"}},
            },
            "WireEvent": {
                "type": "object",
                "required": ["id", "kind", "type", "priority", "occurred_at", "received_at"],
                "properties": _EVENT_PROPERTIES,
                "additionalProperties": True,
            },
            "IngestRequest": {
                "type": "object",
                "required": ["gateway_id", "sent_at", "events"],
                "properties": {
                    "gateway_id": {"type": "string"},
                    "sent_at": {"type": "string", "format": "date-time"},
                    "events": {"type": "array", "maxItems": 10000,
                               "items": {"$ref": "#/components/schemas/WireEvent"}},
                },
            },
            "IngestResult": {
                "type": "object",
                "required": ["accepted", "duplicates"],
                "properties": {
                    "accepted": {"type": "array", "items": {"type": "string"}},
                    "duplicates": {"type": "array", "items": {"type": "string"}},
                },
            },
            "StoredEvent": {
                "type": "object",
                "required": ["id", "kind", "type", "priority", "seq", "gateway_id",
                             "arrived_at"],
                "properties": {
                    **_EVENT_PROPERTIES,
                    "seq": {"type": "integer", "minimum": 1},
                    "gateway_id": {"type": "string"},
                    "arrived_at": {"type": "number",
                                   "description": "Unix time the central stored it."},
                },
                "additionalProperties": True,
            },
            "EventPage": {
                "type": "object",
                "required": ["events", "next"],
                "properties": {
                    "events": {"type": "array",
                               "items": {"$ref": "#/components/schemas/StoredEvent"}},
                    "next": {"type": "integer", "minimum": 0,
                             "description": "Pass as `after` for the next page."},
                },
            },
            "Command": {
                "type": "object",
                "required": ["id", "type"],
                "properties": {
                    "id": {"type": "string"},
                    "type": {"type": "string",
                             "enum": ["feedback", "registry.replace", "placard.revoke"]},
                },
                "additionalProperties": True,
            },
            "CommandPage": {
                "type": "object",
                "required": ["cursor", "commands"],
                "properties": {
                    "cursor": {"type": "string"},
                    "commands": {"type": "array",
                                 "items": {"$ref": "#/components/schemas/Command"}},
                },
            },
        },
    },
}


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)


def add_openapi_route(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, openapi_document)
