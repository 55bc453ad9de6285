"""Apps built with explicit settings and their own metrics (the `make_client` fixture of tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tts_service.observability import Metrics

AppFactory = Callable[..., tuple[TestClient, Metrics]]
"""`make_client(api_keys="k", ...)` -> (a client on a fresh app, the app's metrics)."""


def parse_exposition(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value}, labels in the order written."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples
