"""The workbench's HTTP API: who may call it (token, origin, host) and what bad input gets.

Table-driven: each refusal names the request and the status it gets. Bad input
must answer 400 with a message the page shows, and change nothing (the state's
``version`` and the recording stay as they were).
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

pytest.importorskip("starlette", reason="natlab explore needs starlette (pip install 'natlab[explore]')")
pytest.importorskip("httpx", reason="the API tests use starlette's TestClient (pip install httpx)")

import warnings  # noqa: E402

with warnings.catch_warnings():  # starlette 1.x suggests httpx2; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from natlab.explore.security import Access  # noqa: E402
from natlab.explore.server import create_app  # noqa: E402

TOKEN = "t0ken-for-tests"
BASE = "http://127.0.0.1:8123"
ORIGIN = BASE
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(workbench: Any) -> Iterator[TestClient]:
    access = Access(TOKEN)
    access.listen_on("127.0.0.1", 8123)
    with TestClient(create_app(workbench, access), base_url=BASE) as c:
        yield c


def post(client: TestClient, action: str, body: Any, **headers: str) -> Any:
    return client.post(f"/api/{action}", json=body, headers={"X-Natlab-Token": TOKEN, **headers})


# -- token ------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("GET", "/"), ("GET", "/api/state"), ("GET", "/api/topology"), ("GET", "/api/events"),
    ("GET", "/static/app.js"), ("GET", "/api/scenario"), ("POST", "/api/reboot"),
])
def test_no_token_is_401(client: TestClient, method: str, path: str) -> None:
    r = client.request(method, path, headers=JSON, content=b'{"gateway": "nat-a"}' if method == "POST" else None)
    assert r.status_code == 401
    assert "token" in r.json()["error"]


@pytest.mark.parametrize("how", ["query", "header"])
def test_wrong_token_is_403(client: TestClient, how: str) -> None:
    r = client.get("/api/state", params={"token": "nope"}) if how == "query" else \
        client.get("/api/state", headers={"X-Natlab-Token": "nope"})
    assert r.status_code == 403


def test_token_in_the_query_or_header_opens_get(client: TestClient) -> None:
    assert client.get("/", params={"token": TOKEN}).status_code == 200
    assert client.get("/api/state", headers={"X-Natlab-Token": TOKEN}).status_code == 200
    page = client.get("/", params={"token": TOKEN}).text
    assert f"static/app.js?token={TOKEN}" in page


def test_state_changing_requests_need_the_header_not_the_query(client: TestClient, workbench: Any) -> None:
    r = client.post("/api/reboot", params={"token": TOKEN}, json={"gateway": "nat-a"})
    assert r.status_code == 401 and "X-Natlab-Token" in r.json()["error"].replace("x-natlab-token", "X-Natlab-Token")
    assert workbench.version == 0
    assert post(client, "reboot", {"gateway": "nat-a"}).status_code == 200
    assert workbench.version == 1


def test_state_changing_requests_must_be_json(client: TestClient, workbench: Any) -> None:
    r = client.post("/api/reboot", content=b"gateway=nat-a",
                    headers={"X-Natlab-Token": TOKEN, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert workbench.version == 0


# -- origin and host ----------------------------------------------------------------------

@pytest.mark.parametrize("headers,status", [
    ({"Origin": "http://evil.example"}, 403),
    ({"Origin": "http://127.0.0.1:9999"}, 403),          # another port is another origin
    ({"Origin": "null"}, 403),
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({"Host": "evil.example:8123"}, 403),                # DNS rebinding
    ({"Host": "127.0.0.1:8123", "Origin": ORIGIN}, 200),
    ({"Host": "localhost:8123", "Origin": "http://localhost:8123"}, 200),
])
def test_other_origins_and_hosts_are_refused(client: TestClient, workbench: Any, headers: dict, status: int) -> None:
    got = client.get("/api/state", params={"token": TOKEN}, headers=headers)
    assert got.status_code == status
    posted = post(client, "advance", {"seconds": 1}, **headers)
    assert posted.status_code == status
    assert workbench.version == (1 if status == 200 else 0)


def test_every_answer_has_the_security_headers(client: TestClient) -> None:
    for r in (client.get("/"), client.get("/", params={"token": TOKEN})):
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"


# -- bad input: a clear error, nothing changed ----------------------------------------------

BAD = [
    ("probe", {"proto": "udp", "from": "mallory", "to": "server:3478"}, "no sending host 'mallory'"),
    ("probe", {"proto": "udp", "from": "alice", "to": "nosuch:1"}, "not an address, host or gateway"),
    ("probe", {"proto": "udp", "from": "alice", "to": "server"}, "needs a port"),
    ("probe", {"proto": "udp", "from": "alice", "to": "server:70000"}, "out of range"),
    ("probe", {"proto": "sctp", "from": "alice", "to": "server:1"}, "unknown probe protocol"),
    ("probe", {"proto": "udp", "from": "server", "to": "nat-a:40000"}, "external address of gateway nat-a"),
    ("probe", {"proto": "udp", "from": "alice", "to": "server:1", "at": "nobody-here:1"}, "no receiving host"),
    ("knob", {"gateway": "nat-a", "knob": "filtering", "value": "sometimes"}, "invalid value"),
    ("knob", {"gateway": "nat-a", "knob": "timeouts.udp", "value": "-5"}, "timeouts.udp"),
    ("knob", {"gateway": "nat-a", "knob": "no_such_knob", "value": "1"}, "no_such_knob"),
    ("knob", {"gateway": "nat-z", "knob": "filtering", "value": "address-dependent"}, "no gateway 'nat-z'"),
    ("configure", {"gateway": "nat-a", "behaviour": "no-such-preset"}, "no such behaviour preset"),
    ("advance", {"gateway": "nat-a", "seconds": "soon"}, "seconds must be a number"),
    ("advance", {"gateway": "nat-a", "seconds": -1}, "out of range"),
    ("reboot", {"gateway": "nat-q"}, "no gateway"),
    ("punch", {"a": "alice", "b": "alice", "server": "server"}, "all different"),
    ("punch", {"a": "alice", "b": "bob", "server": "server", "timeout": 99}, "timeout out of range"),
    ("save", {"path": "/tmp/x.txt"}, "ends in .yaml"),
    ("pool", {"gateway": "nat-a", "addresses": "not-an-address"}, "invalid pool address"),
    ("pool", {"gateway": "nat-a", "addresses": " , "}, "a pool needs at least one address"),
    ("pool", {"gateway": "nat-a", "addresses": []}, "a pool needs at least one address"),
    ("pool", {"gateway": "nat-a", "addresses": "203.0.113.7, 203.0.113.7"}, "pool address listed twice"),
    ("pool", {"gateway": "nat-a", "addresses": "10.9.9.9"}, "outside the gateway's outside network"),
    ("pool", {"gateway": "nat-a", "addresses": "203.0.113.100"}, "203.0.113.100 is server's address"),
    ("pool", {"gateway": "nat-a", "addresses": "203.0.113.1, 203.0.113.22"}, "203.0.113.22 is nat-b's address"),
    ("pool", {"gateway": "nat-a", "addresses": [7]}, "a pool is a list of IPv4 addresses"),
    ("pool", {"gateway": "nat-q", "addresses": "203.0.113.7"}, "no gateway 'nat-q'"),
    ("pool", {"gateway": "nat-a"}, "pool needs addresses"),
    ("reboot", {"gateway": "nat-a", "extra": 1}, "unknown field(s) extra"),
    ("reboot", {}, "reboot needs gateway"),
    ("probe", {"from": "alice"}, "probe needs proto, to"),
]


@pytest.mark.parametrize("action,body,message", BAD, ids=[f"{a}-{m[:24]}" for a, _, m in BAD])
def test_bad_input_is_a_clear_error_and_changes_nothing(client: TestClient, workbench: Any,
                                                        action: str, body: dict, message: str) -> None:
    before = client.get("/api/state", params={"token": TOKEN}).json()
    r = post(client, action, body)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    after = client.get("/api/state", params={"token": TOKEN}).json()
    assert after == before


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]"])
def test_a_body_that_is_no_json_object_is_refused(client: TestClient, content: bytes) -> None:
    r = client.post("/api/reboot", content=content, headers={"X-Natlab-Token": TOKEN, **JSON})
    assert r.status_code == 400


def test_unknown_action_is_404(client: TestClient) -> None:
    assert post(client, "format-disk", {}).status_code == 404


def test_only_the_page_files_are_served(client: TestClient) -> None:
    assert client.get("/static/app.js", params={"token": TOKEN}).status_code == 200
    assert client.get("/static/../backend.py", params={"token": TOKEN}).status_code == 404
    assert client.get("/static/index.html", params={"token": TOKEN}).status_code == 404


def test_a_probe_answers_with_its_walk(client: TestClient) -> None:
    r = post(client, "probe", {"proto": "udp", "from": "alice", "to": "server:3478", "sport": 40000}).json()
    assert r["result"]["delivered"] and r["result"]["seen"] == "203.0.113.1:40000"
    (pkt,) = r["packets"]
    assert pkt["from"] == "alice" and pkt["end"] == "server" and pkt["outcome"] == "delivered"
    (hop,) = pkt["hops"]
    assert hop["node"] == "nat-a" and hop["in"].startswith("udp 192.168.1.2:40000")
    assert hop["out"].startswith("udp 203.0.113.1:40000") and "mapping-created" in hop["events"]


def test_a_new_pool_is_used_at_once_and_recorded(client: TestClient, workbench: Any) -> None:
    r = post(client, "pool", {"gateway": "nat-a", "addresses": "203.0.113.7, 203.0.113.8"})
    assert r.status_code == 200, r.text
    state = client.get("/api/state", params={"token": TOKEN}).json()
    assert state["gateways"]["nat-a"]["addresses"] == ["203.0.113.7", "203.0.113.8"]
    pool = ["203.0.113.7", "203.0.113.8"]
    assert state["record"][-1]["step"] == {"set_pool": {"gateway": "nat-a", "addresses": pool}}
    out = post(client, "probe", {"proto": "udp", "from": "alice", "to": "server:3478", "sport": 4000}).json()
    assert out["result"]["seen"] == "203.0.113.7:4000"
