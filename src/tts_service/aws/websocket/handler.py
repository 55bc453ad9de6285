"""The Lambda handler of the WebSocket API: `$connect` checks the caller, `$disconnect` forgets the connection,
and each `$default` message updates the connection's state, then speaks what is queued unless another invocation
already does.

`$connect` is where callers are checked (`tts_service.credentials`): with API_KEYS set, a handshake without a valid
key (`x-api-key` or `Authorization: Bearer` header) or ticket (subprotocol `ticket.<ticket>` or `?ticket=`, from
`POST /ws-ticket`, kept in this same table) is answered 401 and never becomes a connection. The key's owner is
stored on the connection's item, and chat turns of the connection use that owner's conversations only.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from tts_service.aws.websocket.chat import ChatBridge, is_chat
from tts_service.aws.websocket.poster import ConnectionGone, Poster, management_client
from tts_service.aws.websocket.store import ConnectionStore, StreamState
from tts_service.config import Settings, get_settings
from tts_service.credentials import Credentials, DynamoTickets, load_api_keys, ticket_subprotocol
from tts_service.engine import Engine, get_engine
from tts_service.errors import ServiceError, Unauthorized, ValidationFailed
from tts_service.streaming.events import AWS_MAX_AUDIO_BYTES, EndEvent, ErrorEvent, EventMaker, StartEvent
from tts_service.streaming.messages import CancelMessage, SpeakMessage, StartMessage, parse_message
from tts_service.streaming.session import keep_sentence_gap

if TYPE_CHECKING:
    from tts_service.chat.service import ChatService

logger = logging.getLogger(__name__)


class WebSocketHandler:
    """The Lambda handler of the WebSocket API: one instance per process, state in DynamoDB."""

    def __init__(
        self,
        engine: Engine,
        store: ConnectionStore,
        client_factory: Callable[[str], Any] | None = None,
        settings: Settings | None = None,
        chat_service: ChatService | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.client_factory = client_factory or management_client
        self.settings = settings or engine.settings
        self.chats = ChatBridge(engine, store, chat_service)
        self.credentials = credentials or Credentials(
            load_api_keys(self.settings.api_keys), DynamoTickets(store.table, self.settings.ws_ticket_ttl_secs)
        )
        self._clients: dict[str, Any] = {}

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> WebSocketHandler:
        """Real DynamoDB table (STREAM_TABLE_NAME) and management API clients."""
        import boto3  # noqa: PLC0415 the `aws` extra; tests build handlers without it

        settings = settings or get_settings()
        if not settings.stream_table_name:
            raise RuntimeError("STREAM_TABLE_NAME is not set")
        table = boto3.resource("dynamodb").Table(settings.stream_table_name)
        store = ConnectionStore(table, settings.stream_state_ttl_secs)
        return cls(get_engine(), store, settings=settings)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        ctx = event.get("requestContext") or {}
        route = ctx.get("routeKey", "$default")
        connection_id = str(ctx.get("connectionId", ""))
        if route == "$connect":
            return self.connect(connection_id, event)
        if route == "$disconnect":
            # The speaker, if any, finds the item gone at its next check and stops.
            self.store.delete(connection_id)
            return {"statusCode": 200}
        poster = Poster(self._client(ctx), connection_id)
        try:
            self.handle(connection_id, client_frame(event), poster)
        except ConnectionGone:
            logger.info("client left", extra={"connection_id": connection_id})
        except Exception as exc:  # DynamoDB or the management API failed: tell the client, log the type only
            logger.error("stream message failed", extra={"error_type": type(exc).__name__})
            poster.post_quietly(ErrorEvent("internal_error", "the message could not be handled; it was logged"))
            return {"statusCode": 500}
        return {"statusCode": 200}

    def connect(self, connection_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """`$connect`: refuse a caller without a valid key or ticket (when keys are required), else store the
        connection under the caller's owner."""
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        query = {str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()}
        owner = self.credentials.owner(headers, query, websocket=True)
        if owner is None:
            reason, message = self.credentials.refusal(headers, query, websocket=True)
            logger.info("unauthorized", extra={"reason": reason})
            # The same error body as every HTTP refusal; API Gateway answers the handshake with this status.
            exc = Unauthorized(message, headers={"WWW-Authenticate": 'Bearer realm="tts-service"'})
            return {
                "statusCode": exc.status_code,
                "headers": {"Content-Type": "application/json", **exc.headers},
                "body": json.dumps({"error": exc.to_dict()}),
            }
        self.store.connect(connection_id, owner)
        response: dict[str, Any] = {"statusCode": 200}
        protocol = ticket_subprotocol(headers)
        if protocol is not None:
            # Browsers drop a connection whose answer does not name one of the subprotocols they offered.
            response["headers"] = {"Sec-WebSocket-Protocol": protocol}
        return response

    def _client(self, ctx: dict[str, Any]) -> Any:
        endpoint = f"https://{ctx.get('domainName')}/{ctx.get('stage')}"
        if endpoint not in self._clients:
            self._clients[endpoint] = self.client_factory(endpoint)
        return self._clients[endpoint]

    def handle(self, connection_id: str, raw: str | bytes, poster: Poster) -> None:
        """One client message: update the state, then speak whatever is queued (unless another speaker is)."""
        if is_chat(raw):
            self.chats.turn(connection_id, raw, poster)
            return
        try:
            msg = parse_message(raw, self.settings.max_text_chars)
            if isinstance(msg, SpeakMessage | StartMessage):
                self._open(connection_id, msg, poster)
            elif isinstance(msg, CancelMessage):
                if not self.store.cancel(connection_id):
                    return  # nothing to cancel: the stream ended while the cancel was on its way
            else:
                self.store.feed(connection_id, self.settings.stream_max_pending_chars, msg)
        except ServiceError as exc:
            poster.post_quietly(ErrorEvent.from_error(exc))
            return
        self.speak(connection_id, poster)

    def _open(self, connection_id: str, msg: SpeakMessage | StartMessage, poster: Poster) -> None:
        if msg.format != "pcm" or msg.sample_rate is not None:
            # Sentences may be spoken by different invocations here: no codec state could carry across them.
            raise ValidationFailed("format and sample_rate are for the local server's /ws/tts; this API sends pcm")
        probe = self.engine.request(msg.text if isinstance(msg, SpeakMessage) else "start", msg.options())
        stream_id = uuid.uuid4().hex
        self.store.open_stream(connection_id, stream_id, msg, probe.voice.sample_rate)
        # Binary frames are not an option here: every event is a JSON text frame with base64 audio.
        poster.post(StartEvent(stream_id, probe.voice.id, probe.voice.sample_rate, "base64"))
        if isinstance(msg, SpeakMessage):
            self.store.append(connection_id, [probe.text], ending=True)

    def speak(self, connection_id: str, poster: Poster) -> None:
        """Work through the connection's queue while holding its lease; return when it is empty."""
        speaker = uuid.uuid4().hex  # this invocation, should it become the connection's speaker
        if not self.store.acquire(connection_id, speaker):
            return  # another invocation is speaking; it will take what we queued
        while True:
            text, item = self.store.pop(connection_id, speaker)
            if item is None:
                raise ConnectionGone(connection_id)
            state = StreamState.from_item(item)
            if state is None:
                return
            maker = EventMaker(
                AWS_MAX_AUDIO_BYTES,
                state.spectrogram,
                seq=state.seq,
                samples=state.samples,
                sample_rate=state.sample_rate,
                words=state.words,
            )
            if state.cancelled:
                self._finish(connection_id, state, maker, poster, cancelled=True)
                return
            if text is None:
                if state.ending:
                    self._finish(connection_id, state, maker, poster, cancelled=False)
                    return
                if self.store.release(connection_id, speaker):
                    return
                continue  # something arrived between pop and release
            try:
                cancelled = self._synthesize(connection_id, text, state, maker, poster)
            except ServiceError as exc:
                poster.post(ErrorEvent.from_error(exc, ends_stream=True))
                self.store.close_stream(connection_id, state.stream_id)
                return
            if cancelled:
                self._finish(connection_id, state, maker, poster, cancelled=True)
                return
            self.store.save_progress(connection_id, speaker, maker)

    def _synthesize(self, connection_id: str, text: str, state: StreamState, maker: EventMaker, poster: Poster) -> bool:
        """Post the events of one queued text; True if a cancel (or disconnect) stopped it between chunks."""
        req = self.engine.request(text, state.options)
        first = True
        chunks: Iterator[Any] = self.engine.iter_stream_chunks(req)
        try:
            for chunk in chunks:
                if first and maker.seq > 0:
                    keep_sentence_gap(chunk, req)
                first = False
                for event in maker.events(chunk):
                    poster.post(event)
                current = self.store.get(connection_id)
                if current is None:
                    raise ConnectionGone(connection_id)
                if current.get("cancelled") or current.get("stream_id") != state.stream_id:
                    return True
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return False

    def _finish(
        self, connection_id: str, state: StreamState, maker: EventMaker, poster: Poster, *, cancelled: bool
    ) -> None:
        end: EndEvent = maker.end(cancelled=cancelled)
        self.store.close_stream(connection_id, state.stream_id)
        poster.post(end)
        logger.info(
            "stream ended",
            extra={"stream_id": state.stream_id, "chunks": end.chunks, "cancelled": cancelled},
        )


def client_frame(event: dict[str, Any]) -> str | bytes:
    """The client's frame: its text, or the bytes of a binary frame (API Gateway base64-encodes those), which
    the protocol refuses as any transport does."""
    body = event.get("body")
    if not event.get("isBase64Encoded"):
        return body if isinstance(body, str) else ""
    try:
        return base64.b64decode(body if isinstance(body, str) else "")
    except ValueError:
        return b""  # undecodable, but binary all the same
