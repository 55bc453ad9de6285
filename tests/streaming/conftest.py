"""Fixtures for the streaming tests: an app with the stream router, in-process and on a real uvicorn server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.live import LiveServer
from tts_service.api import stream, tts
from tts_service.app import create_app
from tts_service.engine import Engine


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
