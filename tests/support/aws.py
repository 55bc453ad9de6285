"""AWS for tests: fake credentials and region for calls moto serves, and the one fake of API Gateway's management
API (`post_to_connection`)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from moto import mock_aws

from tests.support.lambda_events import load_event
from tts_service.aws.websocket import handler, poster

ERROR_STATUS = {"GoneException": 410, "LimitExceededException": 429}


def fake_aws_env(monkeypatch: pytest.MonkeyPatch, region: str, **extra: str) -> None:
    """Credentials that can reach nothing real, a region (as on Lambda), and any extra variables."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        **extra,
    }.items():
        monkeypatch.setenv(name, value)


@contextmanager
def connection_table(monkeypatch: pytest.MonkeyPatch, name: str, region: str, **extra: str) -> Iterator[Any]:
    """Moto's DynamoDB with the stream function's connection table (as the template makes it), under fake
    credentials; yields the boto3 Table."""
    fake_aws_env(monkeypatch, region, **extra)
    with mock_aws():
        yield boto3.resource("dynamodb", region_name=region).create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "connection_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "connection_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


class Capture:
    """API Gateway's management API as seen by the service's own clients (`management_client`, its retry config
    included): each `post_to_connection` attempt is answered at the HTTP layer, below botocore's retries, so a
    throttled attempt is retried exactly as it would be against AWS. Delivered frames are recorded."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.attempts = 0
        self.endpoints: list[str] = []
        self.fail: Callable[[int, bytes], str | None] = lambda attempt, data: None
        """Given the attempt number and payload, an error code to answer with (GoneException, ...) or None."""
        self.on_post: Callable[[int, bytes], None] = lambda n, data: None
        """Runs after each delivered frame (n = frames delivered so far): a hook to inject other invocations."""

    def client(self, endpoint: str) -> Any:
        """A management API client for `endpoint`, made as the service makes it, answered here."""
        self.endpoints.append(endpoint)
        client = poster.management_client(endpoint)
        client.meta.events.register("before-send.apigatewaymanagementapi.PostToConnection", self._answer)
        return client

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Answer the clients of handlers made from settings (`WebSocketHandler.from_settings`), too."""
        monkeypatch.setattr(handler, "management_client", self.client)

    def _answer(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        self.attempts += 1
        data = bytes(request.body or b"")
        connection_id = unquote(request.url.rsplit("/@connections/", 1)[1])
        code = self.fail(self.attempts, data)
        if code is not None:
            body = json.dumps({"message": code}).encode()
            headers = {"x-amzn-ErrorType": code, "Content-Type": "application/json"}
            return AWSResponse(request.url, ERROR_STATUS[code], headers, _Body(body))
        self.frames.append((connection_id, data))
        self.on_post(len(self.frames), data)
        return AWSResponse(request.url, 200, {}, _Body(b""))

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(data) for _, data in self.frames]


# --- the API Gateway WebSocket: the connection of tests/events/ws_*.json, its events and what is posted to it ---

TABLE = "tts-stream-connections"
_CONNECT = load_event("ws_connect.json")["requestContext"]
CONNECTION = _CONNECT["connectionId"]
ENDPOINT = f"https://{_CONNECT['domainName']}/{_CONNECT['stage']}"

Invoke = Callable[..., dict[str, Any]]


def message(body: dict[str, Any] | str) -> dict[str, Any]:
    """A `$default` event of the connection carrying `body` (JSON-encoded unless already a string)."""
    event = load_event("ws_message_speak.json")
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def audio_of(events: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "audio")
