"""Replicas share rate-limit counters through Redis: a real redis-server on a loopback port, started here."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.ops.conftest import AppFactory, LogCapture

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server (Debian's package; `.ci/run` installs it) on 127.0.0.1, no persistence."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: apt-get install redis-server (CI does this in .ci/run)"
    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                assert proc.poll() is None, "redis-server exited"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def test_two_replicas_share_one_budget(make_client: AppFactory, redis_url: str) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    settings = {"rate_limit_enabled": True, "rate_limit_per_minute": 3, "rate_limit_storage_uri": redis_url}
    replica_a, _ = make_client(**settings)
    replica_b, metrics_b = make_client(**settings)
    codes = [replica_a.get("/voices").status_code, replica_b.get("/voices").status_code]
    codes.append(replica_a.get("/voices").status_code)
    refused = replica_b.get("/voices")
    assert codes == [200, 200, 200]
    assert refused.status_code == 429, "the fourth request of the minute is refused, whichever replica gets it"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert metrics_b.value("http_requests_rejected_total", reason="rate_limited") == 1
    assert replica_a.get("/voices").status_code == 429
    # Counters really are in Redis, under the library's prefix.
    assert redis.Redis.from_url(redis_url).keys("LIMITS*")


def test_memory_storage_does_not_share(make_client: AppFactory) -> None:
    settings = {"rate_limit_enabled": True, "rate_limit_per_minute": 2}
    replica_a, _ = make_client(**settings)
    replica_b, _ = make_client(**settings)
    assert [replica_a.get("/voices").status_code for _ in range(3)] == [200, 200, 429]
    assert [replica_b.get("/voices").status_code for _ in range(2)] == [200, 200]


def test_redis_outage_fails_open(make_client: AppFactory, logs: LogCapture) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client, _ = make_client(rate_limit_enabled=True, rate_limit_per_minute=1, rate_limit_storage_uri=dead)
    assert [client.get("/voices").status_code for _ in range(3)] == [200, 200, 200]
    warnings = [r for r in logs.records if r["message"].startswith("rate limit storage failed")]
    assert len(warnings) == 1, "warned once, not once per request"
