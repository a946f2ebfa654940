"""The firmware application over the PLC link of a QCA7000 board, under the real MicroPython unix port:
firmware/main.py with the unix-qca7000 board file runs the board's link path exactly - the firmware's QCA7000
driver (evpilot.hal.qca7000_spi) over the QCA7000 model (evpilot_sim.qca7000_board: stand-ins for machine.SPI
and machine.Pin, the modem's powerline side on one end of a veth pair), SLAC (evpilot.slac.ev) against
`evpilot station --slac`, then SDP, TCP and the session over the firmware's own IPv6/TCP (evpilot.net) to the
station on the Linux kernel's stack, and back to the safe state. The "ether" link (raw Ethernet, the unix
port on a laptop's HomePlug adapter or a veth) runs the same path without the driver. A station that never
answers SLAC ends the round in the safe state with SLAC's reason. Needs root for the namespaces and the unix
port (skipped with the reason otherwise, failing in CI)."""

import subprocess

import test_app_unix as app_unix
from test_app_unix import _app, _lines, _station, _stop, _wait_serving
from test_link_cli import pki, veth  # noqa: F401 (fixtures)


def _board_dir(tmp_path, iface, link, config, cycles=1):
    return app_unix._board_dir(tmp_path, config, cycles, name="unix-qca7000", modem={"link": link, "iface": iface})


def _one_segment_per_frame(ns, iface):
    # A powerline modem carries Ethernet-sized frames only: no segmentation offload from the station's end.
    subprocess.run(["ip", "-n", ns, "link", "set", "dev", iface, "gso_max_segs", "1"], check=True,
                   capture_output=True, timeout=20)


def _session_over_plc(veth, tmp_path, link, station_args, config, heap=None, pki_dir=None):
    st_ns, st_if, ev_ns, ev_if = veth
    _one_segment_per_frame(st_ns, st_if)
    board = _board_dir(tmp_path, ev_if, link, dict({"standard": "iso2", "soc": [20, 21]}, **config))
    if pki_dir is not None:
        from evpilot_host import pki_material

        pki_material.seed_store(str(board / "store"), pki_dir)
    station = _station(st_ns, st_if, ["--slac", "--once"] + station_args, tmp_path / "s.sqlite3")
    try:
        app = _app(ev_ns, ev_if, board, heap=heap)
        out, err = app.communicate(timeout=240)
    finally:
        st_out = _stop(station)
    return app.returncode, err, st_out


def _check_ok(status, err, st_out):
    assert status == 0, err[-4000:]
    assert _lines(err, "session:") == ["session: ok (session stopped)"], err[-4000:]
    slac = _lines(err, "slac:")
    assert slac[0] == "slac: matching" and slac[1].startswith("slac: matched EVSE "), slac
    assert slac[-1] == "slac: left the EVSE's network", slac
    assert "station: SLAC matched EV" in st_out and "station: session ok" in st_out, st_out[-3000:]
    phases = _lines(err, "app: ")
    assert phases.index("app: session") < phases.index("app: safe"), phases
    pilot = _lines(err, "pilot:")
    assert "pilot: C2" in pilot and pilot[-1] == "pilot: unplugged", pilot


def test_eim_session_over_the_qca7000_driver_slac_and_the_own_stack(micropython_unix, veth, tmp_path):
    status, err, st_out = _session_over_plc(veth, tmp_path, "qca7000-sim", ["--protocols", "iso2"], {})
    _check_ok(status, err, st_out)
    assert "sdp: station [fe80" in err


def test_plug_and_charge_over_tls_over_the_qca7000_driver(micropython_unix, veth, tmp_path, pki):
    status, err, st_out = _session_over_plc(
        veth, tmp_path, "qca7000-sim", ["--protocols", "iso2", "--tls", "--pki", str(pki), "--pnc"],
        {"tls": True, "pnc": True}, pki_dir=str(pki))
    _check_ok(status, err, st_out)
    assert len(_lines(err, "tls: TLSv1.2")) == 1, err[-3000:]


def test_eim_session_over_raw_ethernet(micropython_unix, veth, tmp_path):
    status, err, st_out = _session_over_plc(veth, tmp_path, "ether", ["--protocols", "iso2"], {})
    _check_ok(status, err, st_out)
    assert _lines(err, "link: modem") == ["link: modem simulated"], err[-3000:]


def test_no_slac_answer_ends_the_round_safely(micropython_unix, veth, tmp_path):
    st_ns, st_if, ev_ns, ev_if = veth
    board = _board_dir(tmp_path, ev_if, "qca7000-sim", {"standard": "iso2"})
    station = _station(st_ns, st_if, ["--protocols", "iso2", "--once"], tmp_path / "s.sqlite3")  # no --slac
    try:
        _wait_serving(station)
        app = _app(ev_ns, ev_if, board)
        out, err = app.communicate(timeout=120)
    finally:
        _stop(station)
    assert app.returncode == 1, err[-3000:]
    results = _lines(err, "session:")
    assert results == ["session: failed (LinkError: SLAC: no CM_SLAC_PARM.CNF)"], err[-3000:]
    phases = _lines(err, "app: ")
    assert phases[phases.index("app: session") + 1] == "app: safe", phases
    assert _lines(err, "slac: left") == []  # never joined: nothing to leave
    assert "Traceback" not in err, err



def test_a_modem_restart_mid_session_gets_the_key_again_and_the_session_goes_on(micropython_unix, veth,
                                                                                 tmp_path):
    # The simulated QCA7000 restarts by itself after the 12th data frame from the line (during the first
    # requests, whose timeouts are seconds): it comes back without the EVSE's network key; the link sets
    # it again and TCP retransmits what was lost meanwhile.
    status, err, st_out = _session_over_plc(veth, tmp_path, "qca7000-sim", ["--protocols", "iso2"],
                                            {"qca7000_sim": {"crash_after_frames": 12}})
    _check_ok(status, err, st_out)
    assert _lines(err, "link: modem restarted") == ["link: modem restarted: the EVSE's network key set again"]
