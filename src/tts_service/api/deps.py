"""FastAPI dependencies as named types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from tts_service.engine import Engine, get_engine
from tts_service.errors import Unauthorized
from tts_service.middleware.auth import OWNER_STATE


def get_owner(connection: HTTPConnection) -> str:
    """The caller's owner, as the auth middleware found it (HTTP requests and WebSockets alike)."""
    owner = connection.scope.get("state", {}).get(OWNER_STATE)
    if not isinstance(owner, str):
        # Only an app built without the service's middleware gets here: refuse rather than guess an owner.
        raise Unauthorized("the caller could not be identified")
    return owner


Charge = Callable[[], Awaitable[None]]
"""Charge one message that starts work to the caller's budget (RateLimited when it is spent)."""


def get_charge(connection: HTTPConnection) -> Charge:
    """The caller's message budget (`tts_service.middleware.MessageBudget`); free in an app without one."""
    budget = getattr(connection.app.state, "message_budget", None)

    async def charge() -> None:
        if budget is not None:
            await budget.charge(connection.scope)

    return charge


EngineDep = Annotated[Engine, Depends(get_engine)]
ChargeDep = Annotated[Charge, Depends(get_charge)]
OwnerDep = Annotated[str, Depends(get_owner)]
