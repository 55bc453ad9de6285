"""OpenTelemetry tracing, off unless the standard OTEL_* environment variables configure it.

On when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`) or an OTLP endpoint is set
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); off when neither is, when
`OTEL_TRACES_EXPORTER=none`, or when `OTEL_SDK_DISABLED=true`. Everything else is the SDK's own reading of the
standard variables: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` (the resource), `OTEL_EXPORTER_OTLP_HEADERS`,
`..._TIMEOUT`, `..._COMPRESSION` (the exporter, OTLP over HTTP/protobuf), `OTEL_TRACES_SAMPLER[_ARG]`,
`OTEL_BSP_*` (batching), `OTEL_PROPAGATORS` (incoming `traceparent`).

The SDK is the optional `otel` extra: without it this module does nothing (and says so once if asked to trace).
Core code opens spans with `span(...)`, a no-op while tracing is off; it never imports opentelemetry itself.
Span attributes name routes, voices, formats, sizes and outcomes, never text, keys or conversation ids.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from tts_service import __version__
from tts_service.errors import ServiceError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "tts-service"
_EXPORTERS = frozenset({"otlp", "console", "none"})

_provider: TracerProvider | None = None
_tracer: Tracer | None = None


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces (see the module docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporters(environ)
    if exporters:
        return exporters != {"none"}
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def _exporters(environ: Mapping[str, str]) -> set[str]:
    return {name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()}


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Set tracing up from the environment, once per process (later calls keep the first setup); True when on."""
    global _provider, _tracer
    if _provider is not None:
        return True
    environ = os.environ if environ is None else environ
    if not wanted(environ):
        return False
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource  # noqa: PLC0415 optional `otel` extra
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415 optional `otel` extra
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter  # noqa: PLC0415 optional `otel` extra
    except ImportError:
        logger.error("tracing asked for but the otel extra is not installed; traces are off")
        return False
    exporters = _exporters(environ) or {"otlp"}
    unknown = exporters - _EXPORTERS
    if unknown:
        logger.error("unknown OTEL_TRACES_EXPORTER values ignored", extra={"exporters": sorted(unknown)})
    chosen: list[SpanExporter] = []
    if "otlp" in exporters:
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        if protocol and protocol.strip() != "http/protobuf":
            # Only the HTTP exporter ships (no grpcio in the images); say so rather than send nothing silently.
            logger.error("only OTLP over http/protobuf is supported; exporting with it", extra={"protocol": protocol})
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415 only when exporting OTLP

        chosen.append(OTLPSpanExporter())
    if "console" in exporters:
        chosen.append(ConsoleSpanExporter())
    if not chosen:
        return False
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; without a name it says
    # "unknown_service", where ours is the better default.
    resource = Resource.create({SERVICE_VERSION: __version__})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    for exporter in chosen:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider = provider
    _tracer = provider.get_tracer("tts_service", __version__)
    _install_log_ids()
    logger.info("tracing on", extra={"exporters": sorted(exporters & _EXPORTERS - {"none"})})
    return True


def enabled() -> bool:
    return _tracer is not None


def flush(timeout_millis: int = 5000) -> None:
    """Export the spans finished so far (a Lambda instance may be frozen right after an invocation)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


def shutdown() -> None:
    """Flush and stop; tracing is off afterwards until `configure` runs again."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


Attributes = Mapping[str, str | int | float | bool | None]
"""Span attributes; None values are left out."""


@contextlib.contextmanager
def span(name: str, attributes: Attributes | None = None) -> Iterator[Span | None]:
    """A child span of the current one, current inside the block; None (and nothing recorded) while off.

    An exception leaving the block marks the span as an error with the exception's type (never its message,
    which may hold user text) and goes on.
    """
    tracer = _tracer
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(
        name, attributes=_clean(attributes or {}), record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            mark_error(current, exc)
            raise


def start_span(name: str, attributes: Attributes | None = None, context: Context | None = None) -> Span | None:
    """A span that is not made current: for work that outlives a block (a stream); end it with `end_span`."""
    tracer = _tracer
    if tracer is None:
        return None
    return tracer.start_span(name, context=context, attributes=_clean(attributes or {}))


def end_span(current: Span | None, error: BaseException | None = None) -> None:
    if current is None:
        return
    if error is not None:
        mark_error(current, error)
    current.end()


def mark_error(current: Span | None, exc: BaseException) -> None:
    """Mark a span failed by a server-side error; client errors (4xx ServiceErrors) and cancellations are not."""
    if current is None:
        return
    from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415 optional `otel` extra, only once tracing is on

    status = exc.status_code if isinstance(exc, ServiceError) else 500
    if isinstance(exc, ServiceError):
        current.set_attribute("error.type", exc.code)
    elif not isinstance(exc, GeneratorExit | KeyboardInterrupt):
        current.set_attribute("error.type", type(exc).__name__)
    if status >= 500 and isinstance(exc, Exception):
        current.set_status(Status(StatusCode.ERROR))


def set_attributes(current: Span | None, attributes: Attributes) -> None:
    if current is not None:
        current.set_attributes(_clean(attributes))


def context_from_headers(headers: Mapping[str, str]) -> Context | None:
    """The caller's trace (`traceparent`, per OTEL_PROPAGATORS) from request headers, if any."""
    if _tracer is None:
        return None
    from opentelemetry.propagate import extract  # noqa: PLC0415 optional `otel` extra, only once tracing is on

    return extract(headers)


def tracer() -> Tracer | None:
    return _tracer


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the span current here, or None."""
    if _tracer is None:
        return None
    from opentelemetry.trace import get_current_span  # noqa: PLC0415 optional `otel` extra, only once tracing is on

    ctx = get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in attributes.items() if value is not None}


def _install_log_ids() -> None:
    """Stamp `trace_id` and `span_id` on every log record made inside a span, worker threads included (the
    engine's pool runs work in a copy of the caller's context)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_adds_trace_ids", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        ids = current_ids()
        if ids is not None and not hasattr(record, "trace_id"):
            record.trace_id, record.span_id = ids
        return record

    factory._adds_trace_ids = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
