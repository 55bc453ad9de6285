"""Per-client rate limits: 429 JSON with Retry-After and RateLimit-* after the budget, whatever the budget."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, WebSocket
from starlette.testclient import WebSocketDenialResponse

from tests.support.apps import AppFactory
from tts_service.middleware.clients import ClientResolver
from tts_service.middleware.ratelimit import RateLimiter


@pytest.mark.parametrize("per_minute", [1, 5, 59, 60])
def test_429_after_the_budget_with_headers(make_client: AppFactory, per_minute: int) -> None:
    client, metrics = make_client(rate_limit_enabled=True, rate_limit_per_minute=per_minute)
    for i in range(per_minute):
        response = client.get("/voices")
        assert response.status_code == 200, f"request {i + 1} of {per_minute}"
        assert response.headers["ratelimit-limit"] == str(per_minute)
        assert response.headers["ratelimit-remaining"] == str(per_minute - i - 1)
    refused = client.get("/voices")
    assert refused.status_code == 429
    body = refused.json()["error"]
    assert body["code"] == "rate_limited"
    assert body["limit"] == per_minute
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert refused.headers["ratelimit-limit"] == str(per_minute)
    assert refused.headers["ratelimit-remaining"] == "0"
    assert 1 <= int(refused.headers["ratelimit-reset"]) <= 60
    assert refused.headers["x-request-id"]
    assert metrics.value("http_requests_rejected_total", reason="rate_limited") == 1
    assert metrics.value("http_requests_total", route="/voices", method="GET", status="429") == 1


def test_post_bodies_count_too(make_client: AppFactory) -> None:
    client, _ = make_client(rate_limit_enabled=True, rate_limit_per_minute=2)
    assert client.post("/tts", json={"text": ""}).status_code == 422
    assert client.post("/tts", json={"text": ""}).status_code == 422
    assert client.post("/tts", json={"text": "Hello."}).status_code == 429


def test_health_and_metrics_are_exempt(make_client: AppFactory) -> None:
    client, _ = make_client(rate_limit_enabled=True, rate_limit_per_minute=1)
    assert client.get("/voices").status_code == 200
    assert client.get("/voices").status_code == 429
    for _ in range(5):
        assert client.get("/health").status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_each_api_key_has_its_own_budget(make_client: AppFactory) -> None:
    client, _ = make_client(rate_limit_enabled=True, rate_limit_per_minute=2, api_keys="alpha,beta")
    alpha, beta = {"X-API-Key": "alpha"}, {"Authorization": "Bearer beta"}
    assert [client.get("/voices", headers=alpha).status_code for _ in range(3)] == [200, 200, 429]
    assert [client.get("/voices", headers=beta).status_code for _ in range(3)] == [200, 200, 429]


def test_made_up_keys_share_the_ip_budget(make_client: AppFactory) -> None:
    # Without API_KEYS, a header value is not an identity: inventing keys must not buy fresh budgets.
    client, _ = make_client(rate_limit_enabled=True, rate_limit_per_minute=2)
    codes = [client.get("/voices", headers={"X-API-Key": f"invented-{i}"}).status_code for i in range(3)]
    assert codes == [200, 200, 429]


def _statuses_from(app: Any, peer: str, forwarded: list[str]) -> list[int]:
    """Send one GET /voices per X-Forwarded-For value from the TCP peer `peer`."""

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [(await client.get("/voices", headers={"X-Forwarded-For": f})).status_code for f in forwarded]

    return asyncio.run(run())


def test_forwarded_for_is_ignored_from_untrusted_peers(make_client: AppFactory) -> None:
    client, _ = make_client(rate_limit_enabled=True, rate_limit_per_minute=1, trusted_proxies="10.0.0.0/8")
    # A client on the internet cannot pick a fresh address per request.
    assert _statuses_from(client.app, "198.51.100.9", ["203.0.113.1", "203.0.113.2"]) == [200, 429]


def test_forwarded_for_from_a_trusted_proxy_names_the_client(make_client: AppFactory) -> None:
    client, _ = make_client(rate_limit_enabled=True, rate_limit_per_minute=1, trusted_proxies="10.0.0.0/8")
    # Behind the proxy, each client has its own budget.
    assert _statuses_from(client.app, "10.1.2.3", ["203.0.113.1", "203.0.113.2", "203.0.113.1"]) == [200, 200, 429]


def test_client_ip_walks_back_through_trusted_hops() -> None:
    resolver = ClientResolver("10.0.0.0/8, 192.168.1.1")
    chain = {"client": ("10.1.2.3", 5000), "headers": [(b"x-forwarded-for", b"198.51.100.7, 10.0.0.9")]}
    assert resolver.client_ip(chain) == "198.51.100.7"
    spoofed = {"client": ("10.1.2.3", 5000), "headers": [(b"x-forwarded-for", b"1.1.1.1, 198.51.100.7")]}
    assert resolver.client_ip(spoofed) == "198.51.100.7", "only the hop the trusted proxy saw counts"
    garbage = {"client": ("10.1.2.3", 5000), "headers": [(b"x-forwarded-for", b"not-an-ip")]}
    assert resolver.client_ip(garbage) == "10.1.2.3"
    assert ClientResolver(None).client_ip(chain) == "10.1.2.3", "no trusted proxies: the header is ignored"


def test_invalid_trusted_proxies_fail_at_startup(make_client: AppFactory) -> None:
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        make_client(rate_limit_enabled=True, trusted_proxies="10.0.0.0/8, proxy.internal")


def test_burst_limits_back_to_back_requests() -> None:
    limiter = RateLimiter(per_minute=60, burst=3)
    assert limiter.policy == "60;w=60, 3;w=3"
    decisions = [limiter.check("ip:192.0.2.1") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].reset_secs <= 3, "a burst refusal clears within the burst window"
    assert limiter.check("ip:192.0.2.2").allowed, "another client is unaffected"


def test_disabled_rate_limit_never_refuses(make_client: AppFactory) -> None:
    client, _ = make_client(rate_limit_enabled=False, rate_limit_per_minute=1)
    assert {client.get("/voices").status_code for _ in range(5)} == {200}
    assert "ratelimit-limit" not in client.get("/voices").headers


def test_guessing_keys_is_throttled(make_client: AppFactory) -> None:
    client, metrics = make_client(rate_limit_enabled=True, rate_limit_per_minute=3, api_keys="the-real-key")
    guesses = [client.get("/voices", headers={"X-API-Key": f"guess-{i}"}).status_code for i in range(5)]
    assert guesses == [401, 401, 401, 429, 429]
    assert metrics.value("http_requests_rejected_total", reason="unauthorized") == 3
    # The holder of a valid key has a budget of its own, untouched by the guesses from the same address.
    assert client.get("/voices", headers={"X-API-Key": "the-real-key"}).status_code == 200


def test_a_websocket_counts_once_at_connect(make_client: AppFactory) -> None:
    router = APIRouter()

    @router.websocket("/ws/count")
    async def chatty(ws: WebSocket) -> None:
        await ws.accept()
        for _ in range(5):
            await ws.send_text(await ws.receive_text())
        await ws.close()

    client, _ = make_client(rate_limit_enabled=True, rate_limit_per_minute=2, routers=(router,))
    with client.websocket_connect("/ws/count") as ws:
        for i in range(5):  # messages inside a session are not requests
            ws.send_text(str(i))
            assert ws.receive_text() == str(i)
    assert client.get("/voices").status_code == 200
    with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect("/ws/count"):
        pass
    assert refused.value.status_code == 429
    assert int(refused.value.headers["retry-after"]) >= 1
