"""A board's life on the real interpreter, start to finish: `evpilot deploy` installs the compiled firmware
into the MicroPython unix port's filesystem (its working directory) over a pty; the deployed firmware's
provisioning service (on the console, through socat) takes `evpilot provision`: roots, and the OEM
provisioning key generated ON the device with a CSR that the test PKI's OEM Sub-CA 2 signs; the deployed
application (main.py, board.json) then runs two Plug&Charge sessions over TLS against `evpilot station --pnc`
across a veth pair -- the first installs a contract (CertificateInstallation), the second pays with it -- and
`evpilot provision list` shows the installed contract afterwards. Needs root (network namespaces), socat and
the unix port (skipped with the reason otherwise). The unix board's simulated vehicle and pilot come from
sim/ (laptop-only by design), everything else from what deploy wrote."""

import json
import os
import subprocess

import pytest

import evpilot_mp_unix as mp_unix
from test_app_unix import _lines, _station, _stop, _wait_serving
from test_link_cli import pki, veth  # noqa: F401 (fixtures)
from test_provision_pty import SOCAT, Device, _deploy, _ok, _repl

from evpilot.store.keystore import OEM, Store
from evpilot_host import pki as pki_module

ROOT = mp_unix.REPO

pytestmark = pytest.mark.skipif(SOCAT is None, reason="needs Debian's socat (apt-get install socat)")


def test_deploy_provision_then_plug_and_charge_with_installation(micropython_unix, veth, tmp_path, pki, capsys):
    st_ns, st_if, ev_ns, ev_if = veth
    fs = tmp_path / "fs"
    fs.mkdir()
    pki_dir = str(pki)

    # 1. deploy to the bare interpreter
    dev = _repl(tmp_path, str(fs))
    try:
        status, out, err = _deploy(capsys, dev.link, "--board", "unix")
        assert status == 0 and "deployed:" in out, err
    finally:
        dev.stop()
    assert (fs / "lib" / "evpilot" / "app.mpy").exists() and (fs / "main.py").exists()

    # 2. provision through the deployed firmware's service
    deployed = {"MICROPYPATH": "lib:.frozen"}
    (fs / "store").mkdir()
    dev = Device(tmp_path, ["-m", "evpilot.provision.serial", "store", "unix"], cwd=str(fs), env=deployed)
    try:
        out = _ok(capsys, dev.link, "roots", "add", pki_dir, pki_dir=pki_dir)
        assert out.count("added") == 2
        out = _ok(capsys, dev.link, "oem", pki_dir=pki_dir)
        assert "key generated on the device" in out
        assert "contract" not in _ok(capsys, dev.link, "list")
    finally:
        dev.stop()
    oem_key = Store(str(fs / "store")).private_key(OEM)
    assert oem_key not in dev.wire_bytes()

    # 3. the deployed application: two plug-ins, Plug&Charge over TLS, the first installs the contract
    board = json.loads((fs / "board.json").read_text())
    board["pilot"].update(cycles=2, plug_after_ms=200, pwm_after_ms=200, unplug_after_ms=100)
    (fs / "board.json").write_text(json.dumps(board))
    (fs / "app.json").write_text(json.dumps({"standard": "iso2", "soc": [20, 21], "iface": ev_if, "tls": True,
                                             "pnc": True, "rounds": 2, "provision": False}))
    station = _station(st_ns, st_if, ["--protocols", "iso2", "--tls", "--pki", pki_dir, "--pnc"],
                       tmp_path / "p.sqlite3")

    try:
        _wait_serving(station)
        env = mp_unix.script_env({"MICROPYPATH": os.pathsep.join(["lib", os.path.join(ROOT, "sim"), ".frozen"])})
        cmd = ["ip", "netns", "exec", ev_ns, mp_unix.micropython_path(), "-X", "heapsize=4m", "main.py"]
        app = subprocess.Popen(cmd, cwd=str(fs), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        out, err = app.communicate(timeout=300)
    finally:
        st_out = _stop(station)
    assert app.returncode == 0, err[-3000:] + out[-1000:]
    assert _lines(err, "session:") == ["session: ok (session stopped)"] * 2, err[-3000:]
    assert "station: contract %s" % pki_module.DEFAULT_EMAID in st_out, st_out
    assert st_out.count("station: session ok") == 2

    # 4. the contract the session installed, seen over the provisioning channel
    dev = Device(tmp_path, ["-m", "evpilot.provision.serial", "store", "unix"], cwd=str(fs), env=deployed)
    try:
        listed = _ok(capsys, dev.link, "list")
    finally:
        dev.stop()
    assert "contract %s eMAID %s" % (pki_module.DEFAULT_EMAID, pki_module.DEFAULT_EMAID) in listed, listed
    assert "oem %s (3 certificates)" % pki_module.DEFAULT_PCID in listed
    assert oem_key not in dev.wire_bytes()
