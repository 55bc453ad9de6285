"""API keys: 401 JSON without a valid key, either header accepted, health open, keys never logged; WebSocket
tickets for browsers (single-use, echoed as the subprotocol), never a key in a URL."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, WebSocket
from starlette.testclient import WebSocketDenialResponse
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.support.apps import AppFactory
from tests.support.live import LiveServer
from tests.support.logs import LogCapture
from tts_service.api import health, tickets
from tts_service.app import create_app
from tts_service.config import Settings
from tts_service.credentials import MemoryTickets, load_api_keys

SECRET = "sk-ops-test-9f8e7d6c5b4a"


def test_no_key_is_401_json(make_client: AppFactory) -> None:
    client, metrics = make_client(api_keys=f"{SECRET},other-key")
    response = client.get("/voices")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert metrics.value("http_requests_rejected_total", reason="unauthorized") == 1


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {SECRET}"}, {"X-API-Key": SECRET}, {"authorization": f"bearer {SECRET}"}],
    ids=["bearer", "x-api-key", "lowercase"],
)
def test_either_header_is_accepted(make_client: AppFactory, headers: dict[str, str]) -> None:
    client, _ = make_client(api_keys=f"{SECRET},other-key")
    assert client.get("/voices", headers=headers).status_code == 200
    assert client.get("/api/voices", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer wrong"}, {"X-API-Key": SECRET[:-1]}, {"Authorization": SECRET}, {"X-API-Key": ""}],
    ids=["wrong", "prefix", "no-scheme", "empty"],
)
def test_wrong_keys_are_401(make_client: AppFactory, headers: dict[str, str]) -> None:
    client, _ = make_client(api_keys=SECRET)
    response = client.get("/voices", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_health_needs_no_key_but_metrics_does(make_client: AppFactory) -> None:
    client, _ = make_client(api_keys=SECRET)
    for path in ("/health", "/api/health", "/healthz"):
        assert client.get(path).status_code == 200, path
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": SECRET}).status_code == 200


def test_post_without_key_is_401_before_validation(make_client: AppFactory) -> None:
    client, _ = make_client(api_keys=SECRET)
    assert client.post("/tts", json={"text": "hello"}).status_code == 401
    assert client.post("/tts", content=b"not json").status_code == 401


def test_no_keys_configured_means_open(make_client: AppFactory) -> None:
    client, _ = make_client()
    assert client.get("/voices").status_code == 200


def test_keys_from_a_file(tmp_path: Path, make_client: AppFactory) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# rotated 2026-11\n{SECRET}\n\nsecond-key  # ops team\n")
    assert load_api_keys(str(key_file)) == [SECRET, "second-key"]
    client, _ = make_client(api_keys=str(key_file))
    assert client.get("/voices", headers={"X-API-Key": "second-key"}).status_code == 200
    assert client.get("/voices", headers={"X-API-Key": str(key_file)}).status_code == 401


def test_missing_key_file_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_api_keys(str(tmp_path / "nope.txt"))


def test_keys_never_reach_the_logs(make_client: AppFactory, logs: LogCapture) -> None:
    client, _ = make_client(api_keys=SECRET)
    client.get("/voices", headers={"X-API-Key": SECRET})
    client.get("/voices", headers={"Authorization": f"Bearer {SECRET}x"})
    client.get("/voices", headers={"X-API-Key": f"{SECRET}-guess"})
    assert any(r.get("message") == "request" for r in logs.records)
    assert SECRET not in logs.text


def echo_router() -> APIRouter:
    router = APIRouter()

    @router.websocket("/ws/echo")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(await ws.receive_text())
        await ws.close()

    return router


def test_websocket_without_key_is_refused(make_client: AppFactory) -> None:
    client, _ = make_client(api_keys=SECRET, routers=(echo_router(),))
    # The handshake is answered with the same 401 JSON as HTTP (servers without the denial-response extension
    # close with 1008 instead).
    with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect("/ws/echo"):
        pass
    assert refused.value.status_code == 401
    assert refused.value.json()["error"]["code"] == "unauthorized"
    assert "/ws-ticket" in refused.value.json()["error"]["message"]
    with client.websocket_connect("/ws/echo", headers={"X-API-Key": SECRET}) as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"


def test_an_api_key_in_a_websocket_url_is_refused(make_client: AppFactory) -> None:
    # GIVEN a valid key, put where proxies, browser history and access logs keep it
    client, _ = make_client(api_keys=SECRET, routers=(echo_router(),))
    # WHEN a handshake carries it in the query string
    with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect(f"/ws/echo?api_key={SECRET}"):
        pass
    # THEN it counts for nothing
    assert refused.value.status_code == 401


def test_a_ticket_opens_one_websocket_once(make_client: AppFactory) -> None:
    # GIVEN a ticket bought with the key in a header
    client, _ = make_client(api_keys=SECRET, routers=(echo_router(),))
    response = client.post("/ws-ticket", headers={"X-API-Key": SECRET})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    ticket = body["ticket"]
    assert body["expires_in"] == 60
    assert body["subprotocol"] == f"ticket.{ticket}"
    assert SECRET not in ticket
    assert len(ticket) >= 32
    # WHEN a browser presents it as its subprotocol
    with client.websocket_connect("/ws/echo", subprotocols=[f"ticket.{ticket}"]) as ws:
        # THEN the handshake names that subprotocol (browsers drop the connection otherwise) and it works
        assert ws.accepted_subprotocol == f"ticket.{ticket}"
        ws.send_text("hi")
        assert ws.receive_text() == "hi"
    # AND the ticket is spent: a second handshake with it is refused
    with (
        pytest.raises(WebSocketDenialResponse) as again,
        client.websocket_connect("/ws/echo", subprotocols=[f"ticket.{ticket}"]),
    ):
        pass
    assert again.value.status_code == 401
    assert "ticket" in again.value.json()["error"]["message"]


def test_a_ticket_in_the_query_works_and_tickets_need_a_key(make_client: AppFactory) -> None:
    client, _ = make_client(api_keys=SECRET, routers=(echo_router(),))
    assert client.post("/ws-ticket").status_code == 401
    assert client.post("/ws-ticket", headers={"X-API-Key": "wrong"}).status_code == 401
    ticket = client.post("/ws-ticket", headers={"Authorization": f"Bearer {SECRET}"}).json()["ticket"]
    with client.websocket_connect(f"/ws/echo?ticket={ticket}") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"
    with pytest.raises(WebSocketDenialResponse), client.websocket_connect("/ws/echo?ticket=made-up-ticket-123456"):
        pass


def test_a_ticket_is_no_key_for_http(make_client: AppFactory) -> None:
    client, _ = make_client(api_keys=SECRET)
    ticket = client.post("/ws-ticket", headers={"X-API-Key": SECRET}).json()["ticket"]
    assert client.get(f"/voices?ticket={ticket}").status_code == 401
    assert client.get("/voices", headers={"Sec-WebSocket-Protocol": f"ticket.{ticket}"}).status_code == 401


def test_without_keys_a_ticket_subprotocol_is_still_echoed(make_client: AppFactory) -> None:
    client, _ = make_client(routers=(echo_router(),))
    ticket = client.post("/ws-ticket").json()["ticket"]
    with client.websocket_connect("/ws/echo", subprotocols=[f"ticket.{ticket}"]) as ws:
        assert ws.accepted_subprotocol == f"ticket.{ticket}"
        ws.send_text("hi")
        assert ws.receive_text() == "hi"


def test_tickets_expire_and_are_bounded() -> None:
    now = [1000.0]
    store = MemoryTickets(60, clock=lambda: now[0])
    late, fresh = store.issue("owner-a"), store.issue("owner-b")
    now[0] += 61
    assert store.redeem(late) is None
    still = store.issue("owner-c")
    assert store.redeem(still) == "owner-c"
    assert store.redeem(still) is None
    assert store.redeem(fresh) is None
    assert store.redeem("not a ticket!") is None


def test_real_handshakes_log_no_key_ticket_or_text(logs: LogCapture) -> None:
    # GIVEN the app with keys on a real uvicorn server, logging as the shim does
    app = create_app(health.router, tickets.router, echo_router(), settings=Settings(api_keys=SECRET))
    server = LiveServer(app, ws="auto")
    server.start()
    text = "my-private-words-771"
    try:
        ticket = httpx.post(f"{server.http}/ws-ticket", headers={"X-API-Key": SECRET}).json()["ticket"]
        other = httpx.post(f"{server.http}/ws-ticket", headers={"X-API-Key": SECRET}).json()["ticket"]
        # WHEN clients connect with a header key, a ticket subprotocol and a ticket in the query ...
        with connect(f"{server.ws}/ws/echo?note={text}", additional_headers={"X-API-Key": SECRET}) as ws:
            ws.send(text)
            assert ws.recv(timeout=10) == text
        with connect(f"{server.ws}/ws/echo", subprotocols=[Subprotocol(f"ticket.{ticket}")]) as ws:
            assert ws.subprotocol == f"ticket.{ticket}"
        with connect(f"{server.ws}/ws/echo?ticket={other}") as ws:
            ws.send(text)
            assert ws.recv(timeout=10) == text
        # ... and others are refused: a wrong key, the key in the URL, a spent ticket
        for url, headers in [
            (f"{server.ws}/ws/echo?message={text}", {"X-API-Key": f"{SECRET}-wrong"}),
            (f"{server.ws}/ws/echo?api_key={SECRET}&message={text}", {}),
            (f"{server.ws}/ws/echo?ticket={ticket}", {}),
        ]:
            with pytest.raises(InvalidStatus) as refused, connect(url, additional_headers=headers):
                pass
            assert refused.value.response.status_code == 401
    finally:
        server.stop()
    # THEN the log has a line per handshake (route template and status) ...
    handshakes = [r for r in logs.records if r.get("logger") == "tts_service.access" and r["method"] == "WEBSOCKET"]
    assert [(r["route"], r["status"]) for r in handshakes] == [("/ws/echo", 101)] * 3 + [("/ws/echo", 401)] * 3
    # ... and, at DEBUG, nowhere a key, a ticket, the user's text or a query string (uvicorn's own lines and the
    # wire dumps of its WebSocket library included; the test's own clients log what they send, and are left out)
    server_side = logs.server_records
    assert any(r["logger"] == "uvicorn.error" for r in server_side)
    for secret in (SECRET, ticket, other, text):
        assert secret not in logs.server_text
    assert not [r for r in server_side if "?" in r["message"]]
