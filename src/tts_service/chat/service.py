"""One chat turn: build the prompt (system prompt, recalled and recent turns, the message), ask the LLM, store
the whole turn. Memory is best effort: when it fails the reply goes on without it and says `memory:
"unavailable"`; LLM failures are the request's errors.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass, field
from functools import lru_cache

from tts_service.chat.memory import ConversationMemory, MemoryState, StoredMessage
from tts_service.chat.providers import LlmClient, Message, make_llm
from tts_service.config import Settings, get_settings
from tts_service.errors import MemoryUnavailable, ServiceError, ValidationFailed

logger = logging.getLogger(__name__)

CONVERSATION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
CONVERSATION_ID_PATTERN = CONVERSATION_ID_RE.pattern


@dataclass
class PreparedTurn:
    """Everything needed to ask the LLM for one reply, and to store the turn afterwards."""

    owner: str
    conversation_id: str
    message: str
    messages: list[Message]
    memory: MemoryState
    query_vector: list[float] | None = None
    stored: bool = field(default=False)


@dataclass(frozen=True)
class ChatReply:
    """The answer to one message."""

    reply: str
    conversation_id: str
    memory: MemoryState


def new_conversation_id() -> str:
    return str(uuid.uuid4())


class ChatService:
    """The LLM client and the conversation memory, combined into turns."""

    def __init__(self, settings: Settings, llm: LlmClient | None = None, memory: ConversationMemory | None = None):
        self.settings = settings
        self.llm = llm or make_llm(settings)
        self.memory = memory or ConversationMemory(settings)

    def check_message(self, message: str) -> str:
        """The trimmed message, or ValidationFailed when it is empty or too long."""
        clean = message.strip()
        if not clean:
            raise ValidationFailed("message is empty", fields=["message"])
        limit = self.settings.max_message_chars
        if len(clean) > limit:
            raise ValidationFailed(
                f"message is {len(clean)} characters; the limit is {limit}", fields=["message"], limit=limit
            )
        return clean

    async def prepare(self, message: str, conversation_id: str | None, owner: str) -> PreparedTurn:
        """Validate, check the provider is configured, and gather the owner's memory into the prompt.

        A conversation id is the owner's own: an id another owner uses starts (or continues) a conversation of
        this owner's, and never shows the other's turns.
        """
        clean = self.check_message(message)
        if conversation_id is not None and not CONVERSATION_ID_RE.match(conversation_id):
            raise ValidationFailed(
                "conversation_id must be 1-128 letters, digits or . _ : - (a UUID fits)", fields=["conversation_id"]
            )
        self.llm.require_configured()
        conv_id = conversation_id or new_conversation_id()
        system: list[Message] = [{"role": "system", "content": self.settings.system_prompt}]
        if not self.memory.enabled:
            return PreparedTurn(owner, conv_id, clean, [*system, {"role": "user", "content": clean}], "disabled")
        state: MemoryState = "ok"
        query_vector = await self._embed_one(clean) if conversation_id is not None else None
        history: list[StoredMessage] = []
        if conversation_id is not None:  # a new conversation has nothing to recall
            try:
                recall = await self.memory.recall(owner, conv_id, query_vector)
                history = [*recall.recalled, *recall.recent]
            except MemoryUnavailable:
                state = "unavailable"
        messages = [*system, *({"role": m.role, "content": m.text} for m in history)]
        messages.append({"role": "user", "content": clean})
        return PreparedTurn(owner, conv_id, clean, messages, state, query_vector)

    async def finish(self, turn: PreparedTurn, reply: str) -> MemoryState:
        """Store the whole turn once; the memory state to report."""
        if turn.memory == "disabled" or turn.stored:
            return turn.memory
        turn.stored = True
        vectors = None
        if self.memory.wants_vectors:
            user_vec = turn.query_vector or await self._embed_one(turn.message)
            reply_vec = await self._embed_one(reply)
            if user_vec is not None and reply_vec is not None:
                vectors = (user_vec, reply_vec)
        try:
            await self.memory.store(turn.owner, turn.conversation_id, turn.message, reply, vectors)
        except MemoryUnavailable:
            turn.memory = "unavailable"
        return turn.memory

    async def reply(self, message: str, conversation_id: str | None, owner: str) -> ChatReply:
        """Answer one message (whole reply, not streamed) and remember the turn in the owner's conversation."""
        turn = await self.prepare(message, conversation_id, owner)
        text = await self.llm.complete(turn.messages)
        memory = await self.finish(turn, text)
        return ChatReply(reply=text, conversation_id=turn.conversation_id, memory=memory)

    async def _embed_one(self, text: str) -> list[float] | None:
        """A vector for recall or storage, or None: embeddings are an optimisation, never a reason to fail."""
        if not self.memory.wants_vectors or not self.llm.configured:
            return None
        try:
            async with asyncio.timeout(self.settings.memory_timeout_secs):
                return (await self.llm.embed([text]))[0]
        except (ServiceError, TimeoutError) as exc:
            code = exc.code if isinstance(exc, ServiceError) else "timeout"
            logger.warning("embedding failed; turn handled without similarity recall", extra={"error_code": code})
            return None


@lru_cache
def get_chat_service() -> ChatService:
    """The process-wide chat service (LLM client and memory built from the settings)."""
    return ChatService(get_settings())
