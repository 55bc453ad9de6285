"""The limits do not slow the first audio of a normal stream, even with their shared store hanging."""

from __future__ import annotations

import json
import statistics
import time
import uuid

import httpx
from websockets.sync.client import connect

from tests.fakes.tcp import TcpFault
from tests.support.live import LiveServer
from tts_service.api import stream, voices
from tts_service.app import create_app
from tts_service.config import Settings
from tts_service.engine import Engine
from tts_service.observability import Metrics

ROUNDS = 3


def first_audio_secs(server: LiveServer) -> float:
    """From sending `speak` on a new connection to its first audio frame."""
    with connect(f"{server.ws}/ws/tts", open_timeout=10) as ws:
        started = time.monotonic()
        ws.send(json.dumps({"type": "speak", "text": f"Hello there, listener {uuid.uuid4().hex[:6]}."}))
        while not isinstance(ws.recv(timeout=10), bytes):
            pass
        return time.monotonic() - started


def median_first_audio(settings: Settings) -> float:
    server = LiveServer(create_app(stream.router, voices.router, settings=settings, metrics=Metrics(process=False)))
    server.start()
    try:
        httpx.get(f"{server.http}/voices", timeout=10)  # the first request meets the store's state
        return statistics.median(first_audio_secs(server) for _ in range(ROUNDS))
    finally:
        server.stop()


def test_first_audio_is_not_slowed_by_the_limits_or_a_hanging_store(engine: Engine) -> None:
    # GIVEN every limit on, the rate-limit store hanging for a whole second per call, and the store left alone for
    # the length of the measurement once it is known to hang
    baseline = median_first_audio(Settings(rate_limit_enabled=False))
    with TcpFault("hang") as redis:
        limited = median_first_audio(
            Settings(
                rate_limit_storage_uri=f"redis://127.0.0.1:{redis.port}/0",
                rate_limit_storage_timeout_secs=1.0,
                rate_limit_storage_retry_secs=60.0,
                max_streams_per_client=4,
                stream_send_timeout_secs=5.0,
                ws_idle_timeout_secs=30.0,
            )
        )
    # THEN a stream's first audio comes as fast as without them: no wait on the store, no buffering on the way
    assert limited < baseline + 0.3, (limited, baseline)
