# The EXI codec on both interpreters: the project's vectors (tests/vectors: every message of every set), the
# known fragment bytes, primitive encodings cross-checked against EXIficient, and the error type.
# tests/test_exi_vectors.py runs the full corpus on CPython where ../shared has it.

import json

from evpilot import exi
from evpilot.errors import ExiError
from evpilot.exi.bitstream import BitReader, BitWriter

from vectorlib import check_record, exi_records, vector


def test_vector_sample_round_trips():
    seen = {}
    for r in exi_records():
        check_record(exi, r)
        seen[r["standard"]] = seen.get(r["standard"], 0) + 1
    assert seen == {"apphand": 37, "din70121": 116, "iso15118-2": 111}


def test_known_fragments():
    auth = {"AuthorizationReq": {"Id": "id1", "GenChallenge": bytes.fromhex("6feb55b9296da243745d07d5241ca02d")}}
    assert exi.encode_fragment("iso2", auth) == bytes.fromhex("8004015A590C40837F5AADC94B6D121BA2E83EA920E50169E8")
    emaid = {"eMAID": {"Id": "id4", "CONTENT": "DEABCC123ABC56"}}
    data = exi.encode_fragment("iso2", emaid)
    assert data == bytes.fromhex("80EC0202B4B21A40041111505090D0CC4C8CD05090CD4DBD3D00")
    assert exi.decode_fragment("iso2", data) == emaid


def test_rise_v2g_signed_info_round_trips():
    text = open(vector("pnc/rise-v2g-signature-testdata/README.md")).read()
    start = text.index("SIGNATURE GENERATION WITH CORRECT XML NAMESPACE")
    hexdata = text[start:].split("EXI:\n", 1)[1].split("\n", 1)[0].strip()
    data = bytes.fromhex(hexdata)
    assert len(data) == 559
    doc = exi.decode_fragment("xmldsig", data)
    refs = doc["SignedInfo"]["Reference"]
    assert [r["URI"] for r in refs] == ["#id2", "#id1", "#id4", "#id3"]
    assert refs[1]["DigestValue"] == bytes.fromhex("8EFA2B8D3BDED68CF6F4DF02D80BADCC4036AEA8F2D4E4124CA69A64DBC192B0")
    assert exi.encode_fragment("xmldsig", doc) == data


def _primitive(kind, value, w):
    g = exi.grammar("iso2")
    if kind == "unsignedInteger":
        w.uint(int(value))
    elif kind == "signedInteger":
        v = int(value)
        w.bits(1 if v < 0 else 0, 1)
        w.uint(-v - 1 if v < 0 else v)
    elif kind == "binary":
        b = bytes.fromhex(value.replace(" ", ""))
        w.uint(len(b))
        w.octets(b)
    elif kind == "boolean":
        w.bits(1 if value == "true" else 0, 1)
    elif kind == "string":
        g._encode_string(w, value, 0)


def test_primitives_match_exificient():
    with open(vector("exi-primitives.json")) as f:
        vectors = json.load(f)["vectors"]
    assert len(vectors) == 23
    g = exi.grammar("iso2")
    for v in vectors:
        w = BitWriter()
        value = v.get("value", v.get("valueHex"))
        _primitive(v["datatype"], value, w)
        want = bytes.fromhex(v["expectedHex"].replace(" ", ""))
        assert w.getvalue() == want, v["name"]
        r = BitReader(want)
        if v["datatype"] == "string":
            assert g._string(r, 0) == value, v["name"]
        elif v["datatype"] == "unsignedInteger":
            assert r.uint() == int(value)
        elif v["datatype"] == "binary":
            assert r.octets(r.uint()) == bytes.fromhex(value.replace(" ", ""))


def test_bit_writer_and_reader_agree_at_every_alignment():
    for shift in range(8):
        w = BitWriter()
        w.bits(0, shift)
        w.octets(b"\x01\xff\x80")
        w.uint(300)
        w.bits(5, 3)
        r = BitReader(w.getvalue())
        assert r.bits(shift) == 0
        assert r.octets(3) == b"\x01\xff\x80"
        assert r.uint() == 300
        assert r.bits(3) == 5


def test_errors_are_exi_errors():
    for data in (b"", b"\x80", b"\x81\x98", bytes.fromhex("8098"), bytes.fromhex("8098022bfbb6f3")):
        try:
            exi.decode("iso2", data)
        except ExiError as e:
            assert e.bit is not None
        else:
            assert False, data
    try:
        exi.encode("din", {"V2G_Message": {"Header": {"SessionID": 5}, "Body": {}}})
    except ExiError as e:
        assert e.path == "V2G_Message/Header/SessionID"
    else:
        assert False


def test_big_integer_serial_number():
    # X509SerialNumber is xs:integer: real roots carry 128-bit serials.
    serial = 0x8E3A41D7C2B5F0A19E7D6C5B4A39281F
    doc = {"X509IssuerSerial": {"X509IssuerName": "CN=V2G Root CA,O=evpilot", "X509SerialNumber": serial}}
    data = exi.encode_fragment("xmldsig", doc)
    assert exi.decode_fragment("xmldsig", data) == doc
    doc["X509IssuerSerial"]["X509SerialNumber"] = -serial
    assert exi.decode_fragment("xmldsig", exi.encode_fragment("xmldsig", doc)) == doc


def test_empty_values_as_exificient_writes_them():
    # EXIficient writes an empty SessionID, EVCCID or EVSEID as a second-level EE; we read it, and write the
    # first-level zero-length form (as libcbv2g does), which EXIficient reads too.
    cases = [
        ("8098447402010200", {"SessionID": b""}, {"SessionSetupReq": {"EVCCID": b"\x01\x02"}}),
        ("8098004051d400", {"SessionID": b"\x01"}, {"SessionSetupReq": {"EVCCID": b""}}),
        ("8098004051e00420", {"SessionID": b"\x01"}, {"SessionSetupRes": {"ResponseCode": "OK", "EVSEID": ""}}),
    ]
    for hexdata, header, body in cases:
        doc = {"V2G_Message": {"Header": header, "Body": body}}
        # An EVSEID has minLength 7: "" is read and written only by the lenient grammar (test_exi_facets.py).
        lenient = "SessionSetupRes" in body
        assert exi.decode("iso2", bytes.fromhex(hexdata), lenient=lenient) == doc
        assert exi.decode("iso2", exi.encode("iso2", doc, lenient=lenient), lenient=lenient) == doc
    # Any other second-level event is refused.
    try:
        exi.decode("iso2", bytes.fromhex("80984c7402010200"))
    except ExiError as e:
        assert "second-level" in str(e)
    else:
        assert False
