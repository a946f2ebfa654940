# The device's CBOR subset and the provisioning frames, on both interpreters: RFC 8949 Appendix A examples
# byte for byte, round trips, every refusal a PeerError (never IndexError/KeyError/ValueError), framing with
# noise, damage, oversize and truncation, and resynchronisation.

from evpilot.errors import PeerError, UsageError
from evpilot.provision import cbor, frame

# (value, CBOR hex) from RFC 8949 Appendix A
_EXAMPLES = [
    (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"), (100, "1864"),
    (1000, "1903e8"), (1000000, "1a000f4240"), (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"), (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"), (-10, "29"), (-100, "3863"), (-1000, "3903e7"),
    (False, "f4"), (True, "f5"), (None, "f6"),
    (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"), ("a", "6161"), ("IETF", "6449455446"), ("\"\\", "62225c"), ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ([], "80"), ([1, 2, 3], "83010203"), ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"), ({1: 2, 3: 4}, "a201020304"), ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
]


def _hex(b):
    return "".join("%02x" % x for x in b)


def _refused(data):
    try:
        cbor.decode(data)
    except PeerError as e:
        return str(e)
    except Exception as e:  # anything else is a bug
        raise AssertionError("%r leaked %s: %s" % (data, type(e).__name__, e))
    raise AssertionError("%r was accepted" % (data,))


def test_rfc8949_examples_encode_and_decode():
    for value, hx in _EXAMPLES:
        assert _hex(cbor.encode(value)) == hx, (value, hx)
        assert cbor.decode(bytes.fromhex(hx)) == value, hx


def test_round_trip_nested():
    doc = {"op": "oem-install", "chain": [b"\x30" * 700, b"\x30\x01"], "n": -5, "ok": True, 7: None,
           "deep": [[[[[1]]]]]}
    assert cbor.decode(cbor.encode(doc)) == doc
    assert cbor.encode((1, 2)) == cbor.encode([1, 2])
    assert cbor.decode(cbor.encode(bytearray(b"ab"))) == b"ab"


def test_non_shortest_lengths_are_read():
    assert cbor.decode(bytes.fromhex("1800")) == 0
    assert cbor.decode(bytes.fromhex("5800")) == b""
    assert cbor.decode(bytes.fromhex("9a00000001" + "01")) == [1]


def test_unsupported_is_refused():
    for hx, word in [("f93c00", "float"), ("fb3ff199999999999a", "float"), ("c11a514b67b0", "tag"),
                     ("5f42010243030405ff", "indefinite"), ("9fff", "indefinite"), ("f0", "simple"),
                     ("f820", "simple"), ("f814", "simple"), ("1c", "reserved"), ("7e", "reserved")]:
        assert word in _refused(bytes.fromhex(hx)), hx


def test_malformed_is_refused_with_an_offset():
    assert "truncated" in _refused(b"")
    assert "truncated" in _refused(bytes.fromhex("19 03".replace(" ", "")))
    assert "truncated" in _refused(bytes.fromhex("4401"))
    assert "truncated" in _refused(bytes.fromhex("83 01 02".replace(" ", "")))
    assert "trailing" in _refused(bytes.fromhex("0000"))
    assert "UTF-8" in _refused(bytes.fromhex("62c328"))
    assert "duplicate" in _refused(bytes.fromhex("a2 01 02 01 03".replace(" ", "")))
    assert "key" in _refused(bytes.fromhex("a1 80 01".replace(" ", "")))
    assert "key" in _refused(bytes.fromhex("a1 f5 01".replace(" ", "")))
    assert "byte 2" in _refused(bytes.fromhex("8201f0"))


def test_limits():
    assert "limit" in _refused(b"\x5a" + (cbor.MAX_LENGTH + 1).to_bytes(4, "big"))
    assert "limit" in _refused(b"\x7b" + (1 << 40).to_bytes(8, "big"))
    assert "limit" in _refused(b"\x98" + bytes((cbor.MAX_ITEMS + 1,)))
    assert "limit" in _refused(b"\xb8" + bytes((cbor.MAX_ITEMS + 1,)))
    assert "nesting" in _refused(b"\x81" * (cbor.MAX_DEPTH + 1) + b"\x00")
    assert cbor.decode(b"\x81" * cbor.MAX_DEPTH + b"\x00") is not None
    assert "nesting" in _refused(b"\x81" * 5000)


def test_encode_refuses_what_is_outside_the_subset():
    for bad in (1.5, {(1, 2): 3}, {True: 1}, 1 << 64, -(1 << 64) - 1, set()):
        try:
            cbor.encode(bad)
        except UsageError:
            continue
        raise AssertionError("%r encoded" % (bad,))


def test_every_truncation_and_byte_flip_is_refused_or_decodes():
    doc = cbor.encode({"op": "list", "x": [1, -2, b"abc", "d\u00e9", None, {"k": True}]})
    for i in range(len(doc)):
        _refused(doc[:i])
    for i in range(len(doc)):
        for flip in (0x01, 0x20, 0x80, 0xFF):
            data = doc[:i] + bytes((doc[i] ^ flip,)) + doc[i + 1:]
            try:
                cbor.decode(data)
            except PeerError:
                pass


# --- frames ---------------------------------------------------------------------------------------------------


def _frames(events):
    return [v for k, v in events if k == frame.FRAME]


def _errors(events):
    return [v for k, v in events if k == frame.ERROR]


def test_crc32_matches_the_check_value():
    assert frame.crc32(b"123456789") == 0xCBF43926  # the CRC-32/ISO-HDLC check value


def test_frames_whole_byte_by_byte_and_between_repl_noise():
    a = frame.encode(b"first")
    b = frame.encode(b"")
    c = frame.encode(bytes(range(256)) * 4)
    stream = b">>> print(1)\r\n1\r\n" + a + b"noise E P \x1e" + b + c + b"\r\n>>> "
    d = frame.Deframer()
    assert _frames(d.feed(stream, 0)) == [b"first", b"", bytes(range(256)) * 4]
    d = frame.Deframer()
    got = []
    for i in range(len(stream)):
        ev = d.feed(stream[i:i + 1], i)
        assert not _errors(ev)
        got.extend(_frames(ev))
    assert got == [b"first", b"", bytes(range(256)) * 4]


def test_damaged_frame_is_reported_and_the_next_one_still_read():
    good = frame.encode(b"payload")
    bad = bytearray(frame.encode(b"damaged!"))
    bad[7] ^= 0x40
    ev = frame.Deframer().feed(bytes(bad) + good, 0)
    assert _frames(ev) == [b"payload"]
    assert len(_errors(ev)) == 1 and "CRC" in _errors(ev)[0]


def test_oversized_length_is_refused_without_waiting_for_it():
    d = frame.Deframer(max_payload=100)
    ev = d.feed(frame.MARKER + (101).to_bytes(2, "big") + b"x" * 10 + frame.encode(b"ok"), 0)
    assert _frames(ev) == [b"ok"]
    assert "limit" in _errors(ev)[0]
    try:
        frame.encode(b"x" * (frame.MAX_PAYLOAD + 1))
    except UsageError:
        pass
    else:
        raise AssertionError("oversized payload framed")


def test_truncated_frame_expires_and_does_not_swallow_the_next():
    d = frame.Deframer()
    part = frame.encode(b"will never end")[:9]
    assert d.feed(part, 1000) == []
    assert d.next_deadline() == 1000 + frame.PARTIAL_TIMEOUT
    assert d.on_timer(1500) == []
    ev = d.on_timer(1000 + frame.PARTIAL_TIMEOUT)
    assert "truncated" in _errors(ev)[0]
    assert d.next_deadline() is None
    assert _frames(d.feed(frame.encode(b"next"), 5000)) == [b"next"]
    # a truncated frame followed late by a whole one: the stale start is dropped first
    d = frame.Deframer()
    d.feed(part, 0)
    ev = d.feed(frame.encode(b"late"), 10000)
    assert _frames(ev) == [b"late"] and len(_errors(ev)) == 1


def test_random_garbage_never_raises():
    import hashlib

    d = frame.Deframer(max_payload=64)
    seed = b"garbage"
    for i in range(200):
        seed = hashlib.sha256(seed).digest()
        chunk = seed if i % 3 else frame.MARKER + seed[:4]
        for k, v in d.feed(chunk, i * 10):
            assert k in (frame.FRAME, frame.ERROR)
    assert _frames(d.feed(frame.encode(b"still works"), 99999)) == [b"still works"]
