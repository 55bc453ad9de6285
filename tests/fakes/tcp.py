"""A loopback TCP endpoint whose behaviour a test switches: pass to a real server, hang, or refuse.

Stands in for a dependency (Redis, Qdrant) at one fixed address the service under test is configured with:
- `pass`: every connection is piped to `upstream` (a real redis-server), as if nothing were wrong;
- `hang`: connections are accepted and never answered (a server that stopped responding, a black-holed route);
- `refuse`: nothing listens (the server is down); connecting fails at once.
Switching mode resets the connections already open, as a failing server or network would, so pooled client
connections meet the new behaviour on their next call.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Literal

Mode = Literal["pass", "hang", "refuse"]


class TcpFault:
    def __init__(self, mode: Mode = "hang", upstream: tuple[str, int] | None = None) -> None:
        if mode == "pass" and upstream is None:
            raise ValueError("pass needs an upstream")
        self.upstream = upstream
        self.mode: Mode = mode
        self.port = 0
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self.accepted = 0
        self._listen()

    # --- control ---

    def set(self, mode: Mode) -> None:
        """Behave as `mode` from now on; connections open now are reset."""
        with self._lock:
            self.mode = mode
            sockets, self._open = self._open, []
        for sock in sockets:
            _reset(sock)
        if mode == "refuse":
            self._close_listener()
        elif self._listener is None:
            self._listen()

    def close(self) -> None:
        self._stopping.set()
        self.set("refuse")

    def __enter__(self) -> TcpFault:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- plumbing ---

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set() and self._listener is listener:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed: the mode is refuse
            conn.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._open.append(conn)
                mode = self.mode
            if mode == "pass":
                self._pipe(conn)
            # hang: hold it, read nothing, answer nothing

    def _pipe(self, conn: socket.socket) -> None:
        assert self.upstream is not None
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _reset(conn)
            return
        server.settimeout(None)
        with self._lock:
            self._open.append(server)
        for src, dst in ((conn, server), (server, conn)):
            threading.Thread(target=_pump, args=(src, dst), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    _reset(dst)


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
