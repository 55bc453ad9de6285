"""`$connect` of the API Gateway WebSocket API checks callers itself: real `$connect` events, moto DynamoDB.

With keys configured a handshake needs a valid key (`x-api-key` or `Authorization: Bearer`) or a ticket from
`POST /ws-ticket` (subprotocol `ticket.<ticket>`, echoed, or `?ticket=`); the key's owner is stored on the
connection's item and chat turns of the connection are that owner's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes.llm_server import FakeLlmServer
from tests.support.aws import CONNECTION, Capture, Invoke, message
from tests.support.lambda_events import load_event
from tts_service.aws.websocket import ConnectionStore, WebSocketHandler
from tts_service.chat import ChatService
from tts_service.credentials import Credentials, DynamoTickets, key_fingerprint
from tts_service.engine import Engine

KEY, OTHER_KEY = "sk-stream-31c9e0aa", "sk-stream-other-5d2b"


@pytest.fixture
def tickets(table: Any) -> DynamoTickets:
    """The ticket store `POST /ws-ticket` writes to on AWS: the same table."""
    return DynamoTickets(table, 60)


@pytest.fixture
def invoke(engine: Engine, table: Any, capture: Capture, tickets: DynamoTickets) -> Invoke:
    """One event on a fresh handler instance with keys configured (as on another Lambda instance)."""

    def run(event: dict[str, Any], service: ChatService | None = None) -> dict[str, Any]:
        handler = WebSocketHandler(
            engine,
            ConnectionStore(table, 3600),
            capture.client,
            chat_service=service,
            credentials=Credentials([KEY, OTHER_KEY], tickets),
        )
        response: dict[str, Any] = handler(copy.deepcopy(event), None)
        return response

    return run


def connect_event(
    headers: dict[str, str] | None = None, query: dict[str, str] | None = None, connection: str = CONNECTION
) -> dict[str, Any]:
    event = load_event("ws_connect.json")
    event["headers"].update(headers or {})
    if query is not None:
        event["queryStringParameters"] = query
    event["requestContext"]["connectionId"] = connection
    return event


def item(table: Any, connection: str = CONNECTION) -> dict[str, Any] | None:
    found: dict[str, Any] | None = table.get_item(Key={"connection_id": connection}).get("Item")
    return found


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, None),
        ({"x-api-key": "sk-guess"}, None),
        ({"Authorization": "Bearer sk-guess"}, None),
        ({}, {"api_key": KEY}),
        ({"Sec-WebSocket-Protocol": "ticket.never-issued-0123456789"}, None),
    ],
    ids=["no-key", "wrong-key", "wrong-bearer", "key-in-url", "unknown-ticket"],
)
def test_connect_without_a_valid_credential_is_refused(
    invoke: Invoke, table: Any, headers: dict[str, str], query: dict[str, str] | None
) -> None:
    response = invoke(connect_event(headers, query))
    assert response["statusCode"] == 401
    assert '"unauthorized"' in response["body"]
    assert item(table) is None  # no connection is stored, so no later message is served


@pytest.mark.parametrize(
    "headers",
    [{"x-api-key": KEY}, {"X-Api-Key": KEY}, {"Authorization": f"Bearer {KEY}"}],
    ids=["x-api-key", "header-case", "bearer"],
)
def test_connect_with_a_key_stores_its_owner(invoke: Invoke, table: Any, headers: dict[str, str]) -> None:
    assert invoke(connect_event(headers)) == {"statusCode": 200}
    stored = item(table)
    assert stored is not None
    assert stored["owner"] == key_fingerprint(KEY)
    assert KEY not in str(stored)


def test_a_ticket_connects_once_and_its_subprotocol_is_echoed(
    invoke: Invoke, table: Any, tickets: DynamoTickets
) -> None:
    # GIVEN a ticket issued for the key (as POST /ws-ticket does on the voices function)
    ticket = tickets.issue(key_fingerprint(KEY))
    assert KEY not in str(table.scan()["Items"])
    assert ticket not in str(table.scan()["Items"])
    # WHEN a browser offers it as a subprotocol
    offered = {"Sec-WebSocket-Protocol": f"ticket.{ticket}"}
    response = invoke(connect_event(offered))
    # THEN the connection is the key's, and the answer names the subprotocol (browsers require it)
    assert response == {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": f"ticket.{ticket}"}}
    assert item(table)["owner"] == key_fingerprint(KEY)  # type: ignore[index]
    # AND the ticket is spent, from the subprotocol or the query alike
    assert invoke(connect_event(offered, connection="second="))["statusCode"] == 401
    assert invoke(connect_event(query={"ticket": ticket}, connection="third="))["statusCode"] == 401
    assert item(table, "second=") is None
    assert item(table, "third=") is None


def test_a_ticket_in_the_query_connects_and_an_expired_one_does_not(invoke: Invoke, table: Any) -> None:
    fresh = DynamoTickets(table, 60).issue(key_fingerprint(OTHER_KEY))
    assert invoke(connect_event(query={"ticket": fresh}))["statusCode"] == 200
    assert item(table)["owner"] == key_fingerprint(OTHER_KEY)  # type: ignore[index]
    # DynamoDB's TTL deletes lazily: an expired item may still be there, and must not count.
    stale = DynamoTickets(table, 60, clock=lambda: 1_000_000.0).issue(key_fingerprint(KEY))
    assert invoke(connect_event(query={"ticket": stale}, connection="late="))["statusCode"] == 401


def chat_on(connection: str, text: str, conversation: str) -> dict[str, Any]:
    event = message({"type": "chat", "message": text, "conversation_id": conversation, "speak": False})
    event["requestContext"]["connectionId"] = connection
    return event


def test_chat_turns_are_the_connecting_keys(
    invoke: Invoke, capture: Capture, fake_llm: FakeLlmServer, make_service: Callable[[], ChatService]
) -> None:
    service = make_service()
    # GIVEN Alice's connection, with a turn in conversation "1"
    assert invoke(connect_event({"x-api-key": KEY}, connection="alice="))["statusCode"] == 200
    fake_llm.script("Noted.")
    invoke(chat_on("alice=", "My locker code is 4417.", "1"), service)
    # WHEN Mallory, connected with another key, chats in conversation "1"
    assert invoke(connect_event({"x-api-key": OTHER_KEY}, connection="mallory="))["statusCode"] == 200
    fake_llm.script("Hello.")
    invoke(chat_on("mallory=", "What was my code?", "1"), service)
    # THEN her LLM request carries none of Alice's turns
    sent = [m["content"] for m in fake_llm.chat_requests()[-1]["messages"] if m["role"] != "system"]
    assert sent == ["What was my code?"]
    # AND Alice's next turn sees her own history only
    fake_llm.script("It is 4417.")
    invoke(chat_on("alice=", "Remind me.", "1"), service)
    sent = [m["content"] for m in fake_llm.chat_requests()[-1]["messages"] if m["role"] != "system"]
    assert sent == ["My locker code is 4417.", "Noted.", "Remind me."]
    assert [e["type"] for e in capture.events].count("done") == 3
