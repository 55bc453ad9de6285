"""Chat: `POST /chat`, `POST /voice-chat`, `GET /llm/provider`, `GET|DELETE /conversations/{id}` (REST, also on
Lambda) and `WS /ws/chat` (the shim), where tokens and spoken sentences stream while the LLM writes.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, WebSocket
from fastapi.responses import JSONResponse

from tts_service.api.delivery import buffered_audio_budget, check_buffered_size, is_buffered
from tts_service.api.deps import ChargeDep, EngineDep, OwnerDep
from tts_service.api.sockets import frames
from tts_service.chat.answer import answer
from tts_service.chat.messages import ChatRequest, ChatResponse
from tts_service.chat.service import CONVERSATION_ID_PATTERN, ChatService, get_chat_service
from tts_service.chat.session import ChatSession
from tts_service.credentials import conversation_ref
from tts_service.engine import Engine
from tts_service.errors import ConversationNotFound, ProtocolError
from tts_service.middleware.drain import BUSY_STATE
from tts_service.urls import absolute

router = APIRouter(tags=["chat"])
ws_router = APIRouter(tags=["chat"])
logger = logging.getLogger(__name__)

ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
ConversationId = Annotated[str, Path(pattern=CONVERSATION_ID_PATTERN, max_length=128)]


async def _answer(
    body: ChatRequest, speak: bool, service: ChatService, engine: Engine, owner: str, request: Request
) -> JSONResponse:
    # A buffered answer (Lambda) carries whole sentences up to what fits; synthesis stops there.
    buffered = is_buffered(request)
    payload = await answer(
        service,
        engine,
        body,
        owner,
        speak=speak,
        conversation_url=lambda conversation_id: absolute(request, f"/conversations/{conversation_id}"),
        audio_budget=buffered_audio_budget if buffered else None,
        check=_check_buffered if buffered else None,
    )
    return _render(payload)


_TOO_LARGE_ADVICE = "ask for a shorter reply, or use WS /ws/chat (or the WebSocket API), which streams it"


def _check_buffered(payload: ChatResponse) -> None:
    check_buffered_size(len(_render(payload).body), binary=False, advice=_TOO_LARGE_ADVICE)


def _render(payload: ChatResponse) -> JSONResponse:
    headers = {"X-Conversation-Id": payload.conversation_id, "X-Memory": payload.memory}
    if payload.conversation_url:
        headers["Content-Location"] = payload.conversation_url
    return JSONResponse(payload.model_dump(exclude_none=True), headers=headers)


@router.post("/chat", response_model=ChatResponse, response_model_exclude_none=True)
async def chat(
    body: ChatRequest, request: Request, service: ChatServiceDep, engine: EngineDep, owner: OwnerDep
) -> JSONResponse:
    """Answer a message, remembering the conversation; with `speak: true` the reply comes as speech too."""
    return await _answer(body, body.speak, service, engine, owner, request)


@router.post("/voice-chat", response_model=ChatResponse, response_model_exclude_none=True)
async def voice_chat(
    body: ChatRequest, request: Request, service: ChatServiceDep, engine: EngineDep, owner: OwnerDep
) -> JSONResponse:
    """`POST /chat` with `speak: true` (the upstream route)."""
    return await _answer(body, True, service, engine, owner, request)


@router.get("/llm/provider")
async def llm_provider(service: ChatServiceDep) -> dict[str, Any]:
    """Provider, model, and whether it answers now (a cheap probe, a few seconds at most)."""
    llm = service.llm
    problem = await llm.probe()
    body: dict[str, Any] = {
        "provider": llm.provider,
        "model": llm.model,
        "embedding_model": llm.embedding_model,
        "configured": llm.configured,
        "available": problem is None,
        "memory": {"enabled": service.memory.enabled, **service.memory.describe()},
    }
    if problem is not None:
        body["error"] = problem
    return body


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


TITLE_CHARS = 80


@router.get("/conversations")
async def list_conversations(service: ChatServiceDep, owner: OwnerDep) -> dict[str, Any]:
    """The caller's conversations, the most recently active first: id, first message (cut), turns, last activity."""
    found = await service.memory.conversations(owner)
    return {
        "conversations": [
            {
                "conversation_id": c.conversation_id,
                "title": c.first_message[:TITLE_CHARS],
                "turns": c.turns,
                "updated": _iso(c.updated),
            }
            for c in found
        ]
    }


@router.get("/conversations/{conversation_id}")
async def get_conversation(conversation_id: ConversationId, service: ChatServiceDep, owner: OwnerDep) -> dict[str, Any]:
    """The caller's stored messages of a conversation, oldest first (404 when the caller has none there)."""
    messages = await service.memory.history(owner, conversation_id)
    if not messages:
        raise ConversationNotFound(f"no stored turns for conversation {conversation_id}")
    # Stored turns carry sortable keys (made without reading the store); clients see their order: 0, 1, ...
    order = {key: n for n, key in enumerate(sorted({m.turn for m in messages}))}
    return {
        "conversation_id": conversation_id,
        "turns": len(order),
        "messages": [
            {"role": m.role, "content": m.text, "turn": order[m.turn], "timestamp": _iso(m.timestamp)} for m in messages
        ],
    }


@router.delete("/conversations/{conversation_id}")
async def delete_conversation(
    conversation_id: ConversationId, service: ChatServiceDep, owner: OwnerDep
) -> dict[str, Any]:
    """Erase the caller's stored messages of a conversation (404 when the caller has none there)."""
    deleted = await service.memory.delete(owner, conversation_id)
    if not deleted:
        # The same answer whether the id is unused or another owner's: no way to learn which ids exist.
        raise ConversationNotFound(f"no stored turns for conversation {conversation_id}")
    logger.info("conversation deleted", extra={"conversation": conversation_ref(conversation_id), "messages": deleted})
    return {"conversation_id": conversation_id, "deleted": deleted}


# --- WebSocket (shim) ---


@ws_router.websocket("/ws/chat")
async def ws_chat(
    websocket: WebSocket, service: ChatServiceDep, engine: EngineDep, owner: OwnerDep, charge: ChargeDep
) -> None:
    """Send `{"type": "chat", "message"}`; receive start, token*, audio*, end, done.

    `{"type": "cancel"}` stops the turn in progress. Each chat message is charged to the client's rate budget.
    """
    await websocket.accept()
    session = ChatSession(service, engine, owner, websocket, charge)
    websocket.scope.setdefault("state", {})[BUSY_STATE] = session.busy  # a drain lets the turn finish
    if "message" in websocket.query_params:
        # Upstream's `?message=` put the user's text in the URL, where proxies and logs keep it; the message
        # travels in a frame now. The text is not used, and the connection stays open.
        await session.report(ProtocolError('the message belongs in a frame: send {"type": "chat", "message": ...}'))
    await session.run(frames(websocket))
