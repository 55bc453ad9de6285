"""Loading voices: load once under concurrency, LRU eviction, refusal of broken voices."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tts_service.engine.registry import VoiceRegistry
from tts_service.engine.voices import SessionSettings, VoiceCache
from tts_service.errors import VoiceUnavailable

REPO = Path(__file__).resolve().parents[2]


def registry_with_aliases(tmp_path: Path, *extra: str, bad_hash: bool = False) -> VoiceRegistry:
    """The repo map plus more ids pointing at the default voice's files (cheap distinct voices)."""
    raw: dict[str, Any] = json.loads((REPO / "models" / "map.json").read_text())
    joe = raw["voices"]["en_US-joe-medium"]
    for voice_id in extra:
        raw["voices"][voice_id] = dict(joe)
        if bad_hash:
            raw["voices"][voice_id] = {**joe, "model": {**joe["model"], "sha256": "f" * 64}}
    return VoiceRegistry.from_dict(raw, tmp_path)


def test_concurrent_first_requests_load_a_voice_once(tmp_path: Path) -> None:
    # GIVEN a cold cache
    registry = registry_with_aliases(tmp_path)
    cache = VoiceCache(2, SessionSettings(intra_op_threads=1))
    entry = registry.get("en_US-joe-medium")
    results: list[object] = []
    barrier = threading.Barrier(6)

    def first_request() -> None:
        barrier.wait()
        results.append(cache.get(entry))

    # WHEN six requests ask for it at the same moment
    threads = [threading.Thread(target=first_request) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # THEN it was loaded once and every request got the same voice
    assert cache.loads == 1
    assert len(results) == 6
    assert all(r is results[0] for r in results)


def test_lru_evicts_least_recently_used_but_never_the_pinned_voice(tmp_path: Path) -> None:
    registry = registry_with_aliases(tmp_path, "alias-a", "alias-b")
    cache = VoiceCache(2, SessionSettings(intra_op_threads=1), pinned=frozenset({"en_US-joe-medium"}))
    for voice_id in ("en_US-joe-medium", "alias-a", "alias-b"):
        cache.get(registry.get(voice_id))
    assert cache.loaded_ids() == ["en_US-joe-medium", "alias-b"]
    cache.get(registry.get("alias-a"))
    assert sorted(cache.loaded_ids()) == ["alias-a", "en_US-joe-medium"]
    assert cache.loads == 4


def test_hash_mismatch_is_refused_and_other_voices_keep_working(tmp_path: Path) -> None:
    registry = registry_with_aliases(tmp_path, "tampered", bad_hash=True)
    cache = VoiceCache(2, SessionSettings(intra_op_threads=1))
    with pytest.raises(VoiceUnavailable, match="sha256"):
        cache.get(registry.get("tampered"))
    assert cache.get(registry.get("en_US-joe-medium")) is not None
    # A failed load is not remembered as loaded.
    assert cache.loaded_ids() == ["en_US-joe-medium"]


def test_missing_model_file_is_refused(tmp_path: Path) -> None:
    raw: dict[str, Any] = json.loads((REPO / "models" / "map.json").read_text())
    raw["voices"]["gone"] = {**raw["voices"]["en_US-joe-medium"], "model": {"path": "gone.onnx", "sha256": "0" * 64}}
    registry = VoiceRegistry.from_dict(raw, tmp_path)
    cache = VoiceCache(2, SessionSettings(intra_op_threads=1))
    with pytest.raises(VoiceUnavailable, match="missing"):
        cache.get(registry.get("gone"))
