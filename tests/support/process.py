"""A server process as the outside sees it: what it holds (/proc) and its gauges (GET /metrics)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.apps import parse_exposition


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
    return parse_exposition(httpx.get(f"{base}/metrics", headers=headers, timeout=10).text)


def gauges(base: str, headers: dict[str, str] | None = None) -> dict[str, float]:
    """The server's own gauges (this request counts as one in flight)."""
    found = samples(base, headers)
    return {name: found[name] for name in ("tts_synthesis_admitted", "requests_in_flight")}


def idle(base: str, headers: dict[str, str] | None = None) -> bool:
    """No synthesis admitted and no request in flight but the one asking."""
    found = gauges(base, headers)
    return found["tts_synthesis_admitted"] == 0 and found["requests_in_flight"] <= 1
