"""The local shim as a real process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Shim:
    proc: subprocess.Popen[bytes]
    base: str
    """http://127.0.0.1:<port>"""


def shim_command() -> list[str]:
    """The shim's command line, with this interpreter (the project's virtualenv)."""
    return [sys.executable, str(REPO / "local" / "serve.py")]


def shim_env(port: int, env: dict[str, str] | None = None) -> dict[str, str]:
    """The shim's environment: this one, on 127.0.0.1:<port>, with the repository's voice map, plus `env`."""
    return {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "MODELS_DIR": str(REPO / "models"),
        **(env or {}),
    }


@contextmanager
def running_shim(
    env: dict[str, str] | None = None, log_path: Path | None = None, ready_secs: float = 60
) -> Iterator[Shim]:
    """Start `local/serve.py`, wait until /healthz is ready, and stop it afterwards (if the test has not)."""
    port = free_port()
    full_env = shim_env(port, env)
    log = log_path.open("wb") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(shim_command(), env=full_env, stdout=log, stderr=subprocess.STDOUT)
        shim = Shim(proc, f"http://127.0.0.1:{port}")
        try:
            deadline = time.monotonic() + ready_secs
            while True:
                try:
                    if httpx.get(f"{shim.base}/healthz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the shim did not become ready within {ready_secs:.0f} s")
                time.sleep(0.2)
            yield shim
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=30)
    finally:
        if log_path and not isinstance(log, int):
            log.close()
