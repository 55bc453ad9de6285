"""Who is calling: API keys, the owner each key stands for, and single-use tickets for browser WebSockets.

Transport-neutral on purpose: the ASGI middleware (local server, HTTP Lambdas) and the API Gateway `$connect`
handler read the same credentials from a request's headers (and, for a WebSocket handshake, its offered
subprotocols or query) through this module, so both refuse and identify callers the same way.

- A key travels in a header only: `Authorization: Bearer <key>` or `X-API-Key: <key>`. Never in a URL, where
  proxies, browser history and access logs keep it.
- Browsers cannot set headers on a WebSocket handshake, so they first trade their key for a ticket
  (`POST /ws-ticket`): random, single-use, valid `WS_TICKET_TTL_SECS`. The handshake presents it as the
  subprotocol `ticket.<ticket>` (echoed back, as browsers require) or as `?ticket=<ticket>`.
- The owner of a request is a short digest of its key (the same for every request with that key); with no keys
  configured everyone is one shared owner. Stored conversations carry their owner; the key itself is stored
  nowhere.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from tts_service.config import Settings

SHARED_OWNER = "shared"
"""The owner of every request when no API keys are configured (a key's owner is hex, so they never collide)."""
TICKET_PROTOCOL_PREFIX = "ticket."
TICKET_ITEM_PREFIX = "ticket#"
"""Ticket items share the connection table; API Gateway connection ids never contain `#`."""
_TICKET_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
MAX_OUTSTANDING_TICKETS = 10000
"""Unredeemed tickets one process keeps; past it the oldest are dropped (their clients ask again)."""


def load_api_keys(spec: str | None) -> list[str]:
    """`API_KEYS`: comma-separated keys, or the path of a file with one key per line (`#` comments)."""
    if not spec or not spec.strip():
        return []
    spec = spec.strip()
    looks_like_path = spec.startswith(("/", "./", "../", "~"))
    path = Path(spec).expanduser()
    if "," not in spec and (looks_like_path or path.is_file()):
        if not path.is_file():
            # Taking the path itself as the key would "work" and silently protect nothing.
            raise ValueError("API_KEYS names a file that does not exist")
        lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        keys = [line for line in lines if line]
        if not keys:
            raise ValueError("API_KEYS names a file with no keys")
        return keys
    return [key.strip() for key in spec.split(",") if key.strip()]


def key_fingerprint(key: str) -> str:
    """A short stable digest naming an API key in counters and storage, so the key itself is never stored."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def conversation_ref(conversation_id: str) -> str:
    """What logs say instead of a conversation id: enough to correlate lines, not the id a client could reuse."""
    return hashlib.sha256(conversation_id.encode()).hexdigest()[:12]


def header_key(headers: Mapping[str, str]) -> str | None:
    """The key in `Authorization: Bearer <key>` or `X-API-Key: <key>` (header names in lower case)."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    api_key = headers.get("x-api-key")
    if api_key and api_key.strip():
        return api_key.strip()
    return None


def offered_subprotocols(headers: Mapping[str, str]) -> list[str]:
    """The values of `Sec-WebSocket-Protocol`, in the client's order."""
    return [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]


def ticket_subprotocol(headers: Mapping[str, str]) -> str | None:
    """The offered `ticket.<ticket>` subprotocol, which the handshake's answer must name (browsers require it)."""
    return next((p for p in offered_subprotocols(headers) if p.startswith(TICKET_PROTOCOL_PREFIX)), None)


def presented_ticket(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The ticket of a WebSocket handshake: the `ticket.<ticket>` subprotocol, else `?ticket=`."""
    protocol = ticket_subprotocol(headers)
    if protocol is not None:
        return protocol.removeprefix(TICKET_PROTOCOL_PREFIX)
    value = query.get("ticket")
    return value or None


class TicketStore(Protocol):
    """Where tickets live between `POST /ws-ticket` and the handshake that redeems them."""

    ttl_secs: int

    def issue(self, owner: str) -> str:
        """A new ticket that stands for `owner` until redeemed or expired."""
        ...

    def redeem(self, ticket: str) -> str | None:
        """The ticket's owner, once: the ticket is gone afterwards. None when unknown, used or expired."""
        ...


def _digest(ticket: str) -> str:
    # Stores keep the ticket's digest, so whoever reads the store (or its backups) holds no usable ticket.
    return hashlib.sha256(ticket.encode()).hexdigest()


def new_ticket() -> str:
    return secrets.token_urlsafe(24)


class MemoryTickets:
    """Tickets in this process's memory: the local server (one process, as its embedded store requires)."""

    def __init__(self, ttl_secs: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_secs = ttl_secs
        self.clock = clock
        self._lock = threading.Lock()
        self._tickets: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def issue(self, owner: str) -> str:
        ticket = new_ticket()
        now = self.clock()
        with self._lock:
            while self._tickets:
                oldest = next(iter(self._tickets.values()))
                if oldest[1] > now and len(self._tickets) < MAX_OUTSTANDING_TICKETS:
                    break
                self._tickets.popitem(last=False)
            self._tickets[_digest(ticket)] = (owner, now + self.ttl_secs)
        return ticket

    def redeem(self, ticket: str) -> str | None:
        if not _TICKET_RE.match(ticket):
            return None
        with self._lock:
            found = self._tickets.pop(_digest(ticket), None)
        if found is None or found[1] <= self.clock():
            return None
        return found[0]


class DynamoTickets:
    """Tickets as items of the WebSocket connection table (TTL `expires_at`): any instance may redeem them.

    Redeeming is one conditional-free `DeleteItem` returning the old item, so of two handshakes racing with the
    same ticket exactly one gets the owner. DynamoDB deletes expired items lazily, hence the expiry check.
    """

    def __init__(self, table: Any, ttl_secs: int, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self.ttl_secs = ttl_secs
        self.clock = clock

    def issue(self, owner: str) -> str:
        ticket = new_ticket()
        expires = int(self.clock()) + self.ttl_secs
        self.table.put_item(
            Item={"connection_id": TICKET_ITEM_PREFIX + _digest(ticket), "owner": owner, "expires_at": expires}
        )
        return ticket

    def redeem(self, ticket: str) -> str | None:
        if not _TICKET_RE.match(ticket):
            return None
        old = self.table.delete_item(
            Key={"connection_id": TICKET_ITEM_PREFIX + _digest(ticket)}, ReturnValues="ALL_OLD"
        ).get("Attributes")
        if not old or int(old.get("expires_at", 0)) < self.clock() or not isinstance(old.get("owner"), str):
            return None
        return str(old["owner"])


def ticket_store(settings: Settings) -> TicketStore:
    """DynamoDB tickets where there is a connection table (AWS: any instance may redeem), else in memory."""
    if settings.stream_table_name:
        import boto3  # noqa: PLC0415 the `aws` extra, only with a connection table

        table = boto3.resource("dynamodb").Table(settings.stream_table_name)
        return DynamoTickets(table, settings.ws_ticket_ttl_secs)
    return MemoryTickets(settings.ws_ticket_ttl_secs)


class Credentials:
    """The configured keys and the ticket store: who a request is, by the owner its key or ticket stands for."""

    def __init__(self, keys: Sequence[str], tickets: TicketStore) -> None:
        self._keys = [key.encode() for key in keys]
        self.tickets = tickets

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        return cls(load_api_keys(settings.api_keys), ticket_store(settings))

    @property
    def required(self) -> bool:
        """Whether requests need a key (API_KEYS is set)."""
        return bool(self._keys)

    def valid(self, key: str) -> bool:
        candidate = key.encode()
        # Compare against every key, without stopping early, so timing says nothing about which one matched.
        matched = False
        for known in self._keys:
            matched |= hmac.compare_digest(candidate, known)
        return matched

    def owner(self, headers: Mapping[str, str], query: Mapping[str, str], websocket: bool) -> str | None:
        """The owner of a request, or None when keys are required and it has no valid key (or ticket).

        A header key wins over a ticket; a ticket counts on WebSocket handshakes only, and is spent by the check.
        """
        if not self.required:
            return SHARED_OWNER
        key = header_key(headers)
        if key is not None:
            return key_fingerprint(key) if self.valid(key) else None
        if websocket:
            ticket = presented_ticket(headers, query)
            if ticket is not None:
                return self.tickets.redeem(ticket)
        return None

    def refusal(self, headers: Mapping[str, str], query: Mapping[str, str], websocket: bool) -> tuple[str, str]:
        """Why `owner` said None: a short reason for logs and a message for the client (never echoing what was sent)."""
        if header_key(headers) is not None:
            return "unknown key", "the API key is not valid"
        if websocket and presented_ticket(headers, query) is not None:
            return "invalid ticket", (
                "the ticket is not valid (unknown, already used or expired): get a new one from POST /ws-ticket"
            )
        how = "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        if websocket:
            how += "; browsers: a ticket from POST /ws-ticket as subprotocol 'ticket.<ticket>'"
        return "missing key", f"an API key is required: {how}"
