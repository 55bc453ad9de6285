"""Fixtures for the streaming tests: an app with the stream router, in-process and on a real uvicorn server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession

from tests.support.live import LiveServer
from tts_service.api import stream, tts
from tts_service.app import create_app
from tts_service.engine import Engine

PARAGRAPH = (
    "The morning train was late again. Passengers waited on the cold platform with their coffee. "
    "When it finally arrived, everyone rushed inside. The ride into the city took almost an hour."
)


@pytest.fixture(scope="session")
def stream_app(engine: Engine) -> FastAPI:
    return create_app(tts.router, stream.router)


@pytest.fixture(scope="session")
def stream_client(stream_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(stream_app) as c:
        yield c


@pytest.fixture(scope="session")
def live_server(stream_app: FastAPI) -> Iterator[LiveServer]:
    """The stream app on a real uvicorn server on 127.0.0.1 (random port), in a thread of this process."""
    server = LiveServer(stream_app)
    server.start()
    yield server
    server.stop()


def collect(ws: WebSocketTestSession, limit: int = 2000) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Read one stream's frames (JSON events, binary audio) up to its end or error."""
    events: list[dict[str, Any]] = []
    binary: list[bytes] = []
    for _ in range(limit):
        message = ws.receive()
        if message.get("bytes") is not None:
            binary.append(message["bytes"])
            continue
        event = json.loads(message["text"])
        events.append(event)
        if event["type"] == "end" or (event["type"] == "error" and (event["ends_stream"] or len(events) == 1)):
            return events, binary
    raise AssertionError("stream did not end")


def pcm_seconds(pcm: bytes, sample_rate: int = 22050) -> float:
    return len(pcm) / 2 / sample_rate


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


def wait_until(predicate: Any, attempts: int = 400) -> bool:
    """Poll a condition a bounded number of times (25 ms apart)."""
    for _ in range(attempts):
        if predicate():
            return True
        time.sleep(0.025)
    return bool(predicate())
