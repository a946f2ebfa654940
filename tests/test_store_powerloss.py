# Power loss at every filesystem step of every store write, then reopen: the store must read back either the
# old complete content or the new complete content, never a mix, and recovery must leave no leftovers.
#
# How this works
# --------------
# CutFs wraps the store's Fs and counts every step (listdir, read, open, write, fsync, close, rename, remove,
# mkdir, sync_dir). Armed with cut_at=k, step k does not happen (a write at k lands half its bytes: a torn
# write) and every later step fails: the power is off. Then the aftermath of a real power cut is applied to
# the directory: every file written since its last fsync keeps only its fsynced part plus half of the rest
# (POSIX promises nothing more; a rename moves that debt with the file). Renames and removes that returned
# are durable (the store syncs the directory after its commit rename). With fat=True, rename over an existing
# file is two steps, remove then rename, as in MicroPython's FAT driver.
# For each operation: run it once without a cut to count its steps and learn the new content, then for each
# k cut at k, reopen with a healthy fs, and compare with the old and new content. A second pass also cuts the
# recovery itself at each of its steps. Every text the store produced -- reprs, errors, log lines, the
# manifest -- is searched for the private keys, raw and in hex of both cases.

import hashlib
import json
import os
import shutil

import pytest

from evpilot.errors import PeerError, UsageError
from evpilot.store import keystore as st
from evpilot.store.fs import Fs

KEYS = {name: hashlib.sha256(name.encode()).digest() for name in ("oem", "oem-2", "k1", "k2", "k3", "k4")}
for _k in KEYS.values():
    assert _k < bytes.fromhex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")


class PowerCut(Exception):
    pass


class _Open:
    def __init__(self, f, path):
        self.f = f
        self.path = path
        self.data = b""
        self.synced = 0


class CutFs(Fs):
    def __init__(self, cut_at=None, fat=False):
        self.cut_at = cut_at
        self.fat = fat
        self.steps = []
        self.dead = False
        self.dirty = {}  # path -> _Open with bytes written since its last fsync

    def _step(self, op, path, torn=None):
        if self.dead:
            raise PowerCut("the power is off (" + op + ")")
        n = len(self.steps)
        self.steps.append((op, os.path.basename(path)))
        if n == self.cut_at:
            if torn is not None:
                torn()
            self.dead = True
            raise PowerCut("power cut at step %d: %s %s" % (n, op, os.path.basename(path)))

    def aftermath(self):
        """What survives the cut: fsynced bytes plus half of what followed, per file written."""
        for path, w in self.dirty.items():
            if os.path.exists(path):
                keep = w.data[: w.synced + (len(w.data) - w.synced) // 2]
                with open(path, "wb") as f:
                    f.write(keep)
        self.dirty = {}

    def listdir(self, path):
        self._step("listdir", path)
        return Fs.listdir(self, path)

    def mkdir(self, path):
        self._step("mkdir", path)
        Fs.mkdir(self, path)

    def read(self, path, limit):
        self._step("read", path)
        return Fs.read(self, path, limit)

    def open_write(self, path):
        self._step("open", path)
        w = _Open(Fs.open_write(self, path), path)
        self.dirty[path] = w
        return w

    def write(self, w, data):
        def torn():
            w.f.write(data[: len(data) // 2])
            w.data += data[: len(data) // 2]

        self._step("write", w.path, torn)
        w.f.write(data)
        w.data += data
        self.dirty[w.path] = w

    def fsync(self, w):
        self._step("fsync", w.path)
        Fs.fsync(self, w.f)
        w.synced = len(w.data)
        if self.dirty.get(w.path) is w:
            del self.dirty[w.path]

    def close(self, w):
        try:
            self._step("close", w.path)
        finally:
            w.f.close()  # the host's file handle, either way

    def rename(self, old, new):
        if self.fat and os.path.exists(new):
            self._step("rename:remove-target", new)
            os.remove(new)
            self.dirty.pop(new, None)
        self._step("rename", old)
        Fs.rename(self, old, new)
        if old in self.dirty:
            self.dirty[new] = self.dirty.pop(old)

    def remove(self, path):
        self._step("remove", path)
        Fs.remove(self, path)
        self.dirty.pop(path, None)

    def sync_dir(self, path):
        self._step("sync_dir", path)
        Fs.sync_dir(self, path)


# --- content of a store, read through its API ------------------------------------------------------------


def der(tag, size=200):
    body = (tag * size)[: size - 4]
    return b"\x30\x82" + len(body).to_bytes(2, "big") + body


def dump(s):
    o = s.oem()
    return {
        "roots": {r.name: (r.subject, s.root(r.name)) for r in s.roots()},
        "oem": None if o is None else (o.pcid, o.chain, s.private_key(st.OEM)),
        "contracts": {
            c.name: (c.emaid, c.not_before, c.not_after, s.contract_named(c.name).chain, s.private_key(c.name))
            for c in s.contracts()
        },
        "meta": s.meta(),
    }


def populate(s):
    s.add_root(der(b"R1"), "01", "CN=Root 1")
    s.add_root(der(b"R2"), "02", "CN=Root 2")
    s.set_oem([der(b"O"), der(b"OS")], KEYS["oem"], "PCID0000000000001")
    s.install_contract([der(b"C1"), der(b"S2"), der(b"S1")], KEYS["k1"], "DEABCC123ABC56", 100, 900)
    s.install_contract([der(b"C2"), der(b"S2")], KEYS["k2"], "DEABCC123ABC57", 200, 800)
    s.set_meta("vin", "WVWZZZ1JZXW000001")


OPERATIONS = {
    "add_root": lambda s: s.add_root(der(b"R3"), "03", "CN=Root 3"),
    "replace_root": lambda s: s.add_root(der(b"r1", 300), "01", "CN=Root 1 (renewed)"),
    "remove_root": lambda s: s.remove_root("02"),
    "set_oem": lambda s: s.set_oem([der(b"o2")], KEYS["oem-2"], "PCID0000000000002"),
    "install_contract": lambda s: s.install_contract([der(b"C3"), der(b"S2")], KEYS["k3"], "DEABCC123ABC58", 0, 50),
    "update_contract": lambda s: s.install_contract(
        [der(b"c1"), der(b"s2"), der(b"s1")], KEYS["k4"], "DE-ABC-C123ABC56", 500, 1500),
    "remove_contract": lambda s: s.remove_contract("DEABCC123ABC57"),
    "set_meta": lambda s: s.set_meta("vin", "WVWZZZ1JZXW000002"),
}

TEXTS = []  # every text the store produced in this module, searched for keys at the end


def _log(line):
    TEXTS.append(line)


def _open(path, fs=None):
    s = st.Store(path, fs=fs or CutFs(), log=_log)
    TEXTS.append(repr(s))
    return s


def _check_clean(path, s):
    """Only the manifest and the files it references are left."""
    with open(os.path.join(path, "manifest.json"), "rb") as f:
        text = f.read()
    TEXTS.append(text.decode())
    wanted = {"manifest.json"} | set(st.manifest.referenced(s._m))
    assert set(os.listdir(path)) == wanted


def _prepare(tmp_path, populated=True):
    base = str(tmp_path / "base")
    s = _open(base)
    if populated:
        populate(s)
    return base, dump(s)


def _run(tmp_path, base, op, cut_at, fat):
    work = str(tmp_path / "work")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work)
    s = _open(work)
    fs = CutFs(cut_at, fat)
    s._fs = fs
    try:
        op(s)
    except PowerCut as e:
        TEXTS.append(str(e))
        fs.aftermath()
        return work, True
    return work, False


@pytest.mark.parametrize("fat", [False, True], ids=["littlefs-like", "fat-rename"])
@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_power_cut_at_every_step(tmp_path, name, fat):
    op = OPERATIONS[name]
    base, old = _prepare(tmp_path)
    work, cut = _run(tmp_path, base, op, None, fat)
    assert not cut
    steps = None
    s = _open(work)
    new = dump(s)
    assert new != old
    # Count the steps of the operation alone.
    shutil.rmtree(work)
    shutil.copytree(base, work)
    s = _open(work)
    counter = CutFs(None, fat)
    s._fs = counter
    op(s)
    steps = counter.steps
    assert any(op_ == "rename" for op_, _ in steps) and any(op_ == "fsync" for op_, _ in steps)
    seen_new = False
    outcomes = []
    for k in range(len(steps) + 1):
        work, cut = _run(tmp_path, base, op, k, fat)
        assert cut == (k < len(steps))
        s = _open(work)
        got = dump(s)
        assert got in (old, new), "cut at step %d %s gave a mix" % (k, steps[k] if k < len(steps) else "-")
        if seen_new:
            assert got == new, "cut at step %d went back to the old content" % k
        seen_new = got == new
        outcomes.append("N" if seen_new else "o")
        _check_clean(work, s)
        assert dump(_open(work)) == got  # recovery is done once; reopening changes nothing
    assert outcomes[0] == "o" and outcomes[-1] == "N", outcomes
    # The commit point is the manifest rename (or, on FAT, the removal of the old manifest before it, after
    # which recovery promotes manifest.tmp).
    first_new = outcomes.index("N")
    op_, file_ = steps[first_new - 1]
    assert file_ in ("manifest.tmp", "manifest.json") and op_ in ("rename", "rename:remove-target"), steps


@pytest.mark.parametrize("name", ["update_contract", "set_oem", "remove_contract"])
def test_power_cut_during_recovery(tmp_path, name):
    """A second cut while the store recovers from the first still leaves old or new content."""
    op = OPERATIONS[name]
    base, old = _prepare(tmp_path)
    work, _ = _run(tmp_path, base, op, None, True)
    new = dump(_open(work))
    counter = CutFs(None, True)
    shutil.rmtree(work)
    shutil.copytree(base, work)
    s = _open(work)
    s._fs = counter
    op(s)
    for k in range(len(counter.steps)):
        first, _ = _run(tmp_path, base, op, k, True)
        snapshot = str(tmp_path / "after-first-cut")
        shutil.rmtree(snapshot, ignore_errors=True)
        shutil.copytree(first, snapshot)
        rec = CutFs(None, True)
        expected = dump(_open(first, rec))
        assert expected in (old, new)
        for j in range(len(rec.steps)):
            shutil.rmtree(first)
            shutil.copytree(snapshot, first)
            fs = CutFs(j, True)
            try:
                _open(first, fs)
            except PowerCut:
                fs.aftermath()
            again = _open(first)
            assert dump(again) == expected, (k, j)
            _check_clean(first, again)


def test_power_cut_while_creating_the_store(tmp_path):
    path = str(tmp_path / "new")
    counter = CutFs()
    _open(path, counter)
    for k in range(len(counter.steps)):
        shutil.rmtree(path, ignore_errors=True)
        fs = CutFs(k)
        with pytest.raises(PowerCut):
            _open(path, fs)
        fs.aftermath()
        s = _open(path)
        assert dump(s) == {"roots": {}, "oem": None, "contracts": {}, "meta": {}}
        _check_clean(path, s)


def test_power_cut_on_the_first_install_into_an_empty_store(tmp_path):
    base, old = _prepare(tmp_path, populated=False)
    op = OPERATIONS["install_contract"]
    for k in range(40):
        work, cut = _run(tmp_path, base, op, k, False)
        s = _open(work)
        got = dump(s)
        assert got == old or list(got["contracts"]) == ["DEABCC123ABC58"]
        _check_clean(work, s)
        if not cut:
            assert got != old
            break
    else:
        raise AssertionError("the install never finished")


def test_failed_step_without_power_loss_keeps_the_object_usable(tmp_path):
    """An OSError at any step (a full disk, say) fails the operation; the same object then shows what is
    on disk (old or new) and later writes work."""

    class FailOnce(CutFs):
        def _step(self, op, path, torn=None):
            n = len(self.steps)
            self.steps.append(op)
            if n == self.cut_at:
                raise OSError(28, "No space left on device")

    base, old = _prepare(tmp_path)
    op = OPERATIONS["update_contract"]
    counter = CutFs()
    work = str(tmp_path / "w")
    shutil.copytree(base, work)
    s = _open(work)
    s._fs = counter
    op(s)
    steps = len(counter.steps)
    new = dump(s)
    for k in range(steps):
        shutil.rmtree(work)
        shutil.copytree(base, work)
        s = _open(work)
        s._fs = FailOnce(k)
        try:
            op(s)
        except st.StoreError:  # the OSError, named
            pass
        got = dump(s)
        assert got in (old, new)
        assert dump(_open(work)) == got
        s.set_meta("after", k)
        assert _open(work).meta()["after"] == k


def test_bad_input_loses_nothing_and_leaks_nothing(tmp_path):
    base, old = _prepare(tmp_path)
    s = _open(base)
    before = sorted(os.listdir(base))
    bad = [
        lambda: s.install_contract([der(b"x")], KEYS["k3"][:31], "DEABCC123ABC59", 0, 1),
        lambda: s.install_contract([der(b"x")[:-1]], KEYS["k3"], "DEABCC123ABC59", 0, 1),
        lambda: s.install_contract([der(b"x", 2049)], KEYS["k3"], "DEABCC123ABC59", 0, 1),
        lambda: s.set_oem([der(b"x")], KEYS["oem-2"] + b"\x00"),
        lambda: s.set_oem([der(b"x")], b"\xff" * 32),
        lambda: s.set_meta("k", KEYS["k3"]),
        lambda: s.private_key("missing"),
        lambda: s.add_root(der(b"x"), KEYS["k3"] + b"\x00"),  # a key passed where an SKI belongs: too long
    ]
    for fn in bad:
        with pytest.raises((PeerError, UsageError)) as e:
            fn()
        TEXTS.extend([str(e.value), repr(e.value)])
    assert sorted(os.listdir(base)) == before and dump(_open(base)) == old


def test_no_private_key_bytes_in_any_output(tmp_path):
    """Runs last in this module: searches what the other tests collected (when they ran) and a fresh round."""
    base, _ = _prepare(tmp_path)
    s = _open(base)
    TEXTS.extend([repr(s), str(s), repr(s.oem()), json.dumps(s.meta())])
    TEXTS.extend(repr(c) for c in s.contracts())
    TEXTS.extend(repr(r) for r in s.roots())
    TEXTS.append(repr(s.contract()))
    with open(os.path.join(base, "manifest.json")) as f:
        TEXTS.append(f.read())
    blob = "\n".join(TEXTS)
    for key in KEYS.values():
        for needle in (key.hex(), key.hex().upper()):
            assert needle not in blob
        assert key not in blob.encode("latin-1", "replace")
        assert key.decode("latin-1") not in blob
