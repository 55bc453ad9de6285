"""DEBUG_SAMPLES: an opt-in ring of recent requests (text and audio) on local disk, for debugging a bad answer.

Off by default. When on, `POST /tts` keeps each successful synthesis as `<id>.json` (the text with PII redacted,
voice, options, sizes, request and trace ids) and `<id>.wav`, in DEBUG_SAMPLES_DIR (default
`<DATA_DIR>/debug-samples`, mode 0700, files 0600):

- PII is redacted before anything is written: e-mail addresses, card numbers, IBANs and phone numbers become
  `[email]`, `[card]`, `[iban]`, `[phone]`. The audio of a text that needed redaction is not kept at all (it
  speaks what the text no longer shows).
- At most DEBUG_SAMPLES_MAX samples (the oldest go first), each for DEBUG_SAMPLES_TTL_SECS; a purge runs every
  DEBUG_SAMPLES_PURGE_SECS and at start, and `DELETE /debug/samples[/{id}]` deletes at once.
- Samples belong to the caller's key (its owner) like conversations: nobody lists or reads another key's.

The log never carries the text; this store is the one place it lands, and only when the operator asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from tts_service.config import Settings, get_settings

logger = logging.getLogger(__name__)

_ID: Final = re.compile(r"^[0-9a-f]{32}$")

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
# 13 to 19 digits, in groups separated by single spaces or hyphens: every card number format.
_CARD = re.compile(r"(?<![\w])\d(?:[ -]?\d){12,18}(?![\w])")
# Digits with the separators phone numbers use; counted afterwards (7 to 15 digits, E.164's most).
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d ().-]{5,}\d(?![\w])")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$|^\d{1,2}[./-]\d{1,2}[./-]\d{2,4}$")


def redact(text: str) -> tuple[str, list[str]]:
    """`text` with e-mail addresses, IBANs, card and phone numbers replaced, and the kinds found."""
    found: list[str] = []

    def mark(kind: str) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            found.append(kind)
            return f"[{kind}]"

        return replace

    def phone(match: re.Match[str]) -> str:
        candidate = match.group(0).strip()
        digits = sum(c.isdigit() for c in candidate)
        if not 7 <= digits <= 15 or _DATE.match(candidate):
            return match.group(0)
        found.append("phone")
        return "[phone]"

    text = _EMAIL.sub(mark("email"), text)
    text = _IBAN.sub(mark("iban"), text)
    text = _CARD.sub(mark("card"), text)
    text = _PHONE.sub(phone, text)
    return text, sorted(set(found))


class SampleStore:
    """The ring of samples in one folder; every method is blocking (disk), call it off the event loop."""

    def __init__(self, folder: Path, ttl_secs: float, max_samples: int, clock: Callable[[], float] = time.time):
        self.folder = folder
        self.ttl_secs = ttl_secs
        self.max_samples = max_samples
        self.clock = clock
        self._lock = threading.Lock()
        self.purged = asyncio.Event()
        """Set after each scheduled purge pass (tests wait on it instead of sleeping)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> SampleStore:
        folder = settings.debug_samples_dir or settings.data_dir / "debug-samples"
        return cls(folder, settings.debug_samples_ttl_secs, settings.debug_samples_max)

    def _ensure_folder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)

    def record(
        self,
        owner: str,
        text: str,
        wav: bytes,
        details: dict[str, Any],
    ) -> str:
        """Keep one sample; returns its id. `details` (voice, options, ids) must hold no user text."""
        clean, kinds = redact(text)
        sample_id = uuid.uuid4().hex
        meta = {
            "id": sample_id,
            "owner": owner,
            "created": self.clock(),
            "text": clean,
            "redacted": kinds,
            "audio": not kinds,
            **details,
        }
        with self._lock:
            self._ensure_folder()
            if not kinds:
                _write(self.folder / f"{sample_id}.wav", wav)
            _write(self.folder / f"{sample_id}.json", json.dumps(meta).encode())
            self._purge_locked()
        logger.info("debug sample kept", extra={"sample_id": sample_id, "audio": not kinds, "redacted": kinds})
        return sample_id

    def entries(self, owner: str) -> list[dict[str, Any]]:
        """The owner's samples, newest first, without their text."""
        with self._lock:
            metas = [m for m in self._all() if m.get("owner") == owner]
        return [{k: v for k, v in m.items() if k not in ("owner", "text")} for m in metas]

    def get(self, owner: str, sample_id: str) -> dict[str, Any] | None:
        with self._lock:
            meta = self._meta(sample_id)
        if meta is None or meta.get("owner") != owner:
            return None
        return {k: v for k, v in meta.items() if k != "owner"}

    def audio(self, owner: str, sample_id: str) -> bytes | None:
        with self._lock:
            meta = self._meta(sample_id)
            if meta is None or meta.get("owner") != owner:
                return None
            path = self.folder / f"{sample_id}.wav"
            return path.read_bytes() if path.is_file() else None

    def delete(self, owner: str, sample_id: str) -> bool:
        with self._lock:
            meta = self._meta(sample_id)
            if meta is None or meta.get("owner") != owner:
                return False
            self._remove(sample_id)
            return True

    def delete_all(self, owner: str) -> int:
        with self._lock:
            mine = [m["id"] for m in self._all() if m.get("owner") == owner]
            for sample_id in mine:
                self._remove(sample_id)
            return len(mine)

    def purge(self) -> int:
        """Delete expired samples and those beyond the ring's size; returns how many went."""
        with self._lock:
            return self._purge_locked()

    # --- under the lock ---

    def _all(self) -> list[dict[str, Any]]:
        """Every sample's metadata, newest first; unreadable leftovers are removed."""
        if not self.folder.is_dir():
            return []
        metas: list[dict[str, Any]] = []
        for path in self.folder.glob("*.json"):
            meta = self._meta(path.stem)
            if meta is not None:
                metas.append(meta)
        return sorted(metas, key=lambda m: float(m.get("created", 0)), reverse=True)

    def _meta(self, sample_id: str) -> dict[str, Any] | None:
        if not _ID.match(sample_id):
            return None
        path = self.folder / f"{sample_id}.json"
        try:
            meta: dict[str, Any] = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self._remove(sample_id)  # a torn write: nothing to debug with
            return None
        return meta

    def _remove(self, sample_id: str) -> None:
        for suffix in (".wav", ".json"):
            with contextlib.suppress(FileNotFoundError):
                (self.folder / f"{sample_id}{suffix}").unlink()

    def _purge_locked(self) -> int:
        cutoff = self.clock() - self.ttl_secs
        gone = 0
        for index, meta in enumerate(self._all()):
            if index >= self.max_samples or float(meta.get("created", 0)) < cutoff:
                self._remove(meta["id"])
                gone += 1
        # Audio whose metadata is gone (a crash between the two writes) is removed too.
        if self.folder.is_dir():
            for path in self.folder.glob("*.wav"):
                if not path.with_suffix(".json").exists():
                    path.unlink(missing_ok=True)
        return gone


def _write(path: Path, data: bytes) -> None:
    """Write atomically, readable by this user only."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


async def run_purger(store: SampleStore, every_secs: float) -> None:
    """Purge now and then every `every_secs` until cancelled."""
    while True:
        try:
            gone = await asyncio.to_thread(store.purge)
        except OSError as exc:
            logger.warning("debug sample purge failed", extra={"error_type": type(exc).__name__})
        else:
            if gone:
                logger.info("debug samples purged", extra={"samples": gone})
        store.purged.set()
        await asyncio.sleep(every_secs)


@lru_cache
def get_sample_store() -> SampleStore | None:
    """The process's store, or None while DEBUG_SAMPLES is off."""
    settings = get_settings()
    return SampleStore.from_settings(settings) if settings.debug_samples else None
