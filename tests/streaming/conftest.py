"""Fixtures for the streaming tests: an app with the stream router, in-process and on a real uvicorn server."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from moto import mock_aws

from tests.support.aws import fake_aws_env
from tests.support.live import LiveServer
from tts_service.api import stream, tts
from tts_service.app import create_app
from tts_service.aws.websocket import ConnectionStore, WebSocketHandler
from tts_service.engine import Engine


@pytest.fixture(scope="session")
def stream_app(engine: Engine) -> FastAPI:
    return create_app(tts.router, stream.router)


@pytest.fixture(scope="session")
def stream_client(stream_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(stream_app) as c:
        yield c


@pytest.fixture(scope="session")
def live_server(stream_app: FastAPI) -> Iterator[LiveServer]:
    """The stream app on a real uvicorn server on 127.0.0.1 (random port), in a thread of this process."""
    server = LiveServer(stream_app)
    server.start()
    yield server
    server.stop()


# --- the API Gateway WebSocket handler: real events, captured post_to_connection, moto DynamoDB ---

EVENTS = Path(__file__).resolve().parent.parent / "events"
TABLE = "tts-stream-connections"
CONNECTION = "UoXbVdcooAMCJFA="
ENDPOINT = "https://abc123def4.execute-api.us-east-1.amazonaws.com/prod"


def load_event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


def message(body: dict[str, Any] | str) -> dict[str, Any]:
    event = load_event("ws_message_speak.json")
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


class _Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}
        self.content = b""
        self.text = ""


class Capture:
    """Records every post_to_connection of real boto3 clients and answers it (or fails it) without a network."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.attempts = 0
        self.endpoints: list[str] = []
        self.fail: Callable[[int, bytes], str | None] = lambda attempt, data: None
        """Given the attempt number and payload, an error code to answer with (GoneException, ...) or None."""
        self.on_post: Callable[[int, bytes], None] = lambda n, data: None
        """Runs after each delivered frame (n = frames delivered so far): a hook to inject other invocations."""
        self._pending: dict[str, Any] = {}

    def client(self, endpoint: str) -> Any:
        self.endpoints.append(endpoint)
        client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, region_name="us-east-1")
        client.meta.events.register("before-parameter-build.apigatewaymanagementapi.PostToConnection", self._params)
        client.meta.events.register("before-call.apigatewaymanagementapi.PostToConnection", self._answer)
        return client

    def _params(self, params: dict[str, Any], **_: Any) -> None:
        self._pending = dict(params)

    def _answer(self, **_: Any) -> tuple[_Response, dict[str, Any]]:
        self.attempts += 1
        data: bytes = self._pending["Data"]
        code = self.fail(self.attempts, data)
        if code is not None:
            status = {"GoneException": 410, "LimitExceededException": 429}[code]
            return _Response(status), {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {}}
        self.frames.append((self._pending["ConnectionId"], data))
        self.on_post(len(self.frames), data)
        return _Response(200), {"ResponseMetadata": {"HTTPStatusCode": 200}}

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(data) for _, data in self.frames]


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    fake_aws_env(monkeypatch, "us-east-1")
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        created = dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "connection_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "connection_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield created


@pytest.fixture
def capture() -> Capture:
    return Capture()


@pytest.fixture
def invoke(engine: Engine, table: Any, capture: Capture) -> Callable[[dict[str, Any]], dict[str, Any]]:
    sleeps: list[float] = []

    def run(event: dict[str, Any]) -> dict[str, Any]:
        handler = WebSocketHandler(engine, ConnectionStore(table, 3600), capture.client, sleep=sleeps.append)
        response: dict[str, Any] = handler(copy.deepcopy(event), None)
        return response

    run.sleeps = sleeps  # type: ignore[attr-defined]
    return run


def audio_of(events: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "audio")
