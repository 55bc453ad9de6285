"""Captured log lines, as the service's JSON formatter writes them (the `logs` fixture of tests/conftest.py)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tts_service.observability.logging import JsonFormatter

CLIENT_LOGGERS = ("httpx", "httpcore", "websockets.client")


class LogCapture:
    """JSON log lines of every logger, as the service writes them."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    @property
    def server_records(self) -> list[dict[str, Any]]:
        """The records a server would write: without the lines of the test's own clients (which log their URLs
        and headers at DEBUG)."""
        return [r for r in self.records if not str(r.get("logger", "")).startswith(CLIENT_LOGGERS)]

    @property
    def server_text(self) -> str:
        return "\n".join(json.dumps(r) for r in self.server_records)


@contextmanager
def capture_logs() -> Iterator[LogCapture]:
    """Everything logged at DEBUG and above meanwhile, through the service's JSON formatter."""
    capture = LogCapture()
    handler = logging.StreamHandler(capture.stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
