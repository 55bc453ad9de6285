"""A throwaway redis-server (Debian's package; `.ci/run` installs it) on a free loopback port, no persistence."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.support.shim import free_port


@contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[str, int]]:
    """Start redis-server on 127.0.0.1 and yield (host, port) once it answers; stop it afterwards."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: apt-get install redis-server (CI does this in .ci/run)"
    port = free_port()
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
        yield "127.0.0.1", port
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
