"""HTTP/1.1 framing of the UPnP port: one request per connection, every limit a status."""

import pytest

from natlab.portmap.http import MAX_HEADER, Refused, Request, RequestReader, frame, refusal
from natlab.portmap.types import HttpReply
from natlab.portmap.upnp_soap import MAX_BODY


def read(*chunks: bytes):
    reader = RequestReader()
    result = None
    for chunk in chunks:
        result = reader.feed(chunk)
    return result


def test_a_get_is_read_whole():
    got = read(b"GET /rootDesc.xml HTTP/1.1\r\nHost: 192.168.1.1:5000\r\n\r\n")
    assert got == Request("GET", "/rootDesc.xml", (("Host", "192.168.1.1:5000"),), b"")
    assert got.header("host") == "192.168.1.1:5000"


def test_a_post_body_may_arrive_in_pieces():
    head = b"POST /ctl/IPConn HTTP/1.1\r\nContent-Length: 10\r\nSOAPAction: \"x#y\"\r\n\r\n"
    reader = RequestReader()
    assert reader.feed(head[:7]) is None and reader.feed(head[7:] + b"01234") is None
    got = reader.feed(b"56789")
    assert isinstance(got, Request) and got.body == b"0123456789" and got.header("SOAPACTION") == '"x#y"'


@pytest.mark.parametrize("raw, status, reason", [
    (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEADER + b"\r\n\r\n", 431, "header-too-large"),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEADER + 10), 431, "header-too-large"),
    (b"POST /ctl/IPConn HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1), 413, "body-too-large"),
    (b"POST /ctl/IPConn HTTP/1.1\r\n\r\n", 411, "no-content-length"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "transfer-encoding"),
    (b"GET / HTTP/2.0\r\n\r\n", 505, "bad-version"),
    (b"GET\r\n\r\n", 400, "bad-request-line"),
    (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400, "bad-header"),
    (b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400, "bad-content-length"),
])
def test_a_bad_or_oversized_request_gets_its_status(raw, status, reason):
    assert read(raw) == Refused(status, reason)


def test_once_decided_the_reader_keeps_its_answer_and_holds_nothing_more():
    reader = RequestReader()
    first = reader.feed(b"POST / HTTP/1.1\r\n\r\n")
    assert reader.feed(b"x" * 100_000) is first


def test_answers_are_framed_with_their_length_and_close():
    raw = frame(HttpReply(200, b"<root/>"))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 7" in head
    assert b"Connection: close" in head and body == b"<root/>"
    assert refusal(501).startswith(b"HTTP/1.1 501 Not Implemented")
