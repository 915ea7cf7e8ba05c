"""The port mapping server's sockets in a gateway's namespace, inside the daemon's select loop.

Theory of operation
-------------------
Everything listens on the gateway's *inside* address only: UDP 5351 (NAT-PMP
and PCP, answered from 5351 to the client's own source port), UDP 1900 (SSDP:
one socket bound to 239.255.255.250 with the group joined on the inside
interface alone and ``IP_MULTICAST_ALL`` off, one for unicast searches) and TCP
5000 (UPnP descriptions and SOAP). The outside gets nothing: nothing is bound
there, and whatever arrives on the outside interface goes to the NFQUEUE
before routing, where the engine drops what no mapping covers.

Sockets follow the policy: :meth:`sync` opens those of the protocols on and
closes the others (``natlab set gw port_mapping.upnp=false`` closes 1900 and
5000 live). They are non-blocking and registered in the daemon's selector, so
a port mapping request costs the packet path one ``select`` wake-up and
nothing when there are none (``natlab bench nat`` measures it). HTTP
connections are bounded (``MAX_CONNECTIONS``), each must send its whole
request within ``SLOW_CLIENT`` seconds and gets one answer written without
blocking, then is closed; what is refused or timed out is counted.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import struct
import time
from typing import Any, Optional

from natlab.engine.types import Endpoint, to_str
from natlab.gateway.portmap_shell import PORTMAP_PORT, SSDP_PORT, PortmapShell, Send
from natlab.portmap import http, ssdp, upnp_desc
from natlab.portmap.types import HttpReply, PortMappingPolicy

log = logging.getLogger("natlab.gateway")

MAX_CONNECTIONS = 32
MAX_DATAGRAM = 4096
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)


class _Connection:
    __slots__ = ("sock", "peer", "reader", "deadline", "out")

    def __init__(self, sock: socket.socket, peer: Endpoint, deadline: float) -> None:
        self.sock, self.peer, self.deadline = sock, peer, deadline
        self.reader = http.RequestReader()
        self.out = b""


class PortmapSockets:
    """The sockets of ``shell`` on ``iface`` (the inside interface), registered in ``selector``."""

    def __init__(self, shell: PortmapShell, iface: str, selector: selectors.BaseSelector,
                 local_iface: Optional[str] = None) -> None:
        self.shell = shell
        self.iface = iface
        self.local_iface = local_iface
        """Where the inside's packets reach the kernel when that is not ``iface`` (the DPDK
        datapath's TUN, :mod:`natlab.datapaths.dpdk.local`): groups are joined and
        multicast is sent there."""
        self.selector = selector
        self.address = to_str(shell.inside.addr)
        self._udp: dict[str, socket.socket] = {}
        self._listener: Optional[socket.socket] = None
        self._conns: dict[int, _Connection] = {}
        self._upstream: Optional[tuple[Endpoint, socket.socket]] = None
        shell.listeners.append(self.sync)

    # -- opening and closing ----------------------------------------------------
    def sync(self, policy: PortMappingPolicy) -> None:
        """Open the sockets of the protocols ``policy`` serves, close the others; a socket that
        cannot be opened is logged and counted, and the NAT goes on without it."""
        try:
            self._sync(policy)
        except OSError as err:
            self.shell.count("socket-errors")
            log.error("port mapping sockets on %s: %s", self.address, err)

    def _sync(self, policy: PortMappingPolicy) -> None:
        self._want_udp("portmap", policy.natpmp or policy.pcp, lambda: self._bound_udp(self.address, PORTMAP_PORT))
        self._want_udp("ssdp-group", policy.upnp, self._ssdp_group)
        self._want_udp("ssdp", policy.upnp, lambda: self._bound_udp(self.address, SSDP_PORT))
        if policy.upnp and self._listener is None:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.address, upnp_desc.HTTP_PORT))
            listener.listen(16)
            listener.setblocking(False)
            self.selector.register(listener, selectors.EVENT_READ, lambda _m: self._accept())
            self._listener = listener
        elif not policy.upnp and self._listener is not None:
            self._unregister(self._listener)
            self._listener = None
            for conn in list(self._conns.values()):
                self._drop(conn)

    def send_upstream(self, payload: bytes) -> None:
        """PCP to the upstream NAT from the gateway's own external endpoint (``pcp_interworking``)."""
        sock = self._upstream_socket()
        if sock is None or self.shell.upstream is None:
            self.shell.count("iwf.send-no-socket")
            return
        try:
            sock.sendto(payload, (to_str(self.shell.upstream), PORTMAP_PORT))
        except OSError as err:
            self.shell.count("iwf.send-errors")
            log.warning("PCP to the upstream server failed: %s", err)

    def _upstream_socket(self) -> Optional[socket.socket]:
        """The socket on :attr:`PortmapShell.upstream_endpoint`, (re)bound when that changes."""
        want = self.shell.upstream_endpoint
        if self._upstream is not None and self._upstream[0] != want:
            self._unregister(self._upstream[1])
            self._upstream = None
        if want is None or self._upstream is not None:
            return self._upstream[1] if self._upstream else None
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((to_str(want.addr), want.port))
            sock.setblocking(False)
        except OSError as err:
            self.shell.count("socket-errors")
            log.error("the upstream PCP client socket on %s: %s", want, err)
            return None
        self.selector.register(sock, selectors.EVENT_READ, lambda _m, s=sock: self._read_upstream(s))
        self._upstream = (want, sock)
        return sock

    def _read_upstream(self, sock: socket.socket) -> None:
        for _ in range(64):
            try:
                data, (source, sport) = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.shell.count("iwf.recv-errors")
                return
            self.send(self.shell.on_upstream(data, Endpoint.of(source, sport)))

    def close(self) -> None:
        if self._upstream is not None:
            self._unregister(self._upstream[1])
            self._upstream = None
        for name in list(self._udp):
            self._unregister(self._udp.pop(name))
        for conn in list(self._conns.values()):
            self._drop(conn)
        if self._listener is not None:
            self._unregister(self._listener)
            self._listener = None

    def _want_udp(self, name: str, on: bool, make: Any) -> None:
        if on and name not in self._udp:
            sock = make()
            sock.setblocking(False)
            port = PORTMAP_PORT if name == "portmap" else SSDP_PORT
            self.selector.register(sock, selectors.EVENT_READ, lambda _m, s=sock, p=port: self._read_udp(s, p))
            self._udp[name] = sock
        elif not on and name in self._udp:
            self._unregister(self._udp.pop(name))

    def _bound_udp(self, address: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        if port == PORTMAP_PORT:  # announcements to 224.0.0.1 leave on the inside only
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, self._mreqn(socket.inet_aton(address)))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        return sock

    def _ssdp_group(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ssdp.MULTICAST_GROUP, SSDP_PORT))
        membership = self._mreqn(socket.inet_aton(ssdp.MULTICAST_GROUP)) if self.local_iface else \
            struct.pack("4s4s", socket.inet_aton(ssdp.MULTICAST_GROUP), socket.inet_aton(self.address))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)  # only the group joined here, on in0
        return sock

    def _mreqn(self, first: bytes) -> bytes:
        """``first`` and the inside address, with the local interface's index when there is one
        (``struct ip_mreqn``), else the address alone (the interface that holds it)."""
        if not self.local_iface:
            return first
        return struct.pack("4s4si", first, socket.inet_aton(self.address), socket.if_nametoindex(self.local_iface))

    def _unregister(self, sock: socket.socket) -> None:
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass  # never registered, or already closed
        sock.close()

    # -- UDP -------------------------------------------------------------------
    def _read_udp(self, sock: socket.socket, port: int) -> None:
        for _ in range(64):  # a burst at most per wake-up: the queues come first
            try:
                data, (source, sport) = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                self.shell.count("udp.recv-errors")
                log.warning("port mapping recv failed: %s", err)
                return
            self.send(self.shell.on_udp(port, data, Endpoint.of(source, sport)))

    def send(self, sends: list[Send]) -> None:
        for item in sends:
            sock = self._udp.get("portmap" if item.from_port == PORTMAP_PORT else "ssdp")
            if sock is None:
                self.shell.count("udp.send-no-socket")
                continue
            try:
                sock.sendto(item.data, (to_str(item.to.addr), item.to.port))
            except OSError as err:
                self.shell.count("udp.send-errors")
                if err.errno not in (errno.EAGAIN, errno.ENETUNREACH, errno.EHOSTUNREACH):
                    log.warning("port mapping send to %s failed: %s", item.to, err)

    # -- HTTP ------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, (source, sport) = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.shell.count("upnp.http.accept-errors")
            return
        if len(self._conns) >= MAX_CONNECTIONS:
            self.shell.count("upnp.http.refused.too-many-connections")
            sock.close()
            return
        sock.setblocking(False)
        conn = _Connection(sock, Endpoint.of(source, sport), time.monotonic() + http.SLOW_CLIENT)
        self._conns[sock.fileno()] = conn
        self.selector.register(sock, selectors.EVENT_READ, lambda mask, c=conn: self._on_conn(c, mask))

    def _on_conn(self, conn: _Connection, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._write(conn)
            return
        try:
            data = conn.sock.recv(8192)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not data:
            self.shell.count("upnp.http.closed-early")
            self._drop(conn)
            return
        result = conn.reader.feed(data)
        if result is None:
            return
        if isinstance(result, http.Refused):
            self.shell.count(f"upnp.http.refused.{result.reason}")
            self._respond(conn, http.refusal(result.status))
            return
        reply = self.shell.on_http(result, conn.peer)
        if isinstance(reply, HttpReply):
            self._respond(conn, http.frame(reply))
        else:  # waiting for the upstream PCP server (pcp_interworking)
            self.selector.modify(conn.sock, selectors.EVENT_WRITE, lambda mask, c=conn: None)
            reply.then(lambda answer, c=conn: self._respond(c, http.frame(answer)))

    def _respond(self, conn: _Connection, data: bytes) -> None:
        if self._conns.get(conn.sock.fileno()) is not conn:
            return  # dropped meanwhile (a slow client, a policy change)
        conn.out = data
        self.selector.modify(conn.sock, selectors.EVENT_WRITE, lambda mask, c=conn: self._on_conn(c, mask))
        self._write(conn)

    def _write(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            self._drop(conn)

    def _drop(self, conn: _Connection) -> None:
        self._conns.pop(conn.sock.fileno(), None)
        self._unregister(conn.sock)

    # -- time ------------------------------------------------------------------
    def wait(self) -> Optional[float]:
        """Seconds until :meth:`on_timer` has work (None: nothing pending)."""
        now = time.monotonic()
        waits = [c.deadline - now for c in self._conns.values()]
        due = self.shell.next_deadline()
        if due is not None:
            waits.append(due - self.shell.gateway.now())
        return max(0.0, min(waits)) if waits else None

    def on_timer(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self._conns.values() if c.deadline <= now]:
            self.shell.count("upnp.http.slow-client")
            self._drop(conn)
        self._upstream_socket()  # follows the external address and the policy
        if self.shell.next_deadline() is not None:
            self.send(self.shell.due())


def open_portmap(gateway: Any, selector: selectors.BaseSelector, link_stats: Any = None,
                 local_iface: Optional[str] = None) -> Optional[PortmapSockets]:
    """The port mapping server of ``gateway`` with its sockets (None: its engine cannot map ports);
    ``local_iface``: see :attr:`PortmapSockets.local_iface`."""
    from natlab.gateway.portmap_shell import attach

    shell = attach(gateway, link_stats=link_stats)
    if shell is None:
        return None
    sockets = PortmapSockets(shell, gateway.spec.inside_ifaces[0], selector, local_iface)
    sockets.sync(shell.policy)
    shell.connect_upstream(sockets.send_upstream)
    return sockets
