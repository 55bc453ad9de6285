"""The one asyncio event loop of a Lambda process, shared by every handler that runs async code.

Clients made on a loop stay bound to it: the chat service's pooled LLM connections, kept alive between
invocations as a warm instance should, work only if every invocation runs on the loop that opened them. Mangum
runs the app on the current loop, so this loop is made current before each use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_LOOP: asyncio.AbstractEventLoop | None = None


def process_loop() -> asyncio.AbstractEventLoop:
    """This process's loop, made the current one (created on first use, kept for the life of the process).

    Held here rather than only as the current loop: an `asyncio.run` elsewhere in the process unsets the current
    loop, and a loop nothing refers to would be collected unclosed, its clients with it.
    """
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    asyncio.set_event_loop(_LOOP)
    return _LOOP


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end on the process's loop."""
    return process_loop().run_until_complete(work)
