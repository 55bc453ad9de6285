"""Waiting in tests: on an observable condition with a bounded timeout, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(predicate: Callable[[], Any], attempts: int = 400) -> bool:
    """Poll a condition a bounded number of times (25 ms apart); whether it held."""
    for _ in range(attempts):
        if predicate():
            return True
        time.sleep(0.025)
    return bool(predicate())


def settle(check: Callable[[], bool], secs: float = 20.0) -> bool:
    """Poll a condition of a server (its gauges, its /proc entries) until it holds, for at most `secs`."""
    deadline = time.monotonic() + secs
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
