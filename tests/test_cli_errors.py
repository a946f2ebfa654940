# The command line as a careless user tries it: every bad argument and every bad path is refused up front
# with one line on stderr naming what is wrong, no traceback, and a non-zero exit status; `--json` prints
# only JSON on stdout; `--log` writes its file wherever it is offered; what waits tells so on stderr.

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.pathsep.join(os.path.join(ROOT, d) for d in ("firmware", "sim", "host"))


def evpilot(*args, timeout=120, cwd=None):
    env = dict(os.environ, PYTHONPATH=PATH)
    r = subprocess.run([sys.executable, "-m", "evpilot_host.cli"] + [str(a) for a in args], env=env,
                       capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return r.returncode, r.stdout, r.stderr


def refused(*args, want, status=2):
    code, out, err = evpilot(*args)
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert code == status, (code, err)
    assert len(lines) == 1, err
    for text in ([want] if isinstance(want, str) else want):
        assert text in lines[0], (text, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki") / "pki"
    code, out, err = evpilot("pki", "init", d)
    assert code == 0, err
    return d


# --- arguments ----------------------------------------------------------------------------------------------

ARGUMENTS = [
    (("demo", "--latency-ms", "-50"), "--latency-ms"),
    (("demo", "--latency-ms", "0"), "--latency-ms"),
    (("demo", "--soc", "90", "10"), "--soc"),
    (("demo", "--soc", "20", "120"), "--soc"),
    (("demo", "--soc", "-5", "80"), "--soc"),
    (("demo", "--capacity-wh", "0"), "--capacity-wh"),
    (("demo", "--capacity-wh", "-4000"), "--capacity-wh"),
    (("demo", "--every", "0"), "--every"),
    (("demo", "--pki", "x"), ["--pki", "--pnc"]),
    (("demo", "--store", "x"), ["--store", "--pnc"]),
    (("demo", "--db", "x"), ["--db", "--pnc"]),
    (("demo", "--standard", "din", "--mode", "ac"), "DIN"),
    (("demo", "--nosuch"), "--nosuch"),
    (("station", "--iface", "lo", "--fault", "X:withhold:x"), ["--fault", "X:withhold:x", "NTH"]),
    (("station", "--iface", "lo", "--fault", "CurrentDemandRes:explode"), ["--fault", "explode"]),
    (("station", "--iface", "lo", "--fault", "CurrentDemandRes:withhold:0"), ["--fault", "NTH"]),
    (("station", "--iface", "lo", "--fault", "CurrentDemandRes:delay:1:-5"), ["--fault", "DELAY_MS"]),
    (("station", "--iface", "nosuch0"), ["nosuch0", "no network interface named"]),
    (("station", "--iface", "lo", "--port", "70000"), "--port"),
    (("station", "--iface", "lo", "--protocols", "iso2,foo"), "foo"),
    (("station", "--iface", "lo", "--price", "-1"), "--price"),
    (("ev", "--iface", "nosuch0"), ["nosuch0", "no network interface named"]),
    (("ev", "--iface", "lo", "--standard", "din", "--mode", "ac"), "DIN"),
    (("ev", "--iface", "lo", "--soc", "90", "10"), "--soc"),
    (("ev", "--iface", "lo", "--msg-timeout", "CurrentDemandReq=x"), "message timeout"),
    (("ev",), "--iface"),
    (("pki", "init", "--validity-days", "0", "/nonexistent-evpilot/x"), "--validity-days"),
    (("exi", "decode", "zz"), "hex"),  # exi's own status for bad input: 1
]
STATUS = {("exi", "decode", "zz"): 1}


@pytest.mark.parametrize("args,want", ARGUMENTS, ids=[" ".join(a) for a, _ in ARGUMENTS])
def test_bad_arguments_one_line_no_traceback(args, want):
    refused(*args, want=want, status=STATUS.get(args, 2))


# --- paths ----------------------------------------------------------------------------------------------------


def test_log_is_a_directory_or_in_a_missing_one(tmp_path):
    refused("demo", "--log", tmp_path, want=[str(tmp_path), "is a directory"])
    refused("demo", "--log", tmp_path / "nodir" / "x", want=[str(tmp_path / "nodir"), "no such directory"])
    refused("ev", "--iface", "lo", "--log", tmp_path, want=[str(tmp_path), "is a directory"])
    refused("station", "--iface", "lo", "--log", tmp_path / "nodir" / "x", want=["no such directory"])


def test_pki_init_unwritable_or_under_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    refused("pki", "init", f / "pki", want=[str(f), "not a directory"], )
    refused("pki", "init", f, want=[str(f), "not a directory"], )
    ro = tmp_path / "ro"
    ro.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(ro)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs")
    try:
        refused("pki", "init", ro / "pki", want=[str(ro / "pki"), "not writable"], )
    finally:
        subprocess.run(["umount", "-l", str(ro)])


def test_demo_pnc_pki_with_a_file_missing(tmp_path, pki_dir):
    import shutil

    for name in ("cps_leaf.key", "secc_chain.pem", "mo_root.der", "oem_prov_leaf.key"):
        broken = tmp_path / ("pki-" + name)
        shutil.copytree(pki_dir, broken)
        os.remove(broken / name)
        refused("demo", "--pnc", "--pki", broken, want=[name])
    refused("demo", "--pnc", "--pki", tmp_path / "none", want=[str(tmp_path / "none"), "no such directory"])


def test_store_db_paths(tmp_path, pki_dir):
    f = tmp_path / "file"
    f.write_text("x")
    refused("demo", "--pnc", "--store", f, want=[str(f), "not a directory"])
    refused("demo", "--pnc", "--db", tmp_path, want=[str(tmp_path), "is a directory"])
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database" * 10)
    refused("demo", "--pnc", "--db", junk, want=[str(junk), "not an SQLite database"])
    refused("station", "report", "--db", junk, want=[str(junk), "not an SQLite database"], status=1)
    refused("station", "report", "--db", tmp_path, want=[str(tmp_path), "is a directory"], status=1)
    refused("station", "--iface", "lo", "--db", tmp_path, want=[str(tmp_path), "is a directory"])
    refused("ev", "--iface", "lo", "--tls", "--pnc", "--store", f, want=[str(f), "not a directory"])


def test_exi_generate_without_schemas(tmp_path):
    refused("exi", "generate", "--schemas", tmp_path, want=[str(tmp_path), "missing"])
    refused("exi", "generate", "--schemas", tmp_path / "none", want=[str(tmp_path / "none")])


# --- output ---------------------------------------------------------------------------------------------------


def test_demo_json_is_only_json_and_log_is_written(tmp_path):
    log = tmp_path / "demo.jsonl"
    code, out, err = evpilot("demo", "--json", "--log", log)
    assert code == 0, err
    summary = json.loads(out)  # the whole of stdout is one JSON document
    assert summary["result"] == "ok"
    lines = log.read_text().splitlines()
    assert len(lines) > 10 and json.loads(lines[0])["message"] == "supportedAppProtocolReq"


def test_demo_pnc_json_and_log(tmp_path):
    log = tmp_path / "pnc.jsonl"
    code, out, err = evpilot("demo", "--pnc", "--json", "--log", log, timeout=600)
    assert code == 0, err
    assert json.loads(out)["result"] == "ok"
    names = [json.loads(line)["message"] for line in log.read_text().splitlines()]
    assert "CertificateInstallationReq" in names and names.count("SessionSetupReq") == 2


def test_soc_already_at_target_is_refused_not_ok():
    refused("demo", "--soc", "80", "80", want="--soc")


def test_ev_says_that_it_searches_before_waiting():
    # SDP retries for up to SDP_MAX_REQUESTS x the SDP timeout (12.5 s) on a link with no station: the first
    # stderr line says so at once, the last says why it gave up.
    code, out, err = evpilot("ev", "--iface", "lo", "--json", timeout=120)
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err and out == "", err
    assert len(lines) == 2 and lines[0].startswith("SDP: searching for a station on lo"), err
    assert lines[1].startswith("evpilot: error: SDP: no acceptable response"), err
