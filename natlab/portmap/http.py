"""HTTP/1.1 framing for the UPnP port (TCP 5000): one request in, one response out, then close.

Theory of operation. ``RequestReader`` is fed the bytes of one connection as
they arrive and says, after each ``feed``, whether it has a whole
``Request``, needs more, or refuses the connection with an HTTP status
(``Refused``). It never raises and never holds more than
``MAX_HEADER + MAX_BODY`` octets: a request line or headers over
``MAX_HEADER`` get 431, a body over ``MAX_BODY`` 413 (decided from
Content-Length, before the body is read), a POST without Content-Length 411,
``Transfer-Encoding`` 501, anything unparsable 400. ``frame`` renders an
answer with ``Content-Length`` and ``Connection: close`` (RFC 9112 section
9.6): the server closes after each answer, as miniupnpd does. How long a slow
client may take is the socket shell's business (``SLOW_CLIENT``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from natlab.portmap.ssdp import SERVER
from natlab.portmap.types import HttpReply
from natlab.portmap.upnp_soap import MAX_BODY

MAX_HEADER = 8192
SLOW_CLIENT = 10.0
"""Seconds a connection may take to send its whole request before it is dropped."""
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 412: "Precondition Failed", 413: "Content Too Large",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            501: "Not Implemented", 505: "HTTP Version Not Supported"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


@dataclass(frozen=True)
class Refused:
    """The connection gets this status and is closed; ``reason`` names the counter."""

    status: int
    reason: str


class RequestReader:
    """Collects one request from a stream of bytes."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._head: Optional[tuple[str, str, tuple[tuple[str, str], ...], int]] = None
        self.result: Union[Request, Refused, None] = None

    def feed(self, data: bytes) -> Union[Request, Refused, None]:
        """Add bytes; the request or refusal once decided (then stays), else None."""
        if self.result is not None:
            return self.result
        self._buf += data
        if self._head is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEADER:
                    self.result = Refused(431, "header-too-large")
                return self.result
            if end > MAX_HEADER:
                self.result = Refused(431, "header-too-large")
                return self.result
            head = _parse_head(bytes(self._buf[:end]))
            if isinstance(head, Refused):
                self.result = head
                return head
            self._head = head
            del self._buf[:end + 4]
        method, path, headers, length = self._head
        if len(self._buf) >= length:
            self.result = Request(method, path, headers, bytes(self._buf[:length]))
        return self.result


def _parse_head(raw: bytes) -> Union[tuple[str, str, tuple[tuple[str, str], ...], int], Refused]:
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # latin-1 decodes anything; kept for clarity
        return Refused(400, "bad-request")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
        return Refused(400, "bad-request-line")
    method, path, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        return Refused(505, "bad-version")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return Refused(400, "bad-header")
        headers.append((name, value.strip()))
    names = {k.lower(): v for k, v in headers}
    if "transfer-encoding" in names:
        return Refused(501, "transfer-encoding")
    length_text = names.get("content-length")
    if length_text is None:
        if method.upper() == "POST":
            return Refused(411, "no-content-length")
        return method.upper(), path, tuple(headers), 0
    if not length_text.isdigit():
        return Refused(400, "bad-content-length")
    length = int(length_text)
    if length > MAX_BODY:
        return Refused(413, "body-too-large")
    return method.upper(), path, tuple(headers), length


def frame(reply: HttpReply) -> bytes:
    """The whole response: status line, headers, body."""
    reason = _REASONS.get(reply.status, "Error")
    lines = [f"HTTP/1.1 {reply.status} {reason}", f"SERVER: {SERVER}",
             f"Content-Length: {len(reply.body)}", "Connection: close"]
    if reply.body:
        lines.append(f"Content-Type: {reply.content_type}")
    if reply.status == 200 and b"<s:Envelope" in reply.body[:200]:
        lines.append("EXT:")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + reply.body


def refusal(status: int) -> bytes:
    return frame(HttpReply(status))
