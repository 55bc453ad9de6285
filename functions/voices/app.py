"""Lambda entry for `GET /voices`, `GET /voices/detail`, `GET /health`, `GET /client-config` and `POST /ws-ticket` (a
ticket for the WebSocket API, kept in its connection table): reads the voice map, loads no model."""

from tts_service.app import create_app
from tts_service.aws.bootstrap import prepare_environment
from tts_service.aws.handler import make_handler
from tts_service.engine import get_engine
from tts_service.routes import routers

prepare_environment()
app = create_app(*routers("voices"))
get_engine()
handler = make_handler(app, service="voices")
