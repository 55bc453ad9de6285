"""Helpers for the deployment tests: real API Gateway events, a Lambda context, JSON log and EMF parsing."""

from __future__ import annotations

from tests.support.lambda_events import EVENTS, emf, json_lines, load_event, load_function, logs, metric, metric_names
from tests.support.lambda_events import FakeLambdaContext as LambdaContext

__all__ = [
    "EVENTS",
    "LambdaContext",
    "emf",
    "json_lines",
    "load_event",
    "load_function",
    "logs",
    "metric",
    "metric_names",
]
