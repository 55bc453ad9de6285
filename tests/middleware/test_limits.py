"""Body size (413 JSON, also for chunked bodies) and request timeout (504 JSON)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from tests.support.apps import AppFactory
from tts_service.engine import Engine

slow = APIRouter()


@slow.get("/test/slow")
async def slow_route() -> dict[str, str]:
    await asyncio.sleep(3)
    return {"status": "late"}


@slow.get("/test/streams")
async def streaming_route() -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for i in range(4):
            await asyncio.sleep(0.15)
            yield f"part {i}\n".encode()

    return StreamingResponse(body(), media_type="text/plain")


def chunks(total: int, size: int = 4096) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b" " * piece


def test_declared_oversize_body_is_413(make_client: AppFactory) -> None:
    client, metrics = make_client(max_body_bytes=2048)
    response = client.post("/tts", content=b'{"text": "' + b"a" * 4000 + b'"}')
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["limit"] == 2048
    assert metrics.value("http_requests_rejected_total", reason="payload_too_large") == 1


def test_chunked_oversize_body_is_413(make_client: AppFactory) -> None:
    client, _ = make_client(max_body_bytes=2048)
    # A generator body goes out with Transfer-Encoding: chunked and no Content-Length.
    response = client.post("/tts", content=chunks(10_000), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_chunked_body_under_the_limit_reaches_the_route(make_client: AppFactory) -> None:
    client, _ = make_client(max_body_bytes=2048)
    body = b'{"text": ""}'
    response = client.post("/tts", content=iter([body[:5], body[5:]]), headers={"Content-Type": "application/json"})
    assert response.status_code == 422  # the route read the replayed body and validated it
    assert response.json()["error"]["code"] == "validation_error"


def test_body_at_the_limit_is_accepted(make_client: AppFactory) -> None:
    client, _ = make_client(max_body_bytes=1024)
    body = b'{"text": ""' + b" " * (1024 - 12) + b"}"
    assert len(body) == 1024
    assert client.post("/tts", content=body).status_code == 422


def test_slow_response_is_504(make_client: AppFactory) -> None:
    client, metrics = make_client(request_timeout_secs=0.3, llm_timeout_secs=0.1, routers=(slow,))
    response = client.get("/test/slow")
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"
    assert metrics.value("http_requests_rejected_total", reason="timeout") == 1
    assert metrics.value("http_requests_total", route="/test/slow", method="GET", status="504") == 1


def test_started_stream_is_not_cut_by_the_timeout(make_client: AppFactory) -> None:
    client, _ = make_client(request_timeout_secs=0.3, llm_timeout_secs=0.1, routers=(slow,))
    response = client.get("/test/streams")  # 4 x 0.15 s: ends after the timeout, but started before it
    assert response.status_code == 200
    assert response.text.count("part") == 4


def test_timed_out_synthesis_keeps_its_place_until_its_worker_is_free(make_client: AppFactory, engine: Engine) -> None:
    client, _ = make_client(request_timeout_secs=0.05, llm_timeout_secs=0.01)
    before = engine.pool.admitted
    text = "This sentence takes longer than fifty milliseconds to synthesize, surely, on this machine. " * 3
    response = client.post("/tts", json={"text": text})
    assert response.status_code == 504
    # The abandoned synthesis still occupies a worker; its place is given back only when it returns.
    deadline = time.monotonic() + 60
    while engine.pool.admitted != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.pool.admitted == before
