"""Lambda entry for `GET /voices` and `GET /voices/detail`: reads the voice map, loads no model."""

from mangum import Mangum

from tts_service.api import voices
from tts_service.app import create_app
from tts_service.engine import get_engine

app = create_app(voices.router)
get_engine()
handler = Mangum(app, lifespan="off")
