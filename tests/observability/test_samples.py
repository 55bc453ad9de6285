"""DEBUG_SAMPLES: off by default; on, a ring of PII-redacted samples per owner, purged on schedule and on DELETE."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support.audio import parse_wav
from tests.support.logs import LogCapture
from tts_service.api import samples, tts
from tts_service.app import create_app
from tts_service.config import Settings, get_settings
from tts_service.engine import Engine
from tts_service.observability.samples import SampleStore, get_sample_store, redact, run_purger

KEY_A, KEY_B = "key-a-0123456789", "key-b-0123456789"


@pytest.mark.parametrize(
    ("text", "expected", "kinds"),
    [
        ("Write to jane.doe+tts@mail.example.co.uk today.", "Write to [email] today.", ["email"]),
        ("Card 4111 1111 1111 1111 expires soon.", "Card [card] expires soon.", ["card"]),
        ("Card 4111-1111-1111-1111.", "Card [card].", ["card"]),
        ("Call +1 (415) 555-0100 now.", "Call [phone] now.", ["phone"]),
        ("Call 030 1234567 or 0151-23456789.", "Call [phone] or [phone].", ["phone"]),
        ("IBAN DE89 3704 0044 0532 0130 00 please.", "IBAN [iban] please.", ["iban"]),
        (
            "Meet on 2024-01-15 at 10:30, room 42, 3.5 dollars.",
            "Meet on 2024-01-15 at 10:30, room 42, 3.5 dollars.",
            [],
        ),
        ("Born 12/03/1990, order 123456.", "Born 12/03/1990, order 123456.", []),
    ],
)
def test_pii_is_redacted_and_ordinary_numbers_are_not(text: str, expected: str, kinds: list[str]) -> None:
    assert redact(text) == (expected, kinds)


@pytest.fixture
def samples_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "samples"
    monkeypatch.setenv("DEBUG_SAMPLES", "true")
    monkeypatch.setenv("DEBUG_SAMPLES_DIR", str(folder))
    monkeypatch.setenv("DEBUG_SAMPLES_MAX", "3")
    get_settings.cache_clear()
    get_sample_store.cache_clear()
    yield folder
    get_settings.cache_clear()
    get_sample_store.cache_clear()


def keyed_client() -> TestClient:
    settings = Settings(api_keys=f"{KEY_A},{KEY_B}", rate_limit_enabled=False)
    return TestClient(create_app(tts.router, samples.router, settings=settings))


def test_off_by_default_nothing_is_kept(engine: Engine, tmp_path: Path) -> None:
    assert Settings().debug_samples is False
    get_sample_store.cache_clear()
    assert get_sample_store() is None
    with TestClient(create_app(tts.router, samples.router)) as client:
        assert client.post("/tts", json={"text": "Not kept."}).status_code == 200
        refused = client.get("/debug/samples")
        assert refused.status_code == 404
        assert "DEBUG_SAMPLES" in refused.json()["error"]["message"]


def test_samples_are_kept_redacted_per_owner_and_deleted(engine: Engine, samples_on: Path, logs: LogCapture) -> None:
    a, b = {"X-API-Key": KEY_A}, {"X-API-Key": KEY_B}
    with keyed_client() as client:
        # WHEN key A has two requests answered, one of them naming an e-mail address and a phone number
        plain = client.post("/tts?format=wav", json={"text": "A plain sentence to keep."}, headers=a)
        assert plain.status_code == 200
        private = client.post("/tts", json={"text": "Mail me at a.b@example.com or call 0151 2345678."}, headers=a)
        assert private.status_code == 200

        # THEN A sees both, newest first, without text in the listing
        listed = client.get("/debug/samples", headers=a).json()["samples"]
        assert len(listed) == 2
        assert all("text" not in s for s in listed)
        newest, oldest = listed
        assert newest["redacted"] == ["email", "phone"]
        assert newest["audio"] is False
        assert oldest["redacted"] == []
        assert oldest["audio"] is True
        assert oldest["voice"] == "en_US-joe-medium"

        # AND the PII never reached the disk, nor the audio that would speak it
        kept = client.get(f"/debug/samples/{newest['id']}", headers=a).json()
        assert kept["text"] == "Mail me at [email] or call [phone]."
        on_disk = "".join(p.read_bytes().decode("latin-1") for p in samples_on.iterdir())
        assert "a.b@example.com" not in on_disk
        assert "2345678" not in on_disk
        assert client.get(f"/debug/samples/{newest['id']}/audio", headers=a).status_code == 404
        assert not (samples_on / f"{newest['id']}.wav").exists()

        # AND the plain sample's audio is the answer's speech, readable by its owner only
        audio = client.get(f"/debug/samples/{oldest['id']}/audio", headers=a)
        assert audio.status_code == 200
        assert abs(parse_wav(audio.content).seconds - parse_wav(plain.content).seconds) < 0.01
        assert stat.S_IMODE(samples_on.stat().st_mode) == 0o700
        assert {stat.S_IMODE(p.stat().st_mode) for p in samples_on.iterdir()} == {0o600}

        # AND key B sees none of them
        assert client.get("/debug/samples", headers=b).json()["samples"] == []
        assert client.get(f"/debug/samples/{oldest['id']}", headers=b).status_code == 404
        assert client.delete(f"/debug/samples/{oldest['id']}", headers=b).status_code == 404

        # WHEN A deletes one, then all
        assert client.delete(f"/debug/samples/{oldest['id']}", headers=a).json() == {"deleted": 1}
        assert not (samples_on / f"{oldest['id']}.wav").exists()
        assert client.delete("/debug/samples", headers=a).json() == {"deleted": 1}
        assert list(samples_on.iterdir()) == []
    # AND the logs never held the text
    assert "a.b@example.com" not in logs.text
    assert "plain sentence" not in logs.text


def test_the_ring_keeps_the_newest_samples(engine: Engine, samples_on: Path) -> None:
    a = {"X-API-Key": KEY_A}
    with keyed_client() as client:
        for n in range(5):
            assert client.post("/tts", json={"text": f"Sample number {n}."}, headers=a).is_success
        listed = client.get("/debug/samples", headers=a).json()["samples"]
        texts = [client.get(f"/debug/samples/{s['id']}", headers=a).json()["text"] for s in listed]
    assert texts == ["Sample number 4.", "Sample number 3.", "Sample number 2."]  # DEBUG_SAMPLES_MAX=3
    assert len(list(samples_on.glob("*.json"))) == len(list(samples_on.glob("*.wav"))) == 3


def test_expired_samples_are_purged_on_schedule(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = SampleStore(tmp_path / "s", ttl_secs=60, max_samples=10, clock=lambda: now[0])
    old = store.record("owner", "An old sample.", b"RIFF", {})
    now[0] += 30
    young = store.record("owner", "A young sample.", b"RIFF", {})
    now[0] += 45  # the first is 75 s old, past the TTL; the second 45 s

    async def one_pass() -> None:
        purger = asyncio.create_task(run_purger(store, every_secs=3600))
        await asyncio.wait_for(store.purged.wait(), 10)
        purger.cancel()

    asyncio.run(one_pass())
    assert [s["id"] for s in store.entries("owner")] == [young]
    assert store.get("owner", old) is None
    assert not (tmp_path / "s" / f"{old}.wav").exists()


def test_without_api_keys_samples_are_kept_but_not_served(engine: Engine, samples_on: Path) -> None:
    # Without keys every caller is the same owner: serving samples would show anyone everyone's requests.
    with TestClient(create_app(tts.router, samples.router, settings=Settings(rate_limit_enabled=False))) as client:
        assert client.post("/tts", json={"text": "Kept on disk only."}).status_code == 200
        refused = client.get("/debug/samples")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
        assert client.delete("/debug/samples").status_code == 403
    assert len(list(samples_on.glob("*.json"))) == 1
