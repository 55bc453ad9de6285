"""Helpers for the deployment tests: real API Gateway events, a Lambda context, JSON log and EMF parsing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.lambda_events import FakeLambdaContext as LambdaContext
from tests.support.lambda_events import load_event as support_load_event
from tests.support.lambda_events import load_function

__all__ = ["LambdaContext", "load_function"]
EVENTS = Path(__file__).resolve().parent / "events"


def load_event(name: str) -> dict[str, Any]:
    """A recorded API Gateway payload from tests/infra/events."""
    return support_load_event(name, EVENTS)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every stdout line must be one JSON object (logs and EMF alike); return them parsed."""
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        entry = json.loads(line)  # a plain-text line fails here, which is the point
        assert isinstance(entry, dict), line
        parsed.append(entry)
    return parsed


def logs(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if "_aws" not in e]


def emf(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """EMF blobs: `_aws.CloudWatchMetrics` plus the metric values at the top level."""
    return [e for e in entries if "_aws" in e]


def metric_names(blob: dict[str, Any]) -> set[str]:
    return {m["Name"] for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


def metric(blob: dict[str, Any], name: str) -> float:
    """The one value of `name` in an EMF blob (Powertools writes a list per metric)."""
    raw = blob[name]
    values = raw if isinstance(raw, list) else [raw]
    assert len(values) == 1, values
    return float(values[0])
