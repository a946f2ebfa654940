# The filesystem as the store uses it: each method is one step (open, write, fsync, close, rename, remove,
# ...), so tests can wrap it and cut power between any two steps (tests/test_store_powerloss.py).
#
# Works on MicroPython and CPython. os.fsync exists on CPython (and MicroPython's unix port); elsewhere
# fsync() only flushes, and the filesystem (littlefs) commits a file when it is closed. os.replace is used
# where it exists (CPython; it replaces on Windows too), os.rename otherwise.
#
# Modes (where the platform has them: CPython on POSIX): the store directory is made 0700 and every file is
# created 0600, so the private keys in it are readable by their owner only (DESIGN principle 6). MicroPython
# has no modes (no os.chmod, no os.open); its boards have one user.
#
# One writer at a time: lock(directory) takes an exclusive flock(2) on the directory itself (no lock file to
# leave behind). The kernel drops it when its process ends, so a crashed writer cannot leave the store locked; a live writer
# holds it for one update only. Where fcntl is missing (MicroPython, Windows) lock() returns None: a board
# runs one process, and the store is written by it alone.

import os

try:
    import fcntl as _fcntl
except ImportError:
    _fcntl = None

_fsync = getattr(os, "fsync", None)
_replace = getattr(os, "replace", None) or os.rename  # CPython: os.replace also replaces on Windows
_chmod = getattr(os, "chmod", None)
_os_open = getattr(os, "open", None)

LOCK_WAIT_MS = 5000  # a writer holds the lock for one update (a few ms); waiting longer means it is stuck
EAGAIN = 11


def _sleep_ms(ms):
    import time

    if hasattr(time, "sleep_ms"):
        time.sleep_ms(ms)
    else:
        time.sleep(ms / 1000)


class Fs:
    """The filesystem steps the store takes; each call is one step (tests inject faults between them)."""

    def listdir(self, path):
        return os.listdir(path)

    def exists(self, path):
        try:
            os.stat(path)
            return True
        except OSError:
            return False

    def mkdir(self, path):
        try:
            os.mkdir(path, 0o700)
        except TypeError:  # MicroPython: os.mkdir(path) only, and no modes
            os.mkdir(path)

    def make_private(self, path):
        """Directory `path` to 0700 where the platform has modes and it is looser; OSError if refused."""
        if _chmod is not None and hasattr(os, "stat"):
            if os.stat(path)[0] & 0o077:
                _chmod(path, 0o700)

    def read(self, path, limit):
        """At most limit + 1 bytes, so the caller can tell a file over the limit. Asks for the file's size,
        not the limit: MicroPython's read(n) allocates n bytes whatever the file holds (a 16 KB block for
        a manifest of a few hundred bytes, at the session's peak when the store is written)."""
        with open(path, "rb") as f:
            try:
                size = os.stat(path)[6]
            except OSError:
                size = limit
            return f.read(min(size, limit) + 1)

    def open_write(self, path):
        if _os_open is not None and hasattr(os, "fdopen"):
            fd = _os_open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            if _chmod is not None:
                try:
                    os.fchmod(fd, 0o600)  # a file left by an older version keeps its mode otherwise
                except (AttributeError, OSError):
                    pass
            return os.fdopen(fd, "wb")
        return open(path, "wb")

    def write(self, f, data):
        f.write(data)

    def fsync(self, f):
        f.flush()
        if _fsync is not None and hasattr(f, "fileno"):
            _fsync(f.fileno())

    def close(self, f):
        f.close()

    def rename(self, old, new):
        _replace(old, new)

    def remove(self, path):
        os.remove(path)

    def sync_dir(self, path):
        # POSIX makes a rename durable once its directory is fsynced; littlefs commits it by itself.
        if _fsync is not None and hasattr(os, "O_RDONLY"):
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:  # a platform that cannot open directories (Windows)
                return
            try:
                _fsync(fd)
            finally:
                os.close(fd)
        elif hasattr(os, "sync"):
            os.sync()

    def lock(self, directory, wait_ms=LOCK_WAIT_MS):
        """The writer's lock on `directory`: a handle for unlock(), None where there is no inter-process lock
        (or the directory cannot be opened: its reads and writes then fail by themselves).
        OSError(EAGAIN) when another process holds it for more than wait_ms."""
        if _fcntl is None:
            return None
        try:
            fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return None
        waited = 0
        while True:
            try:
                _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
                return fd
            except OSError:
                if waited >= wait_ms:
                    os.close(fd)
                    raise OSError(EAGAIN, "another process is writing the store")
            _sleep_ms(2)
            waited += 2

    def unlock(self, handle):
        if handle is not None:
            os.close(handle)  # closing the descriptor drops the flock
