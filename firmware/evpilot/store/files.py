# The store's files: the layer under the Store's manifest logic (keystore.py). It knows paths, bytes and
# the filesystem's failures, not what a manifest holds.
#
# How this works
# --------------
# Every step goes through the Store's Fs object (store/fs.py: one method a step, injectable, so tests can
# cut power or fail a step between any two). On top of it:
#   open_directory  the store directory, created 0700 when missing;
#   lock            the one-writer lock (Fs.lock: flock on the directory, dropped by the kernel when its
#                   process dies), StoreError when another writer holds it past the wait;
#   read            a file of at most `limit` bytes, StoreError when unreadable or larger;
#   write           a whole file: open (0600), write, fsync where the platform has it, close;
#   replace         write to a temporary name, then rename it over the file: all or nothing;
#   commit          one update: the new data files, then `replace` of the manifest (the commit point), the
#                   directory synced, the obsolete files removed. Before the commit an OSError removes what
#                   the update wrote and becomes StoreError naming the path of the failed step; after it the
#                   update is in and a failed sync is only reported back;
#   remove          removal that tolerates failure: an unreferenced file left behind goes at the next open.
# StoreError and os_reason (the OSError's text and errno name, the same on CPython and MicroPython) are the
# one translation of OSError for the whole store; keystore re-exports StoreError. No tables: the store is
# imported on a 128 KB heap during Plug&Charge.

try:
    import errno as _errno
except ImportError:
    import uerrno as _errno

from evpilot.errors import PeerError


class StoreError(PeerError):
    """What the store holds is damaged (truncated, wrong JSON, check value mismatch), or the filesystem
    refused a step (full, read-only, no permission, locked by another writer): `file` names the file or
    directory. A write that failed left the store as it was."""

    def __init__(self, file, problem):
        super().__init__(file + ": " + problem)
        self.file = file
        self.problem = problem


def os_reason(e):
    """'No space left on device [ENOSPC]' from an OSError, on CPython and MicroPython."""
    code = e.args[0] if e.args and isinstance(e.args[0], int) else None
    name = getattr(_errno, "errorcode", {}).get(code) if code is not None else None
    text = getattr(e, "strerror", None) or (e.args[1] if len(e.args) > 1 else None) or name or str(e)
    return text + (" [%s]" % name if name and name != text else "")


def open_directory(fs, directory):
    """Make sure `directory` is there to hold the store (created when missing, 0700 where there are modes)."""
    try:
        fs.listdir(directory)
    except OSError as e:
        # errno values differ between ports (the webassembly port's are emscripten's): ask what is there.
        if fs.exists(directory):  # a file, or a directory we may not read
            raise StoreError(directory, "cannot be read as the store directory: " + os_reason(e))
        try:
            fs.mkdir(directory)
        except OSError as e:
            raise StoreError(directory, "the store directory cannot be created: " + os_reason(e))
    try:
        fs.make_private(directory)  # keys inside: owner only, where there are modes
    except OSError:
        pass  # not ours to change (or read-only): the files themselves are 0600


def lock(fs, directory):
    """The writer's lock on the store directory: a handle for fs.unlock()."""
    try:
        return fs.lock(directory)
    except OSError as e:
        raise StoreError(directory, "locked: %s (nothing written)" % os_reason(e))


def read(fs, path, name, limit):
    """The bytes of file `name` at `path`, at most `limit` of them."""
    try:
        data = fs.read(path, limit)
    except OSError as e:
        raise StoreError(name, "cannot be read: " + os_reason(e))
    if len(data) > limit:
        raise StoreError(name, "over %d bytes" % limit)
    return data


def write(fs, path, data):
    """A whole file, synced before it is closed; OSError escapes (the caller knows what was not written)."""
    f = fs.open_write(path)
    try:
        fs.write(f, data)
        fs.fsync(f)
    finally:
        fs.close(f)


def replace(fs, tmp_path, path, data):
    """`path` holds `data` once the rename is done, and what it held before until then (a cut before it
    leaves tmp_path behind for the store's recovery). OSError escapes."""
    write(fs, tmp_path, data)
    fs.rename(tmp_path, path)


def remove(fs, paths):
    """Remove each of `paths` that can be removed; the number removed."""
    removed = 0
    for path in paths:
        try:
            fs.remove(path)
            removed += 1
        except OSError:  # never written, or not removable: unreferenced, so the next open removes it
            pass
    return removed


def commit(fs, directory, files, tmp_path, path, data, obsolete, what):
    """One update: `files` [(path, bytes)] written, `data` put at `path` through tmp_path (the commit point),
    the directory synced, the `obsolete` paths removed. Returns None, or the OSError of a sync that failed
    after the commit (the update is in). Before the commit an OSError removes what this update wrote and is
    raised as StoreError naming the path of the failed step and `what` was not written."""
    step = tmp_path
    try:
        for step, content in files:
            write(fs, step, content)
        step = tmp_path
        replace(fs, tmp_path, path, data)
    except OSError as e:
        remove(fs, [f[0] for f in files] + [tmp_path])  # not committed: take back what this update wrote
        raise StoreError(step, "%s; not written: %s (the store is as before)" % (os_reason(e), what))
    try:
        fs.sync_dir(directory)
    except OSError as e:
        return e
    remove(fs, obsolete)  # committed already; the next open removes a leftover
    return None
