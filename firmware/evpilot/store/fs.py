# The filesystem as the store uses it: each method is one step (open, write, fsync, close, rename, remove,
# ...), so tests can wrap it and cut power between any two steps (tests/test_store_powerloss.py).
#
# Works on MicroPython and CPython. os.fsync exists on CPython (and MicroPython's unix port); elsewhere
# fsync() only flushes, and the filesystem (littlefs) commits a file when it is closed. os.replace is used
# where it exists (CPython; it replaces on Windows too), os.rename otherwise.

import os

_fsync = getattr(os, "fsync", None)
_replace = getattr(os, "replace", None) or os.rename  # CPython: os.replace also replaces on Windows


class Fs:
    """The filesystem steps the store takes; each call is one step (tests inject faults between them)."""

    def listdir(self, path):
        return os.listdir(path)

    def mkdir(self, path):
        os.mkdir(path)

    def read(self, path, limit):
        """At most limit + 1 bytes, so the caller can tell a file over the limit."""
        with open(path, "rb") as f:
            return f.read(limit + 1)

    def open_write(self, path):
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
