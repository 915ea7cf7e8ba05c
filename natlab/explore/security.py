"""Who may talk to the workbench: the rules, as one pure function and a small ASGI wrapper.

The workbench can change a lab, so it is locked down like Jupyter's server:

1. It binds 127.0.0.1 unless told otherwise (see :mod:`natlab.explore.server`).
2. The ``Host`` header must name the address it listens on (127.0.0.1, localhost
   or [::1] with its port, or the ``--host`` given): a page on another site that
   re-points its DNS name at 127.0.0.1 (DNS rebinding) is refused.
3. A browser's ``Origin`` (and ``Sec-Fetch-Site: cross-site``) must be the
   workbench's own: other sites' pages are refused.
4. Every request carries the random token printed in the URL: GET requests in
   the query (``?token=``) or the header, everything else in the
   ``X-Natlab-Token`` header only, which a cross-site form or link cannot send,
   with a JSON body. Missing: 401; wrong: 403. Tokens are compared in constant time.

Every answer also carries headers that keep the token in the page (no
``Referer``), forbid framing and inline scripts, and disable caching.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import parse_qs

__all__ = ["HEADER", "Access", "Refusal", "SECURITY_HEADERS", "guard", "new_token"]

HEADER = "x-natlab-token"
SAFE_METHODS = ("GET", "HEAD")
SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


@dataclass
class Access:
    """The token and the ``host:port`` names this server answers to."""

    token: str
    hosts: set[str] = field(default_factory=set)

    def listen_on(self, host: str, port: int) -> None:
        names = {"127.0.0.1", "localhost", "[::1]"}
        names.add(f"[{host}]" if ":" in host else host)
        self.hosts = {f"{n}:{port}" for n in names}

    def check(self, method: str, headers: dict[str, str], query: str) -> Optional[Refusal]:
        """Why this request is refused, or None. ``headers`` have lower-case names."""
        host = headers.get("host", "")
        if host not in self.hosts:
            return Refusal(403, f"refused: Host {host or '(none)'} is not this workbench's address")
        origin = headers.get("origin")
        if origin is not None and origin.removeprefix("http://") not in self.hosts:
            return Refusal(403, f"refused: requests from {origin} are not allowed")
        if headers.get("sec-fetch-site") == "cross-site":
            return Refusal(403, "refused: cross-site request")
        given = headers.get(HEADER)
        if given is None and method in SAFE_METHODS:
            given = (parse_qs(query).get("token") or [None])[0]
        if given is None:
            where = "the URL's ?token=" if method in SAFE_METHODS else f"the {HEADER} header"
            return Refusal(401, f"a token is required in {where} (see the URL natlab explore printed)")
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return Refusal(403, "wrong token")
        if method not in SAFE_METHODS:
            ctype = headers.get("content-type", "").split(";")[0].strip()
            if ctype != "application/json":
                return Refusal(415, "state-changing requests send JSON (Content-Type: application/json)")
        return None


ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def guard(app: ASGIApp, access: Access) -> ASGIApp:
    """``app`` behind :meth:`Access.check`, with :data:`SECURITY_HEADERS` on every answer."""

    async def guarded(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = access.check(scope["method"], headers, scope.get("query_string", b"").decode("latin-1"))

        async def send_secured(message: dict) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if refusal is None:
            await app(scope, receive, send_secured)
            return
        body = json.dumps({"error": refusal.message}).encode()
        await send_secured({"type": "http.response.start", "status": refusal.status,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return guarded
