"""Metrics (Prometheus) for the service: a recording interface, so core modules never import prometheus_client."""

from tts_service.observability.metrics import CONTENT_TYPE, Metrics, get_metrics

__all__ = ["CONTENT_TYPE", "Metrics", "get_metrics"]
