"""Powertools at every Lambda entry: JSON logs with the API Gateway correlation id, EMF metrics, optional tracing.

`make_handler(app, service=...)` wraps an ASGI app in Mangum (HTTP API v2 / REST v1 events);
`instrument(fn, service=...)` wraps a plain handler (the WebSocket `stream` function). Both give:

- one JSON log line per invocation ("invocation": route, status, latency) and the core's stdlib logs rendered by
  the same Powertools formatter, so every line of an invocation carries its `correlation_id`;
- EMF metrics: `ColdStart`, `Latency`, `ServerError` (0/1, its average is the 5xx rate) per route, plus
  `AudioDuration` and `SynthesisRealTimeFactor` when the response carries synthesized audio;
- an X-Ray segment when `POWERTOOLS_TRACE_DISABLED=false` (the template sets it from its `Tracing` parameter);
- OpenTelemetry spans when the OTEL_* variables configure them (tts_service.observability.tracing), exported
  before each invocation returns; X-Ray and OTel are independent and may run together.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import nullcontext
from functools import wraps
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from mangum import Mangum
from mangum.types import ASGI

from tts_service.aws.loop import process_loop
from tts_service.config import get_settings
from tts_service.observability import tracing as otel

LambdaHandler = Callable[[dict[str, Any], Any], Any]

DEFAULT_NAMESPACE = "TtsService"
# Set by the /tts route (and any other route that returns audio): the synthesis metrics read them.
AUDIO_DURATION_HEADER = "x-audio-duration-ms"
VOICE_HEADER = "x-voice"


class StdoutHandler(logging.Handler):
    """Write each record to the `sys.stdout` of the moment (Lambda's log stream; pytest's capture in tests)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:
            self.handleError(record)


class RootHandler(StdoutHandler):
    """The root logger's handler; it refuses Powertools' `SuppressFilter`.

    Every Powertools Logger created while this handler is on the root adds `SuppressFilter(service)` to it, which
    drops any record whose logger name merely *contains* the service name: with services named tts, voices, chat
    and stream, that silences `tts_service.*`, `...engine.voices`, `...chat.*` and `...streaming.*`. The
    duplicates it guards against cannot happen here: the service loggers do not propagate.
    """

    def addFilter(self, filter: Any) -> None:
        if type(filter).__name__ == "SuppressFilter":
            return
        super().addFilter(filter)


# One handler on the root logger for the whole process: the core's `logging.getLogger(__name__)` loggers
# propagate to it. Each invocation points it at the formatter of the function being invoked, the one that holds
# that invocation's correlation id.
_ROOT_HANDLER = RootHandler()
_SERVICE_HANDLERS: dict[str, StdoutHandler] = {}


def make_handler(
    app: ASGI,
    *,
    service: str,
    tracing: bool | None = None,
    on_schedule: Callable[[], Awaitable[Any]] | None = None,
) -> LambdaHandler:
    """The Lambda entry for an ASGI app: `Mangum(app)` behind Powertools logging, metrics and tracing.

    `on_schedule` answers the function's EventBridge schedule (`source: aws.events`), which Mangum cannot read.
    """
    # lifespan="off": Mangum would run the lifespan on every invocation; heavy objects load at module scope.
    asgi = Mangum(app, lifespan="off")
    state = getattr(app, "state", None)
    if state is not None:
        # Mangum collects the whole body and Lambda returns at most 6 MB: routes that answer audio make it whole
        # and check its size instead of streaming (tts_service.api.delivery).
        state.buffered_responses = True

    def run(event: dict[str, Any], context: Any) -> Any:
        loop = process_loop()  # Mangum runs the app on the current loop
        if on_schedule is not None and is_scheduled(event):
            return loop.run_until_complete(on_schedule())
        return asgi(event, context)

    # The app's own middleware opens the request's span (route template, status); no second one here.
    return instrument(run, service=service, tracing=tracing, request_span=False)


def instrument(
    fn: LambdaHandler, *, service: str, tracing: bool | None = None, request_span: bool = True
) -> LambdaHandler:
    """Wrap any Lambda handler with Powertools: correlation-id JSON logs, EMF metrics, optional X-Ray; and, when the
    OTEL_* variables configure it, OpenTelemetry: a server span per invocation (`request_span`, for handlers
    that are not an ASGI app) and the spans flushed before the instance may be frozen."""
    otel.configure()
    # Powertools configures a service's logger once per process; a second Logger for it must get the same handler
    # back, or it would read its formatter from a fresh, unconfigured one.
    handler_out = _SERVICE_HANDLERS.setdefault(service, StdoutHandler())
    logger = Logger(service=service, level=get_settings().effective_log_level, logger_handler=handler_out)
    metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE, service=service)
    _route_stdlib_logs(logger)

    @wraps(fn)
    def invoke(event: dict[str, Any], context: Any) -> Any:
        _ROOT_HANDLER.setFormatter(logger.registered_formatter)
        route = route_key(event)
        metrics.add_dimension(name="route", value=route)
        connection_id = (event.get("requestContext") or {}).get("connectionId")
        if connection_id:
            logger.append_keys(connection_id=connection_id)
        started = time.perf_counter()
        try:
            with otel.span(route, {"faas.trigger": "http", "tts.route": route}) if request_span else nullcontext():
                response = fn(event, context)
        except Exception as exc:
            # The runtime reports the invocation as failed; the log says which error, with no traceback or
            # message (either may hold user text).
            metrics.add_metric(name="ServerError", unit=MetricUnit.Count, value=1)
            logger.error("invocation failed", extra={"route": route, "error_type": type(exc).__name__})
            raise
        finally:
            otel.flush()
        elapsed_ms = (time.perf_counter() - started) * 1000
        status = response.get("statusCode", 200) if isinstance(response, Mapping) else 200
        metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=round(elapsed_ms, 3))
        metrics.add_metric(name="ServerError", unit=MetricUnit.Count, value=1 if int(status) >= 500 else 0)
        fields: dict[str, Any] = {"route": route, "status": status, "latency_ms": round(elapsed_ms, 1)}
        audio = _audio_of(response)
        if audio is not None:
            audio_ms, voice = audio
            metrics.add_metric(name="AudioDuration", unit=MetricUnit.Seconds, value=audio_ms / 1000)
            if audio_ms > 0:
                rtf = elapsed_ms / audio_ms
                metrics.add_metric(name="SynthesisRealTimeFactor", unit=MetricUnit.NoUnit, value=round(rtf, 4))
            if voice:
                metrics.add_metadata(key="voice", value=voice)
            fields.update(audio_ms=audio_ms, voice=voice)
        logger.info("invocation", extra=fields)
        return response

    # Powertools' documented order: logger outermost (the correlation id is set before anything logs), then
    # tracer, then metrics (flushed even when the handler raises).
    handler: LambdaHandler = metrics.log_metrics(capture_cold_start_metric=True)(invoke)
    if _tracing_enabled(tracing):
        from aws_lambda_powertools import Tracer  # noqa: PLC0415 X-Ray SDK only when tracing (cold start)

        handler = Tracer(service=service).capture_lambda_handler(handler)
    wrapped: LambdaHandler = logger.inject_lambda_context(
        correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
    )(handler)
    return wrapped


def is_scheduled(event: Mapping[str, Any]) -> bool:
    """An EventBridge schedule's event (a `Schedule` event source of the template)."""
    return event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"


def route_key(event: Mapping[str, Any]) -> str:
    """The route template of an API Gateway event (`POST /tts`, `$connect`), never the raw path."""
    if is_scheduled(event):
        return "schedule"
    context = event.get("requestContext") or {}
    if isinstance(event.get("routeKey"), str):
        return str(event["routeKey"])  # HTTP API v2
    if isinstance(context.get("routeKey"), str):
        return str(context["routeKey"])  # WebSocket API
    if event.get("httpMethod") and event.get("resource"):
        return f"{event['httpMethod']} {event['resource']}"  # REST API v1
    return "unknown"


def _audio_of(response: Any) -> tuple[float, str | None] | None:
    if not isinstance(response, Mapping):
        return None
    headers = {str(k).lower(): v for k, v in (response.get("headers") or {}).items()}
    for key, values in (response.get("multiValueHeaders") or {}).items():
        if values:
            headers.setdefault(str(key).lower(), values[0])
    raw = headers.get(AUDIO_DURATION_HEADER)
    if raw is None:
        return None
    try:
        audio_ms = float(raw)
    except (TypeError, ValueError):
        return None
    voice = headers.get(VOICE_HEADER)
    return audio_ms, str(voice) if voice else None


def _route_stdlib_logs(logger: Logger) -> None:
    """Send every stdlib logger (the core's, boto's, mangum's) through the Powertools JSON formatter."""
    _ROOT_HANDLER.setFormatter(logger.registered_formatter)
    # The Powertools logger writes through its own handler; propagating too would print each line twice.
    logging.getLogger(logger.name).propagate = False
    root = logging.getLogger()
    # The Lambda runtime installs its own plain-text handler on the root logger; replace it.
    root.handlers[:] = [_ROOT_HANDLER]
    root.setLevel(logger.log_level)


def _tracing_enabled(tracing: bool | None) -> bool:
    if tracing is not None:
        return tracing
    # Powertools' own switch; the template sets it from the `Tracing` parameter. Off unless said otherwise,
    # since the X-Ray SDK only ships in the Lambda images.
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "true").strip().lower() in ("0", "false")
