"""The gateway's control socket: a unix stream socket speaking JSON lines.

One request per line, ``{"op": "...", ...}``; one response per line,
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. A response with
``"follow": true`` turns the connection into a subscriber: from then on the
server writes one JSON line per event until the client closes.

Every socket is non-blocking and lives in the daemon's select loop, so a slow
or stuck client never holds up the packet path; a subscriber that falls more
than :data:`MAX_BUFFERED` bytes behind is disconnected.

No client can take the gateway down (it is root's socket, but a test harness
gone wrong is root too):

- a request longer than :data:`MAX_REQUEST` bytes or nested deeper than
  :data:`MAX_DEPTH` is answered with an error before it is parsed; anything
  else the parser or an op raises is an error answer as well;
- at most :data:`MAX_CLIENTS` connections are open: one more closes the
  connection idle longest; a connection that sends no request for
  :data:`IDLE_TIMEOUT` seconds is closed (subscribers are exempt);
- when ``accept`` fails for lack of file descriptors, the listener rests for
  :data:`ACCEPT_PAUSE` seconds instead of spinning, and serving goes on.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import selectors
import socket
import time
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("natlab.gateway")

MAX_REQUEST = 64 << 10
"""Bytes in one request line (the biggest real request, a long ``set``, is a few hundred)."""
MAX_DEPTH = 32
"""Nesting of arrays and objects in one request (real requests nest 2 deep)."""
MAX_BUFFERED = 4 << 20
MAX_CLIENTS = 256
LISTEN_BACKLOG = 256
IDLE_TIMEOUT = 30.0
ACCEPT_PAUSE = 0.2
ACCEPTS_PER_WAKE = 32
"""Connections taken per readable listener, so requests waiting on open ones get read."""
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
Handler = Callable[[dict[str, Any]], dict[str, Any]]


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()


def nesting_depth(line: bytes) -> int:
    """How deep arrays and objects nest in a JSON text (brackets inside strings do not count)."""
    if line.count(b"[") + line.count(b"{") <= MAX_DEPTH:
        return line.count(b"[") + line.count(b"{")  # an upper bound, cheap and enough
    depth = deepest = 0
    in_string = escaped = False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


class _Conn:
    __slots__ = ("sock", "inbuf", "outbuf", "following", "last_active")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.following = False
        self.last_active = now


class ControlServer:
    """Serves ``handler(request) -> response`` on ``path`` (mode 0600) inside ``selector``."""

    def __init__(self, path: Path, handler: Handler, selector: selectors.BaseSelector, *,
                 clock: Callable[[], float] = time.monotonic, max_clients: int = MAX_CLIENTS,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.path = Path(path)
        self.handler = handler
        self.selector = selector
        self.clock = clock
        self.max_clients = max_clients
        self.idle_timeout = idle_timeout
        self._listener: socket.socket | None = None
        self._conns: dict[int, _Conn] = {}
        self._paused_until: float | None = None
        self.counts = {"control_refused": 0, "control_evicted": 0, "control_idle_closed": 0,
                       "control_accept_errors": 0}

    def stats(self) -> dict[str, int]:
        return {**self.counts, "control_clients": len(self._conns)}

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
        listener.listen(LISTEN_BACKLOG)
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
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno not in _OUT_OF_FDS:
                    raise
                self.counts["control_accept_errors"] += 1
                if not self._evict_idlest():
                    self._pause()
                return
            if len(self._conns) >= self.max_clients and not self._evict_idlest():
                sock.close()  # every slot is a subscriber or has answers pending
                self._pause()
                return
            sock.setblocking(False)
            conn = _Conn(sock, self.clock())
            self._conns[sock.fileno()] = conn
            self.selector.register(sock, selectors.EVENT_READ, lambda mask, c=conn: self._ready(c, mask))

    def _evict_idlest(self) -> bool:
        """Close the connection that has been idle longest (never a subscriber)."""
        idle = [c for c in self._conns.values() if not c.following and not c.outbuf]
        if not idle:
            return False
        self.counts["control_evicted"] += 1
        self._close(min(idle, key=lambda c: c.last_active))
        return True

    def _pause(self) -> None:
        """Stop watching the listener for a moment: a full table must not make the loop spin."""
        if self._paused_until is None and self._listener is not None:
            self.counts["control_refused"] += 1
            self.selector.unregister(self._listener)
            self._paused_until = self.clock() + ACCEPT_PAUSE

    def next_deadline(self) -> float:
        """When :meth:`on_timer` has work: the listener's rest ends or a client idles out."""
        if self._paused_until is not None:
            return self._paused_until
        idle = [c.last_active for c in self._conns.values() if not c.following]
        return min(idle) + self.idle_timeout if idle else float("inf")

    def on_timer(self, now: float) -> None:
        if self._paused_until is not None and now >= self._paused_until and self._listener is not None:
            self._paused_until = None
            self.selector.register(self._listener, selectors.EVENT_READ, self._accept)
        for conn in [c for c in self._conns.values()
                     if not c.following and now - c.last_active >= self.idle_timeout]:
            self.counts["control_idle_closed"] += 1
            self._close(conn)

    def _ready(self, conn: _Conn, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ:
                self._read(conn)
            if mask & selectors.EVENT_WRITE and conn.sock.fileno() in self._conns:
                self._flush(conn)
        except Exception:  # noqa: BLE001 - one client's trouble must not end the gateway
            log.exception("control client failed; closing it")
            self._close(conn)

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
        conn.last_active = self.clock()
        conn.inbuf += chunk
        if len(conn.inbuf) > MAX_REQUEST and b"\n" not in conn.inbuf[:MAX_REQUEST + 1]:
            self._send(conn, {"ok": False, "error": f"request too large (over {MAX_REQUEST} bytes)"})
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
        if len(line) > MAX_REQUEST:
            return {"ok": False, "error": f"request too large (over {MAX_REQUEST} bytes)"}
        if nesting_depth(line) > MAX_DEPTH:
            return {"ok": False, "error": f"request nested deeper than {MAX_DEPTH}"}
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as err:
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
        if fd < 0 or self._conns.get(fd) is not conn:
            return
        del self._conns[fd]
        self.selector.unregister(conn.sock)
        conn.sock.close()

    def close(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn)
        if self._listener is not None:
            if self._paused_until is None:
                self.selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
            self.path.unlink(missing_ok=True)
