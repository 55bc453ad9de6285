"""Fake AWS credentials and region for tests whose AWS calls moto serves."""

from __future__ import annotations

import pytest


def fake_aws_env(monkeypatch: pytest.MonkeyPatch, region: str, **extra: str) -> None:
    """Credentials that can reach nothing real, a region (as on Lambda), and any extra variables."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        **extra,
    }.items():
        monkeypatch.setenv(name, value)
