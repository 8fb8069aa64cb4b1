"""The OpenAPI 3.1 description of ``exec-server`` (served at ``/openapi.json``; schemathesis checks the
server against it)."""

from __future__ import annotations

from typing import Any

from .._version import __version__

__all__ = ["openapi_document"]

_ERROR = {"type": "object", "required": ["error", "status"],
          "properties": {"error": {"type": "string"}, "status": {"type": "integer"},
                         "retry_after_s": {"type": "integer"}}}
_STARTED = {"Chronograph-Exec-Started": {
    "description": "true when a run started (never run it again elsewhere), false when it did not",
    "schema": {"type": "string", "enum": ["true", "false"]}}}
_DATA = {
    "type": "object",
    "required": ["exit_code", "signal", "timed_out", "stdout", "stderr", "stdout_bytes", "stderr_bytes",
                 "stdout_sha256", "stderr_sha256", "truncated"],
    "properties": {
        "exit_code": {"type": ["integer", "null"], "description": "null when killed by a signal"},
        "signal": {"type": ["string", "null"], "description": "e.g. SIGKILL"},
        "timed_out": {"type": "boolean"},
        "stdout": {"type": "string", "description": "whole, or head + marker + tail when over the cap"},
        "stderr": {"type": "string"},
        "stdout_bytes": {"type": "integer", "minimum": 0, "description": "size of the whole output"},
        "stderr_bytes": {"type": "integer", "minimum": 0},
        "stdout_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "stderr_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "truncated": {"type": "boolean"},
    },
}
_TELEMETRY = {
    "type": "object",
    "required": ["requestId", "traceId", "timestamp", "command", "sectors", "otherMs", "lapTime", "status"],
    "properties": {
        "requestId": {"type": "string"}, "traceId": {"type": "string"}, "timestamp": {"type": "integer"},
        "command": {"type": "string"},
        "sectors": {"type": "object", "additionalProperties": {"type": "number"}},
        "otherMs": {"type": "number"}, "lapTime": {"type": "number"},
        "status": {"type": "string", "enum": ["GREEN", "YELLOW", "RED"]},
        "billing": {"type": "object", "required": ["tier", "cost"],
                    "properties": {"tier": {"type": "string"}, "cost": {"type": "string"},
                                   "scoreImprovement": {"type": ["number", "null"]}}},
    },
}
_REQUEST = {
    "type": "object", "required": ["command"], "additionalProperties": False,
    "properties": {"command": {"type": "string", "minLength": 1, "maxLength": 256},
                   "args": {"type": "array", "maxItems": 256, "items": {"type": "string"}}},
}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def openapi_document() -> dict[str, Any]:
    error = {code: _json(_ERROR, text, _STARTED) for code, text in (
        ("400", "Body is not JSON"), ("401", "Missing or wrong API key"),
        ("403", "Command unknown or not allowed for the key's tier"), ("413", "Body too large"),
        ("422", "Invalid request or argument"))}
    too_many = _json(_ERROR, "Over a limit (per-key concurrency or rate, or the server's runs at once)",
                     {**_STARTED, "Retry-After": {"schema": {"type": "string"}}})
    return {
        "openapi": "3.1.0",
        "info": {"title": "otel-chronograph exec-server", "version": __version__,
                 "description": "Allowlisted named commands, run as laps and billed per run."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/healthz": {"get": {
                "operationId": "healthz", "summary": "Liveness (and what smart routing times)",
                "security": [],
                "responses": {"200": _json({"type": "object", "required": ["status"],
                                            "properties": {"status": {"type": "string"},
                                                           "version": {"type": "string"},
                                                           "running": {"type": "integer"}}}, "Up")}}},
            "/api/v1/exec": {"post": {
                "operationId": "exec", "summary": "Run a named command",
                "security": [{"bearer": []}],
                "parameters": [{"name": "format", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": ["v1", "v2", "v3"], "default": "v3"}}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _REQUEST}}},
                "responses": {
                    "200": _json({"type": "object", "required": ["data"],
                                  "properties": {"data": _DATA, "telemetry": _TELEMETRY}},
                                 "The run (also when the command failed or timed out)", _STARTED),
                    **error, "429": too_many,
                },
            }},
        },
    }
