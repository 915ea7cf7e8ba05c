"""The helpers ``natlab bench nat`` runs as processes in the lab's namespaces.

``python -m natlab.bench.lab_tools MODE ...``: ``accept-all`` (netfilterqueue's bare
pass-through on natlab's rules), ``reopen`` (undo a stopped gateway's closed state, for
the next path), and the Python senders and receivers used when iperf3 is not installed
(``udp-sink``, ``udp-blast``, ``tcp-sink``, ``tcp-blast``) plus the new-mappings sender
(``mappings-blast``, :mod:`~natlab.bench.new_mappings`). Each prints one JSON object.
"""

from __future__ import annotations

import json
import selectors
import signal
import socket
import sys
import time
from pathlib import Path

from natlab.bench.meter import UDP_PAYLOAD
from natlab.bench.new_mappings import mappings_blast


def accept_all(spec_path: str, ready_path: str) -> int:
    """Bind natlab's two queues, install natlab's rules, accept every packet unchanged."""
    from netfilterqueue import NetfilterQueue

    from natlab.datapaths.nfqueue.daemon import check_namespace
    from natlab.datapaths.nfqueue.queues import COPY_RANGE, MAX_QUEUE_LEN
    from natlab.datapaths.nfqueue.rules import Rules
    from natlab.gateway.spec import GatewaySpec

    spec = GatewaySpec.from_json(Path(spec_path).read_text())
    check_namespace(spec.netns)  # never touch another namespace's firewall
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _f: stopping.append(signum))
    queues = []
    for number in (spec.queue_in, spec.queue_out):
        queue = NetfilterQueue()
        queue.bind(number, lambda packet: packet.accept(), max_len=MAX_QUEUE_LEN, range=COPY_RANGE)
        queues.append(queue)
    rules = Rules.from_spec(spec)
    selector = selectors.DefaultSelector()
    try:
        rules.install()
        for queue in queues:
            selector.register(queue.get_fd(), selectors.EVENT_READ, queue)
        Path(ready_path).touch()
        while not stopping:
            for key, _mask in selector.select(0.5):
                key.data.run(block=False)
    finally:
        rules.remove()
        for queue in queues:
            queue.unbind()
    return 0


def udp_sink(host: str, port: int, seconds: float) -> dict:
    """Count datagrams from the first one until ``seconds`` later (or until quiet for 2 s)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((host, port))
    sock.settimeout(seconds + 5)
    count, first, last = 0, None, None
    try:
        sock.recv(2048)
        first = last = time.monotonic()
        count = 1
        sock.settimeout(2.0)
        stop = first + seconds
        while last < stop:
            sock.recv(2048)
            count += 1
            last = time.monotonic()
    except socket.timeout:
        pass
    duration = (last - first) if first is not None and last and last > first else seconds
    return {"count": count, "seconds": duration}


def udp_blast(host: str, port: int, seconds: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    payload, sent = b"x" * UDP_PAYLOAD, 0
    start = time.monotonic()
    stop = start + seconds + 0.5  # outlast the receiver's window
    while time.monotonic() < stop:
        for _ in range(256):
            try:
                sock.send(payload)
                sent += 1
            except OSError:  # ENOBUFS: the queue in front of us is full
                pass
    return {"count": sent, "seconds": time.monotonic() - start}


def tcp_sink(host: str, port: int, seconds: float) -> dict:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(1)
    listener.settimeout(seconds + 5)
    conn, _ = listener.accept()
    conn.settimeout(2.0)
    count, start = 0, time.monotonic()
    stop = start + seconds
    try:
        while time.monotonic() < stop:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            count += len(chunk)
    except socket.timeout:
        pass
    duration = time.monotonic() - start
    conn.close()
    listener.close()
    return {"count": count, "seconds": duration}


def tcp_blast(host: str, port: int, seconds: float) -> dict:
    sock = socket.create_connection((host, port), timeout=5)
    sock.settimeout(2.0)
    block, sent = b"x" * (1 << 16), 0
    start = time.monotonic()
    stop = start + seconds + 0.5
    try:
        while time.monotonic() < stop:
            sent += sock.send(block)
    except OSError:  # the receiver stopped reading and closed
        pass
    sock.close()
    return {"count": sent, "seconds": time.monotonic() - start}


_TOOLS = {"udp-sink": udp_sink, "udp-blast": udp_blast, "tcp-sink": tcp_sink, "tcp-blast": tcp_blast,
          "mappings-blast": mappings_blast}


def reopen(spec_path: str) -> int:
    """Undo a stopped gateway's closed state in its namespace (for the next bench path only)."""
    from natlab.datapaths.nfqueue.daemon import check_namespace
    from natlab.datapaths.nfqueue.rules import Rules, set_forwarding
    from natlab.gateway.spec import GatewaySpec

    spec = GatewaySpec.from_json(Path(spec_path).read_text())
    check_namespace(spec.netns)  # never touch another namespace's firewall
    Rules.from_spec(spec).remove()
    return 0 if set_forwarding(True) else 1


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "accept-all":
        return accept_all(argv[1], argv[2])
    if len(argv) == 2 and argv[0] == "reopen":
        return reopen(argv[1])
    if len(argv) == 4 and argv[0] in _TOOLS:
        print(json.dumps(_TOOLS[argv[0]](argv[1], int(argv[2]), float(argv[3]))))
        return 0
    print("usage: python -m natlab.bench.lab_tools accept-all SPEC READY | reopen SPEC | "
          f"{{{','.join(_TOOLS)}}} HOST PORT SECONDS", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
