"""Fuzzing the decoder with mutated real streams: only ExiError may escape, and it names where.
bench/fuzz_exi.py runs the same mutations at scale (100,000 and more)."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evpilot import exi
from evpilot.errors import ExiError
from evpilot.exi.bitstream import BitReader, BitWriter

from exi_mutate import mutate
from vectors import records

CORPUS = {"apphand": [], "din": [], "iso2": []}
for _r in records():
    if _r["libcbv2g"]["schema"] in CORPUS:
        CORPUS[_r["libcbv2g"]["schema"]].append(bytes.fromhex(_r["hex"]))


def _decode_or_exi_error(schema, data):
    try:
        exi.decode(schema, data)
    except ExiError as e:
        assert str(e)  # a message, never empty
        return False
    return True


@pytest.mark.parametrize("schema", ["apphand", "din", "iso2"])
def test_mutated_vectors_raise_only_exi_error(schema):
    rnd = random.Random(1511802)
    corpus = CORPUS[schema]
    ok = bad = 0
    for _ in range(1500):
        data = mutate(rnd.choice(corpus), rnd, corpus)
        if _decode_or_exi_error(schema, data):
            ok += 1
        else:
            bad += 1
    assert bad > 100  # the mutations do reach the error paths


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data):
    for schema in ("apphand", "din", "iso2", "xmldsig"):
        try:
            exi.decode_fragment(schema, data)
        except ExiError:
            pass
        if schema != "xmldsig":
            _decode_or_exi_error(schema, data)


def test_error_names_path_and_bit():
    data = bytes.fromhex("809a0200f37ffd9f7677acd0d100000ac040603c010284b0f804061104e04070a8c3010400808000")
    with pytest.raises(ExiError) as info:
        exi.decode("din", data[:20])
    err = info.value
    assert err.path.startswith("V2G_Message/Body/CurrentDemandReq")
    assert err.bit is not None and err.bit <= 20 * 8
    assert "unexpected end of stream" in str(err) and err.path in str(err)


def test_huge_lengths_are_refused_before_allocation():
    # ISO-2 header, document code 76 (V2G_Message), SE(Header), SE(SessionID), CH: then the length.
    for length in (9, 1 << 20, 1 << 62):
        w = BitWriter()
        w.bits(0x80, 8)
        w.bits(76, 7)
        w.bits(0, 3)
        w.uint(length)
        w.bits(0, 7)
        with pytest.raises(ExiError) as info:
            exi.decode("iso2", w.getvalue() + b"\x00" * 16)
        assert "length %d" % length in str(info.value)
        assert info.value.path == "V2G_Message/Header/SessionID"
    # A string whose length claims more characters than bits remain.
    w = BitWriter()
    w.bits(0x80, 8)
    w.uint((1 << 40) + 2)
    with pytest.raises(ExiError) as info:
        exi.grammar("iso2")._string(BitReader(w.getvalue()[1:]), 0)
    assert "exceeds the stream" in str(info.value)


def test_encoder_rejects_bad_documents_with_the_path():
    good = {"V2G_Message": {"Header": {"SessionID": b"\x01" * 8},
                            "Body": {"SessionSetupReq": {"EVCCID": b"\x00\x01\x02\x03\x04\x05"}}}}
    assert exi.decode("iso2", exi.encode("iso2", good)) == good
    cases = [
        ({"V2G_Message": {"Header": {"SessionID": b"\x01" * 9}, "Body": {}}}, "V2G_Message/Header/SessionID"),
        ({"V2G_Message": {"Header": {}, "Body": {}}}, "missing SessionID"),
        ({"V2G_Message": {"Header": {"SessionID": b"\x01"}, "Body": {"Nope": {}}}}, "Nope"),
        ({"V2G_Message": {"Header": {"SessionID": b"\x01"}, "Body": {"SessionSetupReq": {"EVCCID": 5}}}},
         "EVCCID"),
        ({"V2G_Message": {"Header": {"SessionID": "zz"}, "Body": {}}}, "hex"),
        ({"Nope": {}}, "root element"),
    ]
    for doc, fragment in cases:
        with pytest.raises(ExiError) as info:
            exi.encode("iso2", doc)
        assert fragment in str(info.value), str(info.value)


def test_unknown_schema():
    with pytest.raises(ExiError):
        exi.decode("iso99", b"\x80\x00")
