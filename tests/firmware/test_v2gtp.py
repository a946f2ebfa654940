# V2GTP framing: header build and parse, bounds, partial buffers, and schema detection of EXI payloads.

from evpilot import exi
from evpilot.errors import PeerError
from evpilot.v2g import v2gtp

SESSION_SETUP_RES = bytes.fromhex("8098022bfbb6f3fefbdffed1e020491114a9413960a914c4c8ccd0d4d8a8c480")


def test_build_and_parse():
    frame = v2gtp.build(v2gtp.EXI, SESSION_SETUP_RES)
    assert frame[:8] == bytes.fromhex("01fe800100000020")
    assert v2gtp.parse(frame) == (v2gtp.EXI, SESSION_SETUP_RES, len(frame))
    # Two messages back to back, and a partial one: parse takes one at a time, None until it is whole.
    two = frame + v2gtp.build(v2gtp.SDP_RESPONSE, b"\x00" * 20)
    ptype, payload, used = v2gtp.parse(two)
    assert (ptype, used) == (v2gtp.EXI, len(frame))
    assert v2gtp.parse(two[used:])[0] == v2gtp.SDP_RESPONSE
    for cut in (0, 1, 7, 8, len(frame) - 1):
        assert v2gtp.parse(frame[:cut]) is None


def test_bad_headers_raise_peer_error_before_allocation():
    bad = [
        bytes.fromhex("02fd800100000001") + b"\x00",  # version 2
        bytes.fromhex("01ff800100000001") + b"\x00",  # inverse does not match
        bytes.fromhex("01fe8001ffffffff"),  # 4 GB payload
        bytes.fromhex("01fe800100004001"),  # one byte over the default limit
    ]
    for frame in bad:
        try:
            v2gtp.parse(frame)
        except PeerError as e:
            assert "V2GTP" in str(e)
        else:
            assert False, frame
    assert v2gtp.parse_header(bytes.fromhex("01fe800100002000"), 8192) == (v2gtp.EXI, 8192)


def test_detect_schema():
    assert exi.detect_schema(SESSION_SETUP_RES) == "iso2"
    assert exi.detect_schema(bytes.fromhex("809a0200f37ffd9f7677acd1f0")) == "din"
    assert exi.detect_schema(bytes.fromhex("8000dbab9371")) == "apphand"
    assert exi.detect_schema(bytes.fromhex("8040")) == "apphand"
    for data in (b"", b"\x80", b"\x81\x98", bytes.fromhex("80fe")):
        assert exi.detect_schema(data) is None


def test_reassembler_cuts_a_stream_at_any_split():
    frames = [v2gtp.build(v2gtp.EXI, SESSION_SETUP_RES), v2gtp.build(v2gtp.EXI, b"\x80\x98\x02"),
              v2gtp.build(v2gtp.EXI, b"")]
    stream = b"".join(frames)
    for step in (1, 3, 8, 13, len(stream)):
        r = v2gtp.Reassembler()
        got = []
        for i in range(0, len(stream), step):
            for ptype, payload in r.feed(stream[i:i + step]):
                assert len(payload) >= v2gtp.PAD  # room for the decoder to read in place
                got.append((ptype, bytes(payload[:len(payload) - v2gtp.PAD])))
        assert got == [(v2gtp.EXI, SESSION_SETUP_RES), (v2gtp.EXI, b"\x80\x98\x02"), (v2gtp.EXI, b"")]
        assert r.have == 0 and r.need == -1


def test_reassembler_keeps_one_buffer_sized_by_the_header():
    r = v2gtp.Reassembler(reserve=16)
    small = len(r.buf)
    big = bytes(range(256)) * 5
    seen = []
    for frame in (v2gtp.build(v2gtp.EXI, b"abc"), v2gtp.build(v2gtp.EXI, big), v2gtp.build(v2gtp.EXI, b"xy")):
        for i in range(0, len(frame), 100):
            for _, payload in r.feed(frame[i:i + 100]):
                seen.append((len(r.buf), bytes(payload[:len(payload) - v2gtp.PAD])))
    assert seen[0] == (small, b"abc")
    assert seen[1] == (len(big) + v2gtp.PAD, big)  # made once, at the header, at the size it announced
    assert seen[2] == (len(big) + v2gtp.PAD, b"xy")  # and kept for the next message


def test_reassembler_refuses_a_huge_announcement_before_buffering():
    r = v2gtp.Reassembler(max_payload=8192)
    try:
        list(r.feed(bytes.fromhex("01fe800100100000") + b"\x00" * 10))
    except PeerError as e:
        assert "exceeds" in str(e)
    else:
        assert False
