"""The streaming protocol over an API Gateway WebSocket API: `$connect`, `$disconnect`, `$default`.

API Gateway shapes this transport. Each client message is its own Lambda invocation, maybe on another instance,
so the connection's state lives in DynamoDB (`store`), never in memory. Events go back through
`post_to_connection` (`poster`), posted as they are made (the route response is never audio: the integration
times out after 29 s while the Lambda runs on). Frames are at most 32 KB, so audio is always base64 JSON of at
most `AWS_MAX_AUDIO_BYTES` of PCM per event. `handler` routes the messages and speaks the queued text; `chat` runs
the chat turns (`{"type": "message" | "chat", ...}`, the shape `WS /ws/chat` takes).
"""

from tts_service.aws.websocket.handler import WebSocketHandler
from tts_service.aws.websocket.poster import ConnectionGone, Poster, management_client
from tts_service.aws.websocket.store import ConnectionStore

__all__ = ["ConnectionGone", "ConnectionStore", "Poster", "WebSocketHandler", "management_client"]
