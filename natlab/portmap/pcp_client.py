"""A small PCP client (RFC 6887), for tests and by hand; the e2e tests run it in a netns.

::

    python -m natlab.portmap.pcp_client map --server 192.168.1.1 --internal-port 5000 \\
        [--external-port N] [--lifetime S] [--protocol udp|tcp] [--delete] \\
        [--third-party ADDR] [--prefer-failure] [--nonce HEX] [--timeout S]
    python -m natlab.portmap.pcp_client peer --server 192.168.1.1 --internal-port 5000 \\
        --remote 198.51.100.9:7000 [--external-port N] [--lifetime S] [--delete] ...

It sends one MAP (or PEER, section 12: the dynamic mapping to one remote peer)
request and prints the answer as one JSON object. Exit status:
0 SUCCESS, 1 any other result (or a NAT-PMP-only server), 2 no answer within
``--timeout``. Retransmission follows section 8.1.1 (IRT 3 s, MRT 1024 s,
each interval doubled with +-10% jitter) but stops at ``--timeout`` (default
10 s), so a test never waits forever. A delete or refresh must reuse the nonce
of the mapping (``--nonce``, printed by the first call); otherwise the server
answers NOT_AUTHORIZED.

The pure parts (``map_request``, ``retransmit_offsets``, ``matches``,
``describe``) are what the unit tests use; only ``exchange`` does I/O.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import socket
import sys
import time
from ipaddress import IPv4Address, ip_address
from typing import Optional, Sequence, Union

from natlab.portmap import natpmp, pcp
from natlab.portmap.pcp import (
    MapData, PcpDrop, PcpOpcode, PcpRequest, PcpResponse, PcpResult, PeerData, PreferFailure, ThirdParty,
)

IRT, MRT = 3.0, 1024.0
"""Initial and maximum retransmission times (RFC 6887 section 8.1.1)."""
DEFAULT_TIMEOUT = 10.0
PROTOCOLS = {"udp": 17, "tcp": 6}


def map_request(client: str, internal_port: int, *, external_port: int = 0,
                lifetime: int = 7200, protocol: str = "udp", nonce: bytes,
                third_party: Optional[str] = None, prefer_failure: bool = False) -> PcpRequest:
    """The MAP request (section 11.1); lifetime 0 deletes."""
    options: list[pcp.Option] = []
    if third_party:
        options.append(ThirdParty(ip_address(third_party)))
    if prefer_failure:
        options.append(PreferFailure())
    data = MapData(nonce, PROTOCOLS[protocol], internal_port, external_port)
    return PcpRequest(PcpOpcode.MAP, lifetime, ip_address(client), data, tuple(options))


def peer_request(client: str, internal_port: int, remote: str, remote_port: int, *, external_port: int = 0,
                 lifetime: int = 7200, protocol: str = "udp", nonce: bytes,
                 third_party: Optional[str] = None) -> PcpRequest:
    """The PEER request (section 12.1) for the 5-tuple to ``remote:remote_port``; lifetime 0 ends it."""
    options: tuple[pcp.Option, ...] = (ThirdParty(ip_address(third_party)),) if third_party else ()
    data = PeerData(nonce, PROTOCOLS[protocol], internal_port, external_port, pcp.UNSPECIFIED_V4,
                    remote_port, ip_address(remote))
    return PcpRequest(PcpOpcode.PEER, lifetime, ip_address(client), data, options)


def retransmit_offsets(rng: random.Random, timeout: float) -> tuple[float, ...]:
    """When to (re)send, in seconds from the first send, all before ``timeout``."""
    offsets, at = [0.0], 0.0
    rt = (1 + rng.uniform(-0.1, 0.1)) * IRT
    while at + rt < timeout:
        at += rt
        offsets.append(at)
        rt = (1 + rng.uniform(-0.1, 0.1)) * 2 * rt
        if rt > MRT:
            rt = (1 + rng.uniform(-0.1, 0.1)) * MRT
    return tuple(offsets)


def matches(response: PcpResponse, request: PcpRequest) -> bool:
    """Whether ``response`` answers ``request`` (sections 11.4 and 12.4: opcode, nonce, protocol,
    port; for PEER also the remote peer)."""
    if response.opcode != request.opcode:
        return False
    if response.version != pcp.VERSION or response.data is None:
        return response.result is not PcpResult.SUCCESS
    sent, got = request.data, response.data
    if isinstance(sent, PeerData):
        return (isinstance(got, PeerData) and got.nonce == sent.nonce and got.protocol == sent.protocol
                and got.internal_port == sent.internal_port and got.remote_port == sent.remote_port
                and got.remote_address == sent.remote_address)
    return (isinstance(sent, MapData) and isinstance(got, MapData) and got.nonce == sent.nonce
            and got.protocol == sent.protocol and got.internal_port == sent.internal_port)


def describe(response: Union[PcpResponse, str], request: PcpRequest, server: str,
             attempts: int) -> tuple[dict, int]:
    """The JSON object to print and the exit status."""
    sent = request.data
    assert isinstance(sent, (MapData, PeerData))
    base = {"server": server, "attempts": attempts, "nonce": sent.nonce.hex(),
            "protocol": next(k for k, v in PROTOCOLS.items() if v == sent.protocol),
            "internal_port": sent.internal_port}
    if isinstance(sent, PeerData):
        base["remote"] = f"{sent.remote_address}:{sent.remote_port}"
    if isinstance(response, str):
        return {**base, "error": response}, 1 if response == "natpmp-only" else 2
    base.update(result=response.result.name, result_code=int(response.result),
                lifetime=response.lifetime, epoch=response.epoch, version=response.version)
    if isinstance(response.data, (MapData, PeerData)):
        base.update(external_port=response.data.external_port,
                    external_address=str(response.data.external_address))
    return base, 0 if response.result is PcpResult.SUCCESS else 1


def exchange(request: PcpRequest, server: str, timeout: float, rng: random.Random,
             sock: socket.socket) -> tuple[Union[PcpResponse, str], int]:
    """Send and retransmit until a matching answer or ``timeout``; the answer and attempts."""
    payload, start = request.emit(), time.monotonic()
    offsets = retransmit_offsets(rng, timeout)
    attempts = 0
    while True:
        elapsed = time.monotonic() - start
        if attempts < len(offsets) and elapsed >= offsets[attempts]:
            sock.sendto(payload, (server, pcp.SERVER_PORT))
            attempts += 1
            continue
        next_at = offsets[attempts] if attempts < len(offsets) else timeout
        wait = min(next_at, timeout) - elapsed
        if wait <= 0:
            return "timeout", attempts
        sock.settimeout(wait)
        try:
            data, (source, _port) = sock.recvfrom(2048)
        except (socket.timeout, ConnectionRefusedError):
            continue
        if source != server:
            continue
        if data[:1] == bytes([natpmp.VERSION]) and len(data) >= 8 and \
                int.from_bytes(data[2:4], "big") == natpmp.NatpmpResult.UNSUPPORTED_VERSION:
            return "natpmp-only", attempts
        response = pcp.parse_response(data)
        if not isinstance(response, PcpDrop) and matches(response, request):
            return response, attempts


def _arguments(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m natlab.portmap.pcp_client",
                                     description="Send one PCP MAP or PEER request (RFC 6887).")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("map", "peer"):
        _options(commands.add_parser(name, help="create, refresh or delete a mapping" if name == "map"
                                     else "create, refresh or end the mapping to one remote peer"), name)
    return parser.parse_args(argv)


def _options(cmd: argparse.ArgumentParser, name: str) -> None:
    cmd.add_argument("--server", required=True, help="the PCP server (the gateway)")
    if name == "peer":
        cmd.add_argument("--remote", required=True, metavar="ADDR:PORT", help="the remote peer")
    cmd.add_argument("--internal-port", type=int, required=True)
    cmd.add_argument("--external-port", type=int, default=0, help="suggested; 0: any")
    cmd.add_argument("--lifetime", type=int, default=7200)
    cmd.add_argument("--protocol", choices=sorted(PROTOCOLS), default="udp")
    cmd.add_argument("--delete", action="store_true", help="lifetime 0")
    cmd.add_argument("--third-party", metavar="ADDR", help="map for another inside host")
    if name == "map":
        cmd.add_argument("--prefer-failure", action="store_true")
    cmd.add_argument("--nonce", help="24 hex digits (reuse the mapping's to refresh/delete)")
    cmd.add_argument("--client-address", help="default: the address that routes to --server")
    cmd.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    cmd.add_argument("--seed", type=int, help="jitter seed (default: random)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _arguments(argv)
    nonce = bytes.fromhex(args.nonce) if args.nonce else secrets.token_bytes(pcp.NONCE_SIZE)
    if len(nonce) != pcp.NONCE_SIZE:
        print(json.dumps({"error": "nonce must be 12 bytes (24 hex digits)"}))
        return 2
    server = str(IPv4Address(args.server))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((server, pcp.SERVER_PORT))
        client = args.client_address or sock.getsockname()[0]
        sock.close()
    lifetime = 0 if args.delete else args.lifetime
    if args.command == "peer":
        remote, _, port = args.remote.rpartition(":")
        if not port.isdigit() or not remote:
            print(json.dumps({"error": f"--remote must be ADDR:PORT, got {args.remote!r}"}))
            return 2
        request = peer_request(client, args.internal_port, remote, int(port), external_port=args.external_port,
                               lifetime=lifetime, protocol=args.protocol, nonce=nonce,
                               third_party=args.third_party)
    else:
        request = map_request(client, args.internal_port, external_port=args.external_port,
                              lifetime=lifetime, protocol=args.protocol, nonce=nonce,
                              third_party=args.third_party, prefer_failure=getattr(args, "prefer_failure", False))
    rng = random.Random(args.seed)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((client, 0))
        response, attempts = exchange(request, server, args.timeout, rng, sock)
    report, status = describe(response, request, server, attempts)
    print(json.dumps(report, sort_keys=True))
    return status


if __name__ == "__main__":
    sys.exit(main())
