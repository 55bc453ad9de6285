"""The real shim process on SIGTERM: the request in flight completes, an open stream gets 1001, then it exits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LONG_TEXT = (
    "The server was asked to stop while this request was still being spoken. "
    "It has several sentences, and each of them takes a little while. "
    "A graceful server finishes the work it accepted before it goes away."
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_drains_the_shim(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "MODELS_DIR": str(REPO / "models"),
        "SHUTDOWN_GRACE_SECS": "15",
        "TTS_CACHE_MB": "0",
    }
    log_path = tmp_path / "shim.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, str(REPO / "local" / "serve.py")], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("shim did not become ready within 60 s")

        with ThreadPoolExecutor(2) as pool, connect(f"ws://127.0.0.1:{port}/ws/tts") as idle_stream:
            in_flight = pool.submit(httpx.post, f"{base}/tts?format=wav", json={"text": LONG_TEXT}, timeout=30)
            time.sleep(0.3)  # the synthesis has started
            proc.send_signal(signal.SIGTERM)
            response = in_flight.result(timeout=30)
            assert response.status_code == 200
            assert response.content[:4] == b"RIFF" and len(response.content) > 100_000
            with pytest.raises(ConnectionClosed) as closed:
                idle_stream.recv(timeout=20)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        # uvicorn re-raises the signal once it has shut down, so the parent sees "terminated by SIGTERM".
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    messages = [e["message"] for e in events]
    assert "draining" in messages and "drained" in messages
    assert messages.index("drained") > messages.index("draining")
