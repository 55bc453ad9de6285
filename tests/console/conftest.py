"""The web console in a real browser: Playwright for Python driving Debian's chromium, against the shim as a
real process (with the loopback fake LLM for chat). Screenshots go to `artifacts/console/` (gitignored)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    expect,
    sync_playwright,
)

from tests.fakes.llm_server import FakeLlmServer
from tests.support.shim import REPO, Shim, free_port, running_shim

# Debian's package (apt-get install chromium; .ci/run installs it): never a browser downloaded by Playwright.
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts" / "console"
DESKTOP = {"width": 1280, "height": 900}
# Page states the tests wait for come after an API call or two; on two busy cores that can take longer than 5 s.
expect.set_options(timeout=15_000)


# Module scope, never session: between its calls Playwright's sync API marks its own event loop as running in this
# thread, which would break every later test that runs an event loop (Mangum handlers, asyncio.run).
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run installs it)")
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
    yield browser
    browser.close()


def shim_log(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.log"


def llm_env(fake: FakeLlmServer, data_dir: Path) -> dict[str, str]:
    """The shim's chat settings: OpenAI's protocol against the fake, embedded memory in `data_dir`."""
    return {
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-fake-console",
        "OPENAI_BASE_URL": fake.openai_url,
        "LLM_MODEL": "fake-model",
        "LLM_MAX_RETRIES": "0",
        "DATA_DIR": str(data_dir),
    }


@pytest.fixture(scope="session")
def frontend_origin() -> str:
    """Where the tts-frontend image's nginx serves the built console in tests/console/test_frontend_image.py."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def shim(llm_server: FakeLlmServer, frontend_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shim]:
    """The shim as `make serve` runs it (no keys), its chat pointed at the fake LLM; the frontend image's origin may
    call it (CORS), as in a deployment where PUBLIC_BASE_URL names the API."""
    env = {
        **llm_env(llm_server, tmp_path_factory.mktemp("console-data")),
        "CORS_ALLOWED_ORIGINS": frontend_origin,
    }
    with running_shim(env, log_path=shim_log("shim")) as running:
        yield running


@dataclass
class Watch:
    """What a page did: console errors, uncaught exceptions, and every URL it asked for (HTTP and WebSocket)."""

    errors: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def on_request(self, request: Request) -> None:
        self.urls.append(request.url)

    def foreign(self, origin: str) -> list[str]:
        """URLs outside `origin` (blob: and data: URLs are the page's own memory)."""
        ws_origin = origin.replace("http", "ws", 1)
        return [
            url
            for url in self.urls
            if not (url.startswith((origin + "/", ws_origin + "/")) or urlsplit(url).scheme in ("blob", "data"))
        ]


@dataclass
class Console:
    """A page on the console, and what it did."""

    page: Page
    context: BrowserContext
    watch: Watch
    origin: str

    def open(self, tab: str = "speak") -> Page:
        self.page.goto(f"{self.origin}/#{tab}")
        return self.page

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        return path

    def assert_clean(self, api_origin: str | None = None) -> None:
        """No console error or uncaught exception, and no request left the page's (or the API's) origin."""
        assert self.watch.errors == []
        outside = self.watch.foreign(self.origin)
        if api_origin is not None:
            api = (api_origin + "/", api_origin.replace("http", "ws", 1) + "/")
            outside = [url for url in outside if not url.startswith(api)]
        assert outside == []


@contextlib.contextmanager
def console_page(browser: Browser, origin: str, viewport: dict[str, int] | None = None) -> Iterator[Console]:
    context = browser.new_context(viewport=viewport or DESKTOP, accept_downloads=True)  # type: ignore[arg-type]
    watch = Watch()
    page = context.new_page()
    page.on("console", watch.on_console)
    page.on("pageerror", lambda exc: watch.errors.append(f"uncaught: {exc}"))
    page.on("request", watch.on_request)
    page.on("websocket", lambda ws: watch.urls.append(ws.url))
    try:
        yield Console(page, context, watch, origin)
    finally:
        context.close()


@pytest.fixture
def console(browser: Browser, shim: Shim) -> Iterator[Console]:
    with console_page(browser, shim.base) as c:
        yield c
