"""Replicas share rate-limit counters through Redis: a real redis-server on a loopback port, started here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support.apps import AppFactory
from tests.support.logs import LogCapture
from tests.support.redis import redis_server
from tests.support.shim import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as (host, port):
        yield f"redis://{host}:{port}/0"


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
