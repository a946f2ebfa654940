# The certificate and key store: V2G roots, the OEM provisioning chain and key, contract chains and keys,
# small JSON metadata, in one directory of the board's filesystem.
#
# How this works
# --------------
# One manifest (manifest.json) says what the store holds; every certificate and key lives in its own data
# file named f<n>.der / f<n>.key, written once under a fresh number and never rewritten. The manifest records
# each data file's name, size and a SHA-256-based check value, plus the descriptive fields (SKI, subject,
# eMAID, validity) and the metadata. An update, however many files it touches, is:
#   1. write each new data file under a fresh name; write, fsync (where the platform has it), close;
#   2. write the new manifest to manifest.tmp the same way: JSON body, newline, check value of the body;
#   3. rename manifest.tmp over manifest.json: the single commit point;
#   4. sync the directory (POSIX; os.sync where a MicroPython port has it), then remove the files the old
#      manifest referenced and the new one does not.
# A reader only follows manifest.json, so it sees the old complete set or the new one, never a mix. On open,
# recovery takes manifest.json if it is whole (check value matches), else a whole manifest.tmp (promoted by
# renaming it), then removes manifest.tmp and every f<n> file the manifest does not reference -- the
# leftovers of an update cut short before or after its commit. A missing or damaged manifest with no whole
# manifest.tmp beside data files raises StoreError and deletes nothing.
#
# What this relies on from the filesystem: a file written and closed (fsynced where os.fsync exists) before
# a rename is whole after power loss, and the rename is all or nothing. littlefs (the MicroPython default on
# most boards) gives both: all its operations are copy-on-write and a power cut falls back to the last
# committed state. MicroPython's FAT driver does not: its rename over an existing file is remove-then-rename
# (fat_vfs_rename), so a cut between the two leaves only manifest.tmp -- which recovery promotes -- and FAT
# metadata itself is not power-safe; use littlefs for the store. On CPython/POSIX, rename is os.replace and
# the directory is fsynced after it.
#
# Keys stay home (DESIGN principle 6): private keys are read back only through private_key(name), for the
# crypto code. No repr, str, error message or log line carries key bytes; the manifest holds only a key
# file's name, size and check value.
#
# Every filesystem step goes through one Fs object (injectable), so tests can cut power between any two;
# the file-level layer over it (the writer lock, whole-file writes, the commit's write-rename-sync order,
# OSError turned into StoreError) is store/files.py. This module is the Store and its manifest logic.
#
# Several processes (a provisioning tool and the EV, say): one writer at a time. Every update takes the
# Fs lock (flock on the directory: released by the kernel if the writer dies), re-reads manifest.json,
# applies its change to what is on disk now (so no other writer's contract is lost and the next data-file
# number is fresh: names stay unique), commits and unlocks; recovery on open (promoting manifest.tmp,
# removing leftovers) runs under the lock too, so it never deletes another writer's files in flight. A
# reader keeps the manifest it read (a consistent snapshot); when a data file it names has gone (another
# process replaced it), the reader re-reads manifest.json once and answers from the new snapshot.
#
# Faults: any OSError of an update (ENOSPC, EROFS, EACCES, EIO, ...) removes what the update wrote before
# its commit and raises StoreError naming the path and what was not written; the store stays as it was.

import json

from evpilot.errors import PeerError, UsageError
from evpilot.pnc.keytransport import is_valid_scalar
from evpilot.store import files
from evpilot.store import fs as fs_module
from evpilot.store import manifest
from evpilot.store.files import StoreError  # noqa: F401 (part of this module's API)

MANIFEST = "manifest.json"
MANIFEST_TMP = "manifest.tmp"
OEM = "oem"  # private_key(OEM): the OEM provisioning key
MAX_CERT = 2048  # ISO 15118-2 Annex F allows 800 bytes; leave room, refuse anything larger
MAX_CHAIN = 4  # leaf + 2 Sub-CAs (+ one spare)
MAX_ROOTS = 20  # ListOfRootCertificateIDs carries at most 20
MAX_CONTRACTS = 8
MAX_META = 1024  # the metadata as compact JSON
MAX_MANIFEST = 16384
MAX_NAME = 32
KEY_LEN = 32


def _check_name(name, what):
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise UsageError("%s must be a string of 1 to %d characters" % (what, MAX_NAME))
    for ch in name:
        if not (ch.isalpha() or ch.isdigit() or ch in "-_"):
            raise UsageError("%s %r: only letters, digits, '-' and '_'" % (what, name))
    if name == OEM:
        raise UsageError("%s %r is reserved" % (what, name))


def normalize_emaid(emaid):
    """eMAIDs compare without hyphens and case-insensitively (ISO 15118-2 Annex H)."""
    return emaid.replace("-", "").upper()


def _check_der(der, what):
    """A certificate from the caller: bytes, at most MAX_CERT, one whole DER SEQUENCE (catches truncation)."""
    if not isinstance(der, (bytes, bytearray)):
        raise UsageError(what + " must be bytes (DER)")
    if len(der) > MAX_CERT:
        raise PeerError("%s is %d bytes, over the %d-byte limit" % (what, len(der), MAX_CERT))
    n = len(der)
    if n < 2 or der[0] != 0x30:
        raise PeerError(what + " is not a DER certificate (no SEQUENCE)")
    size = der[1]
    head = 2
    if size & 0x80:
        count = size & 0x7F
        if count not in (1, 2) or n < 2 + count:
            raise PeerError(what + " has a bad DER length")
        size = int.from_bytes(der[2:2 + count], "big")
        head = 2 + count
    if head + size != n:
        raise PeerError("%s: DER says %d bytes, got %d (truncated or trailing data)" % (what, head + size, n))
    return bytes(der)


def _check_key(key, what):
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_LEN or not is_valid_scalar(key):
        raise PeerError(what + " must be a P-256 private key: 32 bytes, 0 < d < n")
    return bytes(key)


class RootInfo:
    def __init__(self, name, subject, size):
        self.name = name  # the SKI in lowercase hex
        self.subject = subject
        self.size = size

    def __repr__(self):
        return "<RootInfo %s %r, %d bytes>" % (self.name, self.subject, self.size)


class ContractInfo:
    def __init__(self, name, emaid, not_before, not_after):
        self.name = name
        self.emaid = emaid
        self.not_before = not_before
        self.not_after = not_after

    def usable_at(self, now_s):
        return now_s is None or self.not_before <= now_s <= self.not_after

    def __repr__(self):
        return "<ContractInfo %s eMAID %s valid %d..%d>" % (self.name, self.emaid, self.not_before, self.not_after)


class Contract(ContractInfo):
    """A contract with its certificate chain (leaf first). Its private key: Store.private_key(name)."""

    def __init__(self, info, chain):
        super().__init__(info.name, info.emaid, info.not_before, info.not_after)
        self.chain = chain

    @property
    def certificate(self):
        return self.chain[0]

    def __repr__(self):
        return "<Contract %s eMAID %s valid %d..%d, %d certificates>" % (
            self.name, self.emaid, self.not_before, self.not_after, len(self.chain))


class OemProvisioning:
    def __init__(self, pcid, chain):
        self.pcid = pcid
        self.chain = chain

    def __repr__(self):
        return "<OemProvisioning PCID %s, %d certificates>" % (self.pcid, len(self.chain))


def _plain_json(v, depth):
    # MicroPython's json.dumps writes a set or bytes as text instead of refusing them: check the types.
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if depth <= 0:
        return False
    if isinstance(v, list):
        return all(_plain_json(x, depth - 1) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain_json(v[k], depth - 1) for k in v)
    return False



class Store:
    def __init__(self, root, fs=None, log=None):
        self.directory = root.rstrip("/") or "/"
        self._fs = fs or fs_module.Fs()
        self._log = log  # log(line) or None
        self._m = None
        self._broken = False
        self._open()

    def __repr__(self):
        m = self._m or manifest.empty()
        return "<Store %s: %d roots, %s, %d contracts>" % (
            self.directory, len(m["roots"]), "OEM provisioning" if m["oem"] else "no OEM provisioning",
            len(m["contracts"]))

    # --- opening and recovery ---------------------------------------------------------------------------

    def _path(self, name):
        return self.directory + "/" + name

    def _say(self, line):
        if self._log is not None:
            self._log("store: " + line)

    def _read_manifest(self, name):
        data = files.read(self._fs, self._path(name), name, MAX_MANIFEST)
        try:
            return manifest.decode(data)
        except ValueError as e:
            raise StoreError(name, e.args[0])

    def _open(self):
        fs = self._fs
        files.open_directory(fs, self.directory)
        lock = files.lock(fs, self.directory)
        try:
            self._recover(fs.listdir(self.directory))
        except OSError as e:
            raise StoreError(self.directory, "cannot open the store: " + files.os_reason(e))
        finally:
            fs.unlock(lock)

    def refresh(self):
        """Re-read manifest.json (another process may have written); True when it changed."""
        m = self._read_manifest(MANIFEST)
        if m == self._m:
            return False
        self._m = m
        self._broken = False
        return True

    def _fresh(self, fn, *args):
        # A reader's snapshot can name a data file another process has since replaced: re-read once.
        try:
            return fn(*args)
        except (StoreError, UsageError):
            try:
                changed = self.refresh()
            except StoreError:
                changed = False
            if not changed:
                raise
            return fn(*args)

    def _recover(self, names):
        fs = self._fs
        m = problem = None
        if MANIFEST in names:
            try:
                m = self._read_manifest(MANIFEST)
            except StoreError as e:
                problem = e
        if m is None and MANIFEST_TMP in names:
            try:
                m = self._read_manifest(MANIFEST_TMP)
            except StoreError:
                m = None
            if m is not None:  # an update cut between writing the new manifest and (FAT) its rename
                fs.rename(self._path(MANIFEST_TMP), self._path(MANIFEST))
                fs.sync_dir(self.directory)
                names.remove(MANIFEST_TMP)
                self._say("recovered the manifest from " + MANIFEST_TMP)
        if m is None:
            if problem is not None:
                raise problem
            data = [n for n in names if manifest.is_data_name(n)]
            if data:
                raise StoreError(MANIFEST, "missing, but %d data files are present; nothing removed" % len(data))
            m = manifest.empty()
            # a new store: an empty manifest, so data files never exist without one
            files.replace(fs, self._path(MANIFEST_TMP), self._path(MANIFEST), self._encode(m))
            fs.sync_dir(self.directory)
            names = [n for n in names if n != MANIFEST_TMP]
        self._m = m
        keep = manifest.referenced(m)
        stale = [n for n in names if n == MANIFEST_TMP or (manifest.is_data_name(n) and n not in keep)]
        # one not removed is harmless: the manifest does not reference it; tried again at the next open
        removed = files.remove(fs, [self._path(n) for n in stale])
        if stale:
            self._say("recovery removed %d of %d leftover files" % (removed, len(stale)))

    # --- writing ------------------------------------------------------------------------------------------

    @staticmethod
    def _encode(m):
        data = manifest.encode(m)
        if len(data) > MAX_MANIFEST:
            raise PeerError("the store manifest would exceed %d bytes" % MAX_MANIFEST)
        return data

    def _locked(self, fn, *args):
        """Run one update fn(*args) as the only writer, on the manifest as it is on disk now."""
        lock = files.lock(self._fs, self.directory)
        try:
            self._m = self._read_manifest(MANIFEST)  # another process may have committed since we read it
            self._broken = False
            return fn(*args)
        finally:
            self._fs.unlock(lock)

    def _update(self, m, new, obsolete, what):
        """Write the `new` files [(entry, data)], then commit manifest m; on failure re-read what is on disk
        (a failed step is a StoreError from files.commit, and the store is as before)."""
        if self._broken:
            raise StoreError(MANIFEST, "an earlier write failed and the state is unknown; reopen the store")
        data = self._encode(m)  # refuse an oversized manifest before writing anything
        try:
            late = files.commit(self._fs, self.directory, [(self._path(e[0]), c) for e, c in new],
                                self._path(MANIFEST_TMP), self._path(MANIFEST), data,
                                [self._path(n) for n in obsolete], what)
        except Exception:
            try:
                self._m = self._read_manifest(MANIFEST)
            except Exception:
                self._broken = True
            raise
        self._m = m  # committed: a later failure does not undo it
        if late is not None:  # only the sync failed
            self._say("%s committed; syncing the directory failed: %s" % (what, files.os_reason(late)))
            return
        self._say(what)

    def _draft(self):
        if self._broken:
            raise StoreError(MANIFEST, "an earlier write failed and the state is unknown; reopen the store")
        return json.loads(json.dumps(self._m))  # a deep copy to edit

    @staticmethod
    def _new_entry(m, data, ext):
        n = m["next"]
        m["next"] = n + 1
        return ["f%d.%s" % (n, ext), len(data), manifest.check_value(data)]

    def _new_set(self, m, chain, key, what):
        if not isinstance(chain, (list, tuple)) or not 0 < len(chain) <= MAX_CHAIN:
            raise PeerError("%s chain must hold 1 to %d certificates" % (what, MAX_CHAIN))
        ders = [_check_der(chain[i], "%s certificate %d" % (what, i)) for i in range(len(chain))]
        key = _check_key(key, what + " private key")
        new = [(self._new_entry(m, d, "der"), d) for d in ders]
        new.append((self._new_entry(m, key, "key"), key))
        return new

    @staticmethod
    def _set_names(s):
        """The data files of a chain-and-key set (the OEM provisioning set or a contract)."""
        return [e[0] for e in s["chain"]] + [s["key"][0]]

    # --- reading ------------------------------------------------------------------------------------------

    def _read_entry(self, entry, what):
        name, size, check = entry
        try:
            data = self._fs.read(self._path(name), size)
        except OSError:
            raise StoreError(name, "missing or unreadable (%s)" % what)
        if len(data) != size:
            raise StoreError(name, "%d bytes where %d were stored (%s)" % (len(data), size, what))
        if manifest.check_value(data) != check:
            raise StoreError(name, "check value mismatch, damaged (%s)" % what)
        return data

    def _read_chain(self, s, what):
        return [self._read_entry(s["chain"][i], "%s certificate %d" % (what, i)) for i in range(len(s["chain"]))]

    # --- V2G roots ----------------------------------------------------------------------------------------

    def add_root(self, der, ski, subject=""):
        """Add (or replace) a V2G root certificate, keyed by its subject key identifier; returns the key."""
        return self._locked(self._add_root, der, ski, subject)

    def _add_root(self, der, ski, subject=""):
        name = ski.hex() if isinstance(ski, (bytes, bytearray)) else str(ski).lower()
        if not 0 < len(name) <= 64 or len(name) % 2 or not all(c in "0123456789abcdef" for c in name):
            raise PeerError("root SKI must be 1 to 32 bytes (hex)")
        if not isinstance(subject, str) or len(subject) > 256:
            raise PeerError("root subject must be a string of at most 256 characters")
        der = _check_der(der, "root certificate")
        m = self._draft()
        old = m["roots"].get(name)
        if old is None and len(m["roots"]) >= MAX_ROOTS:
            raise PeerError("the store holds %d V2G roots already (the limit)" % MAX_ROOTS)
        entry = self._new_entry(m, der, "der")
        m["roots"][name] = {"subject": subject, "cert": entry}
        self._update(m, [(entry, der)], [old["cert"][0]] if old else (), "root %s added" % name)
        return name

    def roots(self):
        r = self._m["roots"]
        return [RootInfo(k, r[k]["subject"], r[k]["cert"][1]) for k in sorted(r)]

    def root(self, name):
        return self._fresh(self._root, name)

    def _root(self, name):
        r = self._m["roots"].get(name)
        if r is None:
            raise UsageError("no V2G root %r in the store" % name)
        return self._read_entry(r["cert"], "root " + name)

    def remove_root(self, name):
        return self._locked(self._remove_root, name)

    def _remove_root(self, name):
        m = self._draft()
        r = m["roots"].pop(name, None)
        if r is None:
            raise UsageError("no V2G root %r in the store" % name)
        self._update(m, (), [r["cert"][0]], "root %s removed" % name)

    # --- OEM provisioning ----------------------------------------------------------------------------------

    def set_oem(self, chain, private_key, pcid=""):
        """Store the OEM provisioning chain (leaf first) and its private key, replacing any earlier one."""
        return self._locked(self._set_oem, chain, private_key, pcid)

    def _set_oem(self, chain, private_key, pcid=""):
        if not isinstance(pcid, str) or len(pcid) > 32:
            raise PeerError("PCID must be a string of at most 32 characters")
        m = self._draft()
        new = self._new_set(m, chain, private_key, "OEM provisioning")
        old = m["oem"]
        m["oem"] = {"pcid": pcid, "chain": [f[0] for f in new[:-1]], "key": new[-1][0]}
        self._update(m, new, self._set_names(old) if old else (), "OEM provisioning chain and key stored")

    def remove_oem(self):
        """Remove the OEM provisioning chain and key (a factory reset); False when there was none."""
        return self._locked(self._remove_oem)

    def _remove_oem(self):
        m = self._draft()
        old = m["oem"]
        if old is None:
            return False
        m["oem"] = None
        self._update(m, (), self._set_names(old), "OEM provisioning chain and key removed")
        return True

    def oem(self):
        return self._fresh(self._oem)

    def _oem(self):
        o = self._m["oem"]
        return None if o is None else OemProvisioning(o["pcid"], self._read_chain(o, "OEM provisioning"))

    # --- contracts ------------------------------------------------------------------------------------------

    def install_contract(self, chain, private_key, emaid, not_before_s, not_after_s, name=None):
        """Store a contract chain (leaf first) and its key; a contract of the same name (default: the eMAID)
        is replaced in the same atomic step (certificate update). Returns the name."""
        return self._locked(self._install_contract, chain, private_key, emaid, not_before_s, not_after_s, name)

    def _install_contract(self, chain, private_key, emaid, not_before_s, not_after_s, name=None):
        if not isinstance(emaid, str):
            raise PeerError("eMAID must be a string")
        emaid = normalize_emaid(emaid)
        if not 0 < len(emaid) <= MAX_NAME or not all(c.isalpha() or c.isdigit() for c in emaid):
            raise PeerError("eMAID %r: 1 to %d letters and digits (hyphens ignored)" % (emaid, MAX_NAME))
        if not (isinstance(not_before_s, int) and isinstance(not_after_s, int) and not_before_s <= not_after_s):
            raise PeerError("contract validity must be integer seconds with notBefore <= notAfter")
        name = emaid if name is None else name
        _check_name(name, "contract name")
        m = self._draft()
        old = m["contracts"].get(name)
        if old is None and len(m["contracts"]) >= MAX_CONTRACTS:
            raise PeerError("the store holds %d contracts already (the limit)" % MAX_CONTRACTS)
        new = self._new_set(m, chain, private_key, "contract")
        m["contracts"][name] = {"emaid": emaid, "nb": not_before_s, "na": not_after_s,
                                "chain": [f[0] for f in new[:-1]], "key": new[-1][0]}
        self._update(m, new, self._set_names(old) if old else (),
                     "contract %s %s" % (name, "updated" if old else "installed"))
        return name

    def contracts(self):
        c = self._m["contracts"]
        return [ContractInfo(k, c[k]["emaid"], c[k]["nb"], c[k]["na"]) for k in sorted(c)]

    def contract(self, emaid=None, now_s=None):
        """The best usable contract: matching the eMAID (when given), valid at now_s (when the EV has trusted
        time), the one valid longest; a damaged one is skipped for the next. None when there is none."""
        return self._fresh(self._contract, emaid, now_s)

    def _contract(self, emaid=None, now_s=None):
        want = None if emaid is None else normalize_emaid(emaid)
        found = [c for c in self.contracts() if (want is None or c.emaid == want) and c.usable_at(now_s)]
        found.sort(key=lambda c: (c.not_after, c.not_before, c.name), reverse=True)
        first_error = None
        for info in found:
            try:
                return Contract(info, self._read_chain(self._m["contracts"][info.name], "contract " + info.name))
            except StoreError as e:
                self._say("contract %s unusable: %s" % (info.name, e))
                first_error = first_error or e
        if first_error is not None:
            raise first_error
        return None

    def contract_named(self, name):
        """The contract stored under `name`, with its chain."""
        return self._fresh(self._contract_named, name)

    def _contract_named(self, name):
        c = self._m["contracts"].get(name)
        if c is None:
            raise UsageError("no contract %r in the store" % name)
        info = ContractInfo(name, c["emaid"], c["nb"], c["na"])
        return Contract(info, self._read_chain(c, "contract " + name))

    def remove_contract(self, name):
        return self._locked(self._remove_contract, name)

    def _remove_contract(self, name):
        m = self._draft()
        c = m["contracts"].pop(name, None)
        if c is None:
            raise UsageError("no contract %r in the store" % name)
        self._update(m, (), self._set_names(c), "contract %s removed" % name)

    # --- private keys: the one accessor --------------------------------------------------------------------

    def private_key(self, name):
        """The private scalar (32 bytes) of the OEM provisioning key (name OEM) or of a contract, for the crypto
        code only: never log, print or send it."""
        return self._fresh(self._private_key, name)

    def _private_key(self, name):
        s = self._m["oem"] if name == OEM else self._m["contracts"].get(name)
        if s is None:
            raise UsageError("no private key %r in the store" % name)
        key = self._read_entry(s["key"], "private key " + name)
        if not is_valid_scalar(key):
            raise StoreError(s["key"][0], "not a P-256 private key (private key %s)" % name)
        return key

    # --- metadata ---------------------------------------------------------------------------------------------

    def meta(self):
        return json.loads(json.dumps(self._m["meta"]))

    def set_meta(self, key, value):
        """Set one metadata item (any JSON value); None removes it."""
        return self._locked(self._set_meta, key, value)

    def _set_meta(self, key, value):
        if not isinstance(key, str) or not 0 < len(key) <= MAX_NAME:
            raise UsageError("metadata key must be a string of 1 to %d characters" % MAX_NAME)
        m = self._draft()
        if value is None:
            m["meta"].pop(key, None)
        else:
            if not _plain_json(value, 4):
                raise UsageError("metadata %r is not plain JSON (None, bool, numbers, str, lists, dicts)" % key)
            m["meta"][key] = json.loads(json.dumps(value))  # a copy: the caller's object stays theirs
        if len(json.dumps(m["meta"], separators=(",", ":"))) > MAX_META:
            raise PeerError("metadata would exceed %d bytes" % MAX_META)
        self._update(m, (), (), "metadata %s set" % key)
