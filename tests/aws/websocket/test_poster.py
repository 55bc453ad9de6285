"""Posting to a connection: throttled posts are retried by botocore's standard retry mode (the management API
client's config), a client that left is never retried. Attempts are answered at the HTTP layer, below the retries
(`tests.support.aws.Capture`), and the backoff botocore would sleep is recorded instead."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import botocore.endpoint
import pytest

from tests.support.aws import CONNECTION, ENDPOINT, Capture, fake_aws_env, message
from tests.support.lambda_events import load_event
from tts_service.aws.websocket import ConnectionGone, Poster
from tts_service.aws.websocket.poster import POST_MAX_ATTEMPTS
from tts_service.streaming.events import ErrorEvent

EVENT = ErrorEvent("busy", "a test event")


@pytest.fixture
def backoffs(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays botocore sleeps between attempts, recorded rather than slept."""
    sleeps: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=sleeps.append))
    return sleeps


@pytest.fixture
def poster(monkeypatch: pytest.MonkeyPatch, capture: Capture) -> Poster:
    fake_aws_env(monkeypatch, "us-east-1")
    return Poster(capture.client(ENDPOINT), CONNECTION)


def test_the_client_uses_botocores_standard_retry_mode(poster: Poster) -> None:
    assert poster.client.meta.config.retries == {"mode": "standard", "total_max_attempts": POST_MAX_ATTEMPTS}


def test_throttled_posts_are_retried_with_backoff(invoke: Any, capture: Capture, backoffs: list[float]) -> None:
    invoke(load_event("ws_connect.json"))
    capture.fail = lambda attempt, data: "LimitExceededException" if attempt in (2, 3) else None
    invoke(message({"type": "speak", "text": "Slow down a little."}))
    events = capture.events
    assert events[0]["type"] == "start"
    assert events[-1]["type"] == "end"
    assert [e["seq"] for e in events if e["type"] == "audio"] == list(range(events[-1]["chunks"]))
    assert capture.attempts == len(capture.frames) + 2
    # Two waits, each botocore's throttling backoff: random(0, 1) x 1 s, then x 2 s.
    assert len(backoffs) == 2
    assert 0 <= backoffs[0] <= 1
    assert 0 <= backoffs[1] <= 2


def test_a_post_throttled_on_every_attempt_fails_after_the_configured_attempts(
    poster: Poster, capture: Capture, backoffs: list[float]
) -> None:
    capture.fail = lambda attempt, data: "LimitExceededException"
    with pytest.raises(poster.client.exceptions.LimitExceededException):
        poster.post(EVENT)
    assert capture.attempts == POST_MAX_ATTEMPTS
    assert len(backoffs) == POST_MAX_ATTEMPTS - 1
    assert poster.posted == 0
    assert capture.frames == []


def test_a_gone_client_is_never_retried(poster: Poster, capture: Capture, backoffs: list[float]) -> None:
    capture.fail = lambda attempt, data: "GoneException"
    with pytest.raises(ConnectionGone):
        poster.post(EVENT)
    poster.post_quietly(EVENT)
    assert capture.attempts == 2
    assert backoffs == []
    assert poster.posted == 0


def test_a_delivered_post_is_counted_and_reaches_the_connection(poster: Poster, capture: Capture) -> None:
    poster.post(EVENT)
    assert poster.posted == 1
    assert capture.events == [EVENT.to_dict()]
    assert capture.frames[0][0] == CONNECTION
