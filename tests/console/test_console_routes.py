"""The console's routes in the shim: `/` and `/assets/...` from frontend/, public and unmetered, never in the way of
the API (no route shadowed, JSON errors kept), no file outside `assets/` served."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support.shim import REPO
from tts_service.api import health, tts, voices
from tts_service.api.console import console_router
from tts_service.app import create_app
from tts_service.config import Settings
from tts_service.engine import Engine

FRONTEND = REPO / "frontend"
KEY = "k-console-test-3c1d"


def console_app(**settings: object) -> TestClient:
    app = create_app(health.router, tts.router, voices.router, settings=Settings(**settings))  # type: ignore[arg-type]
    app.include_router(console_router(FRONTEND))
    return TestClient(app)


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with console_app(api_keys=KEY, rate_limit_per_minute=2) as c:
        yield c


def test_the_page_and_its_files_load_without_a_key_or_rate_budget(client: TestClient) -> None:
    # GIVEN a server that needs keys and allows 2 requests a minute
    # WHEN the page and every file it names are loaded, several times over
    for _ in range(3):
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        for name in re.findall(r'(?:href|src)="assets/([^"]+)"', page.text):
            asset = client.get(f"/assets/{name}")
            assert asset.status_code == 200, name
            assert asset.headers["cache-control"] == "no-cache"
    # THEN the API itself still needs the key, and its budget is untouched by the console
    assert client.get("/voices").status_code == 401
    assert client.get("/voices", headers={"X-API-Key": KEY}).status_code == 200
    assert client.get("/voices", headers={"X-API-Key": KEY}).status_code == 200
    assert client.get("/voices", headers={"X-API-Key": KEY}).status_code == 429


def test_the_page_allows_only_its_own_origin(client: TestClient) -> None:
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    # and the page names nothing on another host: no CDN, font or script from the internet (an XML namespace is
    # a name, never fetched)
    for path in [FRONTEND / "index.html", *sorted((FRONTEND / "assets").iterdir())]:
        text = path.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text), path.name


def test_modules_are_javascript_and_revalidate_with_their_etag(client: TestClient) -> None:
    first = client.get("/assets/app.js")
    assert first.headers["content-type"].startswith("text/javascript")
    again = client.get("/assets/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert client.head("/assets/style.css").status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/assets/../index.html", "/assets/%2e%2e/%2e%2e/pyproject.toml", "/assets/nope.js", "/assets/", "/index.html"],
)
def test_nothing_else_is_served(engine: Engine, path: str) -> None:
    with console_app() as client:
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_api_routes_are_not_shadowed(engine: Engine) -> None:
    # Without keys, every API route answers as before and an unknown route is still our JSON 404, also on POST
    with console_app() as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/voices").status_code == 200
        assert client.post("/tts", json={"text": "Hi."}).json()["voice"]
        for method in ("GET", "POST"):
            missing = client.request(method, "/no-such-route")
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "not_found"
        # and the console lives at the root only, not under the legacy /api prefix
        assert client.get("/api/").status_code == 404


def test_a_folder_without_index_html_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        console_router(tmp_path)
