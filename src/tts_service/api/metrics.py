"""`GET /metrics`: Prometheus text exposition of the app's metrics (the shim; Lambda scales out instead)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from tts_service.observability import CONTENT_TYPE, Metrics, get_metrics

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def metrics(request: Request) -> Response:
    """Every metric family in Prometheus text format; never touches the synthesis queue."""
    registry = getattr(request.app.state, "metrics", None)
    source = registry if isinstance(registry, Metrics) else get_metrics()
    return Response(source.exposition(), media_type=CONTENT_TYPE)
