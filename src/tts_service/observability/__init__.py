"""Logs (JSON lines, `observability.logging`), metrics (Prometheus) and traces (OpenTelemetry) for the service,
behind interfaces: core modules never import prometheus_client or opentelemetry."""

from tts_service.observability import tracing
from tts_service.observability.metrics import CONTENT_TYPE, Metrics, get_metrics

__all__ = ["CONTENT_TYPE", "Metrics", "get_metrics", "tracing"]
