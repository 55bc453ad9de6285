"""The web console in a real browser: Playwright for Python driving Debian's chromium, against the shim as a
real process (with the loopback fake LLM for chat). Screenshots go to `artifacts/console/` (gitignored)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Playwright, expect, sync_playwright

from tests.fakes.llm_server import FakeLlmServer
from tests.support.console import CHROMIUM, Console, console_page, llm_env, shim_log
from tests.support.shim import Shim, free_port, running_shim

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


@pytest.fixture
def console(browser: Browser, shim: Shim) -> Iterator[Console]:
    with console_page(browser, shim.base) as c:
        yield c
