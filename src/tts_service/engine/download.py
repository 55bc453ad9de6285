"""Download Piper voices from the Piper voices repository's layout, verified, into `models/`.

The repository (rhasspy/piper-voices on Hugging Face; any mirror of its layout works) has a `voices.json` index at
its root: one entry per voice key (`en_US-lessac-medium`), with `language`, `quality`, `num_speakers`, `aliases`
and `files`, a map of repository paths (`en/en_US/lessac/medium/en_US-lessac-medium.onnx`, its `.onnx.json` and a
`MODEL_CARD`) to `{"size_bytes", "md5_digest"}`. A voice's files are fetched from `<base URL><path>`, checked
against that size and MD5 while they stream to a temporary file, and only then moved to `<models dir>/<path>`; the
voice is then registered in the map with the sha256 of each file, which is what the service verifies at load.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL: Final = "https://huggingface.co/rhasspy/piper-voices/resolve/main/"
INDEX_FILE: Final = "voices.json"
TIMEOUT = httpx.Timeout(30.0, read=120.0)


class DownloadError(Exception):
    """A voice cannot be fetched, or what was fetched is not what the index promises."""


@dataclass(frozen=True)
class RemoteFile:
    """A file of the voices repository, as its index describes it."""

    path: str
    size: int
    md5: str


@dataclass(frozen=True)
class VoiceFiles:
    key: str
    model: RemoteFile
    config: RemoteFile


def file_url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + "/" + quote(path)


def fetch_index(client: httpx.Client, base_url: str) -> dict[str, Any]:
    """The repository's `voices.json`."""
    url = file_url(base_url, INDEX_FILE)
    try:
        response = client.get(url)
        response.raise_for_status()
        index = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise DownloadError(f"cannot read the voice index {url}: {exc}") from None
    if not isinstance(index, dict):
        raise DownloadError(f"{url} is not a voice index (a JSON object of voices)")
    return index


def find_voice(index: dict[str, Any], voice_id: str) -> VoiceFiles:
    """The model and config of `voice_id` (a key of the index, or one of a voice's `aliases`)."""
    entry = index.get(voice_id)
    if entry is None:
        entry = next((e for e in index.values() if voice_id in (e.get("aliases") or [])), None)
    if not isinstance(entry, dict):
        close = difflib.get_close_matches(voice_id, list(index), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; the index has {len(index)} voices"
        raise DownloadError(f"no voice {voice_id!r} in the index{hint}")
    key = str(entry.get("key") or voice_id)
    files: dict[str, Any] = entry.get("files") or {}
    model = [p for p in files if p.endswith(".onnx")]
    config = [p for p in files if p.endswith(".onnx.json")]
    if len(model) != 1 or len(config) != 1:
        raise DownloadError(f"voice {key!r}: the index lists no single .onnx and .onnx.json pair")
    return VoiceFiles(key, _remote(model[0], files[model[0]]), _remote(config[0], files[config[0]]))


def _remote(path: str, spec: Any) -> RemoteFile:
    try:
        return RemoteFile(path=path, size=int(spec["size_bytes"]), md5=str(spec["md5_digest"]).lower())
    except (KeyError, TypeError, ValueError):
        raise DownloadError(f"{path}: the index gives no size_bytes and md5_digest") from None


def fetch_verified(client: httpx.Client, base_url: str, remote: RemoteFile, out_path: Path) -> None:
    """Fetch `remote` into `out_path`; DownloadError when its size or MD5 differs from what the index gives."""
    url = file_url(base_url, remote.path)
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with client.stream("GET", url) as response, out_path.open("wb") as out:
            response.raise_for_status()
            for block in response.iter_bytes(1 << 20):
                size += len(block)
                if size > remote.size:
                    raise DownloadError(f"{remote.path}: more than the {remote.size} bytes the index gives")
                md5.update(block)
                out.write(block)
    except httpx.HTTPError as exc:
        raise DownloadError(f"cannot download {url}: {exc}") from None
    if size != remote.size:
        raise DownloadError(f"{remote.path}: {size} bytes received, the index gives {remote.size}")
    if md5.hexdigest() != remote.md5:
        raise DownloadError(f"{remote.path}: MD5 {md5.hexdigest()} does not match the index's {remote.md5}")


def _in_place(remote: RemoteFile, dest: Path) -> bool:
    return dest.is_file() and dest.stat().st_size == remote.size and _md5(dest) == remote.md5


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_voice(
    client: httpx.Client, base_url: str, index: dict[str, Any], voice_id: str, models: Path
) -> VoiceFiles:
    """Download one voice's model and config under `models` (at the repository's paths), both verified.

    Both files are fetched to `.part` files first and moved into place only when both are right, so a failed
    download leaves nothing behind. Files already in place with the right size and MD5 are not fetched again.
    """
    voice = find_voice(index, voice_id)
    parts: list[tuple[Path, Path]] = []
    try:
        for remote in (voice.config, voice.model):
            dest = models / remote.path
            if _in_place(remote, dest):
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            partial = dest.with_name(dest.name + ".part")
            parts.append((partial, dest))
            fetch_verified(client, base_url, remote, partial)
        config_file = next((p for p, d in parts if d.name.endswith(".onnx.json")), models / voice.config.path)
        _check_config(config_file, voice.config.path)
        for partial, dest in parts:
            partial.replace(dest)
    finally:
        for partial, _ in parts:
            partial.unlink(missing_ok=True)
    return voice


def _check_config(path: Path, name: str) -> None:
    """A config that is not a Piper voice config would only fail at load: refuse it now."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DownloadError(f"{name} is not JSON") from None
    if not isinstance(config, dict) or "audio" not in config or "phoneme_id_map" not in config:
        raise DownloadError(f"{name} is not a Piper voice config")
