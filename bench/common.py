"""What the benches share: the shim's bench settings, its CPU and memory from /proc, streaming clients, WAV length."""

from __future__ import annotations

import io
import json
import os
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import httpx
import websockets

REPO = Path(__file__).resolve().parents[1]

# Measure synthesis, not the audio cache or the rate limiter.
SHIM_ENV = {"TTS_CACHE_MB": "0", "RATE_LIMIT_PER_MINUTE": "1000000", "LOG_LEVEL": "warning"}

WAV_HEADER_BYTES = 44
_TICK = os.sysconf("SC_CLK_TCK")


def server_cpu(pid: int) -> float:
    """CPU seconds (all threads, user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def proc_memory(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (resident high-water mark) of a process, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024  # kB
    return out


def wav_seconds(data: bytes) -> float:
    """Duration of a complete WAV file."""
    with wave.open(io.BytesIO(data)) as wav:
        return float(wav.getnframes() / wav.getframerate())


@dataclass
class Stream:
    """One streamed synthesis seen by the client: seconds to the first audio byte and to the end, the server's CPU
    seconds meanwhile, the seconds of audio received, and the longest silence a listener who starts playing at the
    first byte would hear before the audio ends (0 when every byte came before it was due)."""

    first: float
    total: float
    cpu: float
    audio_s: float
    stall: float = 0.0


class Playback:
    """When a listener who plays audio as it arrives, from the first byte on, runs out of it."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.first: float | None = None
        self.played = 0.0
        """Seconds of audio received so far."""
        self.stall = 0.0
        self._stalled = 0.0
        """Seconds of all stalls so far: playback resumes late after each."""

    def arrived(self, seconds: float) -> None:
        now = time.perf_counter() - self.t0
        if self.first is None:
            self.first = now
        else:
            # Due once everything before it has played, from the first byte on.
            late = now - (self.first + self.played + self._stalled)
            if late > 0:
                self._stalled += late
                self.stall = max(self.stall, late)
        self.played += seconds


async def ws_stream(url: str, text: str, pid: int, **options: object) -> Stream:
    """`WS /ws/tts`: one `speak` message; first binary frame, then `end`."""
    async with websockets.connect(url, max_size=None) as ws:
        t0, c0 = time.perf_counter(), server_cpu(pid)
        playback = Playback(t0)
        await ws.send(json.dumps({"type": "speak", "text": text, **options}))
        received = 0
        rate = 22050
        async for frame in ws:
            if isinstance(frame, bytes):
                playback.arrived(len(frame) / 2 / rate)
                received += len(frame)
                continue
            event = json.loads(frame)
            if event["type"] == "start":
                rate = int(event["sample_rate"])
            elif event["type"] == "error":
                raise RuntimeError(f"stream failed: {event}")
            elif event["type"] == "end":
                return Stream(
                    playback.first or 0.0,
                    time.perf_counter() - t0,
                    server_cpu(pid) - c0,
                    received / 2 / rate,
                    playback.stall,
                )
    raise RuntimeError("stream did not end")


def http_stream(client: httpx.Client, text: str, pid: int, **options: object) -> Stream:
    """`POST /tts/stream`: first PCM bytes after the WAV header, then the last byte."""
    t0, c0 = time.perf_counter(), server_cpu(pid)
    playback = Playback(t0)
    received = 0
    header = b""
    with client.stream("POST", "/tts/stream", json={"text": text, **options}) as response:
        response.raise_for_status()
        rate = 22050
        for data in response.iter_bytes():
            audio = data[max(0, WAV_HEADER_BYTES - len(header)) :]
            if len(header) < WAV_HEADER_BYTES:
                header += data[: WAV_HEADER_BYTES - len(header)]
                if len(header) == WAV_HEADER_BYTES:
                    rate = int.from_bytes(header[24:28], "little") or rate  # the WAV header's sample rate
            received += len(data)
            if audio:
                playback.arrived(len(audio) / 2 / rate)
    audio_s = max(0, received - WAV_HEADER_BYTES) / 2 / rate
    return Stream(playback.first or 0.0, time.perf_counter() - t0, server_cpu(pid) - c0, audio_s, playback.stall)


def machine_busy() -> float:
    """CPU seconds all cores of the machine have been busy since boot (/proc/stat, idle and iowait excluded)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICK


def tree_cpu(root: int) -> float:
    """CPU seconds used by a process and all its descendants: live ones, and reaped ones through their parents'
    children times (/proc/<pid>/stat utime, stime, cutime, cstime)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = sum(int(x) for x in fields[11:15]) / _TICK
    total = 0.0
    for pid, seconds in times.items():
        node = pid
        while node not in (0, 1, root):
            node = parents.get(node, 0)
        if node == root:
            total += seconds
    return total


@dataclass
class CpuShare:
    """Where the machine's CPU went between `start()` and `stop()`: share used by this process tree and by others."""

    wall_s: float = 0.0
    ours: float = 0.0
    others: float = 0.0

    def start(self) -> CpuShare:
        self._t0, self._busy0, self._ours0 = time.perf_counter(), machine_busy(), tree_cpu(os.getpid())
        return self

    def stop(self) -> CpuShare:
        self.wall_s = time.perf_counter() - self._t0
        capacity = self.wall_s * (os.cpu_count() or 1)
        ours = tree_cpu(os.getpid()) - self._ours0
        busy = machine_busy() - self._busy0
        self.ours = ours / capacity
        self.others = max(0.0, busy - ours) / capacity
        return self
