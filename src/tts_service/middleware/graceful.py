"""A uvicorn server that drains before it stops (the local shim; Lambda has no SIGTERM to handle)."""

from __future__ import annotations

import math
import socket
import time

import uvicorn

from tts_service.middleware.drain import Drain


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
