"""Chat with an LLM (OpenAI or Ollama), conversation memory in Qdrant, and replies spoken as they are written."""

from tts_service.chat.memory import ConversationMemory, MemoryState
from tts_service.chat.providers import LlmClient, OllamaClient, OpenAIClient, make_llm
from tts_service.chat.service import ChatReply, ChatService, get_chat_service

__all__ = [
    "ChatReply",
    "ChatService",
    "ConversationMemory",
    "LlmClient",
    "MemoryState",
    "OllamaClient",
    "OpenAIClient",
    "get_chat_service",
    "make_llm",
]
