# SDP: payload codec, the EV's client on a virtual clock, the SECC's responder, and random bytes against the
# parsers (only PeerError may escape them; the client never raises on what it receives).

from evpilot.compat import TICKS_PERIOD, ticks_add
from evpilot.errors import PeerError, UsageError
from evpilot.v2g import sdp, timers, v2gtp

SECC = bytes.fromhex("fe80000000000000021e51fffe0a1b2c")
REQUEST_TLS = bytes.fromhex("01fe9000000000020000")
REQUEST_NONE = bytes.fromhex("01fe9000000000021000")


def _response(security="none", port=50123, address=SECC, transport="tcp"):
    return v2gtp.build(v2gtp.SDP_RESPONSE, sdp.build_response(address, port, security, transport))


def _raises_peer_error(fn, arg):
    try:
        fn(arg)
    except PeerError as e:
        return str(e)
    assert False, arg


class _Rng:
    # xorshift32: the same sequence on both interpreters, no random module needed.
    def __init__(self, seed):
        self.x = seed

    def next(self):
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.x = x
        return x

    def bytes(self, n):
        return bytes(self.next() & 0xFF for _ in range(n))


def test_request_codec():
    assert sdp.request_frame("tls") == REQUEST_TLS
    assert sdp.request_frame("none") == REQUEST_NONE
    assert sdp.parse_request(b"\x00\x00") == {"security": "tls", "transport": "tcp"}
    assert sdp.parse_request(b"\x10\x10") == {"security": "none", "transport": "udp"}
    for bad in (b"", b"\x00", b"\x00\x00\x00", b"\x01\x00", b"\x00\x01", b"\xff\xff"):
        assert "SDP request" in _raises_peer_error(sdp.parse_request, bad)
    for security in ("TLS", "", None, 0):
        try:
            sdp.build_request(security)
        except UsageError:
            pass
        else:
            assert False, security


def test_response_codec():
    payload = sdp.build_response(SECC, 50123, "tls")
    assert payload == SECC + bytes.fromhex("c3cb0000")
    assert sdp.parse_response(payload) == {"address": SECC, "port": 50123, "security": "tls", "transport": "tcp"}
    assert sdp.parse_response(SECC + bytes.fromhex("3b6e1000"))["port"] == 15214
    assert sdp.parse_response(sdp.build_response(SECC, 1, "none"))["port"] == 1
    bad = [
        payload[:19],  # truncated
        payload + b"\x00",  # oversized
        b"",
        SECC + bytes.fromhex("00001000"),  # port 0
        SECC + bytes.fromhex("c3cb2000"),  # unknown security
        SECC + bytes.fromhex("c3cb1001"),  # unknown transport
        bytes.fromhex("ff020000000000000000000000000001") + bytes.fromhex("c3cb1000"),  # multicast
    ]
    for data in bad:
        assert "SDP response" in _raises_peer_error(sdp.parse_response, data)
    for args in ((SECC[:15], 1, "none"), (SECC, 0, "none"), (SECC, 65536, "none"), (SECC, 1, "maybe")):
        try:
            sdp.build_response(*args)
        except UsageError:
            pass
        else:
            assert False, args


def test_client_retries_at_exact_deadlines_then_fails():
    t0 = 1000
    c = sdp.SdpClient("tls", t0)
    assert c.next_deadline() == t0
    sent = []
    now = t0
    for i in range(timers.SDP_MAX_REQUESTS):
        if i:
            assert c.poll(ticks_add(now, -1)) == []  # not a millisecond early
        out = c.poll(now)
        assert out == [REQUEST_TLS], (i, out)
        sent.append(now)
        assert c.poll(now) == []  # one request per deadline
        assert c.next_deadline() == ticks_add(now, 250)
        now = c.next_deadline()
    assert c.tries == 50 and not c.failed
    assert sent[-1] == t0 + 49 * 250
    assert c.poll(ticks_add(now, -1)) == [] and not c.failed
    assert c.poll(now) == []
    assert c.failed and c.result is None
    assert "50 requests" in c.failure
    assert c.next_deadline() is None
    assert c.poll(now + 10000) == []
    # A response after the failure changes nothing.
    assert c.receive(_response("tls"), now) is False and c.result is None


def test_client_late_poll_waits_a_full_interval():
    c = sdp.SdpClient("none", 0, interval=500, max_requests=3)
    assert c.poll(0) == [REQUEST_NONE]
    assert c.poll(520) == [REQUEST_NONE]  # 20 ms late
    assert c.next_deadline() == 1020
    assert c.poll(1019) == []


def test_client_success():
    c = sdp.SdpClient("none", 5)
    assert c.poll(5) == [REQUEST_NONE]
    assert c.poll(200) == []
    assert c.receive(_response("none", 15118), 100) is True
    assert c.result == {"address": SECC, "port": 15118, "security": "none"}
    assert not c.failed and c.next_deadline() is None
    assert c.poll(300) == [] and c.poll(100000) == []
    # Later datagrams are counted, never change the result.
    assert c.receive(_response("none", 2222), 120) is False
    assert c.result["port"] == 15118 and c.ignored == 1


def test_client_success_across_tick_wraparound():
    t0 = TICKS_PERIOD - 100
    c = sdp.SdpClient("tls", t0)
    assert c.poll(t0) == [REQUEST_TLS]
    assert c.next_deadline() == 150
    assert c.poll(TICKS_PERIOD - 1) == []
    assert c.poll(150) == [REQUEST_TLS]
    assert c.receive(_response("tls"), 151)
    assert c.result["security"] == "tls"


def test_client_security_mismatch():
    # Default: the EV asked for TLS, the station offers none: rejected, requests go on to the end.
    c = sdp.SdpClient("tls", 0, max_requests=2)
    c.poll(0)
    assert c.receive(_response("none"), 10) is False
    assert c.rejected == 1 and c.result is None and "security none" in c.last_error
    assert c.poll(250) == [REQUEST_TLS]
    assert c.poll(500) == [] and c.failed
    assert "1 rejected" in c.failure and "security none" in c.failure
    # With the flag (Josev's use_tls without enforce_tls): accepted, and the result says "none".
    c = sdp.SdpClient("tls", 0, accept_other_security=True)
    c.poll(0)
    assert c.receive(_response("none"), 10) is True
    assert c.result["security"] == "none"
    # An offer of TLS to a no-TLS request is rejected by default too.
    c = sdp.SdpClient("none", 0)
    c.poll(0)
    assert c.receive(_response("tls"), 10) is False and c.rejected == 1
    # UDP transport is never accepted.
    c = sdp.SdpClient("none", 0, accept_other_security=True)
    c.poll(0)
    assert c.receive(_response("none", transport="udp"), 10) is False and c.rejected == 1


def test_client_counts_junk_and_other_payload_types():
    c = sdp.SdpClient("none", 0)
    c.poll(0)
    good = _response("none")
    junk = [
        b"",
        b"\x01",
        good[:7],  # header cut
        good[:-1],  # truncated payload
        good + b"\x00",  # trailing byte after the frame
        bytes.fromhex("02fd900100000014") + good[8:],  # bad version
        bytes.fromhex("01fe9001ffffffff"),  # absurd length
        v2gtp.build(v2gtp.SDP_RESPONSE, good[8:] + b"\x00"),  # oversized payload
        v2gtp.build(v2gtp.SDP_RESPONSE, good[8:-1]),  # truncated payload, consistent header
        v2gtp.build(v2gtp.SDP_RESPONSE, SECC + bytes.fromhex("00001000")),  # port 0
    ]
    for frame in junk:
        assert c.receive(frame, 10) is False, frame
    assert c.malformed == len(junk) and c.ignored == 0
    others = [
        REQUEST_NONE,  # our own request looped back, or another EV's
        REQUEST_TLS,
        v2gtp.build(v2gtp.EXI, b"\x80\x00"),
        v2gtp.build(0x1234, b""),
    ]
    for frame in others:
        assert c.receive(frame, 10) is False
    assert c.ignored == len(others) and c.result is None and not c.failed
    assert c.receive(bytearray(good), 20) is True  # and the real answer still works
    assert c.result["port"] == 50123


def test_client_usage_errors():
    for args in (("TLS", 0), ("none", 0, False, 0), ("none", 0, False, 250, 0)):
        try:
            sdp.SdpClient(*args)
        except UsageError:
            pass
        else:
            assert False, args


def test_responder():
    r = sdp.SdpResponder(SECC, 61000, True)
    res = r.respond(REQUEST_TLS)
    ptype, payload, used = v2gtp.parse(res)
    assert ptype == v2gtp.SDP_RESPONSE and used == len(res) == 28
    assert sdp.parse_response(payload) == {"address": SECC, "port": 61000, "security": "tls", "transport": "tcp"}
    assert sdp.parse_response(v2gtp.parse(r.respond(REQUEST_NONE))[1])["security"] == "none"
    r2 = sdp.SdpResponder(SECC, 61000, False)
    assert sdp.parse_response(v2gtp.parse(r2.respond(REQUEST_TLS))[1])["security"] == "none"
    # Junk and other payload types get no answer.
    for frame in (b"", REQUEST_TLS[:-1], REQUEST_TLS + b"\x00", v2gtp.build(v2gtp.SDP_REQUEST, b"\x00\x00\x00"),
                  v2gtp.build(v2gtp.SDP_REQUEST, b"\x20\x00"), res):
        assert r.respond(frame) is None
    assert r.respond(v2gtp.build(v2gtp.SDP_REQUEST, b"\x00\x10")) is None  # UDP transport
    assert r.answered == 2 and r.malformed == 5 and r.ignored == 2
    for args in ((SECC[:4], 1, True), (SECC, 0, True)):
        try:
            sdp.SdpResponder(*args)
        except UsageError:
            pass
        else:
            assert False, args


def test_client_and_responder_on_a_virtual_clock():
    # The station only starts listening after the EV's third request.
    r = sdp.SdpResponder(SECC, 49152, True)
    c = sdp.SdpClient("tls", 0)
    now = 0
    answered_at = None
    while c.next_deadline() is not None and now < 60000:
        now = c.next_deadline()
        for frame in c.poll(now):
            if c.tries >= 3:
                reply = r.respond(frame)
                answered_at = now
                c.receive(reply, now + 3)
    assert c.result == {"address": SECC, "port": 49152, "security": "tls"}
    assert c.tries == 3 and answered_at == 500


def test_fuzz_parsers_raise_only_peer_error():
    rng = _Rng(0x2545F491)
    seeds = [REQUEST_TLS, _response("tls"), _response("none", 15118)]
    for i in range(1500):
        kind = i % 3
        if kind == 0:
            data = rng.bytes(rng.next() % 40)
        else:
            data = bytearray(seeds[i % len(seeds)])
            for _ in range(1 + rng.next() % 4):
                op = rng.next() % 3
                pos = rng.next() % (len(data) + 1)
                if op == 0 and data:
                    data[pos % len(data)] = rng.next() & 0xFF
                elif op == 1:
                    data = data[:pos]
                else:
                    data = data[:pos] + rng.bytes(1 + rng.next() % 4) + data[pos:]
            data = bytes(data)
        for fn in (sdp.parse_request, sdp.parse_response):
            for arg in (data, data[8:]):
                try:
                    fn(arg)
                except PeerError:
                    pass
        # The client and responder never raise on input.
        c = sdp.SdpClient("none", 0, accept_other_security=bool(i & 1))
        c.poll(0)
        c.receive(data, 1)
        assert c.result is None or c.result["port"] > 0
        sdp.SdpResponder(SECC, 15118, bool(i & 2)).respond(data)
