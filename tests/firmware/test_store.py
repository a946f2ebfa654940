# The certificate and key store on both interpreters: roots, OEM provisioning, contracts chosen by eMAID and
# validity, atomic update, reopen, recovery of leftovers, damaged files reported by name, nothing leaked.
# Power cuts at every filesystem step: tests/test_store_powerloss.py (CPython).

import json
import os

from evpilot.errors import PeerError, UsageError
from evpilot.store import keystore as st

_count = [0]


def _fresh_dir():
    """An empty directory: a temporary one on CPython, one under /tmp in MicroPython's in-memory FS."""
    try:
        import tempfile

        return tempfile.mkdtemp(prefix="evpilot-store-")
    except ImportError:
        pass
    if "tmp" not in os.listdir("/"):
        os.mkdir("/tmp")
    _count[0] += 1
    path = "/tmp/evpilot-store-%d" % _count[0]
    if path[5:] in os.listdir("/tmp"):
        for n in os.listdir(path):
            os.remove(path + "/" + n)
        os.rmdir(path)
    os.mkdir(path)
    return path


def _der(tag, size=300):
    """A stand-in certificate: one DER SEQUENCE of `size` bytes in total (the store does not parse X.509)."""
    body = (tag * size)[: size - 4]
    return b"\x30\x82" + len(body).to_bytes(2, "big") + body


def _key(label):
    import hashlib

    return hashlib.sha256(label.encode()).digest()  # these all happen to be < n (checked by the store)


def _raises(cls, fn, *args):
    try:
        fn(*args)
    except cls as e:
        return e
    assert False, "expected " + cls.__name__


def _files(root):
    return sorted(os.listdir(root))


KEYS = [_key("oem"), _key("contract-a"), _key("contract-b"), _key("contract-c")]


def _all_key_texts():
    out = []
    for k in KEYS:
        out += [k, k.hex().encode(), k.hex().upper().encode()]
    return out


def _assert_no_keys(text):
    if isinstance(text, str):
        text = text.encode()
    for k in _all_key_texts():
        assert k not in text


def test_new_store_is_empty_with_a_manifest():
    root = _fresh_dir() + "/store"  # the directory is created
    s = st.Store(root)
    assert s.roots() == [] and s.contracts() == [] and s.oem() is None and s.meta() == {}
    assert s.contract() is None
    assert _files(root) == ["manifest.json"]
    assert repr(s) == "<Store %s: 0 roots, no OEM provisioning, 0 contracts>" % root
    assert st.Store(root).contracts() == []


def test_roots_add_list_replace_remove():
    root = _fresh_dir()
    s = st.Store(root)
    a, b = _der(b"A"), _der(b"B", 500)
    assert s.add_root(a, b"\x01\x02", "CN=V2G Root A") == "0102"
    assert s.add_root(b, "ABCDEF", "CN=V2G Root B") == "abcdef"
    assert [(r.name, r.subject, r.size) for r in s.roots()] == [("0102", "CN=V2G Root A", 300),
                                                               ("abcdef", "CN=V2G Root B", 500)]
    assert s.root("0102") == a and s.root("abcdef") == b
    # Replacing a root under the same SKI keeps one file for it.
    a2 = _der(b"a", 320)
    s.add_root(a2, "0102", "CN=V2G Root A (new)")
    assert s.root("0102") == a2 and len(s.roots()) == 2
    assert len(_files(root)) == 3  # manifest + 2 roots
    s.remove_root("0102")
    assert [r.name for r in s.roots()] == ["abcdef"] and len(_files(root)) == 2
    _raises(UsageError, s.remove_root, "0102")
    _raises(UsageError, s.root, "0102")
    for bad in ("", "xyz", "abc", "00" * 33):
        _raises(PeerError, s.add_root, a, bad)
    # At most MAX_ROOTS; a replacement still works when full.
    for i in range(st.MAX_ROOTS - 1):
        s.add_root(_der(bytes([65 + i]), 64), bytes([i]))
    _raises(PeerError, s.add_root, a, "ff")
    s.add_root(a, "abcdef")
    assert len(s.roots()) == st.MAX_ROOTS and s.root("abcdef") == a
    assert [r.name for r in st.Store(root).roots()] == [r.name for r in s.roots()]


def test_oem_provisioning_chain_and_key():
    root = _fresh_dir()
    s = st.Store(root)
    chain = [_der(b"L"), _der(b"2"), _der(b"1")]
    s.set_oem(chain, KEYS[0], "WMIV1234567890ABCD")
    o = s.oem()
    assert o.pcid == "WMIV1234567890ABCD" and o.chain == chain
    assert s.private_key(st.OEM) == KEYS[0]
    s.set_oem(chain[:1], KEYS[1])  # replaced: one chain, the new key, the old files gone
    assert st.Store(root).oem().chain == chain[:1] and st.Store(root).private_key("oem") == KEYS[1]
    assert len(_files(root)) == 3


def _two_contracts(s):
    s.install_contract([_der(b"a"), _der(b"s")], KEYS[1], "DE-ABC-C123ABC56", 1000, 5000)
    s.install_contract([_der(b"b"), _der(b"s")], KEYS[2], "DEABCC123ABC57", 2000, 9000)
    s.install_contract([_der(b"c"), _der(b"s")], KEYS[3], "DEABCC123ABC56", 4000, 7000, "a-renewal")


def test_contracts_selected_by_emaid_and_validity():
    s = st.Store(_fresh_dir())
    _two_contracts(s)
    assert [(c.name, c.emaid) for c in s.contracts()] == [
        ("DEABCC123ABC56", "DEABCC123ABC56"), ("DEABCC123ABC57", "DEABCC123ABC57"), ("a-renewal", "DEABCC123ABC56")]
    # No trusted time: the one valid longest.
    assert s.contract().name == "DEABCC123ABC57"
    # By eMAID (hyphens and case ignored): the renewal runs longer.
    c = s.contract("de-abc-c123abc56")
    assert c.name == "a-renewal" and c.chain == [_der(b"c"), _der(b"s")] and c.certificate == _der(b"c")
    assert s.private_key(c.name) == KEYS[3]
    # With time: only contracts valid then.
    assert s.contract("DEABCC123ABC56", 1500).name == "DEABCC123ABC56"
    assert s.contract("DEABCC123ABC56", 4500).name == "a-renewal"
    assert s.contract("DEABCC123ABC56", 7001) is None
    assert s.contract(None, 1500).name == "DEABCC123ABC56"
    assert s.contract(None, 8000).name == "DEABCC123ABC57"
    assert s.contract(None, 999) is None and s.contract(None, 9001) is None
    assert s.contract("DEXYZ") is None
    assert s.contract_named("DEABCC123ABC57").not_after == 9000
    _raises(UsageError, s.contract_named, "nope")
    s.remove_contract("a-renewal")
    assert s.contract("DEABCC123ABC56").name == "DEABCC123ABC56"
    _raises(UsageError, s.remove_contract, "a-renewal")
    _raises(UsageError, s.private_key, "a-renewal")


def test_contract_update_is_one_atomic_replacement():
    root = _fresh_dir()
    s = st.Store(root)
    name = s.install_contract([_der(b"1"), _der(b"s")], KEYS[1], "DEABCC123ABC56", 0, 100)
    before = _files(root)
    assert len(before) == 4
    # CertificateUpdateRes: the same contract name gets a new chain and key in one step.
    assert s.install_contract([_der(b"2"), _der(b"t"), _der(b"u")], KEYS[2], "DEABCC123ABC56", 50, 500) == name
    after = _files(root)
    assert len(after) == 5 and not (set(before) - {"manifest.json"}) & set(after)
    again = st.Store(root)
    c = again.contract()
    assert (c.not_before, c.not_after, c.chain) == (50, 500, [_der(b"2"), _der(b"t"), _der(b"u")])
    assert again.private_key(name) == KEYS[2]


def test_reopen_reads_everything_back():
    root = _fresh_dir()
    s = st.Store(root)
    s.add_root(_der(b"R"), "11", "CN=Root")
    s.set_oem([_der(b"O")], KEYS[0], "PCID")
    _two_contracts(s)
    s.set_meta("vin", "WVWZZZ1JZXW000001")
    s.set_meta("renew_days", 21)
    t = st.Store(root)
    assert t.root("11") == _der(b"R") and t.oem().chain == [_der(b"O")]
    assert [c.name for c in t.contracts()] == [c.name for c in s.contracts()]
    for c in t.contracts():
        assert t.contract_named(c.name).chain == s.contract_named(c.name).chain
        assert t.private_key(c.name) == s.private_key(c.name)
    assert t.meta() == {"vin": "WVWZZZ1JZXW000001", "renew_days": 21}
    t.set_meta("vin", None)
    assert st.Store(root).meta() == {"renew_days": 21}
    for bad in ({1, 2}, b"ab", [object()], {1: 2}):
        _raises(UsageError, t.set_meta, "x", bad)
    _raises(PeerError, t.set_meta, "big", "x" * st.MAX_META)
    assert st.Store(root).meta() == {"renew_days": 21}


def test_bad_input_is_refused_and_loses_nothing():
    root = _fresh_dir()
    s = st.Store(root)
    s.install_contract([_der(b"1")], KEYS[1], "DEABCC123ABC56", 0, 100)
    files = _files(root)
    n = st.MAX_CERT + 1
    big = b"\x30\x82" + (n - 4).to_bytes(2, "big") + bytes(n - 4)
    e = _raises(PeerError, s.add_root, big, "01")
    assert "2048" in str(e)
    assert len(_der(b"x", st.MAX_CERT)) == st.MAX_CERT
    s.add_root(_der(b"x", st.MAX_CERT), "01")  # exactly the limit is fine
    s.remove_root("01")
    cases = [
        (s.add_root, (_der(b"x")[:-1], "01")),  # truncated DER
        (s.add_root, (_der(b"x") + b"\x00", "01")),  # trailing data
        (s.add_root, (b"\x04\x02ab", "01")),  # not a SEQUENCE
        (s.add_root, (b"", "01")),
        (s.install_contract, ([], KEYS[2], "DEABCC123ABC57", 0, 1)),
        (s.install_contract, ([_der(b"1")] * 5, KEYS[2], "DEABCC123ABC57", 0, 1)),
        (s.install_contract, ([_der(b"1")], bytes(32), "DEABCC123ABC57", 0, 1)),  # d = 0
        (s.install_contract, ([_der(b"1")], b"\xff" * 32, "DEABCC123ABC57", 0, 1)),  # d >= n
        (s.install_contract, ([_der(b"1")], KEYS[2][:31], "DEABCC123ABC57", 0, 1)),
        (s.install_contract, ([_der(b"1")], KEYS[2], "DE ABC", 0, 1)),
        (s.install_contract, ([_der(b"1")], KEYS[2], "DEABCC123ABC57", 5, 1)),
        (s.set_oem, ([_der(b"1")[:-3]], KEYS[0])),
    ]
    for fn, args in cases:
        e = _raises(PeerError, fn, *args)
        _assert_no_keys(str(e))
    _raises(UsageError, s.install_contract, [_der(b"1")], KEYS[2], "DEABCC123ABC57", 0, 1, "bad name!")
    _raises(UsageError, s.install_contract, [_der(b"1")], KEYS[2], "DEABCC123ABC57", 0, 1, "oem")
    assert _files(root) == files
    assert st.Store(root).private_key("DEABCC123ABC56") == KEYS[1]


def _write_raw(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _read_raw(path):
    with open(path, "rb") as f:
        return f.read()


def test_damaged_files_are_reported_by_name():
    root = _fresh_dir()
    s = st.Store(root)
    s.add_root(_der(b"R"), "11")
    _two_contracts(s)
    m = json.loads(_read_raw(root + "/manifest.json").split(b"\n")[0])
    best = m["contracts"]["DEABCC123ABC57"]
    leaf = best["chain"][0][0]
    _write_raw(root + "/" + leaf, _read_raw(root + "/" + leaf)[:100])  # truncated
    t = st.Store(root)
    e = _raises(st.StoreError, t.contract_named, "DEABCC123ABC57")
    assert e.file == leaf and leaf in str(e) and "100 bytes where 300" in str(e)
    # contract() skips the damaged one for the next best, and says so in the log.
    lines = []
    t = st.Store(root, log=lines.append)
    assert t.contract().name == "a-renewal"
    assert any(leaf in line for line in lines)
    e = _raises(st.StoreError, t.contract, "DEABCC123ABC57")
    assert e.file == leaf
    # Same size, different bytes: the check value catches it.
    key = best["key"][0]
    _write_raw(root + "/" + key, bytes(32))
    e = _raises(st.StoreError, t.private_key, "DEABCC123ABC57")
    assert e.file == key and "check value" in str(e)
    os.remove(root + "/" + m["roots"]["11"]["cert"][0])
    e = _raises(st.StoreError, t.root, "11")
    assert "missing" in str(e)
    assert t.private_key("a-renewal") == KEYS[3]  # the rest is intact


def test_damaged_manifest_is_reported_and_nothing_removed():
    root = _fresh_dir()
    s = st.Store(root)
    _two_contracts(s)
    files = _files(root)
    good = _read_raw(root + "/manifest.json")
    for bad, why in ((good[:-20], "check value"), (good[:10], "check value"), (b"", "check value"),
                     (b"{}\n" + st.manifest.check_value(b"{}").encode() + b"\n", "not a store manifest"),
                     (b"[1\n" + st.manifest.check_value(b"[1").encode() + b"\n", "not a store manifest")):
        _write_raw(root + "/manifest.json", bad)
        e = _raises(st.StoreError, st.Store, root)
        assert e.file == "manifest.json" and why in str(e), str(e)
        assert _files(root) == files
    os.remove(root + "/manifest.json")
    e = _raises(st.StoreError, st.Store, root)
    assert "missing" in str(e) and "9 data files" in str(e)
    _write_raw(root + "/manifest.json", good)
    assert len(st.Store(root).contracts()) == 3


def test_recovery_removes_leftovers_and_promotes_a_whole_manifest_tmp():
    root = _fresh_dir()
    s = st.Store(root)
    s.install_contract([_der(b"1")], KEYS[1], "DEABCC123ABC56", 0, 100)
    old_manifest = _read_raw(root + "/manifest.json")
    # Leftovers of an update cut short: an unreferenced data file and a torn manifest.tmp. A file that is not
    # the store's own stays.
    _write_raw(root + "/f99.der", b"\x30\x00")
    _write_raw(root + "/manifest.tmp", old_manifest[:30])
    _write_raw(root + "/README", b"not ours")
    lines = []
    t = st.Store(root, log=lines.append)
    assert _files(root) == sorted(["README", "manifest.json"] + [n for n in _files(root) if n.startswith("f")])
    assert "f99.der" not in _files(root) and "manifest.tmp" not in _files(root)
    assert lines == ["store: recovery removed 2 of 2 leftover files"]
    # FAT's rename over a file is remove-then-rename: a cut between leaves only the whole new manifest.tmp.
    t.install_contract([_der(b"2")], KEYS[2], "DEABCC123ABC56", 0, 200)
    new_manifest = _read_raw(root + "/manifest.json")
    os.remove(root + "/manifest.json")
    _write_raw(root + "/manifest.tmp", new_manifest)
    u = st.Store(root)
    assert u.contract().not_after == 200 and u.private_key("DEABCC123ABC56") == KEYS[2]
    assert "manifest.tmp" not in _files(root) and _read_raw(root + "/manifest.json") == new_manifest


def test_no_key_bytes_in_any_output():
    root = _fresh_dir()
    lines = []
    s = st.Store(root, log=lines.append)
    s.set_oem([_der(b"O")], KEYS[0], "PCID")
    _two_contracts(s)
    s.set_meta("note", "hello")
    texts = [repr(s), str(s), repr(s.oem()), _read_raw(root + "/manifest.json")]
    texts += [repr(c) for c in s.contracts()] + [repr(s.contract()), repr(s.contract_named("a-renewal"))]
    texts += lines + [json.dumps(s.meta())]
    for fn, args in ((s.install_contract, ([_der(b"1")], KEYS[1][:31], "DEABCC123ABC57", 0, 1)),
                     (s.set_oem, ([_der(b"1")], KEYS[2] + b"\x00")), (s.private_key, ("nope",))):
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - every error's text is checked
            texts += [str(e), repr(e)]
    for text in texts:
        _assert_no_keys(text)
