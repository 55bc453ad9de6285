"""Shared fixtures: the real default voice, a client on the full app, and audio checks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parent.parent
# Tests run from any folder and must see the repo's voice map, not whatever the shell points at.
os.environ["MODELS_DIR"] = str(REPO / "models")
os.environ.pop("VOICE_MAP", None)
# The suite sends far more than the production budget of 60 requests a minute from one client; tests of rate
# limiting set their own limits (make_client).
os.environ.setdefault("RATE_LIMIT_PER_MINUTE", "1000000")

from tests.fakes.llm_server import FakeLlmServer  # noqa: E402
from tests.support.apps import AppFactory  # noqa: E402
from tests.support.logs import LogCapture, capture_logs  # noqa: E402
from tests.support.otlp import OtlpReceiver  # noqa: E402
from tts_service.api import health, metrics, tickets, tts, voices  # noqa: E402
from tts_service.app import create_app  # noqa: E402
from tts_service.config import Settings  # noqa: E402
from tts_service.engine import Engine, get_engine  # noqa: E402
from tts_service.observability import Metrics, tracing  # noqa: E402


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The process-wide engine with the default voice loaded (shared, as in the server)."""
    eng = get_engine()
    eng.warm_blocking()
    return eng


@pytest.fixture
def admissions(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per synthesis the shared engine admits during the test."""
    seen: list[int] = []
    original = engine.pool.admit

    def counting(*args: Any, **kwargs: Any) -> Any:
        seen.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine.pool, "admit", counting)
    return seen


@pytest.fixture
def tiny_engine(engine: Engine) -> Iterator[Engine]:
    """One worker, no queue: the second synthesis at a time is refused. Shares the warm voice map."""
    small = Engine(
        Settings(synth_workers=1, synth_queue_size=0), registry=engine.registry, metrics=Metrics(process=False)
    )
    small.voice_cache = engine.voice_cache  # the loaded voice, so a synthesis here costs no load
    yield small
    small.pool.shutdown()


@pytest.fixture(scope="session")
def client(engine: Engine) -> Iterator[TestClient]:
    """A client on an app with the issue-2 routers, sharing the warm engine."""
    with TestClient(create_app(health.router, tts.router, voices.router)) as c:
        yield c


@pytest.fixture
def make_client(engine: Engine) -> Iterator[AppFactory]:
    """Build a client on a fresh app: `make_client(api_keys="k", ...)` -> (client, the app's metrics).

    Settings not given are the defaults, with rate limiting off unless a test turns it on. Routes use the
    shared warm engine unless `engine_override` is given; extra routers can be added with `routers=`.
    (tests/chat/conftest.py overrides this fixture with chat's own factory for the tests there.)
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


@pytest.fixture(scope="session")
def llm_server() -> Iterator[FakeLlmServer]:
    with FakeLlmServer(hang_secs=10) as server:
        yield server


@pytest.fixture
def fake_llm(llm_server: FakeLlmServer) -> Iterator[FakeLlmServer]:
    """The shared fake server, with a clean script and no fault for this test."""
    llm_server.reset()
    yield llm_server
    llm_server.reset()


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Everything logged at DEBUG and above during the test, through the service's JSON formatter."""
    with capture_logs() as capture:
        yield capture


@pytest.fixture
def otlp(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    """Tracing on, exporting over OTLP/HTTP to a receiver on loopback, configured only by OTEL_* variables."""
    with OtlpReceiver() as receiver:
        for name in [n for n in os.environ if n.startswith("OTEL_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "tts-test")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # export within 50 ms, not the default 5 s
        tracing.shutdown()
        assert tracing.configure()
        try:
            yield receiver
        finally:
            tracing.shutdown()
