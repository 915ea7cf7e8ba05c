"""Talking to a running gateway: :class:`GatewayClient`, one method per control op.

::

    client = GatewayClient("/run/natlab/two-homes/gw-nat-a.sock", name="nat-a")
    client.status()["pool"]
    client.set(["timeouts.udp=30"])
    for event in client.follow_events():
        print(event)

Every failure is a :class:`~natlab.errors.ControlError`: the gateway is not
running, it closed the connection, or it refused the request; a socket only root
may open is :class:`~natlab.errors.NotPrivileged`.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from natlab.errors import ControlError, NotPrivileged


class GatewayClient:
    def __init__(self, path: str | Path, *, name: Optional[str] = None, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.name = name or self.path.stem.removeprefix("gw-")
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            self._connect_retrying(sock)
        except (FileNotFoundError, ConnectionRefusedError) as err:
            sock.close()
            raise ControlError(f"gateway {self.name} is not running", hint="natlab status") from err
        except PermissionError:
            sock.close()
            raise NotPrivileged(f"the control socket of gateway {self.name} is root's only",
                                got=str(self.path), hint="run natlab as root (sudo natlab ...)") from None
        except OSError as err:
            sock.close()
            raise ControlError(f"cannot reach gateway {self.name} at {self.path}", got=str(err)) from err
        return sock

    def _connect_retrying(self, sock: socket.socket) -> None:
        """Connect; a full listen backlog (EAGAIN: the gateway is busy accepting) is retried."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                sock.connect(str(self.path))
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return the response; a refusal raises ControlError."""
        with self._connect() as sock:
            stream = sock.makefile("rwb")
            response = self._exchange(stream, {"op": op, **fields})
        return response

    def _exchange(self, stream: Any, message: dict[str, Any]) -> dict[str, Any]:
        try:
            stream.write((json.dumps(message) + "\n").encode())
            stream.flush()
            line = stream.readline()
        except (socket.timeout, TimeoutError) as err:
            raise ControlError(f"gateway {self.name} did not answer {message['op']!r} in {self.timeout:g} s") from err
        except OSError as err:
            raise ControlError(f"gateway {self.name} dropped the connection", got=str(err)) from err
        if not line:
            raise ControlError(f"gateway {self.name} closed the connection", hint="see its log")
        response = json.loads(line)
        if not response.get("ok"):
            raise ControlError(f"gateway {self.name} refused {message['op']!r}", got=response.get("error"))
        return response

    # --- one method per op ---------------------------------------------------

    def ping(self) -> bool:
        return bool(self.request("ping").get("pong"))

    def status(self) -> dict[str, Any]:
        return self.request("status")

    def mappings(self) -> list[dict[str, Any]]:
        return self.request("mappings")["mappings"]

    def counters(self) -> dict[str, Any]:
        return self.request("counters")["counters"]

    def events(self, *, limit: int = 1000, since: int = 0) -> list[dict[str, Any]]:
        return self.request("events", limit=limit, since=since)["events"]

    def follow_events(self) -> Iterator[dict[str, Any]]:
        """Yield events as they happen, until the caller stops iterating or the gateway exits."""
        sock = self._connect()
        try:
            stream = sock.makefile("rwb")
            self._exchange(stream, {"op": "events", "follow": True})
            sock.settimeout(None)
            for line in stream:
                yield json.loads(line)
        finally:
            sock.close()

    def set(self, assignments: Sequence[str]) -> dict[str, Any]:
        """Apply ``knob=value`` overrides; returns the new policy as plain data."""
        return self.request("set", assignments=list(assignments))["policy"]

    def advance(self, seconds: float) -> dict[str, Any]:
        return self.request("advance", seconds=seconds)

    def flush(self) -> dict[str, Any]:
        return self.request("flush")

    def set_pool(self, pool: Sequence[str]) -> list[str]:
        return self.request("set-pool", pool=list(pool))["pool"]

    def configure(self, behaviour: str, overrides: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """Replace the whole policy with preset ``behaviour`` (plus overrides) and flush mappings."""
        return self.request("configure", behaviour=behaviour, overrides=dict(overrides or {}))
