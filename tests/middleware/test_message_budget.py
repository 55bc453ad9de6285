"""Budgets go past the handshake: every WebSocket message that starts work spends the client's rate budget."""

from __future__ import annotations

import json
from typing import Any

from starlette.testclient import WebSocketTestSession

from tests.support.apps import AppFactory
from tests.support.streams import collect
from tts_service.api import stream


def next_error_or_end(ws: WebSocketTestSession) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = ws.receive_json()
        if event["type"] in ("error", "end", "done"):
            return event


def test_every_speak_is_charged_and_a_spent_budget_is_an_error_event(make_client: AppFactory) -> None:
    # GIVEN a budget of 3 requests a minute; the handshake spends one
    client, metrics = make_client(routers=(stream.router,), rate_limit_enabled=True, rate_limit_per_minute=3)
    with client.websocket_connect("/ws/tts") as ws:
        # WHEN the client speaks twice, then a third time
        for text in ("One.", "Two."):
            ws.send_text(json.dumps({"type": "speak", "text": text, "encoding": "base64"}))
            events, _ = collect(ws)
            assert events[-1]["type"] == "end"
        ws.send_text(json.dumps({"type": "speak", "text": "Three.", "encoding": "base64"}))
        refused = ws.receive_json()
        # THEN the third is refused as rate limited, with when to retry, and starts nothing
        assert refused["type"] == "error"
        assert refused["code"] == "rate_limited"
        assert refused["ends_stream"] is False
        assert refused["retry_after"] >= 1
        # AND the connection stays usable: control messages and bad frames still get their answers
        ws.send_text(json.dumps({"type": "text", "text": "No stream."}))
        assert ws.receive_json()["code"] == "unexpected_message"
        ws.send_text(json.dumps({"type": "start", "encoding": "base64"}))
        assert ws.receive_json()["code"] == "rate_limited"
    assert metrics.value("http_requests_rejected_total", reason="rate_limited") == 2
    # The same budget covers HTTP: it is spent.
    assert client.get("/voices").status_code == 429
