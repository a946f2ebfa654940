# The store's file layer (evpilot.store.files) on both interpreters: a commit writes the data files and the
# manifest in order and removes the obsolete ones; a step that fails before the commit point (a data file,
# the temporary manifest, the rename) takes back everything the update wrote and is a StoreError naming
# that step's path; a directory sync that fails after the commit is handed back, the update staying in (and
# the Store says so in its log); reads over their limit, a held lock and OSError texts. The Store's own
# fault and power-cut tests: test_store_faults.py, tests/test_store_powerloss.py.

import os

try:
    import errno
except ImportError:
    import uerrno as errno

from evpilot.store import files
from evpilot.store import keystore as st
from evpilot.store.fs import Fs

from test_store import _fresh_dir

EACCES = errno.EACCES  # one every port's errno has (the webassembly port's numbers are emscripten's)
EIO = errno.EIO


class Faulty(Fs):
    """Fs failing with OSError(code) at the first call of method `at` (for paths ending in `suffix`)."""

    def __init__(self, at, code=EIO, suffix=""):
        self.at = at
        self.code = code
        self.suffix = suffix

    def _maybe(self, name, path):
        if name == self.at and path.endswith(self.suffix):
            self.at = None
            raise OSError(self.code, "injected")

    def open_write(self, path):
        self._maybe("open_write", path)
        return Fs.open_write(self, path)

    def rename(self, old, new):
        self._maybe("rename", old)
        Fs.rename(self, old, new)

    def sync_dir(self, path):
        self._maybe("sync_dir", path)
        Fs.sync_dir(self, path)

    def lock(self, directory, wait_ms=0):
        self._maybe("lock", directory)
        return Fs.lock(self, directory)


def _put(d, name, data):
    with open(d + "/" + name, "wb") as f:
        f.write(data)


def _get(d, name):
    with open(d + "/" + name, "rb") as f:
        return f.read()


def _commit(fs, d):
    return files.commit(fs, d, [(d + "/f2.der", b"two"), (d + "/f3.key", b"three")], d + "/m.tmp",
                        d + "/m.json", b"new", [d + "/f1.der"], "the test update")


def _dir_with_old():
    d = _fresh_dir()
    _put(d, "m.json", b"old")
    _put(d, "f1.der", b"one")
    return d


def test_commit_writes_then_replaces_then_removes_the_obsolete():
    d = _dir_with_old()
    assert _commit(Fs(), d) is None
    assert sorted(os.listdir(d)) == ["f2.der", "f3.key", "m.json"]
    assert _get(d, "m.json") == b"new" and _get(d, "f2.der") == b"two" and _get(d, "f3.key") == b"three"


def test_a_failed_step_before_the_commit_takes_everything_back():
    for at, suffix, named in (("open_write", "f2.der", "f2.der"), ("open_write", "f3.key", "f3.key"),
                              ("open_write", "m.tmp", "m.tmp"), ("rename", "m.tmp", "m.tmp")):
        d = _dir_with_old()
        try:
            _commit(Faulty(at, EACCES, suffix), d)
        except files.StoreError as e:
            assert e.file == d + "/" + named, (at, suffix, e.file)
            assert "not written: the test update (the store is as before)" in str(e), str(e)
            assert e.problem.startswith("injected [EACCES]; "), str(e)
        else:
            assert False, "no StoreError for %s %s" % (at, suffix)
        assert sorted(os.listdir(d)) == ["f1.der", "m.json"] and _get(d, "m.json") == b"old", (at, suffix)


def test_a_failed_sync_after_the_commit_is_handed_back_and_the_update_stays():
    d = _dir_with_old()
    late = _commit(Faulty("sync_dir"), d)
    assert isinstance(late, OSError) and files.os_reason(late) == "injected [EIO]"
    assert _get(d, "m.json") == b"new"  # committed
    assert "f1.der" in os.listdir(d)  # the obsolete file waits for the next open


def test_the_store_keeps_an_update_whose_sync_failed_and_says_so():
    lines = []
    s = st.Store(_fresh_dir() + "/store", log=lines.append)
    s._fs = Faulty("sync_dir")
    s.set_meta("k", 1)
    assert s.meta() == {"k": 1} and st.Store(s.directory).meta() == {"k": 1}
    assert lines[-1] == "store: metadata k set committed; syncing the directory failed: injected [EIO]", lines


def test_remove_counts_what_it_removed_and_passes_over_the_rest():
    d = _dir_with_old()
    assert files.remove(Fs(), [d + "/f1.der", d + "/missing", d + "/m.json"]) == 2
    assert os.listdir(d) == []


def test_read_is_bounded_and_names_the_file():
    d = _dir_with_old()
    assert files.read(Fs(), d + "/m.json", "m.json", 3) == b"old"
    for path, limit, problem in ((d + "/m.json", 2, "m.json: over 2 bytes"), (d + "/none", 9, "none: cannot be read")):
        try:
            files.read(Fs(), path, path[len(d) + 1:], limit)
        except files.StoreError as e:
            assert str(e).startswith(problem), str(e)
        else:
            assert False, "no StoreError for " + path


def test_a_held_lock_is_a_store_error_naming_the_directory():
    d = _fresh_dir()
    try:
        files.lock(Faulty("lock", 11), d)
    except files.StoreError as e:
        assert e.file == d and e.problem.startswith("locked: ") and e.problem.endswith("(nothing written)")
    else:
        assert False, "no StoreError"
    files.open_directory(Fs(), d + "/new")
    assert os.listdir(d) == ["new"]


def test_os_reason_names_the_errno():
    assert files.os_reason(OSError(EACCES)) == "EACCES"
    assert files.os_reason(OSError(EACCES, "Permission denied")) == "Permission denied [EACCES]"
    assert files.os_reason(OSError("plain")) == "plain"


def test_store_error_is_one_class_for_the_store():
    assert st.StoreError is files.StoreError
    e = st.StoreError("f1.der", "damaged")
    assert str(e) == "f1.der: damaged" and e.file == "f1.der" and e.problem == "damaged"
