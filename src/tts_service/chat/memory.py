"""Conversation memory in Qdrant: every turn stored, the latest turns and the most similar older ones recalled.

One code path for both deployments: qdrant-client's embedded local mode at QDRANT_PATH (no server), or a
Qdrant server at QDRANT_URL. The embedded store allows ONE process: qdrant-client holds an exclusive lock
on `<QDRANT_PATH>/.lock`, and a second process (a second shim worker) gets `memory: "unavailable"` with a
log line saying why, never a corrupted store. Run one worker, or point every worker at a server.

On AWS Lambda an embedded store would live in one instance's /tmp and vanish with it, so there memory
needs QDRANT_URL and is otherwise reported unavailable.

Points: one per message (role user or assistant), payload `owner`, `conversation_id`, `role`, `text`,
`timestamp` (epoch seconds), `turn`: a key that orders a conversation's turns and is made without reading the
store (`new_turn_key`: microseconds since the epoch and 10 random bits), so replicas writing the same
conversation never compute the same number (turns stored before were 0, 1, ...; they still sort first).
Every read, recall, write and delete is filtered on the owner (`tts_service.credentials`: a digest of the
caller's API key, one shared owner without keys), so conversation ids are per owner: another owner's id is
simply a conversation of the caller's own, empty until it writes to it.
Points stored before owners existed have none and are never returned; retention removes them.
Vectors only when EMBEDDING_MODEL is set (named vector `text`, from the LLM provider's embeddings endpoint);
without one the collection has no vectors and recall is by order.
Every failure here becomes `MemoryUnavailable`; the chat service answers without memory when it sees one.

A Qdrant server is a dependency that may fail or hang: its calls run on a few threads of their own (not the
event loop's shared pool, which encodes audio), no lock is held across them, and after a timeout or a failure
to reach it memory answers "unavailable" at once for REOPEN_AFTER_SECS instead of queueing calls behind a dead
connection. The embedded store is a local folder whose client is not thread-safe: its calls take a lock.

Expired turns (MEMORY_RETENTION_DAYS) are filtered out of every read and deleted by `purge_expired`, on a
schedule: a timer in the local server (MEMORY_PURGE_INTERVAL_SECS), an EventBridge rule on Lambda.
"""

from __future__ import annotations

import asyncio
import contextvars
import fcntl
import logging
import secrets
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from tts_service.config import Settings
from tts_service.errors import MemoryUnavailable
from tts_service.observability import tracing
from tts_service.observability.metrics import Metrics, get_metrics

logger = logging.getLogger(__name__)

MemoryState = Literal["ok", "unavailable", "disabled"]
VECTOR_NAME = "text"
HISTORY_LIMIT = 10000
"""Most messages GET /conversations/{id} returns (the oldest are dropped past it)."""
CONVERSATION_LIST_LIMIT = 50
"""Most conversations GET /conversations lists, the most recently active first."""
CONVERSATION_SCAN_LIMIT = 2000
"""Most of the owner's messages (the newest first) read to find them: the listing's cost stays bounded."""
REOPEN_AFTER_SECS = 10.0
"""After a failed open, or a server call that failed or timed out, how long to answer 'unavailable' at once."""
_THREADS = 4
_TURN_RANDOM_BITS = 10


def new_turn_key() -> int:
    """A turn's key: later turns sort after earlier ones, and two writers never pick the same key by reading the
    same last one. Fits Qdrant's 64-bit integers for millennia."""
    return (time.time_ns() // 1000) << _TURN_RANDOM_BITS | secrets.randbits(_TURN_RANDOM_BITS)


T = TypeVar("T")


@dataclass(frozen=True)
class StoredMessage:
    """One stored message of a conversation."""

    turn: int
    role: str
    text: str
    timestamp: float


@dataclass(frozen=True)
class ConversationSummary:
    """One of an owner's conversations, as listed: its first message seen and its latest activity."""

    conversation_id: str
    first_message: str
    turns: int
    updated: float


@dataclass
class Recall:
    """What memory adds to a request: the recent turns and the similar older ones, each in turn order."""

    recalled: list[StoredMessage]
    recent: list[StoredMessage]


def _match(key: str, value: Any) -> qm.FieldCondition:
    return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))


def _sorted(messages: list[StoredMessage]) -> list[StoredMessage]:
    return sorted(messages, key=lambda m: (m.turn, m.role != "user", m.timestamp))


def _message(point: Any) -> StoredMessage:
    payload = point.payload or {}
    return StoredMessage(
        turn=int(payload["turn"]),
        role=str(payload["role"]),
        text=str(payload["text"]),
        timestamp=float(payload["timestamp"]),
    )


def _is_https(url: str) -> bool:
    return urlsplit(url).scheme.lower() == "https"


def _check_free(path: Path) -> None:
    """Refuse at once when another process holds the embedded store's lock (qdrant-client's `.lock` flock).

    qdrant-client would refuse too, but only after leaking its open lock file; this check keeps the error
    clean. A process that wins a race after this check is still refused by qdrant-client's own lock.
    """
    lock = path / ".lock"
    if not lock.exists():
        return
    with lock.open("r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError(f"Storage folder {path} is already accessed by another instance") from None
        fcntl.flock(handle, fcntl.LOCK_UN)


class ConversationMemory:
    """Turns of conversations in the Qdrant collection; blocking client calls run off the event loop."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or get_metrics()
        self.collection = settings.qdrant_collection
        self.mode = "server" if settings.qdrant_url else "embedded"
        self._client: QdrantClient | None = None
        self._lock = threading.Lock()  # the embedded client is not thread-safe; the server one is cheap to share
        self._open_lock = threading.Lock()  # makes the server client once; held for no network call
        self._executor: ThreadPoolExecutor | None = None
        self._retry_at = 0.0
        self._reason = ""
        self._collection_ready = False
        self._vector_size: int | None = None

    # --- state ---

    @property
    def enabled(self) -> bool:
        return self.settings.memory_enabled

    def describe(self) -> dict[str, Any]:
        """What memory is, for clients (GET /llm/provider): no URL, path or secret, which are the operator's."""
        return {"mode": self.mode, "collection": self.collection}

    def close(self) -> None:
        """Release the store (and, in embedded mode, its lock so another process may open it)."""
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
            if self._client is not None:
                try:
                    self._client.close()
                finally:
                    self._client = None
                    self._collection_ready = False

    # --- async API ---

    async def recall(self, owner: str, conversation_id: str, query_vector: list[float] | None) -> Recall:
        """The last MEMORY_TURNS turns and, with a query vector, the MEMORY_RECALL_K most similar older turns."""
        return await self._run("recall", self._recall, owner, conversation_id, query_vector)

    async def store(
        self,
        owner: str,
        conversation_id: str,
        user: str,
        assistant: str,
        vectors: tuple[list[float], list[float]] | None,
    ) -> int:
        """Append one whole turn (user message + reply) to the owner's conversation; returns its turn key."""
        return await self._run("store", self._store, owner, conversation_id, user, assistant, vectors)

    async def history(self, owner: str, conversation_id: str) -> list[StoredMessage]:
        """Every unexpired message of the owner's conversation, oldest first."""
        return await self._run("history", self._history, owner, conversation_id)

    async def conversations(self, owner: str) -> list[ConversationSummary]:
        """The owner's conversations, the most recently active first (at most CONVERSATION_LIST_LIMIT)."""
        return await self._run("list", self._conversations, owner)

    async def delete(self, owner: str, conversation_id: str) -> int:
        """Erase the owner's conversation; returns how many messages were deleted."""
        return await self._run("delete", self._delete, owner, conversation_id)

    async def purge(self) -> int:
        """Delete every message older than MEMORY_RETENTION_DAYS, of every owner; returns how many."""
        return await self._run("purge", self._purge)

    @property
    def wants_vectors(self) -> bool:
        """Whether stored turns get vectors (an embedder is configured and the collection can hold them)."""
        return bool(self.settings.embedding_model)

    async def _run(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        if not self.enabled:
            raise MemoryUnavailable("conversation memory is disabled (MEMORY_ENABLED=false)", memory="disabled")
        # The database semantic conventions' names; the collection, never the owner or the conversation.
        attributes = {"db.system": "qdrant", "db.operation": op, "db.collection.name": self.collection}
        with tracing.span(f"qdrant.{op}", {**attributes, "tts.memory_mode": self.mode}):
            return await self._run_traced(op, fn, *args)

    async def _run_traced(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        if time.monotonic() < self._retry_at:
            self.metrics.memory_failure(op)
            raise MemoryUnavailable(self._reason)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(_THREADS, thread_name_prefix="memory")
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self._executor, contextvars.copy_context().run, self._call, fn, *args)
        try:
            return await asyncio.wait_for(call, self.settings.memory_timeout_secs)
        except MemoryUnavailable as exc:
            self.metrics.memory_failure(op)
            logger.warning("memory unavailable", extra={"op": op, "reason": exc.message, "memory_mode": self.mode})
            raise
        except TimeoutError:
            self.metrics.memory_failure(op)
            logger.warning("memory timed out", extra={"op": op, "memory_mode": self.mode})
            if self.mode == "server":
                self._fail("the conversation store did not answer in time")
            raise MemoryUnavailable("the conversation store did not answer in time") from None
        except Exception as exc:
            self.metrics.memory_failure(op)
            logger.warning(
                "memory failed", extra={"op": op, "error_type": type(exc).__name__, "memory_mode": self.mode}
            )
            if self.mode == "server" and _unreachable(exc):
                self._fail(f"cannot reach the conversation store ({type(exc).__name__})")
            raise MemoryUnavailable("the conversation store failed") from None

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self.mode == "server":
            return fn(self._open(), *args)
        with self._lock:
            return fn(self._open(), *args)

    # --- blocking core (worker thread, under the lock) ---

    def _open(self) -> QdrantClient:
        with self._open_lock:
            return self._open_locked()

    def _open_locked(self) -> QdrantClient:
        if self._client is not None:
            return self._client
        if time.monotonic() < self._retry_at:
            raise MemoryUnavailable(self._reason)
        try:
            self._client = self._connect()
            self._retry_at = 0.0
        except MemoryUnavailable as exc:
            self._fail(exc.message)
            raise
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                # Clients read this message (503 memory_unavailable): it names no path; the operator knows it.
                self._fail(
                    "the embedded store is open in another process; it allows one process: run a single worker "
                    "or set QDRANT_URL"
                )
            else:
                self._fail(f"cannot open the conversation store ({type(exc).__name__})")
            raise MemoryUnavailable(self._reason) from None
        except Exception as exc:
            self._fail(f"cannot open the conversation store ({type(exc).__name__})")
            raise MemoryUnavailable(self._reason) from None
        logger.info("memory open", extra={**self.describe(), "where": self._where()})
        return self._client

    def _where(self) -> str:
        """Where the store is, for the operator's log: the embedded folder, or the server's host (a URL may hold
        credentials)."""
        if self.settings.qdrant_url:
            return urlsplit(self.settings.qdrant_url).hostname or "?"
        return str(self.settings.qdrant_local_path)

    def _fail(self, reason: str) -> None:
        self._reason = reason
        self._retry_at = time.monotonic() + REOPEN_AFTER_SECS
        logger.error("memory unavailable", extra={"reason": reason, "memory_mode": self.mode})

    def _connect(self) -> QdrantClient:
        settings = self.settings
        if settings.qdrant_url:
            if (
                settings.aws_lambda_function_name
                and not settings.qdrant_allow_http
                and not _is_https(settings.qdrant_url)
            ):
                raise MemoryUnavailable(
                    "on AWS Lambda QDRANT_URL must be https: conversations and the Qdrant key would cross the "
                    "network in clear (QDRANT_ALLOW_HTTP=true allows http inside a private network)"
                )
            # No call here: this runs under the open lock, and a server that hangs must hold no lock. The first
            # real call finds out, and a failure there answers "unavailable" for a while (`_run`).
            return QdrantClient(
                url=settings.qdrant_url,
                api_key=settings.qdrant_api_key,
                timeout=max(1, round(settings.memory_timeout_secs)),
                check_compatibility=False,  # its background probe logs a traceback when the server is down
            )
        if settings.aws_lambda_function_name:
            raise MemoryUnavailable(
                "on AWS Lambda conversation memory needs QDRANT_URL; an embedded store would be private to one "
                "instance and lost with it"
            )
        path = settings.qdrant_local_path
        path.mkdir(parents=True, exist_ok=True)
        _check_free(path)
        return QdrantClient(path=str(path))

    def _exists(self, client: QdrantClient) -> bool:
        if self._collection_ready:
            return True
        if not client.collection_exists(self.collection):
            return False
        self._adopt(client)
        return True

    def _adopt(self, client: QdrantClient) -> None:
        info = client.get_collection(self.collection)
        if "owner" not in (info.payload_schema or {}):
            # A collection made before turns had owners: every query filters on it, so a server wants the index.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                client.create_payload_index(self.collection, "owner", qm.PayloadSchemaType.KEYWORD)
        vectors = info.config.params.vectors
        params = vectors.get(VECTOR_NAME) if isinstance(vectors, dict) else None
        self._vector_size = params.size if params is not None else None
        if self.wants_vectors and self._vector_size is None:
            logger.warning(
                "collection has no vectors; similarity recall is off until it is recreated",
                extra={"collection": self.collection},
            )
        self._collection_ready = True

    def _ensure(self, client: QdrantClient, vector_size: int | None) -> None:
        if self._exists(client):
            return
        vectors_config = (
            {VECTOR_NAME: qm.VectorParams(size=vector_size, distance=qm.Distance.COSINE)} if vector_size else {}
        )
        try:
            client.create_collection(self.collection, vectors_config=vectors_config)
        except Exception:
            if not client.collection_exists(self.collection):
                raise
            self._adopt(client)  # another replica made it first
            return
        with warnings.catch_warnings():
            # Embedded mode accepts payload indexes but warns they do nothing there; a server uses them.
            warnings.simplefilter("ignore", UserWarning)
            client.create_payload_index(self.collection, "owner", qm.PayloadSchemaType.KEYWORD)
            client.create_payload_index(self.collection, "conversation_id", qm.PayloadSchemaType.KEYWORD)
            client.create_payload_index(self.collection, "turn", qm.PayloadSchemaType.INTEGER)
            client.create_payload_index(self.collection, "timestamp", qm.PayloadSchemaType.FLOAT)
        self._adopt(client)

    def _conversation_filter(self, owner: str, conversation_id: str, *extra: qm.Condition) -> qm.Filter:
        must: list[qm.Condition] = [_match("owner", owner), _match("conversation_id", conversation_id), *extra]
        cutoff = self._cutoff()
        if cutoff is not None:
            must.append(qm.FieldCondition(key="timestamp", range=qm.Range(gte=cutoff)))
        return qm.Filter(must=must)

    def _cutoff(self) -> float | None:
        days = self.settings.memory_retention_days
        return None if days is None else time.time() - days * 86400

    def _latest(self, client: QdrantClient, owner: str, conversation_id: str, limit: int) -> list[StoredMessage]:
        points, _ = client.scroll(
            self.collection,
            scroll_filter=self._conversation_filter(owner, conversation_id),
            limit=limit,
            order_by=qm.OrderBy(key="turn", direction=qm.Direction.DESC),
            with_payload=True,
            with_vectors=False,
        )
        return [_message(p) for p in points]

    def _recall(
        self, client: QdrantClient, owner: str, conversation_id: str, query_vector: list[float] | None
    ) -> Recall:
        if not self._exists(client):
            return Recall(recalled=[], recent=[])
        turns = self.settings.memory_turns
        recent: list[StoredMessage] = []
        if turns > 0:
            latest = self._latest(client, owner, conversation_id, 2 * turns + 2)
            keep = sorted({m.turn for m in latest}, reverse=True)[:turns]
            recent = _sorted([m for m in latest if m.turn in keep])
        recalled: list[StoredMessage] = []
        k = self.settings.memory_recall_k
        if query_vector is not None and k > 0 and self._vector_size == len(query_vector):
            older: list[qm.Condition] = []
            if recent:
                older.append(qm.FieldCondition(key="turn", range=qm.Range(lt=recent[0].turn)))
            hits = client.query_points(
                self.collection,
                query=query_vector,
                using=VECTOR_NAME,
                query_filter=self._conversation_filter(owner, conversation_id, *older),
                limit=2 * k,
                with_payload=True,
            ).points
            wanted: list[int] = []
            for hit in hits:
                turn = int((hit.payload or {})["turn"])
                if turn not in wanted:
                    wanted.append(turn)
            wanted = wanted[:k]
            if wanted:
                points, _ = client.scroll(
                    self.collection,
                    scroll_filter=self._conversation_filter(
                        owner, conversation_id, qm.FieldCondition(key="turn", match=qm.MatchAny(any=wanted))
                    ),
                    limit=4 * len(wanted),
                    with_payload=True,
                    with_vectors=False,
                )
                recalled = _sorted([_message(p) for p in points])
        return Recall(recalled=recalled, recent=recent)

    def _store(
        self,
        client: QdrantClient,
        owner: str,
        conversation_id: str,
        user: str,
        assistant: str,
        vectors: tuple[list[float], list[float]] | None,
    ) -> int:
        self._ensure(client, len(vectors[0]) if vectors else None)
        use_vectors = vectors is not None and self._vector_size == len(vectors[0])
        turn = new_turn_key()
        now = time.time()
        points = []
        for i, (role, text) in enumerate((("user", user), ("assistant", assistant))):
            vector: Any = {VECTOR_NAME: vectors[i]} if use_vectors and vectors is not None else {}
            payload = {
                "owner": owner,
                "conversation_id": conversation_id,
                "role": role,
                "text": text,
                "timestamp": now,
                "turn": turn,
            }
            # The assistant's timestamp is a hair later so ties never reorder a turn.
            payload["timestamp"] = now + i * 1e-3
            points.append(qm.PointStruct(id=str(uuid.uuid4()), vector=vector, payload=payload))
        client.upsert(self.collection, points=points, wait=True)
        return turn

    def _purge(self, client: QdrantClient) -> int:
        cutoff = self._cutoff()
        if cutoff is None or not self._exists(client):
            return 0
        expired = qm.Filter(must=[qm.FieldCondition(key="timestamp", range=qm.Range(lt=cutoff))])
        count = client.count(self.collection, count_filter=expired, exact=True).count
        if count:
            client.delete(self.collection, points_selector=qm.FilterSelector(filter=expired), wait=True)
        return int(count)

    def _history(self, client: QdrantClient, owner: str, conversation_id: str) -> list[StoredMessage]:
        if not self._exists(client):
            return []
        messages: list[StoredMessage] = []
        offset: Any = None
        while len(messages) < HISTORY_LIMIT:
            points, offset = client.scroll(
                self.collection,
                scroll_filter=self._conversation_filter(owner, conversation_id),
                limit=256,
                offset=offset,
                with_payload=True,
                with_vectors=False,
            )
            messages.extend(_message(p) for p in points)
            if offset is None:
                break
        return _sorted(messages)[-HISTORY_LIMIT:]

    def _conversations(self, client: QdrantClient, owner: str) -> list[ConversationSummary]:
        if not self._exists(client):
            return []
        must: list[qm.Condition] = [_match("owner", owner), _match("role", "user")]
        cutoff = self._cutoff()
        if cutoff is not None:
            must.append(qm.FieldCondition(key="timestamp", range=qm.Range(gte=cutoff)))
        points, _ = client.scroll(
            self.collection,
            scroll_filter=qm.Filter(must=must),
            limit=CONVERSATION_SCAN_LIMIT,
            order_by=qm.OrderBy(key="timestamp", direction=qm.Direction.DESC),
            with_payload=True,
            with_vectors=False,
        )
        found: dict[str, list[StoredMessage]] = {}
        for point in points:
            found.setdefault(str((point.payload or {})["conversation_id"]), []).append(_message(point))
        summaries = [
            ConversationSummary(
                conversation_id=cid,
                first_message=min(messages, key=lambda m: m.turn).text,
                turns=len({m.turn for m in messages}),
                updated=max(m.timestamp for m in messages),
            )
            for cid, messages in found.items()
        ]
        summaries.sort(key=lambda s: s.updated, reverse=True)
        return summaries[:CONVERSATION_LIST_LIMIT]

    def _delete(self, client: QdrantClient, owner: str, conversation_id: str) -> int:
        if not self._exists(client):
            return 0
        flt = qm.Filter(must=[_match("owner", owner), _match("conversation_id", conversation_id)])
        count = client.count(self.collection, count_filter=flt, exact=True).count
        if count:
            client.delete(self.collection, points_selector=qm.FilterSelector(filter=flt), wait=True)
        return int(count)


def _unreachable(exc: Exception) -> bool:
    """A failure of the server or the way to it (not of one request): worth leaving it alone for a while."""
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code is None or exc.status_code >= 500
    return isinstance(exc, ResponseHandlingException | OSError | httpx.TransportError)


async def purge_expired(memory: ConversationMemory) -> dict[str, Any]:
    """One scheduled purge of expired turns: what it did, for the log (and the scheduled Lambda's answer)."""
    if not memory.enabled or memory.settings.memory_retention_days is None:
        return {"purged": 0, "memory": "disabled" if not memory.enabled else "ok"}
    try:
        deleted = await memory.purge()
    except MemoryUnavailable:
        return {"purged": 0, "memory": "unavailable"}
    logger.info("expired turns purged", extra={"deleted": deleted})
    return {"purged": deleted, "memory": "ok"}


async def purge_periodically(memory: ConversationMemory, every_secs: float) -> None:
    """The local server's purge timer: at start, then every `every_secs` (a task cancelled at shutdown)."""
    while True:
        await purge_expired(memory)
        await asyncio.sleep(every_secs)
