"""The local shim: every router of the Lambdas in one uvicorn process, plus the streaming endpoints.

Run `make serve`, or `python local/serve.py`; settings come from the environment (PORT, default 8085).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from tts_service.api.console import console_router
from tts_service.app import create_app
from tts_service.chat import get_chat_service
from tts_service.chat.memory import purge_periodically
from tts_service.config import get_settings
from tts_service.engine import get_engine
from tts_service.engine.warm import warm
from tts_service.observability import tracing
from tts_service.observability.liveness import observe_failure
from tts_service.observability.logging import configure_logging
from tts_service.observability.samples import get_sample_store, run_purger
from tts_service.routes import routers

# Run as a script (`python local/serve.py`), the path holds local/ itself, not the folder above it: add that
# folder (last, shadowing nothing) so the shim's own modules import as `local.*`, as the tests import them.
sys.path.append(str(Path(__file__).resolve().parent.parent))
from local.graceful import GracefulServer, server_config

logger = logging.getLogger("tts_service.local")

# The web console's source folder; the shim image copies it beside local/ as well.
CONSOLE_DIR = Path(__file__).resolve().parent.parent / "frontend"


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    # Warm in the background: /health answers at once, /healthz turns ready when the voices have spoken.
    warm = asyncio.create_task(_warm())
    store = get_sample_store()
    purger = None
    if store is not None:
        logger.warning(
            "DEBUG_SAMPLES is on: request text and audio are kept on disk", extra={"folder": str(store.folder)}
        )
        purger = asyncio.create_task(run_purger(store, get_settings().debug_samples_purge_secs))
    # Expired turns are deleted on a timer, not only when a conversation happens to be written.
    every = get_settings().memory_purge_interval_secs
    purge = asyncio.create_task(purge_periodically(get_chat_service().memory, every))
    yield
    warm.cancel()
    purge.cancel()
    if purger is not None:
        purger.cancel()
    get_engine().pool.shutdown()
    tracing.shutdown()  # exports the spans still batched
    await get_chat_service().llm.aclose()
    get_chat_service().memory.close()  # releases the embedded store's lock for the next process


async def _warm() -> None:
    try:
        await warm(get_engine())
        logger.info("ready", extra={"default_voice": get_engine().registry.default_voice})
    except Exception as exc:
        logger.error("warm-up failed", extra={"error_type": type(exc).__name__})
        engine = get_engine()
        if not engine.ready():  # the default voice itself failed (not one of WARM_VOICES): liveness fails
            observe_failure(engine, engine.registry.default_voice, exc)


app = create_app(*routers(), title="tts-service (local)", lifespan=lifespan)
if get_settings().console_enabled:
    # After the API routers, and at `/` and `/assets/` only: no API route is shadowed, nor mounted under /api.
    app.include_router(console_router(get_settings().console_dir or CONSOLE_DIR))


def main() -> None:
    settings = get_settings()
    configure_logging(settings.effective_log_level)
    # The public URL names the deployment in log searches ("which host logged this?") as well as for clients.
    logger.info(
        "serving", extra={"host": settings.host, "port": settings.port, "public_base_url": settings.public_base_url}
    )
    # Our access log (request id, route template) replaces uvicorn's; SIGTERM drains (SHUTDOWN_GRACE_SECS).
    GracefulServer(server_config(app, settings), app.state.drain).run()


if __name__ == "__main__":
    main()
