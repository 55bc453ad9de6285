"""The real shim process on SIGTERM: the request in flight completes, an open stream gets 1001, then it exits."""

from __future__ import annotations

import json
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.process import gauges
from tests.support.shim import running_shim
from tests.support.wait import settle

pytestmark = pytest.mark.slow

LONG_TEXT = (
    "The server was asked to stop while this request was still being spoken. "
    "It has several sentences, and each of them takes a little while. "
    "A graceful server finishes the work it accepted before it goes away."
)


def test_sigterm_drains_the_shim(tmp_path: Path) -> None:
    log_path = tmp_path / "shim.log"
    with running_shim({"SHUTDOWN_GRACE_SECS": "15", "TTS_CACHE_MB": "0"}, log_path) as shim:
        proc, base = shim.proc, shim.base
        ws_base = base.replace("http://", "ws://")
        with ThreadPoolExecutor(2) as pool, connect(f"{ws_base}/ws/tts") as idle_stream:
            in_flight = pool.submit(httpx.post, f"{base}/tts?format=wav", json={"text": LONG_TEXT}, timeout=30)
            # The synthesis has started: the shim's own gauge says so.
            assert settle(lambda: gauges(base)["tts_synthesis_admitted"] >= 1, secs=20)
            proc.send_signal(signal.SIGTERM)
            response = in_flight.result(timeout=30)
            assert response.status_code == 200
            assert response.content[:4] == b"RIFF"
            assert len(response.content) > 100_000
            with pytest.raises(ConnectionClosed) as closed:
                idle_stream.recv(timeout=20)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
        # uvicorn re-raises the signal once it has shut down, so the parent sees "terminated by SIGTERM".
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    messages = [e["message"] for e in events]
    assert "draining" in messages
    assert "drained" in messages
    assert messages.index("drained") > messages.index("draining")
