"""Lambda entry for the chat REST endpoints (`/chat`, `/voice-chat`, `/llm/provider`, `/conversations/{id}`).

Memory needs QDRANT_URL here: without it chat answers with `memory: "unavailable"` (no per-instance store).
The template's hourly schedule invokes it to delete expired turns.
"""

from tts_service.app import create_app
from tts_service.aws.bootstrap import prepare_environment
from tts_service.aws.handler import make_handler
from tts_service.chat import get_chat_service
from tts_service.chat.memory import purge_expired
from tts_service.engine import get_engine
from tts_service.routes import routers

prepare_environment()
app = create_app(*routers("chat"))
get_engine().warm_blocking()
memory = get_chat_service().memory
handler = make_handler(app, service="chat", on_schedule=lambda: purge_expired(memory))
