"""The local shim's uvicorn server, which drains before it stops (Lambda has no SIGTERM to handle)."""

from __future__ import annotations

import math
import socket
import time
from typing import Any

import uvicorn

from tts_service.config import Settings
from tts_service.middleware.drain import Drain


def server_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The local server's uvicorn settings: our JSON logs instead of uvicorn's access log, the drain's grace period,
    WebSocket messages bounded at WS_MAX_MESSAGE_BYTES (uvicorn's own default is 16 MiB, read into memory
    before any handler could refuse it), and no per-message deflate on WebSockets.

    Deflate is uvicorn's default, and every `websockets` or browser client asks for it. On our frames it is
    nearly all cost: PCM speech deflates to 0.86 of its size, while compressing it took the event loop 1.9 ms of
    CPU per second of audio against 0.5 ms without (the shim, 12-16 40-word streams, CPU per thread from /proc).
    With it, a 40-word sentence streamed over WS cost 1.08-1.09x the CPU of its whole synthesis, against
    1.06-1.07x over `POST /tts/stream` (20 paired rounds). Clients short of bandwidth ask for a codec instead
    (`format`: Opus at 32 kbit/s is a tenth of PCM's 353)."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_grace_secs),
        "ws_max_size": settings.ws_max_message_bytes,
        "ws_per_message_deflate": False,
    }
    return uvicorn.Config(app, **(options | overrides))


class GracefulServer(uvicorn.Server):
    """On SIGTERM/SIGINT: stop accepting, run `Drain.drain` within the grace period, then uvicorn's own shutdown.

    The grace period is `config.timeout_graceful_shutdown` (SHUTDOWN_GRACE_SECS) and covers both steps, so
    an orchestrator's kill timeout a few seconds longer is never hit.
    """

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        grace = float(self.config.timeout_graceful_shutdown or 0)
        started = time.monotonic()
        for server in self.servers:
            server.close()  # no new connections from here on
        await self.drain.drain(grace)
        self.config.timeout_graceful_shutdown = max(1, math.ceil(grace - (time.monotonic() - started)))
        await super().shutdown(sockets)
