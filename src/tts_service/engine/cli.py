"""`tts-voices`: verify the voice map, register a voice dropped into `models/`, or download voices into it.

`tts-voices download en_US-lessac-medium ...` fetches voices from the Piper voices repository (or a mirror of its
layout, `--base-url`), verifies each file's size and MD5 against its `voices.json`, and registers them with their
sha256 (see `tts_service.engine.download`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from tts_service.config import get_settings
from tts_service.engine.download import DEFAULT_BASE_URL, TIMEOUT, DownloadError, download_voice, fetch_index
from tts_service.engine.registry import VoiceRegistry, normalize_language, resolve_ref, sha256_file


def verify(map_path: Path) -> int:
    """Check every voice's files, hashes and config; print one line per voice; 1 if any is broken."""
    registry = VoiceRegistry.from_file(map_path)
    failures = 0
    for entry in registry.voices.values():
        problems = entry.check_files()
        if problems:
            failures += 1
            print(f"FAIL {entry.id}: " + "; ".join(problems))
        else:
            print(f"ok   {entry.id} ({entry.language}, {entry.sample_rate} Hz, {entry.num_speakers} speaker(s))")
    print(f"{len(registry.voices) - failures} of {len(registry.voices)} voices ok")
    return 1 if failures else 0


def add(
    map_path: Path, model: str, voice_id: str | None, config: str | None, display_name: str | None, make_default: bool
) -> int:
    """Register a model (path relative to the map, absolute, or `pkg:`) with hashes read from its files."""
    base = map_path.parent
    raw: dict[str, Any] = json.loads(map_path.read_text(encoding="utf-8")) if map_path.exists() else {"voices": {}}
    config_ref = config or f"{model}.json"
    model_path, config_path = resolve_ref(model, base), resolve_ref(config_ref, base)
    for path in (model_path, config_path):
        if not path.is_file():
            print(f"no such file: {path}", file=sys.stderr)
            return 2
    voice_config = json.loads(config_path.read_text(encoding="utf-8"))
    language = normalize_language(voice_config.get("language", {}).get("code") or voice_config["espeak"]["voice"])
    vid = voice_id or Path(model).name.removesuffix(".onnx")
    raw.setdefault("voices", {})[vid] = {
        "language": language,
        "quality": voice_config.get("audio", {}).get("quality"),
        "display_name": display_name or str(voice_config.get("dataset", vid)).replace("_", " ").title(),
        "speakers": voice_config.get("speaker_id_map") or {},
        "model": {"path": model, "sha256": sha256_file(model_path)},
        "config": {"path": config_ref, "sha256": sha256_file(config_path)},
    }
    languages = raw.setdefault("languages", {})
    if make_default or language not in languages:
        languages[language] = vid
    raw.setdefault("default_voice", vid)
    VoiceRegistry.from_dict(raw, base)  # refuse to write a map that would not load
    map_path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    print(f"registered {vid} ({language}) in {map_path}")
    return 0


def download(map_path: Path, voice_ids: list[str], base_url: str, make_default: bool) -> int:
    """Download, verify and register each voice; stop at the first failure (1), leaving the map as it was for it."""
    models = map_path.parent
    with httpx.Client(follow_redirects=True, timeout=TIMEOUT) as client:
        try:
            index = fetch_index(client, base_url)
            for voice_id in voice_ids:
                voice = download_voice(client, base_url, index, voice_id, models)
                print(f"downloaded {voice.key}: {voice.model.path} ({voice.model.size / 2**20:.1f} MiB, MD5 ok)")
                status = add(map_path, voice.model.path, voice.key, voice.config.path, None, make_default)
                if status:
                    return status
        except DownloadError as exc:
            print(f"download failed: {exc}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tts-voices", description=__doc__)
    parser.add_argument("--map", type=Path, default=None, help="voice map (default: $MODELS_DIR/map.json)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("verify", help="check every voice: files exist, hashes match, config parses")
    add_p = sub.add_parser("add", help="register a voice file with its sha256 hashes")
    add_p.add_argument("model", help="model path relative to the map's folder, absolute, or pkg:<module>/<path>")
    add_p.add_argument("--id", dest="voice_id", help="voice id (default: the model file name without .onnx)")
    add_p.add_argument("--config", help="config path (default: <model>.json)")
    add_p.add_argument("--display-name")
    add_p.add_argument("--default", action="store_true", help="make it its language's default voice")
    dl_p = sub.add_parser("download", help="fetch Piper voices (size and MD5 checked) into the map's folder")
    dl_p.add_argument(
        "voices", nargs="+", metavar="voice-id", help="voice keys of voices.json, e.g. en_US-lessac-medium"
    )
    dl_p.add_argument(
        "--base-url", default=DEFAULT_BASE_URL, help=f"the repository or a mirror (default {DEFAULT_BASE_URL})"
    )
    dl_p.add_argument("--default", action="store_true", help="make each its language's default voice")
    args = parser.parse_args(argv)
    map_path = args.map or get_settings().voice_map_path
    if args.command == "verify":
        return verify(map_path)
    if args.command == "download":
        return download(map_path, args.voices, args.base_url, args.default)
    return add(map_path, args.model, args.voice_id, args.config, args.display_name, args.default)


if __name__ == "__main__":
    sys.exit(main())
