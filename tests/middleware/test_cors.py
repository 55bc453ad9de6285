"""CORS: an allowlist of origins; preflights from others get 403 JSON without CORS headers."""

from __future__ import annotations

from tests.support.apps import AppFactory

ALLOWED = "https://app.example.com"


def preflight(origin: str, method: str = "POST", headers: str = "content-type, x-api-key") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


def test_preflight_from_an_allowed_origin(make_client: AppFactory) -> None:
    client, _ = make_client(cors_allowed_origins=f"{ALLOWED}, https://other.example.com")
    response = client.options("/tts", headers=preflight(ALLOWED))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "x-api-key" in response.headers["access-control-allow-headers"].lower()


def test_preflight_from_another_origin_is_refused(make_client: AppFactory) -> None:
    client, metrics = make_client(cors_allowed_origins=ALLOWED)
    response = client.options("/tts", headers=preflight("https://evil.example.net"))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in response.headers
    assert metrics.value("http_requests_rejected_total", reason="origin_not_allowed") == 1


def test_preflight_with_a_method_not_allowed_is_refused(make_client: AppFactory) -> None:
    client, _ = make_client(cors_allowed_origins=ALLOWED)
    response = client.options("/tts", headers=preflight(ALLOWED, method="PUT"))
    assert response.status_code == 403
    assert "method" in response.json()["error"]["message"]


def test_delete_is_allowed_as_in_the_template(make_client: AppFactory) -> None:
    # DELETE /conversations/{id} from a browser console needs its preflight answered, as the HTTP API's CORS does.
    client, _ = make_client(cors_allowed_origins=ALLOWED)
    response = client.options("/conversations/c-1", headers=preflight(ALLOWED, method="DELETE"))
    assert response.status_code == 200
    assert "DELETE" in response.headers["access-control-allow-methods"]


def test_simple_request_gets_the_origin_back_only_when_allowed(make_client: AppFactory) -> None:
    client, _ = make_client(cors_allowed_origins=ALLOWED)
    allowed = client.get("/voices", headers={"Origin": ALLOWED})
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "x-request-id" in allowed.headers["access-control-expose-headers"].lower()
    other = client.get("/voices", headers={"Origin": "https://evil.example.net"})
    assert other.status_code == 200  # the browser, not the server, withholds the body
    assert "access-control-allow-origin" not in other.headers


def test_production_default_allows_no_origin(make_client: AppFactory) -> None:
    client, _ = make_client(environment="production")
    assert client.options("/tts", headers=preflight("http://localhost:3000")).status_code == 403
    assert client.options("/tts", headers=preflight(ALLOWED)).status_code == 403


def test_development_default_allows_localhost_only(make_client: AppFactory) -> None:
    client, _ = make_client(environment="development")
    for origin in ("http://localhost:3000", "http://127.0.0.1:5173", "http://localhost"):
        response = client.options("/tts", headers=preflight(origin))
        assert response.status_code == 200, origin
        assert response.headers["access-control-allow-origin"] == origin
    assert client.options("/tts", headers=preflight("http://localhost.evil.com")).status_code == 403
    assert client.options("/tts", headers=preflight(ALLOWED)).status_code == 403


def test_wildcard_allows_any_origin(make_client: AppFactory) -> None:
    client, _ = make_client(cors_allowed_origins="*")
    response = client.options("/tts", headers=preflight("https://anything.example"))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"


def test_refusals_carry_cors_headers(make_client: AppFactory) -> None:
    # A browser can only read a 401 or 429 body if the refusal itself has the CORS headers.
    client, _ = make_client(cors_allowed_origins=ALLOWED, api_keys="k")
    response = client.get("/voices", headers={"Origin": ALLOWED})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == ALLOWED


def test_preflight_needs_no_api_key_and_no_budget(make_client: AppFactory) -> None:
    client, _ = make_client(
        cors_allowed_origins=ALLOWED, api_keys="k", rate_limit_enabled=True, rate_limit_per_minute=1
    )
    for _ in range(3):
        assert client.options("/tts", headers=preflight(ALLOWED)).status_code == 200
    assert client.get("/voices", headers={"X-API-Key": "k"}).status_code == 200
