"""The gateway's control socket: a unix stream socket speaking JSON lines.

One request per line, ``{"op": "...", ...}``; one response per line,
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. A response with
``"follow": true`` turns the connection into a subscriber: from then on the
server writes one JSON line per event until the client closes.

Every socket is non-blocking and lives in the daemon's select loop, so a slow
or stuck client never holds up the packet path; a subscriber that falls more
than :data:`MAX_BUFFERED` bytes behind is disconnected.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import socket
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("natlab.gateway")

MAX_REQUEST = 1 << 20
MAX_BUFFERED = 4 << 20
Handler = Callable[[dict[str, Any]], dict[str, Any]]


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()


class _Conn:
    __slots__ = ("sock", "inbuf", "outbuf", "following")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.following = False


class ControlServer:
    """Serves ``handler(request) -> response`` on ``path`` (mode 0600) inside ``selector``."""

    def __init__(self, path: Path, handler: Handler, selector: selectors.BaseSelector) -> None:
        self.path = Path(path)
        self.handler = handler
        self.selector = selector
        self._listener: socket.socket | None = None
        self._conns: dict[int, _Conn] = {}

    def open(self) -> "ControlServer":
        """Bind, listen, then move the socket into place: once ``path`` exists, it answers."""
        self._clear_stale()
        temporary = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(temporary))
        finally:
            os.umask(old_umask)
        os.chmod(temporary, 0o600)
        listener.listen(64)
        listener.setblocking(False)
        os.replace(temporary, self.path)
        self._listener = listener
        self.selector.register(listener, selectors.EVENT_READ, self._accept)
        return self

    def _clear_stale(self) -> None:
        if not self.path.exists():
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            self.path.unlink(missing_ok=True)  # left by a gateway that was killed
            return
        finally:
            probe.close()
        raise RuntimeError(f"another gateway is already serving {self.path}")

    @property
    def subscribers(self) -> int:
        return sum(1 for conn in self._conns.values() if conn.following)

    def _accept(self, _mask: int) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            conn = _Conn(sock)
            self._conns[sock.fileno()] = conn
            self.selector.register(sock, selectors.EVENT_READ, lambda mask, c=conn: self._ready(c, mask))

    def _ready(self, conn: _Conn, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            self._read(conn)
        if mask & selectors.EVENT_WRITE and conn.sock.fileno() in self._conns:
            self._flush(conn)

    def _read(self, conn: _Conn) -> None:
        try:
            chunk = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(conn)
            return
        if conn.following:
            return  # subscribers only listen; anything they send is ignored
        conn.inbuf += chunk
        if len(conn.inbuf) > MAX_REQUEST:
            self._send(conn, {"ok": False, "error": "request too large"})
            self._close(conn)
            return
        while b"\n" in conn.inbuf and not conn.following:
            line, _, rest = bytes(conn.inbuf).partition(b"\n")
            conn.inbuf = bytearray(rest)
            if line.strip():
                response = self._dispatch(line)
                conn.following = bool(response.get("follow")) and response.get("ok", False)
                self._send(conn, response)

    def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError as err:
            return {"ok": False, "error": f"request is not JSON: {err}"}
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return {"ok": False, "error": 'a request is a JSON object with an "op" string'}
        try:
            return self.handler(request)
        except Exception as err:  # noqa: BLE001 - a bad request must not kill the gateway
            log.exception("control op %r failed", request.get("op"))
            return {"ok": False, "error": f"{type(err).__name__}: {err}"}

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send ``message`` to every subscriber."""
        if not any(conn.following for conn in self._conns.values()):
            return
        data = encode(message)
        for conn in list(self._conns.values()):
            if conn.following:
                self._send_bytes(conn, data)

    def _send(self, conn: _Conn, message: dict[str, Any]) -> None:
        self._send_bytes(conn, encode(message))

    def _send_bytes(self, conn: _Conn, data: bytes) -> None:
        if len(conn.outbuf) + len(data) > MAX_BUFFERED:
            log.warning("control client too slow (%d bytes behind); disconnecting", len(conn.outbuf))
            self._close(conn)
            return
        was_empty = not conn.outbuf
        conn.outbuf += data
        if was_empty:
            self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.outbuf)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(conn)
            return
        del conn.outbuf[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
        self.selector.modify(conn.sock, events, lambda mask, c=conn: self._ready(c, mask))

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if self._conns.pop(fd, None) is None:
            return
        self.selector.unregister(conn.sock)
        conn.sock.close()

    def close(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn)
        if self._listener is not None:
            self.selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
            self.path.unlink(missing_ok=True)
