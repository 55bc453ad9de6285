"""Graceful shutdown: in-flight HTTP finishes, a streaming WebSocket finishes its utterance, then 1001."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, Request, WebSocket
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from local.graceful import GracefulServer
from tts_service.api import health
from tts_service.app import create_app
from tts_service.config import Settings
from tts_service.observability import Metrics

router = APIRouter()


@router.get("/test/slow")
async def slow(request: Request) -> dict[str, str]:
    """In flight until the test releases it (`Running.release`)."""
    released = await asyncio.to_thread(request.app.state.release.wait, 10)
    return {"status": "finished" if released else "never released"}


@router.websocket("/test/ws")
async def talk(ws: WebSocket) -> None:
    await ws.accept()
    drain = ws.app.state.drain
    while True:
        count = int(await ws.receive_text())
        for i in range(count):  # an "utterance": a message every 0.2 s
            await ws.send_text(f"chunk {i}")
            if i == 0:
                # The rest of the utterance is still to come when shutdown starts: it goes on once draining has.
                for _ in range(1000):
                    if drain.draining:
                        break
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
        await ws.send_text("done")


class Running:
    def __init__(self, server: GracefulServer, port: int, thread: threading.Thread, release: threading.Event) -> None:
        self.server, self.port, self.thread = server, port, thread
        self.release = release
        """Set: the requests to /test/slow finish."""

    def wait_draining(self) -> None:
        deadline = time.monotonic() + 10
        while not self.server.drain.draining and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.drain.draining

    def wait_in_flight(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while self.server.drain.http_in_flight < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.drain.http_in_flight >= count

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/test/ws"


@pytest.fixture
def running() -> Iterator[Running]:
    settings = Settings(rate_limit_enabled=False, shutdown_grace_secs=6)
    app = create_app(health.router, router, settings=settings, metrics=Metrics(process=False))
    release = threading.Event()
    app.state.release = release
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=6)
    server = GracefulServer(config, app.state.drain)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield Running(server, port, thread, release)
    release.set()
    server.should_exit = True
    thread.join(10)
    sock.close()


def receive_until_closed(ws) -> tuple[list[str], int | None]:  # type: ignore[no-untyped-def]
    got: list[str] = []
    try:
        while True:
            got.append(str(ws.recv(timeout=10)))
    except ConnectionClosed as closed:
        return got, closed.rcvd.code if closed.rcvd else None


def test_shutdown_finishes_in_flight_work_then_closes_streams(running: Running) -> None:
    with ThreadPoolExecutor(4) as pool, connect(running.ws) as idle, connect(running.ws) as busy:
        slow_call = pool.submit(httpx.get, f"{running.http}/test/slow", timeout=10)
        busy.send("8")  # 8 chunks x 0.2 s: still talking when shutdown starts
        assert busy.recv(timeout=5) == "chunk 0"
        running.wait_in_flight(1)
        started = time.monotonic()
        running.server.should_exit = True  # what uvicorn's SIGTERM handler does
        running.wait_draining()
        running.release.set()  # the request in flight when shutdown started now finishes

        idle_result = pool.submit(receive_until_closed, idle)
        busy_result = pool.submit(receive_until_closed, busy)

        response = slow_call.result(timeout=10)
        assert response.status_code == 200
        assert response.json() == {"status": "finished"}

        _, idle_code = idle_result.result(timeout=10)
        assert idle_code == 1001, "a quiet stream is closed with 1001 going away"

        got, busy_code = busy_result.result(timeout=10)
        assert got[:7] == [f"chunk {i}" for i in range(1, 8)], "the utterance finished"
        assert got[-1] == "done", "the utterance finished"
        assert busy_code == 1001

        running.thread.join(10)
        assert not running.thread.is_alive()
        assert time.monotonic() - started < 6 + 2, "within the grace period"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{running.http}/health", timeout=2)


def test_new_requests_while_draining_get_503(running: Running) -> None:
    with ThreadPoolExecutor(2) as pool, httpx.Client(base_url=running.http, timeout=10) as client:
        assert client.get("/health").status_code == 200  # opens a keep-alive connection
        slow_call = pool.submit(httpx.get, f"{running.http}/test/slow", timeout=10)
        running.wait_in_flight(1)
        running.server.should_exit = True
        running.wait_draining()
        refused = client.get("/healthz")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "shutting_down"
        assert refused.headers["connection"] == "close"
        running.release.set()
        assert slow_call.result(timeout=10).status_code == 200
