"""Soak a live gateway with malformed packets from both sides; is it still a NAT afterwards?

    sudo .venv/bin/python benchmarks/soak.py [--count 1000000] [--rate 20000] [--seconds 300]

Builds the three-namespace topology of ``tests/netns/gateway`` (``natlab-gwtest-soak-<hex>``:
inside host, gateway, outside host; nothing in the root namespace), starts the real
gateway (``python -m natlab.gateway``, preset ``--behaviour``), and then:

1. crafts ``--templates`` malformed frames per side with scapy (seeded: ``--seed``):
   bad IP versions, header lengths, total lengths and checksums, IP options garbage,
   truncated and inconsistent UDP/TCP/ICMP headers, odd TCP flags and options, ICMP
   errors quoting garbage, tiny/overlapping/far-off fragments, unknown protocols,
   random payloads, spoofed inside sources, near-MTU sizes;
2. sends ``--count`` of them in all, half from the inside host, half from the
   outside host, through AF_PACKET sockets on the hosts' own links (so a header the
   kernel would refuse to build still goes out), each side paced at ``--rate``
   frames/s (0: as fast as it can) and stopped after ``--seconds`` whatever the count;
3. prints the gateway's RSS before and after, the engine's and the gateway's counters
   (drops by reason, the kernel queue's own drops, the watchdog), the gateway
   namespace's IP-level error counters (what the kernel refused before the queue),
   and whether ordinary UDP, TCP and ping still pass and the control socket answers.

Namespaces and processes are removed at the end, whatever happens. The last line is
the whole report as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from gateway.conftest import GwLab, received, split  # noqa: E402

SENDER = """
import json, pickle, socket, sys, time
frames = pickle.load(open(sys.argv[1], "rb"))
count, rate, limit = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind(("eth0", 0))
sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
start = time.monotonic(); deadline = start + limit
sent = errors = 0; n = len(frames); burst = 200
while sent + errors < count and time.monotonic() < deadline:
    for frame in frames[(sent + errors) % n:][:min(burst, count - sent - errors)]:
        try:
            sock.send(frame); sent += 1
        except OSError:
            errors += 1
    if rate:
        ahead = (sent + errors) / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
print(json.dumps({"sent": sent, "send_errors": errors, "seconds": round(time.monotonic() - start, 2)}))
"""

TCP_ECHO = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(4); s.settimeout(20)
print("ready", flush=True)
conn, _ = s.accept(); conn.settimeout(5); conn.sendall(conn.recv(100)); conn.close()
"""

TCP_CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
c.sendall(b"hello through the nat"); print(c.recv(100).decode())
"""


def mac_of(ns: str, iface: str) -> str:
    out = subprocess.run(["ip", "-n", ns, "-j", "link", "show", iface], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)[0]["address"]


def craft(rng: random.Random, n: int, *, src_mac: str, dst_mac: str, sources: list[str],
          destinations: list[str]) -> list[bytes]:
    """``n`` malformed (and a few merely odd) Ethernet frames, reproducible from ``rng``."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    def junk(lo: int = 0, hi: int = 64) -> bytes:
        return rng.randbytes(rng.randint(lo, hi))

    def ip(**fields):
        return IP(src=rng.choice(sources), dst=rng.choice(destinations), **fields)

    def port() -> int:
        return rng.choice([0, 1, 53, 80, 443, 3478, 5000, 7000, 65535, rng.randint(1, 65535)])

    makers = [
        lambda: bytes(ip(version=rng.choice([0, 5, 6, 15])) / UDP(sport=port(), dport=port()) / junk()),
        lambda: bytes(ip(ihl=rng.randint(0, 4)) / UDP(sport=port(), dport=port())),
        lambda: bytes(ip(ihl=15) / Raw(junk(0, 20))),                        # options run past the end
        lambda: bytes(ip(ihl=rng.randint(6, 15), options=[]) / Raw(junk(40, 60))),  # garbage options
        lambda: bytes(ip(len=rng.choice([0, 19, 21, 65535, rng.randint(0, 65535)])) / UDP() / junk()),
        lambda: bytes(ip(chksum=rng.randint(0, 65535)) / UDP(sport=port(), dport=port()) / junk()),
        lambda: bytes(ip(proto=17) / Raw(junk(0, 7))),                      # UDP header cut short
        lambda: bytes(ip() / UDP(sport=port(), dport=port(), len=rng.choice([0, 7, 9, 65535])) / junk()),
        lambda: bytes(ip() / UDP(sport=port(), dport=port(), chksum=rng.randint(1, 65535)) / junk()),
        lambda: bytes(ip(proto=6) / Raw(junk(0, 19))),                      # TCP header cut short
        lambda: bytes(ip() / TCP(sport=port(), dport=port(), dataofs=rng.choice([0, 4, 15]),
                                 flags=rng.randint(0, 255)) / junk(0, 20)),
        lambda: bytes(ip() / TCP(sport=port(), dport=port(), flags=rng.choice(["SF", "SR", "FPU", "", "SAFRPUEC"]),
                                 options=[(rng.randint(0, 255), junk(0, 6))])),
        lambda: bytes(ip() / TCP(sport=port(), dport=port(), flags="S", chksum=rng.randint(0, 65535))),
        lambda: bytes(ip(proto=1) / Raw(junk(0, 7))),                       # ICMP cut short
        lambda: bytes(ip() / ICMP(type=rng.choice([3, 11, 12]), code=rng.randint(0, 15)) / Raw(junk(0, 40))),
        lambda: bytes(ip() / ICMP(type=3, code=3) / IP(src=rng.choice(destinations), dst=rng.choice(sources),
                                                       ihl=rng.randint(0, 15), len=rng.randint(0, 65535))
                      / UDP(sport=port(), dport=port())),
        lambda: bytes(ip() / ICMP(type=rng.choice([0, 8]), id=rng.randint(0, 65535)) / junk(0, 4)),
        lambda: bytes(ip(flags="MF", frag=0) / Raw(junk(1, 8))),            # tiny first fragment
        lambda: bytes(ip(flags=rng.choice(["MF", ""]), frag=rng.choice([1, 2, 8191, rng.randint(1, 8191)]),
                         proto=rng.choice([1, 6, 17])) / Raw(junk(1, 64))),  # overlapping / far off
        lambda: bytes(ip(proto=rng.choice([0, 2, 41, 47, 50, 132, 253, 255])) / Raw(junk())),
        lambda: bytes(ip(proto=rng.choice([1, 6, 17])) / Raw(junk(0, 1400))),   # random transport bytes
        lambda: bytes(ip(ttl=rng.choice([0, 1])) / UDP(sport=port(), dport=port()) / junk()),
    ]
    frames = []
    for _ in range(n):
        packet = rng.choice(makers)()
        frames.append(bytes(Ether(src=src_mac, dst=dst_mac, type=0x0800)) + packet)
    return frames


def gateway_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def ip_errors(ns: str) -> dict[str, int]:
    text = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"], capture_output=True,
                          text=True, check=True).stdout.splitlines()
    names, values = text[0].split()[1:], text[1].split()[1:]
    wanted = ("InHdrErrors", "InAddrErrors", "InUnknownProtos", "InDiscards", "ReasmFails")
    return {k: int(v) for k, v in zip(names, values) if k in wanted}


def normal_traffic(lab: GwLab) -> dict[str, bool]:
    """One UDP exchange, one TCP echo and one ping, inside -> outside, through the NAT."""
    outside = lab.OUTSIDE_ADDRS[0]
    server = lab.serve_udp(lab.outside, 7999)
    replies = lab.send_udp(lab.inside, 5999, f"{outside}:7999")
    seen = received(server)
    udp = bool(replies) and [split(s["source"])[0] for s in seen] == [lab.POOL]
    echo = subprocess.Popen(["ip", "netns", "exec", lab.outside, sys.executable, "-c", TCP_ECHO, "8080"],
                            stdout=subprocess.PIPE, text=True)
    lab.procs.append(echo)
    echo.stdout.readline()
    client = subprocess.run(["ip", "netns", "exec", lab.inside, sys.executable, "-c", TCP_CLIENT, outside, "8080"],
                            capture_output=True, text=True, timeout=20)
    tcp = "hello through the nat" in client.stdout
    ping = subprocess.run(["ip", "netns", "exec", lab.inside, "ping", "-c", "3", "-i", "0.2", "-W", "2", outside],
                          capture_output=True, timeout=20).returncode == 0
    return {"udp": udp, "tcp": tcp, "ping": ping}


def soak(lab: GwLab, args: argparse.Namespace, tmp: Path) -> dict:
    from natlab.behaviours.presets import policy_to_dict, resolve

    client = lab.start_gateway(lab.spec(policy_to_dict(resolve(args.behaviour).policy)))
    pid = lab.gateway.pid
    before = {"rss_kib": gateway_rss(pid), "normal": normal_traffic(lab)}
    rng = random.Random(args.seed)
    inside_srcs = [lab.INSIDE_ADDR, "192.168.77.99", "10.1.2.3", "0.0.0.0", "255.255.255.255"]
    outside_srcs = [*lab.OUTSIDE_ADDRS, "192.168.77.2", "127.0.0.1"]
    plans = {
        "inside": craft(rng, args.templates, src_mac=mac_of(lab.inside, "eth0"), dst_mac=mac_of(lab.gw, "in0"),
                        sources=inside_srcs, destinations=[*lab.OUTSIDE_ADDRS, lab.POOL, "192.168.77.1"]),
        "outside": craft(rng, args.templates, src_mac=mac_of(lab.outside, "eth0"), dst_mac=mac_of(lab.gw, "out0"),
                         sources=outside_srcs, destinations=[lab.POOL, "203.0.113.1", lab.INSIDE_ADDR]),
    }
    ip_before = ip_errors(lab.gw)
    senders = {}
    import pickle

    for side, frames in plans.items():
        path = tmp / f"{side}.pickle"
        path.write_bytes(pickle.dumps(frames))
        ns = lab.inside if side == "inside" else lab.outside
        senders[side] = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SENDER, str(path),
             str(args.count // 2), str(args.rate), str(args.seconds)], stdout=subprocess.PIPE, text=True)
        lab.procs.append(senders[side])
    started = time.monotonic()
    control_ok, control_failed = 0, 0
    while any(s.poll() is None for s in senders.values()):
        try:
            client.ping()
            control_ok += 1
        except Exception:  # noqa: BLE001 - counted and reported
            control_failed += 1
        time.sleep(1)
    elapsed = time.monotonic() - started
    sent = {side: json.loads(proc.stdout.read()) for side, proc in senders.items()}
    time.sleep(2)  # let the queues drain
    total = sum(s["sent"] for s in sent.values())
    return {
        "lab": lab.prefix, "behaviour": args.behaviour, "seed": args.seed, "templates_per_side": args.templates,
        "sent": sent, "sent_total": total, "elapsed_s": round(elapsed, 1),
        "rate_pps": round(total / elapsed) if elapsed else 0,
        "gateway_alive": lab.gateway.poll() is None,
        "control_pings_during": {"ok": control_ok, "failed": control_failed},
        "rss_kib": {"before": before["rss_kib"], "after": gateway_rss(pid)},
        "counters": client.counters(), "mappings": len(client.mappings()),
        "kernel_ip_errors_in_gateway_ns": {k: v - ip_before.get(k, 0) for k, v in ip_errors(lab.gw).items()},
        "normal_before": before["normal"], "normal_after": normal_traffic(lab),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="malformed frames in all (half per side)")
    parser.add_argument("--rate", type=float, default=20_000, help="frames/s per side; 0: unpaced")
    parser.add_argument("--seconds", type=float, default=300, help="stop sending after this, whatever the count")
    parser.add_argument("--templates", type=int, default=3000, help="distinct frames crafted per side")
    parser.add_argument("--behaviour", default="rfc-recommended")
    parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(2), "big"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("soak: needs root (network namespaces, NFQUEUE)")
    with tempfile.TemporaryDirectory() as tmp:
        lab = GwLab(prefix=f"natlab-gwtest-soak-{secrets.token_hex(2)}", run_dir=Path(tmp))
        try:
            lab.build()
            report = soak(lab, args, Path(tmp))
        finally:
            lab.teardown()
    show(report)
    print(json.dumps(report))


def show(report: dict) -> None:
    counters = report["counters"]
    gateway = counters.pop("gateway")
    print(f"soak {report['lab']} ({report['behaviour']}, seed {report['seed']}): "
          f"{report['sent_total']} malformed frames in {report['elapsed_s']} s ({report['rate_pps']} frames/s)")
    for side, s in report["sent"].items():
        print(f"  {side:8s} sent {s['sent']:>9} ({s['send_errors']} send errors) in {s['seconds']} s")
    print(f"  gateway alive: {report['gateway_alive']}; control pings during: {report['control_pings_during']}")
    print(f"  RSS: {report['rss_kib']['before']} KiB before, {report['rss_kib']['after']} KiB after; "
          f"{report['mappings']} mappings")
    print(f"  normal traffic before: {report['normal_before']}  after: {report['normal_after']}")
    print(f"  kernel IP errors in the gateway namespace: {report['kernel_ip_errors_in_gateway_ns']}")
    print(f"  engine: {json.dumps(counters)}")
    print(f"  gateway: {json.dumps(gateway)}")
    counters["gateway"] = gateway


if __name__ == "__main__":
    main()
