# The store's filesystem faults on both interpreters: a step that fails with OSError (a full disk, a
# read-only or forbidden directory) becomes StoreError naming the file and what was not written, the store
# reads back as before and stays usable; the EV's contract installation turns it into a PncError ("store").

import os

import pncfix

from evpilot.ev.contracts import ContractManager, PncError
from evpilot.store import keystore as st
from evpilot.store.fs import Fs

import test_pnc_ev as pe

ENOSPC = 28
EROFS = 30


class Failing(Fs):
    """Fs whose open_write fails (from the n-th call on) with errno `code`."""

    def __init__(self, code, after=0):
        self.code = code
        self.after = after
        self.opened = 0

    def open_write(self, path):
        self.opened += 1
        if self.opened > self.after:
            raise OSError(self.code, "injected")
        return Fs.open_write(self, path)


def _raises(fn, *args):
    try:
        fn(*args)
    except st.StoreError as e:
        return e
    assert False, "expected StoreError"


def _der(tag):
    body = tag * 60
    return b"\x30" + bytes([len(body)]) + body


KEY = bytes(range(1, 33))


def test_a_failed_write_at_any_file_is_a_store_error_and_changes_nothing():
    s = st.Store(pe._fresh_dir() + "/store")
    s.install_contract([_der(b"a")], KEY, "DEABC1", 0, 10)
    s.set_meta("k", 1)
    before = pe.snapshot(s), s.meta(), sorted(os.listdir(s.directory))
    for code in (ENOSPC, EROFS):
        for after in range(4):  # the 1st, 2nd, 3rd data file or the manifest
            s._fs = Failing(code, after)
            e = _raises(s.install_contract, [_der(b"b"), _der(b"c")], KEY, "DEABC2", 0, 20)
            assert e.file.startswith(s.directory + "/"), e.file
            assert "not written: contract DEABC2 installed" in str(e) and "as before" in str(e), str(e)
            s._fs = Fs()
            assert (pe.snapshot(s), s.meta(), sorted(os.listdir(s.directory))) == before
            assert (pe.snapshot(st.Store(s.directory)), sorted(os.listdir(s.directory))) == (before[0], before[2])
    s.install_contract([_der(b"b")], KEY, "DEABC2", 0, 20)  # still usable
    assert [c.name for c in st.Store(s.directory).contracts()] == ["DEABC1", "DEABC2"]


def test_a_store_that_cannot_be_opened_names_the_directory():
    base = pe._fresh_dir()
    with open(base + "/file", "wb") as f:
        f.write(b"x")
    e = _raises(st.Store, base + "/file")
    assert e.file == base + "/file" and "cannot be read as the store directory" in str(e), str(e)
    e = _raises(st.Store, base + "/missing/store")
    assert e.file == base + "/missing/store" and "cannot be created" in str(e), str(e)


def test_installation_with_a_store_that_cannot_write_is_a_pnc_error_and_keeps_the_contract():
    s = pe.make_store("contract_leaf")
    before = pe.snapshot(s)
    m, res, sig = pe.install_round_trip(s, ContractManager(s, now_s=pncfix.NOW_S))
    s._fs = Failing(ENOSPC)
    try:
        m.accept("CertificateInstallationRes", res, sig)
        assert False, "expected PncError"
    except PncError as e:
        assert e.stage == "store" and "not written" in str(e), str(e)
    s._fs = Fs()
    assert pe.snapshot(st.Store(s.directory)) == before
