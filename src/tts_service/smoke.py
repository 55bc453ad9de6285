"""Post-deploy smoke test: `tts-smoke URL` (`make smoke URL=...`) checks a running deployment end to end.

Checks, one line each (`PASS`, `FAIL` or `SKIP`, the check's name, and why), then a summary; the exit status is 1
when any check failed, 2 for a usage error:

- `health`: `GET /health` answers `{"status": "ok"}` (liveness);
- `healthz`: `GET /healthz` answers ready (the default voice loaded and spoke);
- `voices`: `GET /voices` lists at least one voice;
- `tts`: `POST /tts` answers a WAV that decodes, is not silence, and lasts as long as the text should;
- `chat`: when `GET /llm/provider` says an LLM is configured, `POST /chat` answers (and the conversation it made
  is deleted); skipped otherwise, failed with `--require-chat`;
- `ws`: the streaming protocol over WebSocket (`speak`, base64 audio events, `end`) makes audio that fits the text.

Works against the local shim, a Docker host or Kubernetes behind TLS (`https://...`, `--cacert` for a private CA),
and API Gateway (`URL` = the HttpApiUrl output, `--ws-url` = the WebSocketUrl output). With `--api-key` (or
TTS_API_KEY) every request carries `X-API-Key`; the WebSocket presents it as a header (`--ws-auth header`) or
trades it for a ticket from `POST /ws-ticket` first (`--ws-auth ticket`, what browsers must do).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import secrets
import ssl
import sys
import time
import uuid
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np

SMOKE_TEXT = "This is the post deploy smoke test. Speech comes out, and it fits the text."
# Spoken English runs at roughly 2 to 3.5 words a second; these bounds catch truncated audio and runaway output.
MIN_WORDS_PER_SEC = 0.8
MAX_WORDS_PER_SEC = 6.0
MIN_RMS = 200.0
"""16-bit RMS below which the audio is taken for silence."""

Outcome = Literal["PASS", "FAIL", "SKIP"]


class CheckFailed(Exception):
    """A check's one-line reason for failing."""


class Skipped(Exception):
    """A check that does not apply to this deployment, with the reason."""


@dataclass
class Result:
    name: str
    outcome: Outcome
    detail: str
    seconds: float

    def line(self) -> str:
        return f"{self.outcome} {self.name}: {self.detail} ({self.seconds * 1000:.0f} ms)"


@dataclass
class Options:
    url: str
    ws_url: str | None
    api_key: str | None
    ws_auth: Literal["header", "ticket"]
    timeout: float
    verify: ssl.SSLContext | bool
    require_chat: bool
    text: str


def fits_text(seconds: float, text: str) -> None:
    """Raise CheckFailed unless `seconds` of speech is a plausible reading of `text`."""
    words = len(text.split())
    low, high = words / MAX_WORDS_PER_SEC, words / MIN_WORDS_PER_SEC
    if not low <= seconds <= high:
        raise CheckFailed(f"{seconds:.2f} s of audio for {words} words (expected {low:.1f}-{high:.1f} s)")


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


def decode_wav(data: bytes) -> tuple[int, bytes]:
    """(sample rate, 16-bit mono PCM) of a WAV; CheckFailed when it is not one."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise CheckFailed(f"WAV is {wav.getnchannels()} channel(s) of {8 * wav.getsampwidth()} bits")
            return wav.getframerate(), wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise CheckFailed(f"the audio does not decode as WAV ({exc})") from None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise CheckFailed(f"HTTP {response.status_code}, not JSON: {response.text[:80]!r}") from None


def _expect(response: httpx.Response, status: int = 200) -> None:
    if response.status_code != status:
        code = ""
        try:
            error = response.json().get("error", {})
            code = f" {error.get('code')}: {error.get('message')}" if isinstance(error, dict) else ""
        except ValueError:
            code = f" {response.text[:80]!r}"
        raise CheckFailed(f"HTTP {response.status_code} (expected {status}){code}")


class Smoke:
    """The checks, against one deployment."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.base = options.url.rstrip("/")
        headers = {"User-Agent": "tts-smoke", "X-Request-ID": f"smoke-{uuid.uuid4().hex[:12]}"}
        if options.api_key:
            headers["X-API-Key"] = options.api_key
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=options.timeout, verify=options.verify)

    def close(self) -> None:
        self.http.close()

    def health(self) -> str:
        response = self.http.get("/health")
        _expect(response)
        if _json(response).get("status") != "ok":
            raise CheckFailed(f"unexpected body {response.text[:80]!r}")
        return "alive"

    def healthz(self) -> str:
        response = self.http.get("/healthz")
        _expect(response)
        body = _json(response)
        if body.get("status") != "ready":
            raise CheckFailed(f"unexpected body {response.text[:80]!r}")
        return f"ready, default voice {body.get('default_voice')}"

    def voices(self) -> str:
        response = self.http.get("/voices")
        _expect(response)
        body = _json(response)
        ids = [v for values in body.values() for v in values] if isinstance(body, dict) else []
        if not ids:
            raise CheckFailed("no voices listed")
        return f"{len(ids)} voice(s) in {len(body)} language(s)"

    def tts(self) -> str:
        text = self.options.text
        response = self.http.post("/tts", params={"format": "wav"}, json={"text": text})
        _expect(response)
        rate, pcm = decode_wav(response.content)
        seconds = len(pcm) / 2 / rate
        fits_text(seconds, text)
        loudness = rms(pcm)
        if loudness < MIN_RMS:
            raise CheckFailed(f"the audio is silence (RMS {loudness:.0f})")
        return f"{seconds:.2f} s of speech at {rate} Hz, voice {response.headers.get('x-voice')}"

    def chat(self) -> str:
        probe = self.http.get("/llm/provider")
        if probe.status_code == 404:
            raise Skipped("no chat routes on this deployment")
        _expect(probe)
        provider = _json(probe)
        if not provider.get("configured"):
            raise Skipped(f"LLM not configured ({provider.get('provider')})")
        conversation = f"smoke-{uuid.uuid4().hex[:16]}"
        body = {"message": "Say hello in one short sentence.", "conversation_id": conversation}
        response = self.http.post("/chat", json=body)
        try:
            _expect(response)
            reply = _json(response).get("reply")
            if not isinstance(reply, str) or not reply.strip():
                raise CheckFailed("empty reply")
            return f"{provider.get('provider')} {provider.get('model')} replied, memory {_json(response).get('memory')}"
        finally:
            # The smoke test leaves nothing behind; a store that is down is the chat check's news, not this one's.
            self.http.delete(f"/conversations/{conversation}")

    def websocket_url(self) -> str:
        if self.options.ws_url:
            return self.options.ws_url
        parts = urlsplit(self.base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws/tts", "", ""))

    def ws(self) -> str:
        return asyncio.run(self._ws())

    async def _ws(self) -> str:
        try:
            from websockets.asyncio.client import connect  # noqa: PLC0415 optional `smoke` extra
            from websockets.exceptions import InvalidStatus, WebSocketException  # noqa: PLC0415 optional `smoke` extra
        except ImportError:
            raise CheckFailed("the websockets package is missing (pip install 'tts-service[smoke]')") from None
        url = self.websocket_url()
        headers: dict[str, str] = {"User-Agent": "tts-smoke"}
        subprotocols: list[Any] | None = None
        if self.options.api_key and self.options.ws_auth == "header":
            headers["X-API-Key"] = self.options.api_key
        elif self.options.api_key:
            ticket = self.http.post("/ws-ticket")
            _expect(ticket)
            subprotocols = [_json(ticket)["subprotocol"]]
        ssl_context = self._ssl() if url.startswith("wss:") else None
        text = self.options.text
        try:
            async with asyncio.timeout(self.options.timeout):
                async with connect(
                    url,
                    additional_headers=headers,
                    subprotocols=subprotocols,
                    ssl=ssl_context,
                    open_timeout=self.options.timeout,
                    max_size=2**22,
                ) as socket:
                    await socket.send(json.dumps({"type": "speak", "text": text, "encoding": "base64"}))
                    return _check_events(await _collect(socket), text)
        except InvalidStatus as exc:
            raise CheckFailed(f"handshake refused with HTTP {exc.response.status_code}") from None
        except TimeoutError:
            raise CheckFailed(f"no end event within {self.options.timeout:g} s") from None
        except (OSError, WebSocketException) as exc:
            raise CheckFailed(f"{type(exc).__name__}: {exc}") from None

    def _ssl(self) -> ssl.SSLContext | bool:
        verify = self.options.verify
        if isinstance(verify, ssl.SSLContext):
            return verify
        if verify:
            return True
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context


async def _collect(socket: Any) -> list[dict[str, Any]]:
    events = []
    async for frame in socket:
        if isinstance(frame, bytes):
            events.append({"type": "audio", "pcm": frame})
            continue
        event = json.loads(frame)
        events.append(event)
        kind = event.get("type")
        if kind == "end" or (kind == "error" and event.get("ends_stream", True)):
            break
    return events


def _check_events(events: list[dict[str, Any]], text: str) -> str:
    kinds = [e.get("type") for e in events]
    error = next((e for e in events if e.get("type") == "error"), None)
    if error is not None:
        raise CheckFailed(f"error event {error.get('code')}: {error.get('message')}")
    if not kinds or kinds[0] != "start" or kinds[-1] != "end":
        raise CheckFailed(f"events {kinds[:3]}...{kinds[-2:]} (expected start ... end)")
    rate = int(events[0]["sample_rate"])
    pcm = b"".join(
        e["pcm"] if "pcm" in e else base64.b64decode(e.get("audio", "")) for e in events if e.get("type") == "audio"
    )
    seconds = len(pcm) / 2 / rate
    fits_text(seconds, text)
    declared = float(events[-1].get("duration_ms", 0)) / 1000
    if abs(declared - seconds) > 0.05:
        raise CheckFailed(f"end says {declared:.2f} s but {seconds:.2f} s of audio arrived")
    if rms(pcm) < MIN_RMS:
        raise CheckFailed("the streamed audio is silence")
    return f"{kinds.count('audio')} audio event(s), {seconds:.2f} s at {rate} Hz"


CHECKS: tuple[str, ...] = ("health", "healthz", "voices", "tts", "chat", "ws")


def run(options: Options, checks: Sequence[str] = CHECKS, out: Callable[[str], None] = print) -> list[Result]:
    """Run `checks` in order, printing one line each and a summary; returns the results."""
    smoke = Smoke(options)
    results = []
    try:
        for name in checks:
            started = time.perf_counter()
            try:
                detail = getattr(smoke, name)()
                outcome: Outcome = "PASS"
            except Skipped as exc:
                outcome, detail = ("FAIL" if name == "chat" and options.require_chat else "SKIP"), str(exc)
            except CheckFailed as exc:
                outcome, detail = "FAIL", str(exc)
            except httpx.HTTPError as exc:
                outcome, detail = "FAIL", f"{type(exc).__name__}: {exc or 'no answer'} ({options.url})"
            result = Result(name, outcome, detail, time.perf_counter() - started)
            results.append(result)
            out(result.line())
    finally:
        smoke.close()
    failed = sum(r.outcome == "FAIL" for r in results)
    skipped = sum(r.outcome == "SKIP" for r in results)
    verdict = "FAILED" if failed else "OK"
    passed = len(results) - failed - skipped
    out(f"smoke {verdict} against {options.url}: {passed} ok, {failed} failing, {skipped} skipped")
    return results


def parse(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="tts-smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the HTTP base URL (http://127.0.0.1:8085, https://tts.example.com, HttpApiUrl)")
    parser.add_argument("--ws-url", help="the WebSocket endpoint (default: URL as ws(s) + /ws/tts; AWS: WebSocketUrl)")
    parser.add_argument("--api-key", default=os.environ.get("TTS_API_KEY"), help="API key (default: $TTS_API_KEY)")
    parser.add_argument("--ws-auth", choices=("header", "ticket"), default="header", help="how the WebSocket shows it")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per check (default 60)")
    parser.add_argument("--cacert", help="CA bundle for a private CA (Caddy's internal one, a corporate CA)")
    parser.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    parser.add_argument("--require-chat", action="store_true", help="fail, rather than skip, without an LLM")
    parser.add_argument("--text", help="what to speak (default: a sentence with a random number, never cached)")
    args = parser.parse_args(argv)
    if urlsplit(args.url).scheme not in ("http", "https"):
        parser.error(f"URL must be http(s)://...: {args.url!r}")
    verify: ssl.SSLContext | bool = True
    if args.cacert:
        verify = ssl.create_default_context(cafile=args.cacert)
    elif args.insecure:
        verify = False
    return Options(
        url=args.url,
        ws_url=args.ws_url,
        api_key=args.api_key or None,
        ws_auth=args.ws_auth,
        timeout=args.timeout,
        verify=verify,
        require_chat=args.require_chat,
        # A fresh text each run: a cached answer from an earlier run would prove nothing about synthesis now.
        text=args.text or f"{SMOKE_TEXT} Run number {secrets.randbelow(900) + 100}.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    results = run(parse(argv), out=lambda line: print(line, flush=True))
    return 1 if any(r.outcome == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
