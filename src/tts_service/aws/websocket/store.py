"""Per-connection state in DynamoDB: the stream's settings and progress, its queue of text, the cancel flag, and
the speaker lease.

Each client message is its own Lambda invocation, maybe on another instance, so all of this lives in the item,
never in memory. One invocation at a time speaks for a connection: it holds the lease (`speaker`, `lease_until`)
and works through the queue; the others only append to the queue or raise the cancel flag.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tts_service.aws.websocket.poster import ConnectionGone
from tts_service.engine import SpeechOptions
from tts_service.errors import ServiceBusy, ServiceError, UnexpectedMessage
from tts_service.streaming.events import EventMaker
from tts_service.streaming.messages import EndMessage, FlushMessage, SpeakMessage, StartMessage, TextMessage
from tts_service.streaming.session import IncrementalText

LEASE_SECS = 900
"""A speaker's hold on a connection; longer than any Lambda can run, so a crashed holder frees it eventually."""
_UPDATE_ATTEMPTS = 8
MAX_QUEUED = 64
"""Sentences waiting in a connection's queue at most."""
_RESERVED = {"#opts": "options", "#mode": "mode", "#q": "queue"}
"""Attributes whose names are DynamoDB reserved words, by the alias the expressions use instead."""
_ALIAS_RE = re.compile(r"#\w+")


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
        from botocore.exceptions import ClientError  # noqa: PLC0415 the `aws` extra, only with a real table

        self._client_error = ClientError

    def _expires(self) -> int:
        return int(self.clock()) + self.ttl_secs

    def _conditional(
        self, connection_id: str, update: str, condition: str, values: dict[str, Any], returns: str | None = None
    ) -> dict[str, Any] | None:
        """An update_item of the connection's item that returns None when its condition fails."""
        kwargs: dict[str, Any] = {
            "Key": {"connection_id": connection_id},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        # DynamoDB refuses an alias its expressions do not use, so each call names only the ones it uses.
        aliases = sorted(set(_ALIAS_RE.findall(update + " " + condition)))
        if aliases:
            kwargs["ExpressionAttributeNames"] = {alias: _RESERVED[alias] for alias in aliases}
        if returns is not None:
            kwargs["ReturnValues"] = returns
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
        self._open(
            connection_id,
            stream_id,
            msg.type,
            "#opts = :opts, spectrogram = :spec, words = :words, seq = :zero, samples = :zero, sample_rate = :sr",
            {
                ":opts": msg.options().model_dump_json(exclude_none=True),
                ":spec": msg.spectrogram,
                ":words": msg.timestamps == "word",
                ":zero": 0,
                ":sr": sample_rate,
            },
            before=msg.type,
        )

    def open_turn(self, connection_id: str, *, stream_id: str, speaker: str) -> str | None:
        """Start a chat turn as a stream, holding the lease as `speaker`, unless one is running or the client left.

        Returns the connection's owner (None for an item stored without one).
        """
        result = self._open(
            connection_id,
            stream_id,
            "chat",
            "speaker = :speaker, lease_until = :until",
            {":speaker": speaker, ":until": int(self.clock()) + LEASE_SECS},
            before="a chat message",
            returns="ALL_NEW",
        )
        owner = (result.get("Attributes") or {}).get("owner")
        return owner if isinstance(owner, str) else None

    def _open(
        self,
        connection_id: str,
        stream_id: str,
        mode: str,
        sets: str,
        values: dict[str, Any],
        *,
        before: str,
        returns: str | None = None,
    ) -> dict[str, Any]:
        """Set a new stream's state (`mode`, a fresh queue, and `sets`) unless a stream is running (UnexpectedMessage
        naming what came `before` its end) or the client left (ConnectionGone)."""
        result = self._conditional(
            connection_id,
            "SET stream_id = :sid, #mode = :mode, cancelled = :f, ending = :f, pending = :empty, #q = :nil, "
            f"expires_at = :exp, {sets}",
            "attribute_exists(connection_id) AND attribute_not_exists(stream_id)",
            {":sid": stream_id, ":mode": mode, ":f": False, ":empty": "", ":nil": [], ":exp": self._expires()} | values,
            returns,
        )
        if result is None:
            if self.get(connection_id) is None:
                raise ConnectionGone(connection_id)
            raise UnexpectedMessage(f"a stream is running; send cancel or wait for its end before {before}")
        return result

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
        result = self._conditional(connection_id, f"SET {expr}", "attribute_exists(stream_id)", values)
        if result is None:
            raise UnexpectedMessage("no stream is open: send start first")

    def feed(self, connection_id: str, max_pending: int, msg: TextMessage | FlushMessage | EndMessage) -> None:
        """Apply `msg` to the pending text and queue the sentences it makes ready (an `end` ends the stream too),
        atomically (optimistic retries)."""
        for _ in range(_UPDATE_ATTEMPTS):
            item = self.get(connection_id)
            if item is None:
                raise ConnectionGone(connection_id)
            if not item.get("stream_id") or item.get("mode") != "start" or item.get("ending"):
                raise UnexpectedMessage("this message needs an open incremental stream: send start first")
            old = str(item.get("pending", ""))
            text = IncrementalText(max_pending, old)
            sentences = text.take(msg)
            if sentences and len(item.get("queue") or []) + len(sentences) > MAX_QUEUED:
                # The item must stay far below DynamoDB's 400 KB; a client this far ahead should wait.
                raise ServiceBusy(f"{MAX_QUEUED} sentences are waiting to be spoken; send more text later")
            expr, values = self._enqueue(sentences, isinstance(msg, EndMessage))
            values.update({":old": old, ":new": text.pending, ":sid": item["stream_id"]})
            done = self._conditional(
                connection_id, f"SET pending = :new, {expr}", "pending = :old AND stream_id = :sid", values
            )
            if done is not None:
                return
        raise ServiceError("too many concurrent updates to this connection; retry")

    def cancel(self, connection_id: str) -> bool:
        """Raise the cancel flag and drop queued text; False when no stream is open."""
        result = self._conditional(
            connection_id,
            "SET cancelled = :true, #q = :nil, pending = :empty",
            "attribute_exists(stream_id)",
            {":true": True, ":nil": [], ":empty": ""},
        )
        return result is not None

    def acquire(self, connection_id: str, speaker: str) -> bool:
        """Become the connection's speaker unless another live invocation is."""
        now = int(self.clock())
        return (
            self._conditional(
                connection_id,
                "SET speaker = :speaker, lease_until = :until",
                "attribute_exists(stream_id) AND (attribute_not_exists(speaker) OR lease_until < :now)",
                {":speaker": speaker, ":until": now + LEASE_SECS, ":now": now},
            )
            is not None
        )

    def pop(self, connection_id: str, speaker: str) -> tuple[str | None, dict[str, Any] | None]:
        """Take the next queued text (None if the queue is empty) and the item as it was before."""
        old = self._conditional(
            connection_id,
            "REMOVE #q[0]",
            "speaker = :speaker AND size(#q) > :zero AND cancelled = :f",
            {":speaker": speaker, ":zero": 0, ":f": False},
            returns="ALL_OLD",
        )
        if old is not None:
            item = old.get("Attributes") or {}
            return str(item["queue"][0]), item
        return None, self.get(connection_id)

    def release(self, connection_id: str, speaker: str) -> bool:
        """Stop being the speaker, only if nothing is queued, cancelled or ending meanwhile."""
        return (
            self._conditional(
                connection_id,
                "REMOVE speaker, lease_until",
                "speaker = :speaker AND size(#q) = :zero AND cancelled = :f AND ending = :f",
                {":speaker": speaker, ":zero": 0, ":f": False},
            )
            is not None
        )

    def save_progress(self, connection_id: str, speaker: str, maker: EventMaker) -> None:
        self._conditional(
            connection_id,
            "SET seq = :seq, samples = :samples, lease_until = :until, expires_at = :exp",
            "speaker = :speaker",
            {
                ":seq": maker.seq,
                ":samples": maker.samples,
                ":until": int(self.clock()) + LEASE_SECS,
                ":exp": self._expires(),
                ":speaker": speaker,
            },
        )

    def close_stream(self, connection_id: str, stream_id: str) -> None:
        self._conditional(
            connection_id,
            "REMOVE stream_id, #opts, spectrogram, words, #mode, seq, samples, sample_rate, cancelled, ending, "
            "pending, #q, speaker, lease_until",
            "stream_id = :sid",
            {":sid": stream_id},
        )
