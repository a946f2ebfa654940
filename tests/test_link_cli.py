"""`evpilot station` and `evpilot ev` as two processes in two network namespaces joined by a veth pair:
SDP over IPv6 multicast, then TCP, for ISO-2 DC, ISO-2 AC and DIN DC, a fault injected by the station, and
ISO-2 DC over TLS with a test PKI from `evpilot pki init` (the handshake, the key logs, wrong roots, a leaf
that is not CPO). Needs root (ip netns); skipped with the reason otherwise, except in CI, where it must run.
Nothing waits a fixed time: a session starts once the station says it serves, the veth ends skip duplicate
address detection (their link-local addresses are usable at once), and the command-line cases run side by
side."""

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _need_root():
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the network-namespace tests as root")
        pytest.skip("needs root for ip netns and veth")


@pytest.fixture
def veth():
    _need_root()
    tag = uuid.uuid4().hex[:6]
    st, ev = "evps" + tag, "evpe" + tag
    a, b = "vs" + tag, "ve" + tag

    def ip(*args):
        subprocess.run(("ip",) + args, check=True, capture_output=True, timeout=20)

    ip("netns", "add", st)
    ip("netns", "add", ev)
    try:
        ip("link", "add", a, "type", "veth", "peer", "name", b)
        ip("link", "set", a, "netns", st)
        ip("link", "set", b, "netns", ev)
        for ns, dev in ((st, a), (ev, b)):
            # Two ends of one cable: no duplicate address detection, so the link-local address is not
            # tentative for a second or two after the link comes up.
            ip("netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.%s.accept_dad=0" % dev)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")
        # Wait for the link-local addresses on both ends.
        for ns, dev in ((st, a), (ev, b)):
            for _ in range(50):
                out = subprocess.run(["ip", "-n", ns, "-6", "addr", "show", "dev", dev, "scope", "link"],
                                     capture_output=True, text=True, timeout=10).stdout
                if "fe80" in out and "tentative" not in out:
                    break
                time.sleep(0.1)
        yield st, a, ev, b
    finally:
        subprocess.run(["ip", "netns", "del", st], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", ev], capture_output=True, timeout=20)


def _evpilot(ns, *args):
    """The `evpilot` command line, in network namespace ns (None: this one)."""
    return (["ip", "netns", "exec", ns] if ns else []) + [sys.executable, "-m", "evpilot_host.cli"] + list(args)


class Station:
    """`evpilot station --once` in its namespace; started() returns once it serves (no fixed sleep), finish()
    waits for it to end and gives (exit status, everything it printed)."""

    def __init__(self, ns, iface, args, db=None):
        db = [] if db is None else ["--db", str(db)]
        self.proc = subprocess.Popen(_evpilot(ns, "station", "--iface", iface, "--once", "--seed", "7", *db, *args),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        self.lines = queue.Queue()
        self.output = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def started(self, timeout=30):
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                raise AssertionError("the station ended before serving: " + "".join(self.output))
            self.output.append(line)
            if line.startswith("station: SECC"):
                return

    def finish(self, timeout=30):
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        while True:
            line = self.lines.get(timeout=10)
            if line is None:
                break
            self.output.append(line)
        return self.proc.returncode, "".join(self.output)


def _session(veth, station_args, ev_args, tmp_path):
    st_ns, st_if, ev_ns, ev_if = veth
    log = tmp_path / "ev.jsonl"
    station = Station(st_ns, st_if, station_args, None if "--db" in station_args else tmp_path / "sessions.sqlite3")
    try:
        station.started()
        ev = subprocess.run(_evpilot(ev_ns, "ev", "--iface", ev_if, "--soc", "20", "21", "--json",
                                     "--log", str(log), *ev_args),
                            capture_output=True, text=True, timeout=90, cwd=ROOT)
    finally:
        st_rc, st_out = station.finish()
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    summary = json.loads(ev.stdout.strip().splitlines()[-1]) if ev.stdout.strip() else {}
    return ev.returncode, summary, st_rc, st_out, records, ev


def _side_by_side(commands):
    """Run each `evpilot` argument list at once; their finished processes (stdout, stderr text), in order."""
    procs = [subprocess.Popen(_evpilot(None, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT) for args in commands]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


@pytest.mark.parametrize("standard,mode,loop", [("iso2", "dc", "CurrentDemandReq"),
                                                ("iso2", "ac", "ChargingStatusReq"),
                                                ("din", "dc", "CurrentDemandReq")])
def test_two_processes_over_veth(veth, tmp_path, standard, mode, loop):
    rc, summary, st_rc, st_out, records, ev = _session(
        veth, ["--protocols", standard, "--mode", mode], ["--standard", standard, "--mode", mode], tmp_path)
    assert rc == 0, ev.stdout[-2000:] + ev.stderr[-2000:]
    assert st_rc == 0 and "station: session ok" in st_out
    assert summary["result"] == "ok" and summary["protocol"] == standard
    sent = [r["message"] for r in records if r["dir"] == "EV->SECC"]
    assert sent[:2] == ["supportedAppProtocolReq", "SessionSetupReq"] and sent[-1] == "SessionStopReq"
    assert loop in sent
    got = [r for r in records if r["dir"] == "SECC->EV"]
    assert all(not r["doc"]["V2G_Message"]["Body"][r["message"]].get("ResponseCode", "OK").startswith("FAILED")
               for r in got[1:])


def test_station_fault_ends_the_ev_safely(veth, tmp_path):
    rc, summary, st_rc, st_out, records, ev = _session(
        veth, ["--protocols", "iso2", "--fault", "PreChargeRes:withhold:2"], ["--standard", "iso2"], tmp_path)
    assert rc == 1 and summary["result"] == "failed"
    assert "PreChargeRes" in summary["end"]
    assert st_rc == 1


def test_station_command_line_errors():
    cases = ((["--fault", "CurrentDemandRes:explode"], "explode"), (["--evse", "nope=1"], "nope"),
             (["--evse", "dc_max_power"], "NAME=VALUE"), (["--protocols", "iso20"], "iso20"))
    procs = _side_by_side([["station", "--iface", "lo"] + args for args, _ in cases])
    for (args, text), proc in zip(cases, procs):
        assert proc.returncode == 2 and text in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


# --- TLS ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test PKI (`evpilot pki init`), once per module."""
    directory = tmp_path_factory.mktemp("pki") / "out"
    proc = subprocess.run([sys.executable, "-m", "evpilot_host.cli", "pki", "init", str(directory)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return directory


def _client_randoms(path):
    lines = path.read_text().splitlines() if path.exists() else []
    return {line.split()[1] for line in lines if line.startswith("CLIENT_RANDOM ")}


def test_iso2_dc_over_tls(veth, tmp_path, pki):
    st_keys, ev_keys = tmp_path / "station.keys", tmp_path / "ev.keys"
    rc, summary, st_rc, st_out, records, ev = _session(
        veth, ["--protocols", "iso2", "--tls", "--pki", str(pki), "--keylog", str(st_keys)],
        ["--standard", "iso2", "--tls", "--roots", str(pki), "--keylog", str(ev_keys)], tmp_path)
    assert rc == 0, ev.stdout[-2000:] + ev.stderr[-2000:]
    assert st_rc == 0 and "station: session ok" in st_out, st_out
    assert "TLS only" in st_out and "station: TLS TLSv1.2 ECDHE-ECDSA-AES128-SHA256" in st_out
    assert summary["result"] == "ok" and summary["protocol"] == "iso2"
    assert summary["tls"]["version"] == "TLSv1.2" and summary["tls"]["cipher"] == "ECDHE-ECDSA-AES128-SHA256"
    assert summary["tls"]["secc_dc"] == ["CPO"]
    sent = [r["message"] for r in records if r["dir"] == "EV->SECC"]
    assert sent[:2] == ["supportedAppProtocolReq", "SessionSetupReq"] and sent[-1] == "SessionStopReq"
    assert "CurrentDemandReq" in sent
    # External identification is what this session authorises with, over TLS.
    payment = [r for r in records if r["message"] == "PaymentServiceSelectionReq"]
    assert payment[0]["doc"]["V2G_Message"]["Body"]["PaymentServiceSelectionReq"]["SelectedPaymentOption"] \
        == "ExternalPayment"
    # Both sides logged the same session secrets (one handshake: one client random).
    ev_randoms, st_randoms = _client_randoms(ev_keys), _client_randoms(st_keys)
    assert len(ev_randoms) == 1 and ev_randoms == st_randoms


def test_ev_with_the_wrong_roots_refuses_the_station(veth, tmp_path, pki):
    rc, summary, st_rc, st_out, records, ev = _session(
        veth, ["--protocols", "iso2", "--tls", "--pki", str(pki)],
        ["--standard", "iso2", "--tls", "--roots", str(pki / "mo_root.der")], tmp_path)
    assert rc == 1 and "Traceback" not in ev.stderr, ev.stdout[-2000:] + ev.stderr[-2000:]
    assert summary["result"] == "failed" and summary["tls"]["error"] == "verify"
    assert summary["end"].startswith("TLS verify failure:") and "V2G roots" in summary["end"]
    assert not records  # no V2G message went out
    assert st_rc == 1 and "station: session failed (TLS handshake failure:" in st_out, st_out


def test_ev_refuses_a_station_leaf_that_is_not_cpo(veth, tmp_path, pki):
    # The CPS leaf chains to the same V2G root, but its DC is CPS: the chain verifies, the DC check refuses it.
    wrong = tmp_path / "cps_as_secc"
    wrong.mkdir()
    shutil.copy(pki / "cps_chain.pem", wrong / "secc_chain.pem")
    shutil.copy(pki / "cps_leaf.key", wrong / "secc_leaf.key")
    rc, summary, st_rc, st_out, records, ev = _session(
        veth, ["--protocols", "iso2", "--tls", "--pki", str(wrong)],
        ["--standard", "iso2", "--tls", "--roots", str(pki / "v2g_root.der")], tmp_path)
    assert rc == 1 and "Traceback" not in ev.stderr, ev.stdout[-2000:] + ev.stderr[-2000:]
    assert summary["tls"]["error"] == "dc" and "CPS" in summary["end"] and "CPO" in summary["end"]
    assert st_rc == 1 and "station: session failed" in st_out, st_out


def test_tls_command_line_errors(pki, tmp_path):
    cases = ((["station", "--iface", "lo", "--tls"], "--tls needs --pki"),
             (["station", "--iface", "lo", "--tls", "--pki", str(tmp_path)], "missing secc_chain.pem"),
             (["station", "--iface", "lo", "--keylog", str(tmp_path / "k")], "need --tls"),
             (["ev", "--iface", "lo", "--tls"], "--tls needs --roots"),
             (["ev", "--iface", "lo", "--tls", "--roots", str(tmp_path / "nope")], "no such file"),
             (["ev", "--iface", "lo", "--tls", "--roots", str(tmp_path)], "no V2G root"),
             (["ev", "--iface", "lo", "--pnc", "--store", str(tmp_path)], "--pnc needs --tls"),
             (["ev", "--iface", "lo", "--tls", "--pnc"], "--pnc needs --store"),
             (["ev", "--iface", "lo", "--store", str(tmp_path)], "need --pnc"),
             (["ev", "--iface", "lo", "--tls", "--pnc", "--store", str(tmp_path / "none")], "no such directory"),
             (["ev", "--iface", "lo", "--tls", "--pnc", "--store", str(tmp_path / "s"), "--with-contract"],
              "--with-contract needs --pki"),
             (["station", "--iface", "lo", "--pnc"], "--pnc needs --tls and --pki"))
    for (args, text), proc in zip(cases, _side_by_side([args for args, _ in cases])):
        assert proc.returncode == 2 and text in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_tls_only_station_answers_every_sdp_request_with_tls():
    from evpilot.v2g import sdp

    address = bytes.fromhex("fe80000000000000020000fffe000001")
    responder = sdp.SdpResponder(address, 50000, True, tls_only=True)
    for asked in ("tls", "none"):
        answer = sdp.parse_response(responder.respond(sdp.request_frame(asked))[8:])
        assert answer == {"address": address, "port": 50000, "security": "tls", "transport": "tcp"}
    assert responder.respond(sdp.request_frame("tls", "udp")) is None  # not served, as SdpResponder


# --- Plug&Charge ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["dc", "ac"])
def test_plug_and_charge_installation_then_stored_contract(veth, tmp_path, pki, mode):
    """Two processes over veth: the EV (store seeded with roots and OEM provisioning only) installs a
    contract through the cable and pays with it; a second session uses the stored contract; the station's
    database records both under the eMAID and `evpilot station report` shows them."""
    store, db = tmp_path / "store", tmp_path / "records.sqlite3"
    station = ["--protocols", "iso2", "--mode", mode, "--tls", "--pki", str(pki), "--pnc", "--db", str(db)]
    ev = ["--standard", "iso2", "--mode", mode, "--tls", "--pnc", "--store", str(store)]
    rc, summary, st_rc, st_out, records, proc = _session(veth, station, ev + ["--pki", str(pki)], tmp_path)
    assert rc == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert st_rc == 0 and "station: session ok" in st_out, st_out
    assert summary["identification"] == "PnC" and summary["contract_installed"] is True
    assert summary["emaid"] == "DEABCC123ABC56" and summary["tls"]["cipher"] == "ECDHE-ECDSA-AES128-SHA256"
    sent = [r["message"] for r in records if r["dir"] == "EV->SECC"]
    assert sent.index("CertificateInstallationReq") < sent.index("PaymentDetailsReq") < sent.index("AuthorizationReq")
    res = [r for r in records if r["message"] == "CertificateInstallationRes"][0]["doc"]["V2G_Message"]
    assert len(res["Header"]["Signature"]["SignedInfo"]["Reference"]) == 4
    # The second session: the contract from the store, no installation.
    log2 = tmp_path / "second"
    log2.mkdir()
    rc, summary, st_rc, st_out, records, proc = _session(veth, station, ev, log2)
    assert rc == 0 and st_rc == 0, proc.stdout[-3000:] + st_out
    assert summary["identification"] == "PnC" and summary["contract_installed"] is False
    sent = [r["message"] for r in records if r["dir"] == "EV->SECC"]
    assert "CertificateInstallationReq" not in sent and "PaymentDetailsReq" in sent
    report = subprocess.run([sys.executable, "-m", "evpilot_host.cli", "station", "report", "--db", str(db),
                             "--json"], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert report.returncode == 0, report.stderr
    usage = json.loads(report.stdout)["contracts"]
    assert [(u["emaid"], u["sessions"]) for u in usage] == [("DEABCC123ABC56", 2)]
    assert usage[0]["energy_kwh"] > 0 and usage[0]["cost"] > 0


def test_plug_and_charge_without_tls_falls_back_to_eim(veth, tmp_path, pki):
    """A station without TLS never offers Contract; an EV asked for --pnc cannot run without TLS at all, so
    the plain EV pays with ExternalPayment against a --pnc-capable but TLS-less station set-up."""
    rc, summary, st_rc, st_out, records, proc = _session(
        veth, ["--protocols", "iso2"], ["--standard", "iso2"], tmp_path)
    assert rc == 0 and summary["identification"] == "EIM"
    offered = [r for r in records if r["message"] == "ServiceDiscoveryRes"][0]["doc"]["V2G_Message"]["Body"]
    assert offered["ServiceDiscoveryRes"]["PaymentOptionList"]["PaymentOption"] == ["ExternalPayment"]


def test_msg_timeout_option():
    from evpilot.v2g import timers
    from evpilot_host import ends
    from evpilot_host.commands import options

    assert options.parse_msg_timeouts(["CurrentDemandReq=1000", "PreChargeReq=3000"]) == {
        "CurrentDemandReq": 1000, "PreChargeReq": 3000}
    for bad in ("CurrentDemandReq", "CurrentDemand=5", "CurrentDemandReq=0", "CurrentDemandReq=x"):
        with pytest.raises(ValueError, match="REQUEST=MS"):
            options.parse_msg_timeouts([bad])
    veh = ends.vehicle("dc", 20, 21)
    ev = ends.ev_client("iso2", veh, msg_timeouts={"CurrentDemandReq": 1000})
    assert ev.msg_timeout("iso2", "CurrentDemandReq") == 1000
    assert ev.msg_timeout("iso2", "PreChargeReq") == timers.msg_timeout("iso2", "PreChargeReq")
    proc = subprocess.run([sys.executable, "-m", "evpilot_host.cli", "ev", "--iface", "lo", "--msg-timeout",
                           "CurrentDemandReq=fast"], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert proc.returncode == 2 and "REQUEST=MS" in proc.stderr and "Traceback" not in proc.stderr
