"""Lambda entry for `POST /tts`, the OpenAI-compatible `/v1` routes and `GET /healthz`.

The voices (the default and WARM_VOICES) load here, at init, not on the first request.
"""

from tts_service.app import create_app
from tts_service.aws.bootstrap import prepare_environment
from tts_service.aws.handler import make_handler
from tts_service.engine import get_engine
from tts_service.engine.warm import warm_blocking
from tts_service.routes import routers

prepare_environment()
app = create_app(*routers("tts"))
warm_blocking(get_engine())
handler = make_handler(app, service="tts")
