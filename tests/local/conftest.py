"""The reliability suite (`make test-reliability`): the real shim process on loopback, fuzzed from its OpenAPI
schema, driven through dependency faults, and soaked. Each test records its figures, printed at the end of the run
and written to `.cache/reliability/figures.json`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.shim import REPO

FIGURES: dict[str, Any] = {}
FIGURES_PATH = REPO / ".cache" / "reliability" / "figures.json"


@pytest.fixture(scope="session")
def figures() -> dict[str, Any]:
    """Numbers worth reporting, by test."""
    return FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    FIGURES_PATH.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_PATH.write_text(json.dumps(FIGURES, indent=2, sort_keys=True))
    terminalreporter.section("reliability figures")
    for name, value in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{name}: {json.dumps(value, sort_keys=True)}")


@dataclass(frozen=True)
class Usage:
    """What a process holds: resident memory, open file descriptors, threads (from /proc)."""

    rss_mb: float
    fds: int
    threads: int


def usage(pid: int) -> Usage:
    status = {
        key: value.strip()
        for key, _, value in (line.partition(":") for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    }
    return Usage(
        rss_mb=int(status["VmRSS"].split()[0]) / 1024,
        fds=sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir()),
        threads=int(status["Threads"]),
    )


def samples(base: str, headers: dict[str, str] | None = None) -> dict[str, float]:
    """GET /metrics as {"name{labels}": value}."""
    text = httpx.get(f"{base}/metrics", headers=headers, timeout=10).text
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def gauges(base: str, headers: dict[str, str] | None = None) -> dict[str, float]:
    """The shim's own gauges (this request counts as one in flight)."""
    found = samples(base, headers)
    return {name: found[name] for name in ("tts_synthesis_admitted", "requests_in_flight")}


def settle(check: Callable[[], bool], secs: float = 20.0) -> bool:
    """Poll a condition of the server (its gauges, its /proc entries) until it holds, for at most `secs`."""
    deadline = time.monotonic() + secs
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def idle(base: str, headers: dict[str, str] | None = None) -> bool:
    """No synthesis admitted and no request in flight but the one asking."""
    found = gauges(base, headers)
    return found["tts_synthesis_admitted"] == 0 and found["requests_in_flight"] <= 1


@pytest.fixture(scope="module")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("reliability")
