"""How many packets per second a gateway process forwards: UDP blast inside -> outside.

    sudo /opt/nlvenv/bin/python benchmarks/nfqueue_bench.py [--seconds 3] [--flows 1]

Builds the three-namespace topology of ``tests/netns/gateway`` (natlab-gwtest-...),
then for each mode measures what the outside host receives while the inside
host sends as fast as it can: ``kernel`` (no gateway process, plain forwarding:
the baseline), ``passthrough`` (NFQUEUE round trip, no NAT) and ``nat`` (the
real engine). Namespaces are removed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from gateway.conftest import GwLab  # noqa: E402

RECEIVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9000))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24); s.settimeout(0.5)
print("ready", flush=True); n = 0; end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try: s.recv(2048); n += 1
    except socket.timeout: pass
print(n)
"""

SENDER = """
import socket, sys, time
flows, seconds, dst = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
socks = []
for i in range(flows):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 20000 + i)); socks.append(s)
payload = b"x" * 64; n = 0; end = time.monotonic() + seconds
while time.monotonic() < end:
    for s in socks:
        try: s.sendto(payload, (dst, 9000)); n += 1
        except OSError: pass
print(n)
"""


def measure(lab: GwLab, seconds: float, flows: int) -> dict[str, float]:
    receiver = subprocess.Popen(["ip", "netns", "exec", lab.outside, sys.executable, "-c", RECEIVER,
                                 str(seconds + 1.5)], stdout=subprocess.PIPE, text=True)
    lab.procs.append(receiver)
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
    sent = subprocess.run(["ip", "netns", "exec", lab.inside, sys.executable, "-c", SENDER, str(flows),
                           str(seconds), lab.OUTSIDE_ADDRS[0]], capture_output=True, text=True, check=True)
    received, _ = receiver.communicate(timeout=seconds + 10)
    return {"sent_pps": int(sent.stdout) / seconds, "received_pps": int(received) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--flows", type=int, default=1)
    args = parser.parse_args()
    results = {}
    for mode in ("kernel", "passthrough", "nat"):
        with tempfile.TemporaryDirectory() as tmp:
            lab = GwLab(prefix=f"natlab-gwtest-bench-{mode[:4]}", run_dir=Path(tmp))
            try:
                lab.build()
                if mode != "nat":  # no translation: the outside needs a route back
                    subprocess.run(["ip", "-n", lab.outside, "route", "add", "192.168.77.0/24",
                                    "via", "203.0.113.1"], check=True)
                if mode != "kernel":
                    from natlab.behaviours.presets import policy_from_dict, policy_to_dict

                    lab.start_gateway(lab.spec(policy_to_dict(policy_from_dict({}))), engine=mode)
                results[mode] = measure(lab, args.seconds, args.flows)
            finally:
                lab.teardown()
        print(f"{mode:12s} sent {results[mode]['sent_pps']:10.0f} pps   "
              f"received {results[mode]['received_pps']:10.0f} pps", flush=True)
    print(json.dumps({"seconds": args.seconds, "flows": args.flows, "results": results}))


if __name__ == "__main__":
    main()
