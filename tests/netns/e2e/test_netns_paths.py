"""Whole paths through one and two NATs (e2e-double-nat.yaml): ICMP echo, traceroute,
a TCP transfer, ICMP errors back to the socket, TCP simultaneous open.

alice sits behind home-router behind cgn (two NATs); bob behind nat-b (one NAT).
All three NATs are port-restricted cones: endpoint-independent mapping,
address-and-port-dependent filtering, unsolicited SYNs held (RFC 5382 REQ-4).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from labkit import stop

pytestmark = pytest.mark.netns

SERVER = "198.51.100.100"


def python(lab, host, script, *args, timeout=60):
    done = lab.exec(host, [sys.executable, "-c", script, *map(str, args)],
                    capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


def inside_address(lab, gateway):
    gw = lab.topology.node(gateway)
    return str(gw.leg_on(gw.inside).addresses[0].ip)


@pytest.mark.parametrize("host, nats", [("bob", 1), ("alice", 2)])
def test_ping_crosses_the_nats(double_nat, host, nats):
    done = double_nat.exec(host, ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", SERVER],
                           capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 received" in done.stdout


@pytest.mark.skipif(shutil.which("traceroute") is None, reason="traceroute not installed")
def test_traceroute_through_two_nats_shows_every_hop(double_nat):
    done = double_nat.exec("alice", ["traceroute", "-n", "-q1", "-w1", "-m", "6", SERVER],
                           capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    hops = [line.split()[1] for line in done.stdout.splitlines()[1:]]
    assert hops == [inside_address(double_nat, "home-router"), inside_address(double_nat, "cgn"), SERVER], done.stdout


ECHO_SERVER = r"""
import socket, sys
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
conn, _ = srv.accept()
data = bytearray()
while chunk := conn.recv(65536):
    data += chunk
conn.sendall(bytes(data))
conn.close()
"""

TCP_CLIENT = r"""
import hashlib, random, socket, sys
payload = random.Random(4787).randbytes(int(sys.argv[2]))
s = socket.create_connection((sys.argv[1], int(sys.argv[3])), timeout=20)
s.sendall(payload)
s.shutdown(socket.SHUT_WR)
back = bytearray()
while chunk := s.recv(65536):
    back += chunk
print(len(back), hashlib.sha256(back).hexdigest() == hashlib.sha256(payload).hexdigest())
"""


def test_tcp_transfer_of_a_megabyte_through_two_nats_arrives_intact(double_nat):
    server = double_nat.popen("server", [sys.executable, "-c", ECHO_SERVER, "5001"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening", server.stderr.read()
        out = python(double_nat, "alice", TCP_CLIENT, SERVER, 1 << 20, 5001)
    finally:
        stop(server)
    assert out.split() == [str(1 << 20), "True"]


CONNECTED_UDP = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect((sys.argv[1], 9))
s.send(b"anyone?")
try:
    s.recv(100)
    print("data")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
"""


@pytest.mark.parametrize("host", ["bob", "alice"])
def test_port_unreachable_from_the_wan_reaches_the_socket_as_econnrefused(double_nat, host):
    assert python(double_nat, host, CONNECTED_UDP, SERVER).strip() == "refused"


TCP_REFLECTOR = r"""
import socket, sys
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
while True:
    conn, (ip, port) = srv.accept()
    conn.sendall(f"{ip}:{port}\n".encode())
    conn.close()
"""

# Learn the external endpoint of SPORT from the reflector, print it, read the
# peer's from stdin, then connect() to it from SPORT until a connection stands.
SIMULTANEOUS_PEER = r"""
import json, socket, sys, time
reflector, sport, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def bound():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", sport))
    return s
s = bound()
s.connect((reflector, 5002))
print(s.makefile().readline().strip(), flush=True)
s.close()
host, port = sys.stdin.readline().strip().rsplit(":", 1)
deadline, attempts = time.monotonic() + 25, 0
while time.monotonic() < deadline:
    attempts += 1
    s = bound()
    s.settimeout(4)
    try:
        s.connect((host, int(port)))
        break
    except OSError as err:
        s.close()
        time.sleep(0.1)
else:
    print(json.dumps({"connected": False, "attempts": attempts}))
    sys.exit(0)
s.sendall(f"hello from {name}".encode())
print(json.dumps({"connected": True, "attempts": attempts, "got": s.recv(100).decode()}))
"""


def test_tcp_simultaneous_open_through_eim_nats(double_nat):
    reflector = double_nat.popen("server", [sys.executable, "-c", TCP_REFLECTOR, "5002"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peers = {}
    try:
        assert reflector.stdout.readline().strip() == "listening", reflector.stderr.read()
        for name, sport in (("alice", 41000), ("bob", 42000)):
            peers[name] = double_nat.popen(name, [sys.executable, "-c", SIMULTANEOUS_PEER, SERVER, str(sport), name],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True)
        external = {name: proc.stdout.readline().strip() for name, proc in peers.items()}
        assert all(external.values()), {n: p.stderr.read() for n, p in peers.items()}
        peers["alice"].stdin.write(external["bob"] + "\n")
        peers["bob"].stdin.write(external["alice"] + "\n")
        for proc in peers.values():
            proc.stdin.flush()
        results = {name: json.loads(proc.communicate(timeout=40)[0]) for name, proc in peers.items()}
    finally:
        for proc in [reflector, *peers.values()]:
            stop(proc)
    assert results["alice"]["got"] == "hello from bob", results
    assert results["bob"]["got"] == "hello from alice", results
