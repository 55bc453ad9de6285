"""A loopback HTTP server that speaks the OpenAI and Ollama chat + embeddings APIs, with scripted faults.

The production clients (the `openai` SDK, httpx for Ollama) talk to it over real sockets, so the tests
exercise the same wire formats as a real provider: OpenAI `/v1/chat/completions` (JSON or SSE with
`data: [DONE]`), `/v1/embeddings` (float or base64), `/v1/models`; Ollama `/api/chat` (JSON or NDJSON,
streaming by default as Ollama does), `/api/embed`, `/api/tags`.

Faults (`server.fault = ...`), applied to chat calls (`fault_chat`, default on) and embedding calls
(`fault_embeddings`, default off):
- `"http_500"`: an error body with status 500;
- `"hang"`: read the request and answer nothing until `hang_secs` pass or the server stops;
- `"malformed"`: status 200 with a body (or stream lines) that is not valid JSON;
- `"drop"`: close the connection mid-reply (after `drop_after_tokens` tokens when streaming).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

DEFAULT_REPLY = "Hello there. How can I help you today?"
FAULTS = ("http_500", "hang", "malformed", "drop")


@dataclass
class Received:
    """One request as the fake saw it."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-case names."""
    body: Any


@dataclass
class FakeLlmServer:
    """Scripted OpenAI + Ollama server on 127.0.0.1; use as a context manager or call start()/stop()."""

    replies: deque[str] = field(default_factory=deque)
    """Replies handed out in order; when empty, `default_reply`."""
    default_reply: str = DEFAULT_REPLY
    token_delay: float = 0.0
    """Seconds between streamed tokens (1/30 for ~30 tokens per second)."""
    first_token_delay: float = 0.0
    fault: str | None = None
    fault_embeddings: bool = False
    fault_chat: bool = True
    hang_secs: float = 30.0
    drop_after_tokens: int = 2
    embed_dim: int = 64
    model_name: str = "fake-model"
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> FakeLlmServer:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeLlmServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for Ollama (`OLLAMA_BASE_URL`)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """Base URL for the OpenAI SDK (`OPENAI_BASE_URL`)."""
        return f"{self.url}/v1"

    # --- script and inspection ---

    def script(self, *replies: str) -> None:
        """Queue replies for the next chat calls."""
        with self._lock:
            self.replies.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self.replies.clear()
            self.requests.clear()
        self.fault = None
        self.fault_embeddings = False
        self.fault_chat = True
        self.token_delay = 0.0
        self.first_token_delay = 0.0

    def chat_requests(self) -> list[dict[str, Any]]:
        """Bodies of every chat call received, OpenAI or Ollama, in order."""
        with self._lock:
            return [
                r.body for r in self.requests if r.path in ("/v1/chat/completions", "/api/chat") and r.method == "POST"
            ]

    def embed_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for r in self.requests if r.path in ("/v1/embeddings", "/api/embed")]

    def _record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)

    def _next_reply(self) -> str:
        with self._lock:
            return self.replies.popleft() if self.replies else self.default_reply

    def embed(self, text: str) -> list[float]:
        """A deterministic bag-of-words vector: texts sharing words are similar, as with a real embedder."""
        vec = np.zeros(self.embed_dim, dtype=np.float64)
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            digest = hashlib.sha256(word.encode()).digest()
            vec[int.from_bytes(digest[:4], "little") % self.embed_dim] += 1.0
        norm = float(np.linalg.norm(vec))
        if norm == 0.0:
            vec[0] = 1.0
            norm = 1.0
        return [float(x) for x in vec / norm]


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-reply (a cancelled stream, a timeout) is part of the tests, not a failure.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def tokens(reply: str) -> list[str]:
    """Cut a reply into token-like pieces (a word with its leading space), as providers stream them."""
    return re.findall(r"\s*\S+", reply) or [reply]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeLlmServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    # --- plumbing ---

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _send_json(self, status: int, payload: Any, *, raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_whole(self, payload: Any, fault: str | None, malformed: bytes) -> None:
        """A non-streamed answer: `payload`, or (by fault) `malformed` JSON, or half of it and a dropped socket."""
        raw = json.dumps(payload).encode()
        if fault == "malformed":
            self._send_json(200, None, raw=malformed)
        elif fault == "drop":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw[: len(raw) // 2])
            self._drop()
        else:
            self._send_json(200, payload, raw=raw)

    def _start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        """Cut the connection without finishing the response (RST, not a clean close)."""
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _hang(self) -> None:
        self.server_fake._stopping.wait(self.server_fake.hang_secs)
        self.close_connection = True

    def _pace(self, index: int) -> None:
        fake = self.server_fake
        delay = fake.first_token_delay if index == 0 else fake.token_delay
        if delay > 0:
            time.sleep(delay)

    # --- routes ---

    def do_GET(self) -> None:
        fake = self.server_fake
        fake._record(Received("GET", self.path, {k.lower(): v for k, v in self.headers.items()}, None))
        if self.path == "/v1/models":
            model = {"id": fake.model_name, "object": "model", "created": 1700000000, "owned_by": "fake"}
            self._send_json(200, {"object": "list", "data": [model]})
        elif self.path == "/api/tags":
            self._send_json(200, {"models": [{"name": fake.model_name, "model": fake.model_name, "size": 1}]})
        elif self.path in ("/", "/api/version"):
            self._send_json(200, {"version": "0.0.0-fake"})
        else:
            self._send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        fake = self.server_fake
        body = self._read_body()
        fake._record(Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if not isinstance(body, dict):
            self._send_json(400, {"error": {"message": "body must be a JSON object", "type": "invalid_request_error"}})
            return
        routes = {
            "/v1/chat/completions": self._openai_chat,
            "/v1/embeddings": self._openai_embeddings,
            "/api/chat": self._ollama_chat,
            "/api/embed": self._ollama_embed,
        }
        route = routes.get(self.path)
        if route is None:
            self._send_json(404, {"error": "not found"})
            return
        is_embed = self.path in ("/v1/embeddings", "/api/embed")
        fault = fake.fault if (fake.fault_embeddings if is_embed else fake.fault_chat) else None
        route(body, fault)

    def _error_500(self, ollama: bool) -> None:
        if ollama:
            self._send_json(500, {"error": "model runner has unexpectedly stopped"})
        else:
            self._send_json(
                500, {"error": {"message": "The server had an error", "type": "server_error", "code": None}}
            )

    def _common_fault(self, fault: str | None, ollama: bool) -> bool:
        """Handle the faults that look the same for every route; True when the request is answered."""
        if fault == "http_500":
            self._error_500(ollama)
            return True
        if fault == "hang":
            self._hang()
            return True
        return False

    # --- OpenAI ---

    def _openai_chat(self, body: dict[str, Any], fault: str | None) -> None:
        fake = self.server_fake
        if self._common_fault(fault, ollama=False):
            return
        reply = fake._next_reply()
        model = body.get("model", fake.model_name)
        created = int(time.time())
        cid = "chatcmpl-fake"
        if not body.get("stream"):
            payload = {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": len(tokens(reply)), "total_tokens": 10},
            }
            self._send_whole(payload, fault, b'{"id": "chatcmpl-fake", "choices": [{"message": {"content": "Hel')
            return

        def event(delta: dict[str, Any], finish: str | None) -> bytes:
            chunk = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        self._start_chunked("text/event-stream; charset=utf-8")
        self._chunk(event({"role": "assistant", "content": ""}, None))
        for i, token in enumerate(tokens(reply)):
            if fault == "drop" and i >= fake.drop_after_tokens:
                self._drop()
                return
            if fault == "malformed" and i >= 1:
                self._chunk(b'data: {"choices": [{"delta": {"content": "oops\n\n')
                self._end_chunked()
                return
            self._pace(i)
            self._chunk(event({"content": token}, None))
        self._chunk(event({}, "stop"))
        self._chunk(b"data: [DONE]\n\n")
        self._end_chunked()

    def _openai_embeddings(self, body: dict[str, Any], fault: str | None) -> None:
        fake = self.server_fake
        if self._common_fault(fault, ollama=False):
            return
        if fault in ("malformed", "drop"):
            self._send_json(200, None, raw=b'{"data": [{"embedding": [0.1, ')
            return
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec = fake.embed(str(text))
            emb: Any = base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode() if as_base64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
        self._send_json(200, {"object": "list", "data": data, "model": body.get("model"), "usage": usage})

    # --- Ollama ---

    def _ollama_chat(self, body: dict[str, Any], fault: str | None) -> None:
        fake = self.server_fake
        if self._common_fault(fault, ollama=True):
            return
        reply = fake._next_reply()
        model = body.get("model", fake.model_name)
        stamp = "2026-01-01T00:00:00.000000Z"
        final = {
            "model": model,
            "created_at": stamp,
            "done": True,
            "done_reason": "stop",
            "total_duration": 1000,
            "load_duration": 10,
            "prompt_eval_count": 10,
            "eval_count": len(tokens(reply)),
        }
        if body.get("stream", True) is False:
            payload = {**final, "message": {"role": "assistant", "content": reply}}
            self._send_whole(payload, fault, b'{"model": "x", "message": {"content": "Hel')
            return

        def line(obj: dict[str, Any]) -> bytes:
            return json.dumps(obj).encode() + b"\n"

        self._start_chunked("application/x-ndjson")
        for i, token in enumerate(tokens(reply)):
            if fault == "drop" and i >= fake.drop_after_tokens:
                self._drop()
                return
            if fault == "malformed" and i >= 1:
                self._chunk(b'{"message": {"content": "oops\n')
                self._end_chunked()
                return
            self._pace(i)
            msg = {"model": model, "created_at": stamp, "message": {"role": "assistant", "content": token}}
            self._chunk(line({**msg, "done": False}))
        self._chunk(line({**final, "message": {"role": "assistant", "content": ""}}))
        self._end_chunked()

    def _ollama_embed(self, body: dict[str, Any], fault: str | None) -> None:
        fake = self.server_fake
        if self._common_fault(fault, ollama=True):
            return
        if fault in ("malformed", "drop"):
            self._send_json(200, None, raw=b'{"embeddings": [[0.1, ')
            return
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        payload = {
            "model": body.get("model"),
            "embeddings": [fake.embed(str(t)) for t in texts],
            "total_duration": 1000,
            "load_duration": 10,
            "prompt_eval_count": len(texts),
        }
        self._send_json(200, payload)


def iter_faults() -> Iterator[str]:
    """Every fault mode, for parametrized tests."""
    yield from FAULTS
