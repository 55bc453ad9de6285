"""What the WebSocket routes share: client frames read the way the transport-neutral sessions take them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import WebSocket, WebSocketDisconnect

from tts_service.streaming.driver import Incoming


def frames(ws: WebSocket) -> Callable[[], Awaitable[Incoming]]:
    """The next frame of `ws` on each call: its text, or its bytes; None once the client has gone."""

    async def receive() -> Incoming:
        try:
            message = await ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        if message.get("text") is not None:
            text: str = message["text"]
            return text
        data: bytes = message.get("bytes") or b""
        return data

    return receive
