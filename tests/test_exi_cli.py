"""`evpilot exi`: decode, encode, schemas and generate, in-process through exi_command.main and as a command.

Samples come from the project's vectors, tests/vectors/exi.jsonl (checked against libcbv2g's documents), plus
the ISO-2 SessionSetupRes of the issue and the eMAID / AuthorizationReq fragments of the vectors README.
"""

import io
import json
import os
import subprocess
import sys

import pytest

from evpilot import exi
from evpilot_host import jsonview
from evpilot_host.commands import exi as exi_command

from vectors import ROOT, SCHEMA_OF_STANDARD, SCHEMAS, lib_to_ours, records

SESSION_SETUP_RES = "8098022bfbb6f3fefbdffed1e020491114a9413960a914c4c8ccd0d4d8a8c480"
SESSION_SETUP_RES_JSON = {
    "V2G_Message": {
        "Header": {"SessionID": "afeedbcffbef7ffb"},
        "Body": {"SessionSetupRes": {"ResponseCode": "OK_NewSessionEstablished", "EVSEID": "DE*PNX*E123456*1"}},
    }
}
V2GTP_EXI_32 = "01fe800100000020"  # version 0x01/0xfe, payload type 0x8001, 32 payload bytes
EMAID_FRAGMENT = "80ec0202b4b21a40041111505090d0cc4c8cd05090cd4dbd3d00"
AUTHORIZATION_REQ_FRAGMENT = "8004015a590c40837f5aadc94b6d121ba2e83ea920e50169e8"


def _sample(standard, message):
    for r in records((standard,)):
        lib = r["libcbv2g"]
        if r["message"] == message and lib["roundtrip_identical"] and not lib["trailing_zero_bytes"]:
            return r
    raise AssertionError("no %s %s in the vectors" % (standard, message))


# One per schema set; DIN and ISO-2 CurrentDemandReq share the root and body names but not the content, so
# a wrong guess between them shows up in the decoded document.
SAMPLES = {
    "apphand": _sample("apphand", "supportedAppProtocolReq"),
    "din": _sample("din70121", "CurrentDemandReq"),
    "iso2": _sample("iso15118-2", "CurrentDemandReq"),
}


def _expected_json(r):
    """libcbv2g's document for r in our JSON view."""
    schema = SCHEMA_OF_STANDARD[r["standard"]]
    ours = exi.decode(schema, bytes.fromhex(r["hex"]))
    return jsonview.to_json(lib_to_ours(r["libcbv2g"]["doc"], ours))


def _run(capsys, monkeypatch, argv, stdin=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8"))
    rc = exi_command.main(argv)
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err.splitlines()


# ---- decode -----------------------------------------------------------------------------------------------


def test_decode_session_setup_res(capsys, monkeypatch):
    rc, out, err = _run(capsys, monkeypatch, ["decode", "--schema", "iso2", SESSION_SETUP_RES])
    assert (rc, err) == (0, [])
    assert len(out) == 1
    assert json.loads(out[0]) == SESSION_SETUP_RES_JSON
    # compact by default: one line, no spaces after separators
    assert out[0].startswith('{"V2G_Message":{"Header":{"SessionID":"afeedbcffbef7ffb"}')


def test_decode_pretty_indents(capsys, monkeypatch):
    rc, out, err = _run(capsys, monkeypatch, ["decode", "--pretty", SESSION_SETUP_RES])
    assert rc == 0
    assert out[0] == "{" and out[1] == '  "V2G_Message": {'
    assert json.loads("\n".join(out)) == SESSION_SETUP_RES_JSON


def test_decode_auto_picks_each_schema_set(capsys, monkeypatch):
    hexes = [SAMPLES[s]["hex"] for s in ("apphand", "din", "iso2")]
    for argv in (["decode", "--schema", "auto"] + hexes, ["decode"] + hexes):  # auto is the default
        rc, out, err = _run(capsys, monkeypatch, argv)
        assert (rc, err) == (0, [])
        docs = [json.loads(line) for line in out]
        assert docs == [_expected_json(SAMPLES[s]) for s in ("apphand", "din", "iso2")]
    assert docs[0]["supportedAppProtocolReq"]["AppProtocol"][1]["ProtocolNamespace"] == "urn:iso:15118:2:2013:MsgDef"
    # DIN-only content proves the DIN grammar was used, not ISO-2's
    assert docs[1]["V2G_Message"]["Body"]["CurrentDemandReq"]["DC_EVStatus"]["EVCabinConditioning"] is False
    assert "EVCabinConditioning" not in docs[2]["V2G_Message"]["Body"]["CurrentDemandReq"]["DC_EVStatus"]


def test_json_view_of_values(capsys, monkeypatch):
    rc, out, _ = _run(capsys, monkeypatch, ["decode", SAMPLES["din"]["hex"]])
    assert rc == 0
    line = out[0]
    cdr = json.loads(line)["V2G_Message"]["Body"]["CurrentDemandReq"]
    assert '"EVReady":true' in line and '"ChargingComplete":false' in line  # booleans as JSON booleans
    assert cdr["EVTargetCurrent"] == {"Multiplier": -1, "Unit": "A", "Value": 30}
    session_id = json.loads(line)["V2G_Message"]["Header"]["SessionID"]
    assert session_id == session_id.lower() and bytes.fromhex(session_id) == bytes.fromhex("03cdfff67dd9deb3")
    # a repeatable element is a list even with one item
    rc, out, _ = _run(capsys, monkeypatch, ["decode", _sample("iso15118-2", "PowerDeliveryReq")["hex"]])
    entries = json.loads(out[0])["V2G_Message"]["Body"]["PowerDeliveryReq"]["ChargingProfile"]["ProfileEntry"]
    assert entries == [{"ChargingProfileEntryStart": 0,
                        "ChargingProfileEntryMaxPower": {"Multiplier": 2, "Unit": "W", "Value": 55}}]


def test_jsonview_to_json_and_dumps():
    doc = {"A": {"Id": "id1", "CONTENT": b"\xAB\x01"}, "B": [b"\x00", True], "C": bytearray(b"\xff")}
    assert jsonview.to_json(doc) == {"A": {"Id": "id1", "CONTENT": "ab01"}, "B": ["00", True], "C": "ff"}
    assert jsonview.dumps(doc) == '{"A":{"Id":"id1","CONTENT":"ab01"},"B":["00",true],"C":"ff"}'
    assert doc["A"]["CONTENT"] == b"\xAB\x01"  # the document itself is left alone


def test_decode_fragments(capsys, monkeypatch):
    rc, out, err = _run(capsys, monkeypatch, ["decode", "--fragment", "--schema", "iso2",
                                              EMAID_FRAGMENT, AUTHORIZATION_REQ_FRAGMENT.upper()])
    assert (rc, err) == (0, [])
    assert json.loads(out[0]) == {"eMAID": {"Id": "id4", "CONTENT": "DEABCC123ABC56"}}
    assert json.loads(out[1]) == {"AuthorizationReq": {"Id": "id1", "GenChallenge": "6feb55b9296da243745d07d5241ca02d"}}
    rc, again, err = _run(capsys, monkeypatch, ["encode", "--fragment", "--schema", "iso2"], stdin="\n".join(out))
    assert (rc, err, again) == (0, [], [EMAID_FRAGMENT, AUTHORIZATION_REQ_FRAGMENT])


# ---- V2GTP ------------------------------------------------------------------------------------------------


def test_decode_v2gtp_good_header(capsys, monkeypatch):
    rc, out, err = _run(capsys, monkeypatch, ["decode", "--v2gtp", V2GTP_EXI_32 + SESSION_SETUP_RES])
    assert (rc, err) == (0, [])
    assert json.loads(out[0]) == SESSION_SETUP_RES_JSON
    argv = ["decode", "--v2gtp", "--schema", "iso2", V2GTP_EXI_32 + SESSION_SETUP_RES]
    rc, out, err = _run(capsys, monkeypatch, argv)
    assert (rc, err, json.loads(out[0])) == (0, [], SESSION_SETUP_RES_JSON)


@pytest.mark.parametrize("frame, problem", [
    ("01ff800100000020" + SESSION_SETUP_RES, "protocol version 0x01/0xff, expected 0x01/0xfe"),
    ("01fe800100000021" + SESSION_SETUP_RES, "announces 33 payload bytes, only 32 follow"),
    ("01fe80010000001f" + SESSION_SETUP_RES, "1 byte after the 31-byte V2GTP payload"),
    ("01fe800100000020" + SESSION_SETUP_RES + "0000", "2 bytes after the 32-byte V2GTP payload"),
    ("01fe900000000020" + SESSION_SETUP_RES, "payload type 0x9000 (SDP request) is not supported"),
    ("01fe800200000020" + SESSION_SETUP_RES, "payload type 0x8002 (ISO 15118-20 AC) is not supported"),
    ("01fe8001", "V2GTP header needs 8 bytes, got 4"),
    (SESSION_SETUP_RES, "protocol version 0x80/0x98"),  # no header at all
])
def test_decode_v2gtp_bad_headers(capsys, monkeypatch, frame, problem):
    for schema in ("auto", "iso2"):
        rc, out, err = _run(capsys, monkeypatch, ["decode", "--v2gtp", "--schema", schema, frame])
        assert (rc, out) == (1, [])
        assert len(err) == 1 and err[0].startswith("evpilot: argument 1: ") and problem in err[0], err


# ---- encode -----------------------------------------------------------------------------------------------


def test_encode_round_trip(capsys, monkeypatch, tmp_path):
    for schema, r in SAMPLES.items():
        rc, out, _ = _run(capsys, monkeypatch, ["decode", "--schema", schema, r["hex"]])
        assert rc == 0
        rc, again, err = _run(capsys, monkeypatch, ["encode", "--schema", schema], stdin=out[0] + "\n")
        assert (rc, err, again) == (0, [], [r["hex"]])
    # from a file, with --v2gtp, and the SessionSetupRes
    path = tmp_path / "docs.jsonl"
    line = json.dumps(SESSION_SETUP_RES_JSON)
    path.write_text(line + "\n\n" + line + "\n")  # blank lines are skipped
    rc, out, err = _run(capsys, monkeypatch, ["encode", "--schema", "iso2", str(path)])
    assert (rc, err, out) == (0, [], [SESSION_SETUP_RES, SESSION_SETUP_RES])
    rc, out, err = _run(capsys, monkeypatch, ["encode", "--schema", "iso2", "--v2gtp", str(path)])
    assert (rc, err, out) == (0, [], [V2GTP_EXI_32 + SESSION_SETUP_RES] * 2)
    rc, out, err = _run(capsys, monkeypatch, ["decode", "--v2gtp", out[0]])
    assert json.loads(out[0]) == SESSION_SETUP_RES_JSON


def test_every_vector_through_stdin_and_back(capsys, monkeypatch):
    """Every apphand/DIN/ISO-2 document of the vectors in one batch with --schema auto, and back per set."""
    docs = [r for r in records() if r["libcbv2g"]["schema"] != "iso2frag"]
    rc, out, err = _run(capsys, monkeypatch, ["decode", "-"], stdin="".join(r["hex"] + "\n" for r in docs))
    assert (rc, err) == (0, [])
    assert len(out) == len(docs) == 260  # tests/vectors: 264 records, 4 of them ISO-2 fragments
    for schema in ("apphand", "din", "iso2"):
        mine = [(r, line) for r, line in zip(docs, out) if SCHEMA_OF_STANDARD[r["standard"]] == schema]
        rc, again, err = _run(capsys, monkeypatch, ["encode", "--schema", schema],
                              stdin="".join(line + "\n" for _, line in mine))
        assert (rc, err) == (0, [])
        for (r, _), h in zip(mine, again):
            assert h == r["hex"][: len(r["hex"]) - 2 * r["libcbv2g"]["trailing_zero_bytes"]], r["source"]


# ---- batches with bad items -------------------------------------------------------------------------------


def test_batch_with_bad_line_in_the_middle(capsys, monkeypatch):
    stdin = "%s\n80 98 0\n%s\n" % (SESSION_SETUP_RES, " ".join(SAMPLES["apphand"]["hex"][i:i + 2]
                                                           for i in range(0, len(SAMPLES["apphand"]["hex"]), 2)))
    rc, out, err = _run(capsys, monkeypatch, ["decode", "-"], stdin=stdin)
    assert rc == 1
    assert [json.loads(line) for line in out] == [SESSION_SETUP_RES_JSON, _expected_json(SAMPLES["apphand"])]
    assert err == ["evpilot: line 2: odd number of hex digits (5): a byte is two digits"]


def test_stdin_blank_lines_skipped_and_counted(capsys, monkeypatch):
    rc, out, err = _run(capsys, monkeypatch, ["decode", "-"], stdin="\n  \n%s\n\n8098\n" % SESSION_SETUP_RES)
    assert rc == 1
    assert [json.loads(line) for line in out] == [SESSION_SETUP_RES_JSON]
    assert len(err) == 1 and err[0].startswith("evpilot: line 5: decoding as iso2: unexpected end of stream")


@pytest.mark.parametrize("word, problem", [
    ("809", "odd number of hex digits (3)"),
    ("80xz", "not hex: 'x' at digit 3"),
    ("", "empty input"),
    ("   ", "empty input"),
    ("8100", "--schema auto: the stream starts 81 00"),
    ("8098", "decoding as iso2: unexpected end of stream"),
])
def test_decode_bad_arguments(capsys, monkeypatch, word, problem):
    rc, out, err = _run(capsys, monkeypatch, ["decode", SESSION_SETUP_RES, word, SESSION_SETUP_RES])
    assert rc == 1
    assert [json.loads(line) for line in out] == [SESSION_SETUP_RES_JSON] * 2
    assert len(err) == 1 and err[0].startswith("evpilot: argument 2: ") and problem in err[0], err


def test_encode_bad_lines(capsys, monkeypatch):
    good = json.dumps(SESSION_SETUP_RES_JSON)
    lines = [good, "{not json", "[1]", "", '{"V2G_Message":{"Header":{"SessionID":"zz"}}}', good]
    rc, out, err = _run(capsys, monkeypatch, ["encode", "--schema", "iso2"], stdin="\n".join(lines) + "\n")
    assert rc == 1
    assert out == [SESSION_SETUP_RES, SESSION_SETUP_RES]
    assert err == [
        "evpilot: line 2: invalid JSON: Expecting property name enclosed in double quotes at column 2 "
        "(one document per line)",
        "evpilot: line 3: encoding as iso2: a document is a dict with exactly one root element",
        "evpilot: line 5: encoding as iso2: expected bytes or a hex string at V2G_Message/Header/SessionID",
    ]


def test_empty_and_undecodable_input(capsys, monkeypatch):
    rc, out, err = _run(capsys, monkeypatch, ["encode", "--schema", "din"], stdin="\n\n")
    assert (rc, out, err) == (1, [], ["evpilot: no input: every line was blank"])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff80\n" + SESSION_SETUP_RES.encode())))
    rc = exi_command.main(["decode", "-"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert [json.loads(line) for line in out.splitlines()] == [SESSION_SETUP_RES_JSON]
    assert err == "evpilot: line 1: not UTF-8 text (byte 0xff at column 1)\n"


def test_codec_bug_is_one_line_not_a_traceback(capsys, monkeypatch):
    real = exi.decode

    def leaky(schema, data):
        if data == b"\x80\x00":
            raise KeyError(7)
        return real(schema, data)

    monkeypatch.setattr(exi, "decode", leaky)
    rc, out, err = _run(capsys, monkeypatch, ["decode", "8000", SESSION_SETUP_RES])
    assert rc == 1
    assert [json.loads(line) for line in out] == [SESSION_SETUP_RES_JSON]
    assert err == ["evpilot: argument 1: internal error KeyError: 7 (please report this input)"]


@pytest.mark.parametrize("argv, problem", [
    (["decode", "--schema", "iso3", "00"], "unknown schema 'iso3' (choose from apphand, din, iso2, auto)"),
    (["encode", "--schema", "auto"], "--schema auto is for decode only"),
    (["encode"], "encode needs --schema"),
    (["encode", "--schema", "iso3"], "unknown schema 'iso3' (choose from apphand, din, iso2)"),
    (["decode", "--schema", "xmldsig", "00"], "xmldsig holds fragments only"),
    (["decode", "--fragment", "00"], "--fragment needs --schema"),
    (["decode", "--fragment", "--schema", "auto", "00"], "--schema auto cannot tell fragments apart"),
    (["decode", "--fragment", "--schema", "din", "00"], "no fragments in schema 'din'"),
    (["decode", "--fragment", "--v2gtp", "--schema", "iso2", "00"], "--v2gtp does not go with --fragment"),
    (["decode", "-", "00"], "'-' (read standard input) must be the only HEX argument"),
    (["decode"], "the following arguments are required: HEX"),
    (["decode", "--bogus", "00"], "unrecognized arguments: --bogus"),
    (["encode", "--schema", "iso2", "no/such/file.jsonl"], "cannot read no/such/file.jsonl"),
])
def test_command_line_errors(capsys, monkeypatch, argv, problem):
    rc, out, err = _run(capsys, monkeypatch, argv, stdin="")
    assert (rc, out) == (2, [])
    assert len(err) == 1 and err[0].startswith("evpilot: error: ") and problem in err[0], err


# ---- schemas and generate ---------------------------------------------------------------------------------


def test_schemas(capsys, monkeypatch):
    rc, out, _ = _run(capsys, monkeypatch, ["schemas"])
    assert rc == 0
    assert [line.split()[0] for line in out] == ["apphand", "din", "iso2", "xmldsig"]
    assert out[3].endswith("fragments")
    rc, out, _ = _run(capsys, monkeypatch, ["schemas", "--json"])
    rows = json.loads(out[0])
    assert [r["name"] for r in rows] == list(exi.SCHEMAS)
    assert rows[2]["codec"] == ["documents", "fragments"]


def test_generate_passes_its_options_to_exigen(monkeypatch):
    pytest.importorskip("xmlschema")
    from evpilot_host import exigen

    calls = []
    monkeypatch.setattr(exigen, "main", lambda argv: calls.append(argv) or 1)
    assert exi_command.main(["generate", "--check"]) == 1
    assert exi_command.main(["generate", "--schemas", SCHEMAS, "--out", "y"]) == 1
    tables = os.path.dirname(os.path.abspath(exi.__file__))
    assert calls == [["--check", "--schemas", exigen.default_schemas_dir(), "--out", tables],
                     ["--schemas", SCHEMAS, "--out", "y"]]
    assert os.path.samefile(exigen.default_schemas_dir(), SCHEMAS)
    assert os.path.isfile(os.path.join(tables, "tables_iso2.py"))


def test_generate_without_the_xsds_says_so_in_one_line(capsys, monkeypatch, tmp_path):
    pytest.importorskip("xmlschema")
    from evpilot_host import exigen

    rc, out, err = _run(capsys, monkeypatch, ["generate", "--check", "--schemas", str(tmp_path)])
    assert (rc, out) == (2, [])
    assert err == ["evpilot: error: generate: no XSDs in %s: apphand/V2G_CI_AppProtocol.xsd is missing" % tmp_path]
    monkeypatch.setattr(exigen, "default_schemas_dir", lambda: str(tmp_path / "schemas"))
    rc, out, err = _run(capsys, monkeypatch, ["generate"])
    assert rc == 2 and len(err) == 1 and "the project's schemas/ folder; or give --schemas DIR" in err[0]
    p = _command(["generate", "--check", "--schemas", str(tmp_path)])
    assert p.returncode == 2 and p.stdout == "" and len(p.stderr.splitlines()) == 1, p.stderr


def test_generate_without_xmlschema_says_how_to_install_it(capsys, monkeypatch):
    import evpilot_host

    # exigen imports xmlschema at the top: make that import fail, as where it is not installed.
    monkeypatch.delattr(evpilot_host, "exigen", raising=False)
    monkeypatch.delitem(sys.modules, "evpilot_host.exigen", raising=False)
    monkeypatch.setitem(sys.modules, "xmlschema", None)
    rc, out, err = _run(capsys, monkeypatch, ["generate", "--check"])
    assert (rc, out) == (2, [])
    assert err == ["evpilot: error: generate needs xmlschema: python3 -m pip install xmlschema"]


# ---- as a command -----------------------------------------------------------------------------------------


def _command(args, stdin=""):
    """`python -m evpilot_host.cli exi ARGS` on this checkout's sources."""
    env = dict(os.environ)
    paths = [os.path.join(ROOT, "firmware"), os.path.join(ROOT, "host")]
    env["PYTHONPATH"] = os.pathsep.join(paths + [env["PYTHONPATH"]] if env.get("PYTHONPATH") else paths)
    cmd = [sys.executable, "-m", "evpilot_host.cli", "exi"] + args
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=60)


def test_command_decode_stdin_and_encode():
    stdin = "%s\n\nnot hex\n%s%s\n" % (SESSION_SETUP_RES, V2GTP_EXI_32, SESSION_SETUP_RES)
    p = _command(["decode", "--schema", "iso2", "-"], stdin)
    assert p.returncode == 1
    assert [json.loads(line) for line in p.stdout.splitlines()] == [SESSION_SETUP_RES_JSON]
    # line 4 carries a V2GTP header but --v2gtp was not given
    assert p.stderr.splitlines() == [
        "evpilot: line 3: not hex: 'n' at digit 1",
        "evpilot: line 4: decoding as iso2: unsupported EXI header 0x01 (ISO 15118 uses 0x80) (bit 0)",
    ]

    p = _command(["decode", "--v2gtp", "-"], "%s%s\n" % (V2GTP_EXI_32, SESSION_SETUP_RES))
    assert (p.returncode, p.stderr) == (0, "")
    p = _command(["encode", "--schema", "iso2", "--v2gtp"], p.stdout)
    assert (p.returncode, p.stderr, p.stdout) == (0, "", V2GTP_EXI_32 + SESSION_SETUP_RES + "\n")

    p = _command(["encode", "--schema", "auto"], "{}\n")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("evpilot: error: --schema auto is for decode only") and p.stderr.count("\n") == 1
