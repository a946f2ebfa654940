# Provisioning a board's life against the real interpreter: MicroPython's unix port runs the provisioning
# service on its console, a pseudo terminal that Debian's socat links to a path (as a USB-CDC port would
# appear), and `evpilot provision` talks to it with pyserial. Shown here: the whole provisioning (bind, roots,
# the OEM key made on the device, its CSR signed by the test PKI's OEM Sub-CA 2, the chain installed, a
# contract, list, log, reset); a power cut (the process killed) at every filesystem step of each kind of write,
# after which the store reopens whole with the old or the new content; no private key byte in any reply, the
# log or the byte trace of the line (socat -x); `evpilot deploy` through mpremote's raw REPL (no soft reset)
# installing the compiled firmware into the unix port's working directory, copying only what changed, and
# the deployed firmware then serving provisioning; a missing port, a busy port and a device that is not
# running evpilot (or, for deploy, no MicroPython REPL) each end with one clear line.

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from evpilot.store.keystore import OEM, Store
from evpilot_host import cli, pki

import evpilot_mp_unix as mp_unix

REPO = mp_unix.REPO
DEVICE = os.path.join(REPO, "tests", "mp_scripts", "provision_device.py")
SOCAT = shutil.which("socat")

pytestmark = pytest.mark.skipif(SOCAT is None, reason="needs Debian's socat (apt-get install socat)")


class Device:
    """socat linking a pty at `link` to a MicroPython process running `args` (on its console)."""

    _n = [0]

    def __init__(self, tmp, args, cwd=REPO, env=None):
        Device._n[0] += 1
        n = Device._n[0]
        self.link = str(tmp / ("ttyEVP%d" % n))
        self.trace = str(tmp / ("trace%d.log" % n))
        exe = mp_unix.micropython_path()
        cmd = [SOCAT, "-d", "-d", "-x", "pty,raw,echo=0,link=" + self.link,
               "exec:%s,pty,raw,echo=0" % " ".join([exe, "-X", "heapsize=4m"] + list(args))]
        self._err = open(self.trace, "wb")
        self.proc = subprocess.Popen(cmd, stderr=self._err, stdin=subprocess.DEVNULL,
                                     env=mp_unix.script_env(env), cwd=cwd)
        for _ in range(200):
            if os.path.exists(self.link) and self.child() is not None:
                break
            time.sleep(0.05)
        else:
            self.stop()
            raise AssertionError("socat did not start: " + open(self.trace).read())
        time.sleep(0.3)  # the interpreter starting behind the pty

    def child(self):
        m = re.search(r"forked off child process (\d+)", open(self.trace, errors="replace").read())
        return int(m.group(1)) if m else None

    def power_cut(self):
        os.kill(self.child(), signal.SIGKILL)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()

    def wire_bytes(self):
        """Every byte socat carried, both directions, from its -x hex dump."""
        out = bytearray()
        for line in open(self.trace, errors="replace"):
            if re.match(r"^( [0-9a-f]{2})+\s*$", line):
                out.extend(bytes.fromhex(line.replace(" ", "").strip()))
        return bytes(out)


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki") / "pki"
    pki.write_pki(d, pki.build_pki())
    return str(d)


@pytest.fixture
def device(micropython_unix, tmp_path):
    made = []

    def start(store, *extra):
        os.makedirs(store, exist_ok=True)
        dev = Device(tmp_path, [DEVICE, store] + [str(x) for x in extra])
        made.append(dev)
        return dev

    yield start
    for dev in made:
        dev.stop()


def _provision(capsys, port, *words, pki_dir=None):
    argv = ["provision", "--port", port, "--timeout", "10"] + (["--pki", pki_dir] if pki_dir else []) + list(words)
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def _ok(capsys, port, *words, pki_dir=None):
    status, out, err = _provision(capsys, port, *words, pki_dir=pki_dir)
    assert status == 0, err
    return out


def _one_error_line(status, err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("evpilot: error: "), err
    return lines[0]


def test_whole_provisioning_over_a_pty(device, pki_dir, tmp_path, capsys):
    store = str(tmp_path / "store")
    dev = device(store)
    port = dev.link
    assert "authority not bound" in _ok(capsys, port, "info")
    out = _ok(capsys, port, "roots", "add", pki_dir, pki_dir=pki_dir)
    assert out.count("added") == 2
    out = _ok(capsys, port, "oem", pki_dir=pki_dir)
    assert "PCID " + pki.DEFAULT_PCID in out and "on the device" in out
    out = _ok(capsys, port, "contract", "add", os.path.join(pki_dir, "contract_chain.pem"),
              os.path.join(pki_dir, "contract_leaf.key"), pki_dir=pki_dir)
    assert "contract %s installed" % pki.DEFAULT_EMAID in out
    listed = _ok(capsys, port, "list")
    assert "DC=V2G" in listed and "DC=MO" in listed and "oem %s (3 certificates)" % pki.DEFAULT_PCID in listed
    assert "contract %s eMAID %s" % (pki.DEFAULT_EMAID, pki.DEFAULT_EMAID) in listed
    log = _ok(capsys, port, "log")
    assert "provision: oem-install done" in log
    info = _ok(capsys, port, "info")
    assert "2 roots, OEM %s, 1 contracts, authority bound" % pki.DEFAULT_PCID in info

    # what the device stored: the OEM leaf certifies a key that exists only in the device's store
    s = Store(store)
    oem_key = s.private_key(OEM)
    with open(os.path.join(pki_dir, "oem_prov_leaf.der"), "rb") as f:
        assert s.oem().chain[0] != f.read()  # a new leaf, not the laptop-made one
    contract_key = s.private_key(s.contracts()[0].name)
    # a change without the authority's key is refused by the device
    other = tmp_path / "other-pki"
    other.mkdir()
    status, _, err = _provision(capsys, port, "roots", "rm", s.roots()[0].name, pki_dir=str(other))
    assert "not the provisioning authority" in _one_error_line(status, err)
    assert len(Store(store).roots()) == 2

    dev.stop()
    wire = dev.wire_bytes()
    assert b"\x1eEP" in wire and len(wire) > 3000
    oem_leaf = Store(store).oem().chain[0]
    assert oem_leaf in wire  # the trace holds what crossed the line
    # the OEM key was born on the device: not one half of it crossed the line, raw or in hex
    assert oem_key[:16] not in wire and oem_key[16:] not in wire and oem_key.hex()[:32].encode() not in wire
    # the contract key went in (bench) exactly once, in the contract-add request, and came back in no reply
    assert wire.count(contract_key) == 1
    assert oem_key.hex() not in log and contract_key.hex() not in log


def test_reset_unbinds_and_empties(device, pki_dir, tmp_path, capsys):
    dev = device(str(tmp_path / "store"))
    _ok(capsys, dev.link, "roots", "add", pki_dir, pki_dir=pki_dir)
    out = _ok(capsys, dev.link, "reset", pki_dir=pki_dir)
    assert "2 roots and 0 contracts removed" in out
    assert "0 roots" in _ok(capsys, dev.link, "info") and "not bound" in _ok(capsys, dev.link, "info")


def _seed(store, pki_dir, with_authority):
    """A store as a first provisioning leaves it (bound, one root), written by CPython's Store."""
    from evpilot.provision.service import AUTHORITY_META
    from evpilot.store import certs
    from evpilot_host import provision as prov

    s = Store(store)
    if with_authority:
        s.set_meta(AUTHORITY_META, prov.public_point(prov.authority_key(pki_dir)).hex())
    with open(os.path.join(pki_dir, "v2g_root.der"), "rb") as f:
        certs.add_root_certificate(s, f.read())
    return s


def _snapshot(store):
    s = Store(store)
    return ([r.name for r in s.roots()], [c.name for c in s.contracts()], s.oem() and s.oem().pcid)


# one command of each kind of write: (test id, the words after `evpilot provision --pki DIR`)
# A write of a contract (chain and key files, then the manifest) and the OEM installation, each cut at every
# step through the real interpreter on a pty; roots add and remove are manifest updates of the same kind,
# and every step of every store write, those included, is cut in-process by tests/test_store_powerloss.py.
_WRITES = [
    ("contract-add", ("contract", "add", "contract_chain.pem", "contract_leaf.key")),
    ("oem", ("oem",)),
]


def _provision_process(port, *words, pki_dir=None):
    """`evpilot provision` as its own process (the test kills the device under it)."""
    argv = ["provision", "--port", port, "--timeout", "20", "--pki", pki_dir] + list(words)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(REPO, "firmware"), os.path.join(REPO, "sim"), os.path.join(REPO, "host")]))
    return subprocess.Popen(["python3", "-m", "evpilot_host.cli"] + argv, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("name,words", _WRITES, ids=[w[0] for w in _WRITES])
def test_power_cut_at_every_step_of_a_write(device, pki_dir, tmp_path, capsys, name, words):
    base = str(tmp_path / "base")
    root_name = _seed(base, pki_dir, True).roots()[0].name
    words = [root_name if w is None else (os.path.join(pki_dir, w) if "." in w else w) for w in words]
    before = _snapshot(base)
    outcomes = set()
    step = 0
    while True:
        step += 1
        assert step < 40, "the write never completed"
        store = str(tmp_path / ("store%d" % step))
        shutil.copytree(base, store)
        marker = str(tmp_path / ("cut%d" % step))
        dev = device(store, step, marker)
        client = _provision_process(dev.link, *words, pki_dir=pki_dir)
        while client.poll() is None and not os.path.exists(marker):
            time.sleep(0.02)
        if not os.path.exists(marker):
            # the write finished before step `step`: every one of its steps has been cut once
            out, err = client.communicate()
            assert client.returncode == 0, err
            assert _snapshot(store) != before
            break
        time.sleep(0.05)  # the marker is written: the device now hangs at that step
        dev.power_cut()
        out, err = client.communicate(timeout=60)
        assert client.returncode == 2 and err.strip().splitlines()[-1].startswith("evpilot: error: "), err
        assert "connection was lost" in err or "no answer" in err, err
        dev.stop()
        # the board comes back: the store opens whole, with the content before the write or after it
        after = _snapshot(store)
        outcomes.add("new" if after != before else "old")
        dev = device(store)
        assert "store ok" in _ok(capsys, dev.link, "info")
        listed = _ok(capsys, dev.link, "list")
        assert listed.count("root ") == len(after[0])
        dev.stop()
    assert step > 3  # the write took several filesystem steps, each cut once
    if name != "oem":  # oem's only write is its last command, oem-install
        assert outcomes == {"old", "new"}, outcomes  # cuts before the commit point and after it
    else:
        assert "old" in outcomes


def test_missing_port_one_line(capsys, tmp_path):
    status, _, err = _provision(capsys, str(tmp_path / "ttyNONE"), "info")
    assert "no such serial port" in _one_error_line(status, err)


def test_busy_port_one_line(device, tmp_path, capsys):
    import serial

    dev = device(str(tmp_path / "store"))
    holder = serial.Serial(dev.link, 115200, exclusive=True)
    try:
        status, _, err = _provision(capsys, dev.link, "info")
        assert "busy" in _one_error_line(status, err)
    finally:
        holder.close()
    assert "evpilot" in _ok(capsys, dev.link, "info")


def test_device_not_running_evpilot_one_line(micropython_unix, tmp_path, capsys):
    # the bare REPL of the same interpreter: no provisioning service behind it
    dev = Device(tmp_path, ["-i"])
    try:
        status = cli.main(["provision", "--port", dev.link, "--timeout", "3", "info"])
        line = _one_error_line(status, capsys.readouterr()[1])
        assert "not" in line and "evpilot" in line
    finally:
        dev.stop()



# --- deploy ---------------------------------------------------------------------------------------------------


def _deploy(capsys, port, *words):
    status = cli.main(["deploy", "--port", port] + list(words))
    out, err = capsys.readouterr()
    return status, out, err


def _repl(tmp_path, fs):
    """The unix port's bare REPL on a pty, working in `fs` (its filesystem), seeing only its frozen modules."""
    return Device(tmp_path, [], cwd=fs, env={"MICROPYPATH": ".frozen"})


def test_deploy_installs_the_firmware_and_then_only_what_changed(micropython_unix, tmp_path, capsys):
    fs = tmp_path / "fs"
    fs.mkdir()
    dev = _repl(tmp_path, str(fs))
    try:
        status, out, err = _deploy(capsys, dev.link, "--board", "unix", "--dry-run")
        assert status == 0, err
        m = re.search(r"(\d+) of (\d+) files would be copied \(linux, \.mpy v6", out)
        assert m and m.group(1) == m.group(2) and int(m.group(1)) > 50, out
        assert "would copy lib/evpilot/provision/service.mpy (new)" in out
        assert os.listdir(fs) == []  # a dry run writes nothing

        status, out, err = _deploy(capsys, dev.link, "--board", "unix")
        assert status == 0, err
        total = int(m.group(2))
        assert "deployed: %d of %d files copied" % (total, total) in out
        assert "board reset" not in out  # the unix port has no machine.reset
        with open(os.path.join(REPO, "boards", "unix.json"), "rb") as f:
            assert (fs / "board.json").read_bytes() == f.read()
        with open(os.path.join(REPO, "firmware", "main.py"), "rb") as f:
            assert (fs / "main.py").read_bytes() == f.read()
        service_mpy = fs / "lib" / "evpilot" / "provision" / "service.mpy"
        assert service_mpy.read_bytes()[:1] == b"M"  # a compiled module
        assert not (fs / "lib" / "evpilot" / "provision" / "service.py").exists()

        # nothing changed: nothing copied; one file damaged and one gone: those two copied again
        status, out, err = _deploy(capsys, dev.link, "--board", "unix")
        assert "deployed: 0 of %d files copied" % total in out, err
        good = service_mpy.read_bytes()
        service_mpy.write_bytes(b"damaged")
        (fs / "lib" / "evpilot" / "compat.mpy").unlink()
        status, out, err = _deploy(capsys, dev.link, "--board", "unix", "--dry-run")
        assert "would copy lib/evpilot/provision/service.mpy (changed)" in out
        assert "would copy lib/evpilot/compat.mpy (new)" in out
        status, out, err = _deploy(capsys, dev.link, "--board", "unix")
        assert "deployed: 2 of %d files copied" % total in out, err
        assert service_mpy.read_bytes() == good
    finally:
        dev.stop()

    # the deployed firmware alone (its lib/ and the port's frozen modules) serves provisioning
    store = str(fs / "store")
    os.mkdir(store)
    dev = Device(tmp_path, ["-m", "evpilot.provision.serial", store, "unix"], cwd=str(fs),
                 env={"MICROPYPATH": "lib:.frozen"})
    try:
        assert "evpilot 0.1.0 on unix: store ok" in _ok(capsys, dev.link, "info")
        # deploy against a device whose console runs evpilot's service, not a REPL: one line
        status, _, err = _deploy(capsys, dev.link, "--board", "unix", "--dry-run")
        assert "no MicroPython REPL" in _one_error_line(status, err.splitlines()[-1])
    finally:
        dev.stop()


def test_deploy_missing_busy_and_unknown_board(micropython_unix, tmp_path, capsys):
    import serial

    status, _, err = _deploy(capsys, str(tmp_path / "ttyNONE"), "--board", "unix")
    assert "no such serial port" in _one_error_line(status, err)
    fs = tmp_path / "fs"
    fs.mkdir()
    dev = _repl(tmp_path, str(fs))
    try:
        status, _, err = _deploy(capsys, dev.link, "--board", "no-such-board")
        assert "no board 'no-such-board'" in _one_error_line(status, err)
        holder = serial.Serial(dev.link, 115200, exclusive=True)
        try:
            status, _, err = _deploy(capsys, dev.link, "--board", "unix", "--dry-run")
            assert "busy" in _one_error_line(status, err.splitlines()[-1] if err else err)
        finally:
            holder.close()
    finally:
        dev.stop()


def test_mip_installs_the_package_json(micropython_unix, tmp_path):
    # `mpremote mip install` from the local firmware/package.json, as a user without `evpilot deploy` would
    # (the package's provisioning modules and what they import: the whole list only repeats the same copy
    # over the pty for a minute; test_firmware_packaging checks that package.json lists every module)
    fs = tmp_path / "fs"
    fs.mkdir()
    with open(os.path.join(REPO, "firmware", "package.json")) as f:
        doc = json.load(f)
    keep = ("evpilot/__init__", "evpilot/errors", "evpilot/compat", "evpilot/provision/", "evpilot/pnc/",
            "evpilot/store/")
    doc["urls"] = [u for u in doc["urls"] if u[0].startswith(keep)]
    assert len(doc["urls"]) > 10
    pkg = tmp_path / "pkg"  # mip reads the sources relative to the package.json: the firmware, linked
    pkg.mkdir()
    os.symlink(os.path.join(REPO, "firmware", "evpilot"), pkg / "evpilot")
    subset = pkg / "package.json"
    subset.write_text(json.dumps(doc))
    dev = _repl(tmp_path, str(fs))
    try:
        proc = subprocess.run([sys.executable, "-m", "mpremote", "connect", dev.link, "resume", "mip", "install",
                               "--target", "lib", str(subset)],
                              capture_output=True, text=True, timeout=300, cwd=REPO)
        assert proc.returncode == 0 and "Done" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    finally:
        dev.stop()
    with open(os.path.join(REPO, "firmware", "evpilot", "provision", "cbor.py"), "rb") as f:
        assert (fs / "lib" / "evpilot" / "provision" / "cbor.py").read_bytes() == f.read()
    check = subprocess.run([mp_unix.micropython_path(), "-c", "from evpilot.provision import service; print('ok')"],
                           cwd=str(fs), env=mp_unix.script_env({"MICROPYPATH": "lib:.frozen"}),
                           capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "ok", check.stdout + check.stderr
