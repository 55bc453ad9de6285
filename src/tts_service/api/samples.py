"""`/debug/samples`: the caller's recent debug samples (DEBUG_SAMPLES, off by default): list, read, listen, delete.

Only the caller's own (the owner of its key) are visible, as with conversations; without API_KEYS every caller is
one owner, so the routes refuse (403) and the samples are read on the server's disk only. While DEBUG_SAMPLES is
off every route answers 404 and nothing is ever written.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Path, Request, Response

from tts_service.api.deps import OwnerDep
from tts_service.errors import Forbidden, NotFound
from tts_service.observability.samples import SampleStore, get_sample_store

router = APIRouter(prefix="/debug/samples", tags=["debug"])

SampleId = Path(pattern=r"^[0-9a-f]{32}$")


def _store(request: Request) -> SampleStore:
    store = get_sample_store()
    if store is None:
        raise NotFound("debug samples are off (DEBUG_SAMPLES=true keeps them)")
    if not request.app.state.credentials.required:
        raise Forbidden("debug samples are served only with API_KEYS set; read them in DEBUG_SAMPLES_DIR")
    return store


@router.get("")
async def list_samples(request: Request, owner: OwnerDep) -> dict[str, Any]:
    """The caller's samples, newest first, without their text."""
    store = _store(request)
    return {"samples": await asyncio.to_thread(store.entries, owner), "ttl_secs": store.ttl_secs}


@router.get("/{sample_id}")
async def get_sample(request: Request, owner: OwnerDep, sample_id: str = SampleId) -> dict[str, Any]:
    """One sample with its redacted text."""
    sample = await asyncio.to_thread(_store(request).get, owner, sample_id)
    if sample is None:
        raise NotFound("no such debug sample (expired, deleted, or not yours)")
    return sample


@router.get("/{sample_id}/audio", response_class=Response, responses={200: {"content": {"audio/wav": {}}}})
async def get_sample_audio(request: Request, owner: OwnerDep, sample_id: str = SampleId) -> Response:
    """The sample's audio as WAV (none is kept when its text needed redaction)."""
    audio = await asyncio.to_thread(_store(request).audio, owner, sample_id)
    if audio is None:
        raise NotFound("no audio for this debug sample (expired, deleted, redacted text, or not yours)")
    return Response(audio, media_type="audio/wav", headers={"Cache-Control": "no-store"})


@router.delete("/{sample_id}")
async def delete_sample(request: Request, owner: OwnerDep, sample_id: str = SampleId) -> dict[str, Any]:
    if not await asyncio.to_thread(_store(request).delete, owner, sample_id):
        raise NotFound("no such debug sample (expired, deleted, or not yours)")
    return {"deleted": 1}


@router.delete("")
async def delete_samples(request: Request, owner: OwnerDep) -> dict[str, Any]:
    """Every sample of the caller's, at once."""
    return {"deleted": await asyncio.to_thread(_store(request).delete_all, owner)}
