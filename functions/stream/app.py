"""Lambda entry for the API Gateway WebSocket API (`$connect`, `$disconnect`, `$default`) of the streaming protocol.

The voice loads (split graphs, baked into the image) here, at init; state lives in the STREAM_TABLE_NAME table.
"""

from tts_service.aws.bootstrap import prepare_environment
from tts_service.aws.handler import instrument
from tts_service.aws.websocket import WebSocketHandler
from tts_service.engine import get_engine

prepare_environment()
get_engine().warm_blocking()
handler = instrument(WebSocketHandler.from_settings(), service="stream")
