"""The firmware application (firmware/main.py -> evpilot.app) on the unix board under the real MicroPython
unix port, against `evpilot station` (CPython) in another network namespace across a veth pair: the
simulated pilot plugs in (A -> B, 5 % PWM), the session closes S2 (B -> C) and charges, the app goes to the
safe state, the driver unplugs, and a second plug-in runs a second session. A station that withholds a
response mid-session ends that round in the safe state and the next plug-in charges again. Plug&Charge over
TLS with a store seeded from the test PKI (host/evpilot_host/pki_material.py). Needs root for the namespaces
(skipped with the reason otherwise, failing in CI) and the unix port."""

import json
import os
import subprocess
import sys

import pytest

import evpilot_mp_unix as mp_unix
from test_link_cli import pki, veth  # noqa: F401 (fixtures)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _station(ns, iface, args, db):
    cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "evpilot_host.cli", "station", "--iface", iface,
           "--seed", "7", "--db", str(db)] + list(args)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def _wait_serving(proc):
    out = []
    for line in proc.stdout:
        out.append(line)
        if line.startswith("station: SECC"):
            return out
    raise AssertionError("the station ended before serving: " + "".join(out))


def _board_dir(tmp_path, config, cycles):
    with open(os.path.join(ROOT, "boards", "unix.json")) as f:
        board = json.load(f)
    board["pilot"].update(cycles=cycles, plug_after_ms=200, pwm_after_ms=200, unplug_after_ms=100)
    d = tmp_path / "board"
    d.mkdir()
    (d / "board.json").write_text(json.dumps(board))
    (d / "app.json").write_text(json.dumps(dict(config, rounds=cycles, provision=False)))
    return d


def _app(ns, iface, board_dir, heap="4m"):
    cmd = ["ip", "netns", "exec", ns] + mp_unix.command(os.path.join(ROOT, "firmware", "main.py"), heap=heap)
    env = mp_unix.script_env()
    return subprocess.Popen(cmd, cwd=str(board_dir), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _lines(stderr, word):
    return [line.split(" ", 2)[2] for line in stderr.splitlines() if len(line.split(" ", 2)) == 3
            and line.split(" ", 2)[2].startswith(word)]


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def test_two_plug_ins_eim(micropython_unix, veth, tmp_path):
    st_ns, st_if, ev_ns, ev_if = veth
    station = _station(st_ns, st_if, ["--protocols", "iso2", "--mode", "dc"], tmp_path / "s.sqlite3")
    try:
        _wait_serving(station)
        board = _board_dir(tmp_path, {"standard": "iso2", "soc": [20, 21], "iface": ev_if}, cycles=2)
        app = _app(ev_ns, ev_if, board)
        out, err = app.communicate(timeout=180)
    finally:
        st_out = _stop(station)
    assert app.returncode == 0, err[-3000:] + out[-1000:]
    assert _lines(err, "session:") == ["session: ok (session stopped)"] * 2, err[-3000:]
    pilot = _lines(err, "pilot:")
    # Each plug-in: B1, then the 5 % PWM, C2 while charging (S2 closed by the session), back to B2 in the
    # safe state, A1 when unplugged.
    one = ["pilot: B1", "pilot: 5 % PWM (digital communication), duty 50 per mille", "pilot: C2", "pilot: B2",
           "pilot: A1", "pilot: unplugged"]
    assert pilot == one + one, pilot
    phases = _lines(err, "app: ")
    assert phases.count("app: session") == 2 and phases.count("app: safe") == 2 and phases[-1].startswith("app: done")
    assert st_out.count("station: session ok") == 2, st_out


def test_station_failure_mid_session_then_ready_again(micropython_unix, veth, tmp_path):
    st_ns, st_if, ev_ns, ev_if = veth
    faulty = _station(st_ns, st_if, ["--protocols", "iso2", "--once", "--fault", "PreChargeRes:withhold:2"],
                      tmp_path / "f.sqlite3")
    good = None
    try:
        _wait_serving(faulty)
        board = _board_dir(tmp_path, {"standard": "iso2", "soc": [20, 21], "iface": ev_if}, cycles=2)
        app = _app(ev_ns, ev_if, board)
        faulty.wait(timeout=120)  # one session, failed
        good = _station(st_ns, st_if, ["--protocols", "iso2", "--once"], tmp_path / "g.sqlite3")
        _wait_serving(good)  # the app's SDP keeps asking (up to 50 requests) meanwhile
        out, err = app.communicate(timeout=180)
    finally:
        f_out = _stop(faulty)
        g_out = _stop(good) if good is not None else ""
    results = _lines(err, "session:")
    assert len(results) == 2, err[-3000:]
    assert results[0].startswith("session: failed") and "PreChargeRes" in results[0], results
    assert results[1] == "session: ok (session stopped)", err[-3000:]
    phases = _lines(err, "app: ")
    first_safe = phases.index("app: safe")
    assert phases[first_safe + 1] == "app: ready", phases  # safe, then ready for the next plug-in
    pilot = _lines(err, "pilot:")
    assert pilot.count("pilot: A1") == 2
    assert app.returncode == 1  # one round failed
    assert "station: session ok" in g_out


def test_plug_and_charge_over_tls_with_a_seeded_store(micropython_unix, veth, tmp_path, pki):
    from evpilot_host import pki_material

    st_ns, st_if, ev_ns, ev_if = veth
    board = _board_dir(tmp_path, {"standard": "iso2", "soc": [20, 21], "iface": ev_if, "tls": True, "pnc": True},
                       cycles=2)
    pki_material.seed_store(str(board / "store"), str(pki))
    station = _station(st_ns, st_if, ["--protocols", "iso2", "--tls", "--pki", str(pki), "--pnc"],
                       tmp_path / "p.sqlite3")
    try:
        _wait_serving(station)
        app = _app(ev_ns, ev_if, board)
        out, err = app.communicate(timeout=300)
    finally:
        st_out = _stop(station)
    assert app.returncode == 0, err[-3000:] + out[-1000:]
    assert _lines(err, "session:") == ["session: ok (session stopped)"] * 2, err[-3000:]
    assert len(_lines(err, "tls: TLSv1.2")) == 2
    assert "station: contract DEABCC123ABC56" in st_out, st_out
    assert st_out.count("station: session ok") == 2
