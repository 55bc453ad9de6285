"""Lambda entry for `POST /tts`. The voice loads here, at init, not on the first request."""

from mangum import Mangum

from tts_service.api import tts
from tts_service.app import create_app
from tts_service.engine import get_engine

app = create_app(tts.router)
get_engine().warm_blocking()
handler = Mangum(app, lifespan="off")
