"""The local shim: every router of the Lambdas in one uvicorn process, plus the streaming endpoints.

Run `make serve`, or `python local/serve.py`; settings come from the environment (PORT, default 8085).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from tts_service.api import chat, health, metrics, openai_compat, tickets, tts, voices
from tts_service.api import stream as stream_api
from tts_service.app import create_app
from tts_service.chat import get_chat_service
from tts_service.chat.memory import purge_periodically
from tts_service.config import get_settings
from tts_service.engine import get_engine
from tts_service.engine.warm import warm
from tts_service.logging import configure_logging
from tts_service.middleware.graceful import GracefulServer, server_config

logger = logging.getLogger("tts_service.local")


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    # Warm in the background: /health answers at once, /healthz turns ready when the voices have spoken.
    warm = asyncio.create_task(_warm())
    # Expired turns are deleted on a timer, not only when a conversation happens to be written.
    every = get_settings().memory_purge_interval_secs
    purge = asyncio.create_task(purge_periodically(get_chat_service().memory, every))
    yield
    warm.cancel()
    purge.cancel()
    get_engine().pool.shutdown()
    await get_chat_service().llm.aclose()
    get_chat_service().memory.close()  # releases the embedded store's lock for the next process


async def _warm() -> None:
    try:
        await warm(get_engine())
        logger.info("ready", extra={"default_voice": get_engine().registry.default_voice})
    except Exception as exc:
        logger.error("warm-up failed", extra={"error_type": type(exc).__name__})


app = create_app(
    health.router,
    tts.router,
    voices.router,
    stream_api.router,
    openai_compat.router,
    chat.router,
    chat.ws_router,
    metrics.router,
    tickets.router,
    title="tts-service (local)",
    lifespan=lifespan,
)


def main() -> None:
    settings = get_settings()
    configure_logging(settings.effective_log_level)
    logger.info("serving", extra={"host": settings.host, "port": settings.port})
    # Our access log (request id, route template) replaces uvicorn's; SIGTERM drains (SHUTDOWN_GRACE_SECS).
    GracefulServer(server_config(app, settings), app.state.drain).run()


if __name__ == "__main__":
    main()
