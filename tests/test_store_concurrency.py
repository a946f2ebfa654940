# The store under several processes and under filesystem faults (CPython, POSIX; root for the mounts).
#
# - Two writer processes at once (>= 500 writes in all) and a reader: no update lost, no data file shared or
#   overwritten, the reader never sees a damaged or mixed store, no leftovers.
# - A full filesystem (a 64 KB tmpfs), a read-only one (tmpfs remounted ro), a directory the user may not read
#   or write (as the unprivileged user nobody: root bypasses modes): StoreError naming the path and what was
#   not written; the store reads back as before.
# - Modes: the store directory is 0700, key files (and every store file) 0600.
# - The EV: a store that cannot write during CertificateInstallationRes ends the session in its safe state,
#   with the store's reason.

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from evpilot.store import keystore as st
from evpilot.store import manifest
from evpilot.store.fs import Fs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.pathsep.join(os.path.join(ROOT, d) for d in ("firmware", "sim", "host"))
KEY = hashlib.sha256(b"k").digest()


def der(tag, size=200):
    body = (tag * size)[: size - 4]
    return b"\x30\x82" + len(body).to_bytes(2, "big") + body


def dump(s):
    out = {"roots": [(r.name, s.root(r.name)) for r in s.roots()], "meta": s.meta(), "contracts": []}
    for c in s.contracts():
        out["contracts"].append((c.name, c.not_after, s.contract_named(c.name).chain, s.private_key(c.name)))
    return out


def clean(path, s):
    """Only manifest.json and the files it references."""
    return set(os.listdir(path)) == {"manifest.json"} | set(manifest.referenced(s._m))


def raises(cls, fn, *args):
    try:
        fn(*args)
    except cls as e:
        return e
    raise AssertionError("expected " + cls.__name__)


# --- two processes at once ----------------------------------------------------------------------------------

WRITER = r"""
import sys
from evpilot.store import keystore as st
directory, who, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
key = bytes(range(1, 33))
s = st.Store(directory)
for i in range(count):
    name = "%s%d" % (who, i % 3)
    tag = ("%s-%d" % (who, i)).encode()
    cert = b"\x30\x81\xc4" + (tag * 100)[:196]
    if i % 4 == 3:
        s.set_meta(who, i)
    else:
        s.install_contract([cert], key, "DEABC" + who.upper() + str(i % 3), 0, i, name=name)
s.set_meta(who, count)
print("done", who)
"""

READER = r"""
import sys, time
from evpilot.store import keystore as st
directory, seconds = sys.argv[1], float(sys.argv[2])
reads = 0
end = time.time() + seconds
while time.time() < end:
    s = st.Store(directory)
    for c in s.contracts():
        k = s.contract_named(c.name)
        tag = k.chain[0][3:]
        assert tag.startswith(c.name[:1].encode()), (c.name, tag[:10])
        assert s.private_key(c.name) == bytes(range(1, 33))
        reads += 1
print("reads", reads)
"""


def _python(code, *args):
    env = dict(os.environ, PYTHONPATH=PATH)
    return subprocess.Popen([sys.executable, "-c", code] + [str(a) for a in args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_writers_and_a_reader_lose_nothing(tmp_path):
    directory = str(tmp_path / "store")
    st.Store(directory)
    count = 300  # per writer: 600 writes in all
    procs = [_python(WRITER, directory, who, count) for who in ("a", "b")]
    reader = _python(READER, directory, 3)
    outs = [p.communicate(timeout=600) for p in procs]
    rout = reader.communicate(timeout=600)
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and "done" in out, err
    assert reader.returncode == 0, rout[1]
    assert int(rout[0].split()[1]) > 0
    s = st.Store(directory)
    # Every writer's last update of each of its contracts is there, with its own certificate.
    names = {c.name: c for c in s.contracts()}
    assert sorted(names) == ["a0", "a1", "a2", "b0", "b1", "b2"]
    for who in "ab":
        for j in range(3):
            last = max(i for i in range(count) if i % 3 == j and i % 4 != 3)
            c = s.contract_named(who + str(j))
            assert c.not_after == last
            assert c.chain[0][3:].startswith(("%s-%d" % (who, last)).encode())
    assert s.meta() == {"a": count, "b": count}
    assert clean(directory, s)
    # Data-file numbers were never reused: "next" counted every file of every write.
    assert s._m["next"] > 2 * count


def test_a_writer_that_died_holding_the_lock_does_not_block_the_store(tmp_path):
    directory = str(tmp_path / "store")
    st.Store(directory)
    code = ("import os, sys\nfrom evpilot.store.fs import Fs\nFs().lock(sys.argv[1])\nos._exit(9)\n")
    p = _python(code, directory)
    p.communicate(timeout=60)
    assert p.returncode == 9
    s = st.Store(directory)
    s.set_meta("after", 1)
    assert st.Store(directory).meta() == {"after": 1}


def test_a_second_writer_waits_then_is_refused_with_a_clear_error(tmp_path):
    directory = str(tmp_path / "store")
    s = st.Store(directory)
    held = Fs().lock(directory)
    try:
        class Impatient(Fs):
            def lock(self, d, wait_ms=0):
                return Fs.lock(self, d, 20)

        s._fs = Impatient()
        e = raises(st.StoreError, s.set_meta, "x", 1)
        assert e.file == directory and "another process is writing" in str(e) and "nothing written" in str(e)
    finally:
        Fs().unlock(held)
    s.set_meta("x", 2)
    assert st.Store(directory).meta() == {"x": 2}


# --- faults ---------------------------------------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def tmpfs(tmp_path):
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: " + r.stderr.strip())
    yield mnt
    subprocess.run(["umount", "-l", mnt])


def populate(s):
    s.add_root(der(b"r"), "11", "CN=root")
    s.install_contract([der(b"c"), der(b"s")], KEY, "DEABC000001", 0, 100)
    s.set_meta("k", 1)


@needs_root
def test_full_filesystem_is_a_store_error_and_the_store_is_unchanged(tmpfs):
    directory = tmpfs + "/store"
    s = st.Store(directory)
    populate(s)
    before = dump(s)
    # Fill the rest of the 64 KB.
    with open(tmpfs + "/filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 1024)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    for attempt in range(3):  # the object stays usable; every try fails the same way
        e = raises(st.StoreError, s.install_contract, [der(b"n", 2000), der(b"m", 2000)], KEY, "DEABC000002",
                   0, 200)
        assert e.file.startswith(directory + "/") and "No space left on device" in str(e), str(e)
        assert "not written: contract DEABC000002 installed" in str(e) and "Traceback" not in str(e)
        assert dump(s) == before and dump(st.Store(directory)) == before
        assert clean(directory, s)
    os.remove(tmpfs + "/filler")
    s.install_contract([der(b"n", 2000)], KEY, "DEABC000002", 0, 200)
    assert [c.name for c in st.Store(directory).contracts()] == ["DEABC000001", "DEABC000002"]


@needs_root
def test_read_only_filesystem_reads_and_refuses_writes(tmpfs):
    directory = tmpfs + "/store"
    s = st.Store(directory)
    populate(s)
    before = dump(s)
    r = subprocess.run(["mount", "-o", "remount,ro", tmpfs], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ro = st.Store(directory)  # opening (and reading) a read-only store works
    assert dump(ro) == before
    for store in (s, ro):
        e = raises(st.StoreError, store.set_meta, "k", 2)
        assert "Read-only file system" in str(e) and "EROFS" in str(e) and directory in str(e)
        assert "not written: metadata k set" in str(e)
        e = raises(st.StoreError, store.remove_contract, "DEABC000001")
        assert "Read-only" in str(e)
        assert dump(store) == before
    e = raises(st.StoreError, st.Store, tmpfs + "/new")
    assert e.file == tmpfs + "/new" and "cannot be created" in str(e) and "Read-only" in str(e)


AS_NOBODY = r"""
import sys
from evpilot.store import keystore as st
try:
    s = st.Store(sys.argv[1])
    if sys.argv[2] == "write":
        s.set_meta("k", 2)
    print("ok", s.meta())
except st.StoreError as e:
    print("StoreError", e.file, "|", e)
"""


def _as_nobody(directory, what):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as an unprivileged user")
    env = dict(os.environ, PYTHONPATH=PATH)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                        AS_NOBODY, directory, what], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r.stdout.strip()


@pytest.fixture
def shared_tmp():
    d = tempfile.mkdtemp(prefix="evpilot-store-perm-")
    os.chmod(d, 0o755)  # the unprivileged user must reach what is inside
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_no_permission_is_a_store_error_naming_the_directory(shared_tmp):
    directory = shared_tmp + "/store"
    s = st.Store(directory)
    populate(s)
    before = dump(s)
    os.chmod(directory, 0o000)
    out = _as_nobody(directory, "read")
    assert out.startswith("StoreError " + directory + " |"), out
    assert "Permission denied" in out and "EACCES" in out and "FileExistsError" not in out
    # Readable but not writable by the user: reads work, the write is refused and changes nothing.
    os.chmod(directory, 0o755)
    for name in os.listdir(directory):
        os.chmod(directory + "/" + name, 0o644)
    out = _as_nobody(directory, "write")
    assert out.startswith("StoreError " + directory + "/manifest.tmp |"), out
    assert "Permission denied" in out and "not written: metadata k set" in out
    assert dump(st.Store(directory)) == before
    # Where the user may not create the store directory.
    os.chmod(shared_tmp, 0o555)
    out = _as_nobody(shared_tmp + "/other", "read")
    assert out.startswith("StoreError " + shared_tmp + "/other |") and "cannot be created" in out, out


def test_key_files_are_0600_in_a_0700_directory(tmp_path):
    old = os.umask(0o022)
    try:
        directory = str(tmp_path / "store")
        s = st.Store(directory)
        populate(s)
        s.set_oem([der(b"o")], KEY, "PCID1")
        assert os.stat(directory).st_mode & 0o777 == 0o700
        keys = [n for n in os.listdir(directory) if n.endswith(".key")]
        assert len(keys) == 2
        for name in os.listdir(directory):
            assert os.stat(directory + "/" + name).st_mode & 0o777 == 0o600, name
        # A directory the user made beforehand with a loose mode is tightened when the store opens it.
        loose = str(tmp_path / "loose")
        os.mkdir(loose, 0o755)
        os.chmod(loose, 0o755)
        st.Store(loose).install_contract([der(b"c")], KEY, "DEABC000009", 0, 1)
        assert os.stat(loose).st_mode & 0o777 == 0o700
        assert all(os.stat(loose + "/" + n).st_mode & 0o777 == 0o600 for n in os.listdir(loose))
    finally:
        os.umask(old)


# --- the EV: a store failure during CertificateInstallationRes -------------------------------------------------


def test_ev_store_failure_during_installation_ends_safe_with_the_reason(tmp_path):
    from evpilot.ev import client as ev_client
    from evpilot.ev import pilot
    from evpilot_host import ends, pki
    from evpilot_sim import pipe

    pki_dir = tmp_path / "pki"
    pki.write_pki(pki_dir, pki.build_pki())
    store, _ = ends.ev_store(tmp_path / "store", pki_dir)
    before = dump(store)

    class Full(Fs):
        def open_write(self, path):
            if path.endswith(".der") or path.endswith(".key"):
                raise OSError(errno.ENOSPC, "No space left on device")
            return Fs.open_write(self, path)

    store._fs = Full()
    ev = ends.ev_end("iso2", "dc", (20.0, 80.0), None, plugged=True, store=store,
                     tls_context=ends.ev_tls_context(ends.store_v2g_roots(store)))
    station = ends.station_end(("iso2",), "dc", seed=1, pnc=ends.station_pnc(pki_dir),
                               tls_context=ends.station_tls_context(pki_dir))

    def tick(now):
        ev.tick(now)
        station.tick(now)

    pipe.run(ev.outer, station.outer, latency_ms=20, tick=tick)
    reason = ev.outer.reason or ev.client.reason
    assert ev.client.state == ev_client.FAILED, reason
    assert "store" in reason and "No space left on device" in reason, reason
    assert not ev.vehicle.contactors_closed() and ev.vehicle.cp_state == pilot.STATE_B  # the safe state
    store._fs = Fs()
    assert dump(st.Store(store.directory)) == before
