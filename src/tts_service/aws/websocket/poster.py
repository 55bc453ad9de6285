"""Events out to one WebSocket connection through API Gateway's management API (`post_to_connection`)."""

from __future__ import annotations

import contextlib
from typing import Any

from tts_service.streaming.events import API_GATEWAY_FRAME_LIMIT, AnyEvent, to_json

POST_MAX_ATTEMPTS = 5
"""Tries per event, first included. A throttled post (`LimitExceededException`, HTTP 429) is retried by botocore's
standard retry mode with jittered exponential backoff (up to 1, 2, 4, 8 s): the stream waits rather than drops
audio. A client that left (`GoneException`, 410) is never retried."""


class ConnectionGone(Exception):
    """The client has left (GoneException, or its state was deleted by `$disconnect`)."""


def management_client(endpoint: str) -> Any:
    """A boto3 `apigatewaymanagementapi` client for one API stage (`https://{domain}/{stage}`)."""
    import boto3  # noqa: PLC0415 the `aws` extra, only for real clients
    from botocore.config import Config  # noqa: PLC0415 the `aws` extra, only for real clients

    # `total_max_attempts` counts the first try; botocore's `max_attempts` would count retries only.
    retries = Config(retries={"mode": "standard", "total_max_attempts": POST_MAX_ATTEMPTS})
    return boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, config=retries)


class Poster:
    """Posts events to one connection through a management API client (`management_client`)."""

    def __init__(self, client: Any, connection_id: str) -> None:
        self.client = client
        self.connection_id = connection_id
        self.posted = 0

    def post(self, event: AnyEvent) -> None:
        data = to_json(event).encode("utf-8")
        if len(data) > API_GATEWAY_FRAME_LIMIT:
            # EventMaker bounds every event; reaching this is a bug, and API Gateway would refuse the frame.
            raise RuntimeError(f"event of {len(data)} bytes exceeds the 32 KB frame limit")
        try:
            self.client.post_to_connection(ConnectionId=self.connection_id, Data=data)
        except self.client.exceptions.GoneException:
            raise ConnectionGone(self.connection_id) from None
        self.posted += 1

    def post_quietly(self, event: AnyEvent) -> None:
        with contextlib.suppress(ConnectionGone):
            self.post(event)
