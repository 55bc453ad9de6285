"""Lambda entry for `GET /voices`, `GET /voices/detail` and `GET /health`: reads the voice map, loads no model."""

from tts_service.api import health, voices
from tts_service.app import create_app
from tts_service.aws.bootstrap import prepare_environment
from tts_service.aws.handler import lambda_handler
from tts_service.engine import get_engine

prepare_environment()
app = create_app(voices.router, health.router)
get_engine()
handler = lambda_handler(app, service="voices")
