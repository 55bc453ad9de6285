"""Real API Gateway event payloads from tests/events, a fake Lambda context, handler loading, and the JSON log
lines and EMF blobs a handler prints."""

from __future__ import annotations

import importlib.util
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from mangum.types import LambdaCognitoIdentity, LambdaMobileClientContext

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "tests" / "events"


def load_event(name: str, folder: Path = EVENTS) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((folder / name).read_text())
    return event


@dataclass
class FakeLambdaContext:
    """The attributes Powertools and Mangum read from a Lambda context."""

    function_name: str = "tts-service-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:tts-service-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/tts-service-test"
    log_stream_name: str = "2026/11/27/[$LATEST]0123456789abcdef"
    # Mobile-app fields, None on every invocation through API Gateway (as on a real one).
    identity: LambdaCognitoIdentity | None = None
    client_context: LambdaMobileClientContext | None = None

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_function(name: str) -> ModuleType:
    """Import functions/<name>/app.py as Lambda does (module scope runs once)."""
    path = REPO / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"lambda_{name}_app", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
