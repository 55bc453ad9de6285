"""The one exception hierarchy of the service.

Every error a client can see is a `ServiceError`: it carries its HTTP status and a stable machine-readable
`code`. `tts_service.responses` renders it as `{"error": {"code", "message"}}`; the streaming transports send the
same code and message as an `error` event. Routes raise; they never build error responses themselves.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base of every error the service reports to clients."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.details)
        return body


# --- client errors (4xx) ---


class BadRequest(ServiceError):
    """The request could not be read (400)."""

    status_code = 400
    code = "bad_request"


class InvalidJSON(BadRequest):
    """The body is not valid JSON (400)."""

    code = "invalid_json"


class Unauthorized(ServiceError):
    """No valid API key was presented (401)."""

    status_code = 401
    code = "unauthorized"


class OriginNotAllowed(ServiceError):
    """A CORS preflight from an origin (or with a method or header) that is not allowed (403)."""

    status_code = 403
    code = "origin_not_allowed"


class Forbidden(ServiceError):
    """The caller is known but this is not for it, or not in this configuration (403)."""

    status_code = 403
    code = "forbidden"


class NotFound(ServiceError):
    """No such resource (404)."""

    status_code = 404
    code = "not_found"


class ConversationNotFound(NotFound):
    """No turns are stored for the conversation id (404)."""

    code = "conversation_not_found"


class VoiceNotFound(NotFound):
    """The voice id is not in the voice map (404)."""

    code = "voice_not_found"


class ModelNotFound(NotFound):
    """The OpenAI-compatible routes do not know the model (404)."""

    code = "model_not_found"


class LanguageNotFound(NotFound):
    """No voice is registered for the language (404)."""

    code = "language_not_found"


class MethodNotAllowed(ServiceError):
    """The route exists but not for this method (405)."""

    status_code = 405
    code = "method_not_allowed"


class PayloadTooLarge(ServiceError):
    """The request body is over the size limit (413)."""

    status_code = 413
    code = "payload_too_large"


class ResponseTooLarge(PayloadTooLarge):
    """The answer would not fit a buffered response: API Gateway and Lambda return at most 6 MB (413)."""

    code = "response_too_large"


class AudioTooLong(PayloadTooLarge):
    """The speech would be longer than MAX_AUDIO_SECONDS, by estimate before synthesis or while it runs (413)."""

    code = "audio_too_long"


class UnsupportedMediaType(ServiceError):
    """The body's content type is not accepted (415)."""

    status_code = 415
    code = "unsupported_media_type"


class ValidationFailed(ServiceError):
    """A field is missing, unknown, of the wrong type or out of range (422)."""

    status_code = 422
    code = "validation_error"


class RateLimited(ServiceError):
    """The client sent more requests than its budget allows (429)."""

    status_code = 429
    code = "rate_limited"


class TooManyStreams(RateLimited):
    """The client already has MAX_STREAMS_PER_CLIENT streams (WebSockets, streamed responses) open (429)."""

    code = "too_many_streams"


# --- streaming protocol: sent as `error` events; the connection stays usable ---


class ProtocolError(BadRequest):
    """A streaming client message cannot be used (400)."""

    code = "protocol_error"


class MessageNotJSON(ProtocolError):
    """A streaming message is not a JSON object (400)."""

    code = "invalid_json"


class BinaryMessage(ProtocolError):
    """A binary frame arrived where JSON text frames are expected (400)."""

    code = "binary_not_supported"


class UnknownMessageType(ProtocolError):
    """A streaming message has a missing or unknown `type` (400)."""

    code = "unknown_type"


class UnexpectedMessage(ProtocolError):
    """A valid message that makes no sense now, e.g. `text` before `start` (409)."""

    status_code = 409
    code = "unexpected_message"


class TextTooLong(PayloadTooLarge):
    """Streamed text exceeds its limit (413)."""

    code = "text_too_long"


# --- server and dependency errors (5xx) ---


class SynthesisFailed(ServiceError):
    """Piper failed on input it accepted (500)."""

    status_code = 500
    code = "synthesis_failed"


class UpstreamError(ServiceError):
    """A dependency answered badly (502)."""

    status_code = 502
    code = "bad_gateway"


class LlmUnavailable(UpstreamError):
    """The LLM provider is down, refused the request or dropped the connection (502)."""

    code = "llm_unavailable"


class LlmBadResponse(UpstreamError):
    """The LLM provider answered with something that is not a usable reply (502)."""

    code = "llm_bad_response"


class ServiceUnavailable(ServiceError):
    """The service cannot take the request now (503)."""

    status_code = 503
    code = "unavailable"


class LlmNotConfigured(ServiceUnavailable):
    """No LLM provider is usable with the current settings, e.g. openai without a key (503)."""

    code = "llm_not_configured"


class MemoryUnavailable(ServiceUnavailable):
    """The conversation store cannot be reached or opened (503)."""

    code = "memory_unavailable"


class VoiceUnavailable(ServiceUnavailable):
    """The voice is registered but its files are missing, corrupt or fail to load (503)."""

    code = "voice_unavailable"


class ServiceBusy(ServiceUnavailable):
    """Every synthesis worker is busy and the wait queue is full (503)."""

    code = "busy"


class EngineUnhealthy(ServiceUnavailable):
    """Liveness: the engine can no longer synthesize (its default voice will not load, or syntheses keep failing)
    and the process should be restarted (503)."""

    code = "engine_unhealthy"


class ShuttingDown(ServiceUnavailable):
    """The server is draining for shutdown and takes no new requests (503)."""

    code = "shutting_down"


class GatewayTimeout(ServiceError):
    """The request did not finish within its time budget (504)."""

    status_code = 504
    code = "timeout"


class LlmTimeout(GatewayTimeout):
    """The LLM provider did not finish its reply within LLM_TIMEOUT_SECS (504)."""

    code = "llm_timeout"
