"""Structured logging: one JSON object per line on stderr, for the shim and anything else outside Lambda."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
"""The id of the request being served in this context; the middleware sets it, every log record carries it."""

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _install_request_id_factory() -> None:
    """Stamp `request_id` on every record made while a request is served, whatever handler or formatter."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_adds_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        request_id = request_id_var.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return record

    factory._adds_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_install_request_id_factory()


response_abandoned_var: contextvars.ContextVar[bool] = contextvars.ContextVar("response_abandoned", default=False)
"""Set when the service gave up a response on purpose (a client too slow to read it); uvicorn then closes the
connection and would log that at ERROR as if the app had failed."""

_ABANDONED = "ASGI callable returned without completing response."


class UvicornRequestLineFilter(logging.Filter):
    """Drop the lines of uvicorn's logger that copy requests: its access log, its WebSocket handshake lines, and
    the wire dumps the `websockets` library writes through it at DEBUG.

    They print the raw path with its query string (`"WebSocket /ws/chat?ticket=..." [accepted]`, also for a
    refused handshake), every request header (keys) and, at DEBUG, every frame (user text). The service's access
    log (`tts_service.access`) already records every request and handshake by route template and status.
    """

    _WIRE = ("< ", "> ")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access":
            return False
        message = record.msg if isinstance(record.msg, str) else ""
        if message == _ABANDONED and response_abandoned_var.get():
            return False  # the service ended it and logged why ("client too slow")
        return '"WebSocket %s"' not in message and not message.startswith(self._WIRE)


def _install_uvicorn_filter() -> None:
    """On the loggers themselves, so it holds however logging is configured (our JSON, uvicorn's, a test's)."""
    for name in ("uvicorn.error", "uvicorn.access"):
        lib_logger = logging.getLogger(name)
        if not any(isinstance(f, UvicornRequestLineFilter) for f in lib_logger.filters):
            lib_logger.addFilter(UvicornRequestLineFilter())


_install_uvicorn_filter()


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line; exceptions become their type name, never a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Send all loggers (ours, uvicorn's) through one JSON handler at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lib_logger = logging.getLogger(name)
        lib_logger.handlers[:] = []
        lib_logger.propagate = True
