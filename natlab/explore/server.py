"""The workbench's web server: a small Starlette app, uvicorn, server-sent events.

Theory of operation
-------------------
One :class:`~natlab.explore.session.Workbench` per server. The page (one HTML,
one JS, one CSS file from package data, no build step) reads the topology and
the state, then listens on ``/api/events``: after every change the server
pushes the whole state (gateways' knobs, mapping tables, counters, recent
events; the recording) as one SSE message, so every open tab stays current.
On a real lab (wall-clock time) each stream also reads the state again every
:data:`REFRESH` seconds and pushes it when it differs: mappings expire by
themselves there, and other tools change the lab.
Actions are JSON POSTs; each answers with its result (a probe's walk, a punch's
sequence) or ``{"error": ...}`` with status 400 and nothing changed.

Workbench calls run in a worker thread under the workbench's lock (a netns
driver blocks on sockets); the in-memory twin answers in milliseconds.

Why Starlette and uvicorn: small, well kept, ASGI; SSE needs nothing more than
a streaming response (EventSource reconnects by itself), where websockets would
add a protocol the page does not need: it only sends actions, as plain POSTs.
Every request passes :func:`natlab.explore.security.guard` first.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import threading
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Optional

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from natlab.explore.backend import NatlabError, Unsupported
from natlab.explore.security import Access, guard, new_token
from natlab.explore.session import Workbench

__all__ = ["Running", "bind", "create_app", "start"]

STATIC = {"app.js": "text/javascript", "punch.js": "text/javascript", "app.css": "text/css"}
KEEPALIVE = 15.0
POLL = 0.25
"""How often an event stream looks whether the server is stopping."""
REFRESH = 1.0
"""On a real lab (wall-clock time) how often the state is read again: mappings expire and
other tools (``natlab set``, traffic) change it without the page's doing."""
MAX_BODY = 64 * 1024

# POST /api/NAME: the workbench method and the JSON fields it takes (all others are refused).
ACTIONS: dict[str, tuple[str, dict[str, str]]] = {
    "knob": ("set_knob", {"gateway": "gateway", "knob": "knob", "value": "value"}),
    "configure": ("configure", {"gateway": "gateway", "behaviour": "behaviour"}),
    "probe": ("probe", {"proto": "proto", "from": "src", "to": "to", "sport": "sport", "at": "at", "reply": "reply"}),
    "advance": ("advance", {"gateway": "gateway", "seconds": "seconds"}),
    "reboot": ("reboot", {"gateway": "gateway"}),
    "pool": ("set_pool", {"gateway": "gateway", "addresses": "addresses"}),
    "check": ("check_mappings", {"gateway": "gateway"}),
    "punch": ("punch", {"a": "a", "b": "b", "server": "server", "timeout": "timeout"}),
    "save": ("save", {"path": "path"}),
}


class _Hub:
    """Subscribers to state changes (one queue per open event stream)."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue] = set()

    def publish(self, data: str) -> None:
        for q in list(self.queues):
            if q.qsize() > 8:  # a stalled tab gets only the latest state
                while not q.empty():
                    q.get_nowait()
            q.put_nowait(data)


def _error(message: str, status: int = 400, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


class _Api:
    """The routes' handlers over one workbench; Workbench calls run in a thread, under its lock."""

    def __init__(self, wb: Workbench, access: Access, closing: threading.Event) -> None:
        self.wb, self.access, self.closing, self.hub = wb, access, closing, _Hub()

    def routes(self) -> list[Route]:
        return [Route("/", self.index), Route("/static/{name}", self.static), Route("/api/topology", self.topology),
                Route("/api/state", self.state), Route("/api/scenario", self.scenario),
                Route("/api/events", self.events), Route("/api/{name}", self.action, methods=["POST"])]

    async def locked(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        def call() -> Any:
            with self.wb.lock:
                return fn(**kwargs)
        return await run_in_threadpool(call)

    def _state_json(self) -> str:
        return json.dumps(self.wb.state())

    async def index(self, request: Request) -> Response:
        page = resources.files("natlab.explore").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(page.replace("{{TOKEN}}", self.access.token))

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return _error("not found", 404)
        text = resources.files("natlab.explore").joinpath(f"static/{name}").read_text(encoding="utf-8")
        return Response(text, media_type=STATIC[name])

    async def topology(self, request: Request) -> Response:
        return JSONResponse(await self.locked(self.wb.topology))

    async def state(self, request: Request) -> Response:
        return Response(await self.locked(self._state_json), media_type="application/json")

    async def scenario(self, request: Request) -> Response:
        return PlainTextResponse(await self.locked(self.wb.scenario_text))

    async def events(self, request: Request) -> Response:
        queue: asyncio.Queue = asyncio.Queue()
        self.hub.queues.add(queue)
        first = await self.locked(self._state_json)
        return StreamingResponse(self._stream(queue, first), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    async def _stream(self, queue: asyncio.Queue, first: str) -> Any:
        """The state now, then after every change (on a real lab also when it changed by itself);
        a comment line now and then keeps proxies open."""
        idle = stale = 0.0
        last = first
        try:
            yield f"event: state\ndata: {first}\n\n"
            while not self.closing.is_set():
                try:
                    data = await asyncio.wait_for(queue.get(), POLL)
                except asyncio.TimeoutError:
                    idle, stale = idle + POLL, stale + POLL
                    if self.wb.realtime and stale >= REFRESH:
                        stale, data = 0.0, await self._fresh_state()
                        if data is not None and data != last:
                            idle, last = 0.0, data
                            yield f"event: state\ndata: {data}\n\n"
                            continue
                    if idle >= KEEPALIVE:
                        idle = 0.0
                        yield ": keepalive\n\n"
                    continue
                idle, last = 0.0, data
                yield f"event: state\ndata: {data}\n\n"
        finally:
            self.hub.queues.discard(queue)

    async def _fresh_state(self) -> Optional[str]:
        """The state read again, or None when it cannot be read now (the lab is going away)."""
        try:
            return await self.locked(self._state_json)
        except NatlabError:
            return None

    async def action(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ACTIONS:
            return _error(f"no action {name!r}", 404, hint=f"one of {', '.join(ACTIONS)}")
        method, fields = ACTIONS[name]
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error("request too large", 413)
        kwargs = _arguments(name, body, fields, getattr(self.wb, method))
        if isinstance(kwargs, Response):
            return kwargs
        try:
            result = await self.locked(getattr(self.wb, method), **kwargs)
        except Unsupported as err:
            return _error(err.message, 501)
        except NatlabError as err:
            return _error(err.message, what=err.what, got=None if err.got is None else str(err.got), hint=err.hint)
        self.hub.publish(await self.locked(self._state_json))
        return JSONResponse(result)


def _arguments(name: str, body: bytes, fields: dict[str, str], method: Callable[..., Any]) -> Any:
    """The keyword arguments for ``method`` from a JSON body, or the 400 answer saying what is wrong."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return _error("the body is not JSON")
    if not isinstance(data, dict):
        return _error("the body must be a JSON object", got=type(data).__name__)
    takes = f"{name} takes {', '.join(fields)}"
    unknown = sorted(set(data) - set(fields))
    if unknown:
        return _error(f"unknown field(s) {', '.join(unknown)}", hint=takes)
    kwargs = {fields[k]: v for k, v in data.items()}
    params = inspect.signature(method).parameters.values()
    missing = [k for k, arg in fields.items() if arg not in kwargs
               and any(p.name == arg and p.default is inspect.Parameter.empty for p in params)]
    if missing:
        return _error(f"{name} needs {', '.join(missing)}", hint=takes)
    return kwargs


def create_app(wb: Workbench, access: Access, closing: Optional[threading.Event] = None) -> Any:
    """The ASGI app for ``wb``, guarded by ``access``; setting ``closing`` ends the event streams."""
    api = _Api(wb, access, closing or threading.Event())
    return guard(Starlette(routes=api.routes()), access)


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket (port 0: any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


@dataclass
class Running:
    """A server started by :func:`start`."""

    url: str
    token: str
    server: Any
    thread: Optional[threading.Thread]
    closing: threading.Event

    def stop(self) -> None:
        self.closing.set()
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)


def _config(app: Any) -> Any:
    import uvicorn

    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                          timeout_graceful_shutdown=3)


def start(wb: Workbench, host: str = "127.0.0.1", port: int = 0, *, token: Optional[str] = None,
          thread: bool = True) -> tuple[Running, socket.socket]:
    """Bind, build the app and (``thread``) serve it in a background thread; the URL carries the token."""
    import uvicorn

    sock = bind(host, port)
    bound = sock.getsockname()[1]
    access = Access(token or new_token())
    access.listen_on(host, bound)
    closing = threading.Event()
    server = uvicorn.Server(_config(create_app(wb, access, closing)))
    shown = f"[{host}]" if ":" in host else host
    running = Running(f"http://{shown}:{bound}/?token={access.token}", access.token, server, None, closing)
    if thread:
        running.thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                                          name="natlab-explore")
        running.thread.start()
        for _ in range(500):  # the socket already listens; this only waits for uvicorn's loop
            if server.started or not running.thread.is_alive():
                break
            time.sleep(0.01)
    return running, sock
