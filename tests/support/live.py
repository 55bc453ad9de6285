"""An ASGI app on a real uvicorn server on 127.0.0.1 (a random port), in a thread of the test process."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from local.graceful import server_config
from tts_service.config import Settings, get_settings

T = TypeVar("T")


class _Server(uvicorn.Server):
    loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)


class LiveServer:
    """Start with `start()`, stop with `stop()`; `ws` and `http` are its base URLs."""

    def __init__(self, app: FastAPI, ws: str = "websockets-sansio", settings: Settings | None = None) -> None:
        # Configured as the shim is (no uvicorn log config or access log, its WebSocket message bound).
        self.config = server_config(app, settings or get_settings(), host="127.0.0.1", port=0, ws=ws)
        self.server = _Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        for _ in range(400):
            if self.server.started:
                break
            time.sleep(0.025)
        assert self.server.started, "uvicorn did not start"
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's event loop (to close what was opened there) and return its result."""
        assert self.server.loop is not None
        return asyncio.run_coroutine_threadsafe(work, self.server.loop).result(timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"
