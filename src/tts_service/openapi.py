"""The error answers of every operation, written into the OpenAPI schema where clients and fuzzers read them.

FastAPI documents only its own 422 body (`{"detail": [...]}`), which this service never sends: errors are
`{"error": {"code", "message", ...}}` (`tts_service.responses.error_response`), OpenAI's shape under `/v1`, and the
middleware can refuse any request (401, 429, 503 while draining, 504). This adds, to each operation, the statuses
it can answer and the body they carry, from what the operation is: one with a JSON body can meet the body checks,
one with path parameters can name what does not exist, one that synthesizes can be busy or its voice unavailable,
one that asks the LLM can meet the LLM's failures.
"""

from __future__ import annotations

import copy
from typing import Any, Final

ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
OPENAI_ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": "string"},
            },
        }
    },
}

_ALWAYS = {
    401: "no valid API key (`unauthorized`), when API_KEYS is set",
    429: "over the client's budget (`rate_limited`, `too_many_streams`), with Retry-After",
    500: "an unexpected failure (`internal_error`), logged without detail",
    503: "the server is draining for shutdown (`shutting_down`), or a dependency is unavailable",
    504: "no answer within REQUEST_TIMEOUT_SECS (`timeout`)",
}
_BODY = {
    400: "the body is not JSON (`invalid_json`)",
    413: "the body is over MAX_BODY_BYTES (`payload_too_large`), or the answer over its bounds",
    415: "a body that is not `application/json` (`unsupported_media_type`)",
    422: "a missing, unknown or out-of-range field (`validation_error`)",
}
_PATH = {
    404: "no such resource (`not_found`, `conversation_not_found`, `model_not_found`)",
    422: "a malformed path parameter (`validation_error`)",
}
_SYNTHESIS = {
    404: "unknown voice or language (`voice_not_found`, `language_not_found`)",
    413: "the speech would be over MAX_AUDIO_SECONDS (`audio_too_long`) or a buffered response (`response_too_large`)",
    503: "every synthesis worker busy (`busy`), the voice's files unusable (`voice_unavailable`), or draining",
}
_LLM = {
    502: "the LLM failed or answered badly (`llm_unavailable`, `llm_bad_response`)",
    503: "no usable LLM provider (`llm_not_configured`), or draining",
    504: "the LLM did not answer in time (`llm_timeout`)",
}
_SYNTHESIS_TAGS = frozenset({"tts", "stream", "openai"})


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every operation's error answers and their bodies (a new dict; `schema` is not changed)."""
    out = copy.deepcopy(schema)
    components = out.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    components["OpenAIError"] = OPENAI_ERROR_SCHEMA
    for path, operations in out.get("paths", {}).items():
        for operation in operations.values():
            _document(path, operation)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return out


def _document(path: str, operation: dict[str, Any]) -> None:
    tags = set(operation.get("tags", []))
    has_body = "requestBody" in operation
    statuses = dict(_ALWAYS)
    if any(p.get("in") == "path" for p in operation.get("parameters", [])):
        statuses |= _PATH
    if has_body or operation.get("parameters"):
        statuses[422] = statuses.get(422, _BODY[422])
    if has_body:
        statuses |= _BODY
        if tags & _SYNTHESIS_TAGS or "chat" in tags:
            statuses |= _SYNTHESIS
    if "chat" in tags and has_body:
        statuses |= _LLM
    if path.startswith("/conversations"):
        statuses[503] = "the conversation store is unavailable (`memory_unavailable`), or draining"
    if path.startswith("/debug/samples"):
        statuses[403] = "debug samples are served only with API keys set (`forbidden`)"
        statuses[404] = "debug samples are off, or no such sample (`not_found`)"
    openai = path.startswith("/v1/")
    if openai and 422 in statuses:
        statuses[400] = statuses.pop(422)  # OpenAI answers invalid parameters with 400
    ref = "#/components/schemas/OpenAIError" if openai else "#/components/schemas/Error"
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)  # FastAPI's `{"detail": [...]}`, never sent
    for status, description in sorted(statuses.items()):
        responses[str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": ref}}},
        }
