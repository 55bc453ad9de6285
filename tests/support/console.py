"""The web console in a real browser: a page on the console and what it did (the fixtures are in
tests/console/conftest.py). Screenshots and the shim's logs go to `artifacts/console/` (gitignored)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request

from tests.fakes.llm_server import FakeLlmServer
from tests.support.shim import REPO

# Debian's package (apt-get install chromium; .ci/run installs it): never a browser downloaded by Playwright.
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts" / "console"
DESKTOP = {"width": 1280, "height": 900}


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
