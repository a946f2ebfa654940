"""Every apphand, DIN 70121 and ISO 15118-2 stream of the vectors decodes to libcbv2g's document and re-encodes
to the same bytes: the project's own (tests/vectors) always, the full corpus (../shared) where it is."""

import collections

import pytest

from evpilot import exi
from evpilot.errors import ExiError

from vectors import need_shared, records
from vectorlib import check_record

ALL = list(records())
# (identical, trailing zero byte) per standard: the project's subset (tests/make_vectors.py), the full corpus.
EXPECTED = {"apphand": (37, 0), "din70121": (112, 4), "iso15118-2": (111, 0)}
EXPECTED_FULL = {"apphand": (37, 0), "din70121": (1657, 4), "iso15118-2": (1814, 0)}


def _round_trip(recs, standard):
    identical = trailing = 0
    for r in recs:
        if r["standard"] != standard:
            continue
        if check_record(exi, r):
            trailing += 1
        else:
            identical += 1
    return identical, trailing


@pytest.fixture(scope="module")
def full_corpus():
    need_shared()
    return list(records(full=True))


def test_vector_counts():
    by_std = collections.Counter(r["standard"] for r in ALL)
    assert by_std == {s: sum(n) for s, n in EXPECTED.items()}


def test_full_corpus_counts(full_corpus):
    by_std = collections.Counter(r["standard"] for r in full_corpus)
    assert by_std == {"apphand": 37, "din70121": 1661, "iso15118-2": 1814}


@pytest.mark.parametrize("standard", ["apphand", "din70121", "iso15118-2"])
def test_every_vector_round_trips(standard):
    assert _round_trip(ALL, standard) == EXPECTED[standard]


@pytest.mark.parametrize("standard", ["apphand", "din70121", "iso15118-2"])
def test_every_vector_of_the_full_corpus_round_trips(full_corpus, standard):
    assert _round_trip(full_corpus, standard) == EXPECTED_FULL[standard]


def test_trailing_zero_byte_is_ignored():
    quirky = [r for r in ALL if r["libcbv2g"]["trailing_zero_bytes"]]
    assert len(quirky) == 4
    for r in quirky:
        data = bytes.fromhex(r["hex"])
        assert data[-1] == 0
        assert exi.decode("din", data) == exi.decode("din", data[:-1])
        assert exi.decode("din", data + b"\xff\xff") == exi.decode("din", data[:-1])


def test_values_of_a_real_current_demand_req():
    # A real car's DIN CurrentDemandReq: the fields that drive the charge loop.
    r = next(r for r in ALL if r["standard"] == "din70121" and r["message"] == "CurrentDemandReq"
             and r["origin"] == "real_capture")
    doc = exi.decode("din", bytes.fromhex(r["hex"]))
    body = doc["V2G_Message"]["Body"]["CurrentDemandReq"]
    assert isinstance(doc["V2G_Message"]["Header"]["SessionID"], bytes)
    assert set(body["EVTargetCurrent"]) == {"Multiplier", "Unit", "Value"}
    assert body["EVTargetCurrent"]["Unit"] == "A"
    assert isinstance(body["DC_EVStatus"]["EVReady"], bool)


def test_empty_and_garbage_streams_raise_exi_error():
    for data in (b"", b"\x80", b"\x00\x00", b"\x81\x98", bytes.fromhex("8098"), b"\x80\xfe\xff"):
        with pytest.raises(ExiError):
            exi.decode("iso2", data)
