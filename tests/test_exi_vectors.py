"""Every apphand, DIN 70121 and ISO 15118-2 stream of ../shared/vectors/exi.jsonl decodes to libcbv2g's
document and re-encodes to the same bytes."""

import collections

import pytest

from evpilot import exi
from evpilot.errors import ExiError

from vectors import records
from vectorlib import check_record

ALL = list(records())


def test_vector_counts():
    by_std = collections.Counter(r["standard"] for r in ALL)
    assert by_std == {"apphand": 37, "din70121": 1661, "iso15118-2": 1814}


@pytest.mark.parametrize("standard", ["apphand", "din70121", "iso15118-2"])
def test_every_vector_round_trips(standard):
    identical = trailing = 0
    for r in ALL:
        if r["standard"] != standard:
            continue
        if check_record(exi, r):
            trailing += 1
        else:
            identical += 1
    expected = {"apphand": (37, 0), "din70121": (1657, 4), "iso15118-2": (1814, 0)}[standard]
    assert (identical, trailing) == expected


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
