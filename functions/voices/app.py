"""Lambda entry for `GET /voices`, `GET /voices/detail`, `GET /health`, `GET /client-config` and `POST /ws-ticket` (a
ticket for the WebSocket API, kept in its connection table): reads the voice map, loads no model."""

from tts_service.api import client_config, health, tickets, voices
from tts_service.app import create_app
from tts_service.aws.bootstrap import prepare_environment
from tts_service.aws.handler import make_handler
from tts_service.engine import get_engine

prepare_environment()
app = create_app(voices.router, health.router, tickets.router, client_config.router)
get_engine()
handler = make_handler(app, service="voices")
