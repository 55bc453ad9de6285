"""Reading streams in tests: one WebSocket stream's frames, and measures of the PCM it carried."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
from starlette.testclient import WebSocketTestSession

PARAGRAPH = (
    "The morning train was late again. Passengers waited on the cold platform with their coffee. "
    "When it finally arrived, everyone rushed inside. The ride into the city took almost an hour."
)


def frames_until(ws: WebSocketTestSession, last: Callable[[dict[str, Any]], bool], limit: int = 2000) -> list[Any]:
    """Frames in order (dicts for JSON events, bytes for binary audio) up to the event `last` accepts."""
    frames: list[Any] = []
    for _ in range(limit):
        message = ws.receive()
        if message.get("bytes") is not None:
            frames.append(message["bytes"])
            continue
        event = json.loads(message["text"])
        frames.append(event)
        if last(event):
            return frames
    raise AssertionError(f"no closing event in {limit} frames")


def collect(ws: WebSocketTestSession, limit: int = 2000) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Read one stream's frames (JSON events, binary audio) up to its end or error."""
    events: list[dict[str, Any]] = []

    def last(event: dict[str, Any]) -> bool:
        events.append(event)
        return event["type"] == "end" or (event["type"] == "error" and (event["ends_stream"] or len(events) == 1))

    frames = frames_until(ws, last, limit)
    return events, [f for f in frames if isinstance(f, bytes)]


def pcm_seconds(pcm: bytes, sample_rate: int = 22050) -> float:
    return len(pcm) / 2 / sample_rate


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
