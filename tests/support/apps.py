"""Fixtures for the operations tests: apps built with explicit settings and their own metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from tests.support.logs import LogCapture
from tts_service.api import health, metrics, tickets, tts, voices
from tts_service.app import create_app
from tts_service.config import Settings
from tts_service.engine import Engine, get_engine
from tts_service.observability import Metrics

__all__ = ["AppFactory", "LogCapture", "parse_exposition"]

AppFactory = Callable[..., tuple[TestClient, Metrics]]


def parse_exposition(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value}, labels in the order written."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest.fixture
def make_client(engine: Engine) -> Iterator[AppFactory]:
    """Build a client on a fresh app: `make_client(api_keys="k", ...)` -> (client, the app's metrics).

    Settings not given are the defaults, with rate limiting off unless a test turns it on. Routes use the
    shared warm engine unless `engine_override` is given; extra routers can be added with `routers=`.
    """
    clients: list[TestClient] = []

    def factory(
        *,
        routers: tuple[APIRouter, ...] = (),
        engine_override: Engine | None = None,
        raise_server_exceptions: bool = True,
        **overrides: Any,
    ) -> tuple[TestClient, Metrics]:
        overrides.setdefault("rate_limit_enabled", False)
        settings = Settings(**overrides)
        app_metrics = Metrics(process=False)
        app = create_app(
            health.router,
            tts.router,
            voices.router,
            metrics.router,
            tickets.router,
            *routers,
            settings=settings,
            metrics=app_metrics,
        )
        if engine_override is not None:
            app.dependency_overrides[get_engine] = lambda: engine_override
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        clients.append(client)
        return client, app_metrics

    yield factory
    for client in clients:
        client.__exit__(None, None, None)
