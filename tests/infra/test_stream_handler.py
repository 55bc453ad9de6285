"""The stream function's entry (functions/stream/app.py) behind Powertools, driven by real WebSocket API events.

A moto DynamoDB table holds the connection state and moto records what `post_to_connection` sent; the checks
here are the Lambda-level ones (JSON logs with each event's request id, EMF per route), the protocol itself is
tested with the streaming code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import unquote

import boto3
import pytest
from moto import mock_aws
from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

from tests.infra.helpers import LambdaContext, emf, json_lines, load_event, load_function, logs, metric, metric_names
from tests.support.aws import fake_aws_env
from tts_service.config import get_settings
from tts_service.engine import Engine

TABLE = "tts-service-StreamTable-test"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    fake_aws_env(monkeypatch, "eu-west-1", STREAM_TABLE_NAME=TABLE)
    get_settings.cache_clear()
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "connection_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "connection_id", "KeyType": "HASH"}],
        )
        yield
    get_settings.cache_clear()


def test_connect_speak_disconnect_log_json_with_each_request_id(
    aws: None, engine: Engine, capsys: pytest.CaptureFixture[str]
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
    # moto keys connections by the id as it appears in the URL path (percent-encoded)
    posted = b"".join(
        conn.data
        for account in apigatewaymanagementapi_backends.values()
        for backend in account.values()
        for key, conn in backend.connections.items()
        if unquote(key) == connection
    )
    assert b'"type": "start"' in posted or b'"type":"start"' in posted
    assert b"audio" in posted and (b'"type": "end"' in posted or b'"type":"end"' in posted)
    entries = json_lines(capsys.readouterr().out)
    invocations = [e for e in logs(entries) if e.get("message") == "invocation"]
    assert [e["correlation_id"] for e in invocations] == [load_event(n)["requestContext"]["requestId"] for n in names]
    assert [e["route"] for e in invocations] == ["$connect", "$default", "$disconnect"]
    assert {e["connection_id"] for e in invocations} == {connection}
    assert {e["service"] for e in invocations} == {"stream"}
    assert "Streaming from the cloud" not in json.dumps(entries)
    routes = [b["route"] for b in emf(entries) if "Latency" in metric_names(b)]
    assert routes == ["$connect", "$default", "$disconnect"]
    assert all(metric(b, "ServerError") == 0 for b in emf(entries) if "ServerError" in metric_names(b))
