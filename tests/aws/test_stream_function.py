"""The stream function's entry (functions/stream/app.py) behind Powertools, driven by real WebSocket API events.

A moto DynamoDB table holds the connection state and the fake management API records what `post_to_connection`
sent; the checks here are the Lambda-level ones (JSON logs with each event's request id, EMF per route), the
protocol itself is tested in tests/aws/websocket.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator

import boto3
import pytest

from tests.support.aws import Capture, connection_table
from tests.support.lambda_events import FakeLambdaContext as LambdaContext
from tests.support.lambda_events import emf, json_lines, load_event, load_function, logs, metric, metric_names
from tts_service.config import get_settings
from tts_service.credentials import key_fingerprint
from tts_service.engine import Engine

TABLE = "tts-service-StreamTable-test"


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> Capture:
    capture = Capture()
    capture.install(monkeypatch)
    return capture


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, capture: Capture) -> Iterator[None]:
    with connection_table(monkeypatch, TABLE, "eu-west-1", STREAM_TABLE_NAME=TABLE):
        get_settings.cache_clear()
        yield
    get_settings.cache_clear()


def test_connect_speak_disconnect_log_json_with_each_request_id(
    aws: None, capture: Capture, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the stream function initialised as Lambda would (table from STREAM_TABLE_NAME)
    module = load_function("stream")
    capsys.readouterr()
    names = ["ws_connect.json", "ws_message_speak.json", "ws_disconnect.json"]

    # WHEN API Gateway delivers $connect, a speak message and $disconnect
    statuses = [module.handler(load_event(name), LambdaContext())["statusCode"] for name in names]

    # THEN each answered, audio went to the connection, and each invocation logged its own request id
    assert statuses == [200, 200, 200]
    connection = load_event("ws_connect.json")["requestContext"]["connectionId"]
    posted = b"".join(data for posted_to, data in capture.frames if posted_to == connection)
    assert b'"type": "start"' in posted or b'"type":"start"' in posted
    assert b"audio" in posted
    assert b'"type": "end"' in posted or b'"type":"end"' in posted
    entries = json_lines(capsys.readouterr().out)
    invocations = [e for e in logs(entries) if e.get("message") == "invocation"]
    assert [e["correlation_id"] for e in invocations] == [load_event(n)["requestContext"]["requestId"] for n in names]
    assert [e["route"] for e in invocations] == ["$connect", "$default", "$disconnect"]
    assert {e["connection_id"] for e in invocations} == {connection}
    assert {e["service"] for e in invocations} == {"stream"}
    spoken = json.loads(load_event("ws_message_speak.json")["body"])["text"]
    assert spoken[:24] not in json.dumps(entries)
    routes = [b["route"] for b in emf(entries) if "Latency" in metric_names(b)]
    assert routes == ["$connect", "$default", "$disconnect"]
    assert all(metric(b, "ServerError") == 0 for b in emf(entries) if "ServerError" in metric_names(b))


def test_with_keys_the_function_refuses_connect_on_its_own_and_logs_no_key(
    aws: None, engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the stream function initialised with API_KEYS (resolved from ApiKeysSecretArn at init on AWS)
    key = "sk-lambda-ws-4c1d9e"
    monkeypatch.setenv("API_KEYS", key)
    get_settings.cache_clear()
    module = load_function("stream")
    capsys.readouterr()
    connect = load_event("ws_connect.json")
    connection = connect["requestContext"]["connectionId"]
    wrong = copy.deepcopy(connect)
    wrong["headers"]["x-api-key"] = f"{key}-guess"
    right = copy.deepcopy(connect)
    right["headers"]["Authorization"] = f"Bearer {key}"

    # WHEN API Gateway delivers handshakes without a key, with a wrong one, and with the right one
    statuses = [module.handler(event, LambdaContext())["statusCode"] for event in (connect, wrong, right)]

    # THEN only the last becomes a connection, stored under the key's fingerprint
    assert statuses == [401, 401, 200]
    item = boto3.resource("dynamodb").Table(TABLE).get_item(Key={"connection_id": connection})["Item"]
    assert item["owner"] == key_fingerprint(key)
    # AND the refusals are logged with their reason, never with the key
    out = capsys.readouterr().out
    reasons = [e.get("reason") for e in logs(json_lines(out)) if e.get("message") == "unauthorized"]
    assert reasons == ["missing key", "unknown key"]
    assert key not in out


def test_a_ticket_from_the_voices_function_opens_one_connection_on_the_stream_function(
    aws: None, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN both entries initialised as on AWS, with keys and the shared connection table
    key = "sk-lambda-ticket-8a2f"
    monkeypatch.setenv("API_KEYS", key)
    get_settings.cache_clear()
    voices, stream = load_function("voices"), load_function("stream")
    request = load_event("http_post_chat.json")
    request.update(routeKey="POST /ws-ticket", rawPath="/ws-ticket", body=None)
    request["requestContext"].update(routeKey="POST /ws-ticket")
    request["requestContext"]["http"]["path"] = "/ws-ticket"
    for name in ("content-type", "content-length"):
        request["headers"].pop(name)

    # WHEN a browser's page asks the HTTP API for a ticket, with and without its key
    assert voices.handler(request, LambdaContext())["statusCode"] == 401
    request["headers"]["x-api-key"] = key
    issued = voices.handler(request, LambdaContext())
    assert issued["statusCode"] == 200
    ticket = json.loads(issued["body"])["ticket"]

    # THEN its WebSocket handshake, on another function, connects once under the key's owner
    connect = load_event("ws_connect.json")
    connect["headers"]["Sec-WebSocket-Protocol"] = f"ticket.{ticket}"
    answered = stream.handler(copy.deepcopy(connect), LambdaContext())
    assert answered == {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": f"ticket.{ticket}"}}
    table = boto3.resource("dynamodb").Table(TABLE)
    owner = table.get_item(Key={"connection_id": connect["requestContext"]["connectionId"]})["Item"]["owner"]
    assert owner == key_fingerprint(key)
    connect["requestContext"]["connectionId"] = "Qx8AAdXwIAMCJdR="
    assert stream.handler(connect, LambdaContext())["statusCode"] == 401
