"""Lambda entry for the chat REST endpoints (`/chat`, `/voice-chat`, `/llm/provider`, `/conversations/{id}`).

Memory needs QDRANT_URL here: without it chat answers with `memory: "unavailable"` (no per-instance store).
"""

from mangum import Mangum

from tts_service.api import chat
from tts_service.app import create_app
from tts_service.chat import get_chat_service
from tts_service.engine import get_engine

app = create_app(chat.router)
get_engine().warm_blocking()
get_chat_service()
handler = Mangum(app, lifespan="off")
