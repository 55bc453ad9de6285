"""`POST /ws-ticket`: trade the API key (in a header) for a short-lived, single-use WebSocket ticket.

Browsers cannot put headers on a WebSocket handshake, and a key in the URL would end up in proxies, history
and logs. The ticket stands for the key's owner; the handshake presents it as the subprotocol
`ticket.<ticket>` (or `?ticket=<ticket>`) and spends it.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tts_service.api.deps import OwnerDep
from tts_service.credentials import TICKET_PROTOCOL_PREFIX, Credentials

router = APIRouter(tags=["auth"])


class TicketResponse(BaseModel):
    """A ticket for one WebSocket handshake."""

    ticket: str
    expires_in: int = Field(description="Seconds the ticket stays valid if unused.")
    subprotocol: str = Field(description="The `Sec-WebSocket-Protocol` value that presents the ticket.")


@router.post("/ws-ticket", response_model=TicketResponse)
async def ws_ticket(request: Request, owner: OwnerDep) -> JSONResponse:
    """A single-use ticket standing for the caller's key, for a browser's WebSocket handshake."""
    credentials: Credentials = request.app.state.credentials
    # The DynamoDB store is a blocking network call; keep it off the event loop.
    ticket = await asyncio.to_thread(credentials.tickets.issue, owner)
    body = TicketResponse(
        ticket=ticket, expires_in=credentials.tickets.ttl_secs, subprotocol=TICKET_PROTOCOL_PREFIX + ticket
    )
    return JSONResponse(body.model_dump(), headers={"Cache-Control": "no-store"})
