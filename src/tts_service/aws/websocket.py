"""The streaming protocol over an API Gateway WebSocket API: `$connect`, `$disconnect`, `$default`.

API Gateway shapes this transport. Each client message is its own Lambda invocation, maybe on another instance,
so the connection's state (stream settings, pending incremental text, queued sentences, the cancel flag) lives in
DynamoDB, never in memory. Events go back through `apigatewaymanagementapi.post_to_connection`, posted as they
are made (the route response is never audio: the integration times out after 29 s while the Lambda runs on).
Frames are at most 32 KB, so audio is always base64 JSON of at most `AWS_MAX_AUDIO_BYTES` of PCM per event.

One invocation at a time speaks for a connection: it holds a lease on the item and works through the queue of
sentences; other invocations only append to the queue (or raise the cancel flag, which the speaker reads between
chunks). `GoneException` (the client left) stops synthesis; `LimitExceededException` is retried with backoff.

`$connect` is where callers are checked (`tts_service.credentials`): with API_KEYS set, a handshake without a valid
key (`x-api-key` or `Authorization: Bearer` header) or ticket (subprotocol `ticket.<ticket>` or `?ticket=`, from
`POST /ws-ticket`, kept in this same table) is answered 401 and never becomes a connection. The key's owner is
stored on the connection's item, and chat turns of the connection use that owner's conversations only.

A chat message (`{"type": "message" | "chat", "message", ...}`, the shape `WS /ws/chat` takes) runs a whole spoken
turn (`tts_service.chat.turn.spoken_turn`) in the invocation that received it, holding the lease; a `cancel` on
another invocation raises the flag, which the turn reads between events and turns into its cancel event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tts_service.config import Settings, get_settings
from tts_service.credentials import Credentials, DynamoTickets, load_api_keys, ticket_subprotocol
from tts_service.engine import Engine, SpeechOptions, get_engine
from tts_service.engine.audio import silence
from tts_service.errors import ServiceBusy, ServiceError, Unauthorized, UnexpectedMessage, ValidationFailed
from tts_service.streaming.events import (
    API_GATEWAY_FRAME_LIMIT,
    AWS_MAX_AUDIO_BYTES,
    EndEvent,
    ErrorEvent,
    Event,
    EventMaker,
    StartEvent,
)
from tts_service.streaming.messages import (
    CancelMessage,
    EndMessage,
    FlushMessage,
    SpeakMessage,
    StartMessage,
    TextMessage,
    parse_message,
)
from tts_service.streaming.session import IncrementalText

if TYPE_CHECKING:
    from tts_service.chat.service import ChatService
    from tts_service.chat.turn import TurnEvent, TurnRequest

logger = logging.getLogger(__name__)

LEASE_SECS = 900
"""A speaker's hold on a connection; longer than any Lambda can run, so a crashed holder frees it eventually."""
_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
_UPDATE_ATTEMPTS = 8
MAX_QUEUED = 64
"""Sentences waiting in a connection's queue at most."""
CANCEL_POLL_SECS = 0.25
"""How often a chat turn reads the cancel flag (between events): one consistent GetItem."""
CHAT_TYPES = ("chat", "message")
"""Message types of a chat turn; the rest is the TTS streaming protocol."""


class ConnectionGone(Exception):
    """The client has left (GoneException, or its state was deleted by `$disconnect`)."""


# --- posting ---


class Postable(Protocol):
    """Any event: a streaming protocol event or a chat turn's."""

    def to_dict(self) -> dict[str, Any]: ...


class Poster:
    """Posts events to one connection through a boto3 `apigatewaymanagementapi` client."""

    def __init__(self, client: Any, connection_id: str, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.connection_id = connection_id
        self.sleep = sleep
        self.posted = 0

    def post(self, event: Event | Postable) -> None:
        data = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(data) > API_GATEWAY_FRAME_LIMIT:
            # EventMaker bounds every event; reaching this is a bug, and API Gateway would refuse the frame.
            raise RuntimeError(f"event of {len(data)} bytes exceeds the 32 KB frame limit")
        for attempt, delay in enumerate((*_RETRY_DELAYS, None)):
            try:
                self.client.post_to_connection(ConnectionId=self.connection_id, Data=data)
                self.posted += 1
                return
            except self.client.exceptions.GoneException:
                raise ConnectionGone(self.connection_id) from None
            except self.client.exceptions.LimitExceededException:
                if delay is None:
                    raise
                logger.info("post throttled; retrying", extra={"attempt": attempt + 1, "delay_s": delay})
                self.sleep(delay)

    def post_quietly(self, event: Event | Postable) -> None:
        with contextlib.suppress(ConnectionGone):
            self.post(event)


# --- connection state ---


@dataclass
class StreamState:
    """The stream part of a connection item."""

    stream_id: str
    options: SpeechOptions
    spectrogram: bool
    mode: str
    seq: int
    samples: int
    sample_rate: int
    cancelled: bool
    ending: bool
    words: bool = False

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> StreamState | None:
        if not item.get("stream_id"):
            return None
        return cls(
            stream_id=str(item["stream_id"]),
            options=SpeechOptions.model_validate_json(str(item.get("options") or "{}")),
            spectrogram=bool(item.get("spectrogram", False)),
            words=bool(item.get("words", False)),
            mode=str(item.get("mode", "speak")),
            seq=int(item.get("seq", 0)),
            samples=int(item.get("samples", 0)),
            sample_rate=int(item.get("sample_rate", 0)),
            cancelled=bool(item.get("cancelled", False)),
            ending=bool(item.get("ending", False)),
        )


class ConnectionStore:
    """Per-connection items in DynamoDB: partition key `connection_id` (S), TTL attribute `expires_at`."""

    def __init__(self, table: Any, ttl_secs: int, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self.ttl_secs = ttl_secs
        self.clock = clock
        from botocore.exceptions import ClientError

        self._client_error = ClientError

    def _expires(self) -> int:
        return int(self.clock()) + self.ttl_secs

    def _conditional(self, **kwargs: Any) -> dict[str, Any] | None:
        """An update_item that returns None when its condition fails."""
        try:
            result: dict[str, Any] = self.table.update_item(**kwargs)
            return result
        except self._client_error as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise

    def connect(self, connection_id: str, owner: str) -> None:
        """A new connection, served under `owner` (the caller's key fingerprint) for its whole life."""
        self.table.put_item(Item={"connection_id": connection_id, "owner": owner, "expires_at": self._expires()})

    def delete(self, connection_id: str) -> None:
        self.table.delete_item(Key={"connection_id": connection_id})

    def get(self, connection_id: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.table.get_item(
            Key={"connection_id": connection_id}, ConsistentRead=True
        ).get("Item")
        return item

    def open_stream(
        self, connection_id: str, stream_id: str, msg: SpeakMessage | StartMessage, sample_rate: int
    ) -> None:
        """Start a stream unless one is running (UnexpectedMessage) or the connection is gone."""
        result = self._conditional(
            Key={"connection_id": connection_id},
            UpdateExpression=(
                "SET stream_id = :sid, #opts = :opts, spectrogram = :spec, words = :words, #mode = :mode, seq = :zero, "
                "samples = :zero, sample_rate = :sr, cancelled = :f, ending = :f, pending = :empty, "
                "#q = :nil, expires_at = :exp"
            ),
            ConditionExpression="attribute_exists(connection_id) AND attribute_not_exists(stream_id)",
            ExpressionAttributeNames={"#opts": "options", "#mode": "mode", "#q": "queue"},
            ExpressionAttributeValues={
                ":sid": stream_id,
                ":opts": msg.options().model_dump_json(exclude_none=True),
                ":spec": msg.spectrogram,
                ":words": msg.timestamps == "word",
                ":mode": msg.type,
                ":zero": 0,
                ":sr": sample_rate,
                ":f": False,
                ":empty": "",
                ":nil": [],
                ":exp": self._expires(),
            },
        )
        if result is None:
            if self.get(connection_id) is None:
                raise ConnectionGone(connection_id)
            raise UnexpectedMessage(f"a stream is running; send cancel or wait for its end before {msg.type}")

    def open_turn(self, connection_id: str, stream_id: str, me: str) -> str | None:
        """Start a chat turn as a stream this invocation speaks for, unless one is running or the client left.

        Returns the connection's owner (None for an item stored without one).
        """
        now = int(self.clock())
        result = self._conditional(
            Key={"connection_id": connection_id},
            UpdateExpression=(
                "SET stream_id = :sid, #mode = :mode, cancelled = :f, ending = :f, pending = :empty, #q = :nil, "
                "speaker = :me, lease_until = :until, expires_at = :exp"
            ),
            ConditionExpression="attribute_exists(connection_id) AND attribute_not_exists(stream_id)",
            ExpressionAttributeNames={"#mode": "mode", "#q": "queue"},
            ExpressionAttributeValues={
                ":sid": stream_id,
                ":mode": "chat",
                ":f": False,
                ":empty": "",
                ":nil": [],
                ":me": me,
                ":until": now + LEASE_SECS,
                ":exp": self._expires(),
            },
            ReturnValues="ALL_NEW",
        )
        if result is None:
            if self.get(connection_id) is None:
                raise ConnectionGone(connection_id)
            raise UnexpectedMessage("a stream is running; send cancel or wait for its end before a chat message")
        owner = (result.get("Attributes") or {}).get("owner")
        return owner if isinstance(owner, str) else None

    def _enqueue(self, texts: list[str], ending: bool) -> tuple[str, dict[str, Any]]:
        """SET clauses and values that append `texts` to the queue (and mark the stream as ending)."""
        expr = "#q = list_append(if_not_exists(#q, :nil), :t), expires_at = :exp"
        values: dict[str, Any] = {":t": texts, ":nil": [], ":exp": self._expires()}
        if ending:
            expr += ", ending = :true"
            values[":true"] = True
        return expr, values

    def append(self, connection_id: str, texts: list[str], ending: bool = False) -> None:
        expr, values = self._enqueue(texts, ending)
        result = self._conditional(
            Key={"connection_id": connection_id},
            UpdateExpression=f"SET {expr}",
            ConditionExpression="attribute_exists(stream_id)",
            ExpressionAttributeNames={"#q": "queue"},
            ExpressionAttributeValues=values,
        )
        if result is None:
            raise UnexpectedMessage("no stream is open: send start first")

    def feed(self, connection_id: str, max_pending: int, fn: Callable[[IncrementalText], list[str]], end: bool) -> None:
        """Apply `fn` to the pending text and queue the sentences it returns, atomically (optimistic retries)."""
        for _ in range(_UPDATE_ATTEMPTS):
            item = self.get(connection_id)
            if item is None:
                raise ConnectionGone(connection_id)
            if not item.get("stream_id") or item.get("mode") != "start" or item.get("ending"):
                raise UnexpectedMessage("this message needs an open incremental stream: send start first")
            old = str(item.get("pending", ""))
            text = IncrementalText(max_pending, old)
            sentences = fn(text)
            if sentences and len(item.get("queue") or []) + len(sentences) > MAX_QUEUED:
                # The item must stay far below DynamoDB's 400 KB; a client this far ahead should wait.
                raise ServiceBusy(f"{MAX_QUEUED} sentences are waiting to be spoken; send more text later")
            expr, values = self._enqueue(sentences, end)
            values.update({":old": old, ":new": text.pending, ":sid": item["stream_id"]})
            done = self._conditional(
                Key={"connection_id": connection_id},
                UpdateExpression=f"SET pending = :new, {expr}",
                ConditionExpression="pending = :old AND stream_id = :sid",
                ExpressionAttributeNames={"#q": "queue"},
                ExpressionAttributeValues=values,
            )
            if done is not None:
                return
        raise ServiceError("too many concurrent updates to this connection; retry")

    def cancel(self, connection_id: str) -> bool:
        """Raise the cancel flag and drop queued text; False when no stream is open."""
        result = self._conditional(
            Key={"connection_id": connection_id},
            UpdateExpression="SET cancelled = :true, #q = :nil, pending = :empty",
            ConditionExpression="attribute_exists(stream_id)",
            ExpressionAttributeNames={"#q": "queue"},
            ExpressionAttributeValues={":true": True, ":nil": [], ":empty": ""},
        )
        return result is not None

    def acquire(self, connection_id: str, me: str) -> bool:
        """Become the connection's speaker unless another live invocation is."""
        now = int(self.clock())
        return (
            self._conditional(
                Key={"connection_id": connection_id},
                UpdateExpression="SET speaker = :me, lease_until = :until",
                ConditionExpression=(
                    "attribute_exists(stream_id) AND (attribute_not_exists(speaker) OR lease_until < :now)"
                ),
                ExpressionAttributeValues={":me": me, ":until": now + LEASE_SECS, ":now": now},
            )
            is not None
        )

    def pop(self, connection_id: str, me: str) -> tuple[str | None, dict[str, Any] | None]:
        """Take the next queued text (None if the queue is empty) and the item as it was before."""
        old = self._conditional(
            Key={"connection_id": connection_id},
            UpdateExpression="REMOVE #q[0]",
            ConditionExpression="speaker = :me AND size(#q) > :zero AND cancelled = :f",
            ExpressionAttributeNames={"#q": "queue"},
            ExpressionAttributeValues={":me": me, ":zero": 0, ":f": False},
            ReturnValues="ALL_OLD",
        )
        if old is not None:
            item = old.get("Attributes") or {}
            return str(item["queue"][0]), item
        return None, self.get(connection_id)

    def release(self, connection_id: str, me: str) -> bool:
        """Stop being the speaker, only if nothing is queued, cancelled or ending meanwhile."""
        return (
            self._conditional(
                Key={"connection_id": connection_id},
                UpdateExpression="REMOVE speaker, lease_until",
                ConditionExpression="speaker = :me AND size(#q) = :zero AND cancelled = :f AND ending = :f",
                ExpressionAttributeNames={"#q": "queue"},
                ExpressionAttributeValues={":me": me, ":zero": 0, ":f": False},
            )
            is not None
        )

    def save_progress(self, connection_id: str, me: str, maker: EventMaker) -> None:
        self._conditional(
            Key={"connection_id": connection_id},
            UpdateExpression="SET seq = :seq, samples = :samples, lease_until = :until, expires_at = :exp",
            ConditionExpression="speaker = :me",
            ExpressionAttributeValues={
                ":seq": maker.seq,
                ":samples": maker.samples,
                ":until": int(self.clock()) + LEASE_SECS,
                ":exp": self._expires(),
                ":me": me,
            },
        )

    def close_stream(self, connection_id: str, stream_id: str) -> None:
        self._conditional(
            Key={"connection_id": connection_id},
            UpdateExpression=(
                "REMOVE stream_id, #opts, spectrogram, words, #mode, seq, samples, sample_rate, cancelled, ending, "
                "pending, #q, speaker, lease_until"
            ),
            ConditionExpression="stream_id = :sid",
            ExpressionAttributeNames={"#opts": "options", "#mode": "mode", "#q": "queue"},
            ExpressionAttributeValues={":sid": stream_id},
        )


# --- the handler ---


class WebSocketHandler:
    """The Lambda handler of the WebSocket API: one instance per process, state in DynamoDB."""

    def __init__(
        self,
        engine: Engine,
        store: ConnectionStore,
        client_factory: Callable[[str], Any],
        settings: Settings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        chat_service: ChatService | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.client_factory = client_factory
        self.settings = settings or engine.settings
        self.sleep = sleep
        self.chat_service = chat_service
        self.credentials = credentials or Credentials(
            load_api_keys(self.settings.api_keys), DynamoTickets(store.table, self.settings.ws_ticket_ttl_secs)
        )
        self._clients: dict[str, Any] = {}

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> WebSocketHandler:
        """Real DynamoDB table (STREAM_TABLE_NAME) and management API clients."""
        import boto3

        settings = settings or get_settings()
        if not settings.stream_table_name:
            raise RuntimeError("STREAM_TABLE_NAME is not set")
        table = boto3.resource("dynamodb").Table(settings.stream_table_name)
        store = ConnectionStore(table, settings.stream_state_ttl_secs)

        def factory(endpoint: str) -> Any:
            return boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)

        return cls(get_engine(), store, factory, settings)

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
        poster = Poster(self._client(ctx), connection_id, self.sleep)
        body = event.get("body")
        raw: str | bytes = body if isinstance(body, str) else ""
        if event.get("isBase64Encoded"):
            raw = b"binary"  # API Gateway base64-encodes binary frames: refuse them like any transport does
        try:
            self.handle(connection_id, raw, poster)
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
        if _is_chat(raw):
            self.chat(connection_id, raw, poster)
            return
        try:
            msg = parse_message(raw, self.settings.max_text_chars)
            max_pending = self.settings.stream_max_pending_chars
            if isinstance(msg, SpeakMessage | StartMessage):
                self._open(connection_id, msg, poster)
            elif isinstance(msg, TextMessage):
                self.store.feed(connection_id, max_pending, lambda t: t.feed(msg.text), end=False)
            elif isinstance(msg, FlushMessage):
                self.store.feed(connection_id, max_pending, _flush, end=False)
            elif isinstance(msg, EndMessage):
                self.store.feed(connection_id, max_pending, _flush, end=True)
            elif isinstance(msg, CancelMessage) and not self.store.cancel(connection_id):
                return  # nothing to cancel: the stream ended while the cancel was on its way
        except ServiceError as exc:
            poster.post_quietly(ErrorEvent.from_error(exc))
            return
        self.speak(connection_id, poster)

    def chat(self, connection_id: str, raw: str | bytes, poster: Poster) -> None:
        """A chat message: run the whole spoken turn here, posting its events; the stream closes when it ends."""
        # Imported here: the LLM and Qdrant clients cost cold-start time a TTS-only connection never needs.
        from tts_service.api.chat import WsChatMessage, parse_ws_message
        from tts_service.chat.service import get_chat_service
        from tts_service.chat.turn import TurnRequest

        stream_id = uuid.uuid4().hex
        try:
            msg = parse_ws_message(raw)
            if not isinstance(msg, WsChatMessage):
                raise UnexpectedMessage("not a chat message")
            owner = self.store.open_turn(connection_id, stream_id, stream_id)
            if owner is None:
                # An item stored before connections had owners: serve no one's conversations.
                self.store.close_stream(connection_id, stream_id)
                raise Unauthorized("this connection has no owner; reconnect to chat")
        except ServiceError as exc:
            poster.post_quietly(ErrorEvent.from_error(exc))
            return
        req = TurnRequest(
            message=msg.message,
            owner=owner,
            conversation_id=msg.conversation_id,
            speak=msg.speak,
            options=SpeechOptions.model_validate(msg.model_dump(include=set(SpeechOptions.model_fields))),
            encoding="base64",  # every event is a JSON text frame here
            max_audio_bytes=AWS_MAX_AUDIO_BYTES,
        )
        service = self.chat_service or get_chat_service()
        try:
            _run(self._play(connection_id, service, req, poster))
        finally:
            self.store.close_stream(connection_id, stream_id)

    async def _play(self, connection_id: str, service: ChatService, req: TurnRequest, poster: Poster) -> None:
        from tts_service.chat.turn import spoken_turn

        cancel = asyncio.Event()
        polled = time.monotonic()
        try:
            async with contextlib.aclosing(spoken_turn(service, self.engine, req, cancel)) as events:
                async for event in events:
                    poster.post(_fit(event))  # ConnectionGone ends the turn; aclosing stops the LLM and synthesis
                    if cancel.is_set() or time.monotonic() - polled < CANCEL_POLL_SECS:
                        continue
                    polled = time.monotonic()
                    item = self.store.get(connection_id)
                    if item is None:
                        raise ConnectionGone(connection_id)
                    if item.get("cancelled"):
                        cancel.set()
        except ServiceError as exc:
            poster.post(ErrorEvent.from_error(exc))

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
        me = uuid.uuid4().hex
        if not self.store.acquire(connection_id, me):
            return  # another invocation is speaking; it will take what we queued
        while True:
            text, item = self.store.pop(connection_id, me)
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
                if self.store.release(connection_id, me):
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
            self.store.save_progress(connection_id, me, maker)

    def _synthesize(self, connection_id: str, text: str, state: StreamState, maker: EventMaker, poster: Poster) -> bool:
        """Post the events of one queued text; True if a cancel (or disconnect) stopped it between chunks."""
        req = self.engine.request(text, state.options)
        first = True
        chunks: Iterator[Any] = self.engine.iter_stream_chunks(req)
        try:
            for chunk in chunks:
                if first and maker.seq > 0 and req.sentence_silence > 0:
                    # Queued sentences are separate requests; keep the gap the engine puts between sentences.
                    chunk.pcm = np.concatenate([silence(req.sentence_silence, chunk.sample_rate), chunk.pcm])
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


def _is_chat(raw: str | bytes) -> bool:
    """A chat message (also without `type` when it has a `message`, as `WS /ws/chat` takes it)?"""
    if not isinstance(raw, str):
        return False
    try:
        data = json.loads(raw)
    except ValueError:
        return False
    return isinstance(data, dict) and (data.get("type") in CHAT_TYPES or ("type" not in data and "message" in data))


def _fit(event: TurnEvent) -> Postable:
    """`done` carries the whole reply: shorten it to fit a frame (the client has every token already)."""
    from tts_service.chat.turn import DoneEvent

    if not isinstance(event, DoneEvent):
        return event  # audio is bounded by AWS_MAX_AUDIO_BYTES, tokens are small
    reply = event.reply
    while reply and len(json.dumps({**event.to_dict(), "reply": reply}, ensure_ascii=False)) > API_GATEWAY_FRAME_LIMIT:
        reply = reply[: len(reply) // 2]
    return event if reply == event.reply else DoneEvent(reply, event.conversation_id, event.memory, event.cancelled)


_LOOP: asyncio.AbstractEventLoop | None = None


def _run(work: Any) -> None:
    """Run a coroutine on this process's one event loop (the chat service's HTTP clients stay bound to it)."""
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    _LOOP.run_until_complete(work)


def _flush(text: IncrementalText) -> list[str]:
    rest = text.flush()
    return [rest] if rest else []
