"""Raw loopback clients that misbehave on purpose: they send a request, then stop reading (or vanish).

Library clients read their socket on their own (the websockets client has a reader thread), so a stalled reader
needs a plain socket. A small receive buffer makes the server's sends block after a few hundred kilobytes.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any


def connect(port: int, rcvbuf: int = 4096) -> socket.socket:
    """A TCP connection to 127.0.0.1:`port` with a small receive window."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def read_head(sock: socket.socket) -> bytes:
    """Read up to the end of the response head (a little of the body may come along)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(1024)
        if not piece:
            raise ConnectionError(f"closed before the head ended: {data!r}")
        data += piece
    return data


def send_json(sock: socket.socket, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    """Send a JSON POST, reading nothing."""
    payload = json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"Content-Length: {len(payload)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + payload)


def post_json(sock: socket.socket, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """Send a JSON POST and return the response head, without reading the body."""
    send_json(sock, path, body, headers)
    return read_head(sock)


def ws_open(sock: socket.socket, path: str, headers: dict[str, str] | None = None) -> bytes:
    """The WebSocket handshake; returns the server's answer head (101 when accepted)."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n")
    return read_head(sock)


def ws_send_text(sock: socket.socket, text: str) -> None:
    """One masked text frame, as a client must send it."""
    data = text.encode()
    mask = os.urandom(4)
    if len(data) < 126:
        head = struct.pack("!BB", 0x81, 0x80 | len(data))
    elif len(data) < 1 << 16:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, len(data))
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, len(data))
    sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def vanish(sock: socket.socket) -> None:
    """Close with a reset, as a client whose process died does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
