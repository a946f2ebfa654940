# Runs one firmware test module under MicroPython's unix port (the `micropython` command), in this process.
#
# How this works
# --------------
#   micropython -X heapsize=4m tests/micropython/unix_runner.py tests/firmware/test_x.py
#
# The repository root is found from this file's own place (two folders up) and becomes the working
# directory, as under run.mjs, so `../shared/...` and repository-relative paths mean the same on both ports.
# sys.path becomes: <repo>/firmware, the test module's folder, and the port's frozen modules; the user's
# ~/.micropython/lib is left out, so a module installed there with mip cannot hide a missing one. A new
# empty directory (under $TMPDIR or /tmp, removed at the end) is mounted at /tmp for the run, so /tmp starts
# empty as in the webassembly port's in-memory filesystem, and parallel runs never share a file there; a
# repository or test module that lives under the real /tmp is then reached through /.host-tmp instead.
# The test functions are found in the source as run.mjs finds them (lines matching `^def (test\w*)\s*\(`,
# in source order), the module is imported and each function is called; names in the module's
# MICROPYTHON_SKIP list are skipped. print() is captured per test (by replacing builtins.print; what a test
# writes to sys.stdout itself passes through), and stdout gets exactly the lines run.mjs prints:
#   {"test":"tests/firmware/test_x.py::test_y","ok":true,"ms":0.4,"output":""}
#   {"test":"...","ok":false,"error":"Traceback ...","ms":1.2,"output":"..."}   {"test":"...","skipped":"..."}
# then one line for the module: {"module":"tests/firmware/test_x.py","ok":true,"tests":N,"heap":...,
# "heap_total":...,"heap_grew":false,"ms":...}, or, when the import fails, {"module":...,"ok":false,
# "tests":N,"error":"Traceback ...","output":"..."} alone. "heap" and "heap_total" are the GC heap's size
# (gc.mem_alloc() + gc.mem_free()) at the start and at the end: this port's heap is fixed by -X heapsize and
# never grows; a test that needs more raises MemoryError, which fails that test only.
#
# Exit status: 0 all ran tests passed, 1 a test or the import failed, 2 usage error.

import builtins
import gc
import io
import json
import os
import sys
import time

SKIP_REASON = "CPython-only (MICROPYTHON_SKIP)"


def _absolute(path):
    if not path.startswith("/"):
        path = os.getcwd() + "/" + path
    parts = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def _relative(path, base):
    # As os.path.relpath (and run.mjs's path.relative): the ids must be the ones the pytest plugin looks up.
    a = path.strip("/").split("/")
    b = [p for p in base.strip("/").split("/") if p]
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return "/".join([".."] * (len(b) - n) + a[n:])


def _dirname(path):
    return path.rsplit("/", 1)[0] or "/"


def _is_word(ch):
    return ch == "_" or "a" <= ch <= "z" or "A" <= ch <= "Z" or "0" <= ch <= "9"


def test_names(source_lines):
    """Names of the test functions in source order, as run.mjs's `^def (test\\w*)\\s*\\(` finds them."""
    names = []
    for line in source_lines:
        if not line.startswith("def test"):
            continue
        end = 4
        while end < len(line) and _is_word(line[end]):
            end += 1
        rest = line[end:].lstrip()
        name = line[4:end]
        if rest.startswith("(") and name not in names:
            names.append(name)
    return names


def _json_line(pairs):
    # Keys in the given order and no spaces, as JSON.stringify writes them (MicroPython's dicts keep no order).
    return "{" + ",".join(json.dumps(k) + ":" + (v.text if isinstance(v, _Number) else json.dumps(v))
                          for k, v in pairs) + "}"


def _emit(pairs):
    sys.stdout.write(_json_line(pairs) + "\n")


class _Number:
    """A number already written out (json.dumps of a float here may show 973.2140000000001)."""

    def __init__(self, text):
        self.text = text


def _ms(us):
    # Milliseconds rounded to the microsecond, written as JavaScript writes a number (12.5, 3, 0.004).
    text = "%d.%03d" % (us // 1000, us % 1000)
    return _Number(text.rstrip("0").rstrip("."))


def _traceback(e):
    s = io.StringIO()
    sys.print_exception(e, s)
    return s.getvalue()


class _Capture:
    """Routes print() without a file= into a buffer while a test runs."""

    def __init__(self):
        self.buffer = io.StringIO()
        self.original = builtins.print

    def _print(self, *args, **kwargs):
        if kwargs.get("file") is None:
            kwargs["file"] = self.buffer
        self.original(*args, **kwargs)

    def start(self):
        self.buffer = io.StringIO()
        builtins.print = self._print

    def stop(self):
        builtins.print = self.original
        text = self.buffer.getvalue()
        self.buffer = None
        # run.mjs collects whole lines and joins them with newlines: no trailing newline.
        return text[:-1] if text.endswith("\n") else text


class _RootedVfs(os.VfsPosix):
    """os.VfsPosix(root) whose rename works: in MicroPython up to 1.29 preview both of rename's paths are
    built in one buffer, so with a root it renames the new name onto itself (ENOENT; micropython#7389)
    unless the new path is the longer one.
    (Modules cannot be imported through it: the import machinery does not see a subclass's filesystem.)"""

    def __init__(self, root):
        super().__init__(root)
        self.root = root

    def _real(self, path):
        return self.root + path if path.startswith("/") else path  # relative: the process's cwd is inside

    def rename(self, old, new):
        _PLAIN_VFS.rename(self._real(old), self._real(new))


_PLAIN_VFS = os.VfsPosix()


def private_tmp():
    """Mount a new empty directory at /tmp; return its real path.

    The webassembly port gives every module an empty in-memory filesystem, and firmware tests make fixed
    names under /tmp there (/tmp/evpilot-store-1). Here those names must meet neither the real /tmp, nor a
    module running in parallel, nor what an earlier run left behind.
    """
    base = (os.getenv("TMPDIR") or "/tmp").rstrip("/")
    real = base + "/evpilot-mp-%012x" % int.from_bytes(os.urandom(6), "big")
    os.mkdir(real)
    os.mount(_RootedVfs(real), "/tmp")
    return real


HOST_TMP = "/.host-tmp"


def _host_tmp(path):
    return HOST_TMP + path[4:] if path.startswith("/tmp/") else path


def remove_tree(path):
    for entry in os.ilistdir(path):
        full = path + "/" + entry[0]
        if entry[1] == 0x4000 or (entry[1] == 0 and os.stat(full)[0] & 0xF000 == 0x4000):
            remove_tree(full)
        else:
            os.remove(full)
    os.rmdir(path)


def _heap_size():
    gc.collect()
    return gc.mem_alloc() + gc.mem_free()


def run_module(rel, repo, path):
    folder = _dirname(path)
    modname = path.rsplit("/", 1)[-1]
    if modname.endswith(".py"):
        modname = modname[:-3]
    with open(path) as f:
        names = test_names(f.read().split("\n"))
    t0 = time.ticks_us()
    start_heap = _heap_size()
    capture = _Capture()
    module_pairs = [("module", rel), ("ok", True), ("tests", len(names))]
    sys.path[:] = [repo + "/firmware", repo + "/sim", folder] + [p for p in sys.path if p == ".frozen"]
    capture.start()
    try:
        module = __import__(modname)
    except BaseException as e:
        error = _traceback(e)
        output = capture.stop()
        module_pairs[1] = ("ok", False)
        _emit(module_pairs + [("error", error), ("output", output)])
        return False
    capture.stop()
    skip = [str(n) for n in getattr(module, "MICROPYTHON_SKIP", ())]
    ok = True
    for name in names:
        pairs = [("test", rel + "::" + name)]
        if name in skip:
            _emit(pairs + [("skipped", SKIP_REASON)])
            continue
        fn = getattr(module, name, None)
        error = None
        capture.start()
        t = time.ticks_us()
        try:
            if fn is None:
                raise NameError("the module has no attribute " + name + " after import")
            fn()
        except BaseException as e:
            error = _traceback(e)
        us = time.ticks_diff(time.ticks_us(), t)
        output = capture.stop()
        pairs.append(("ok", error is None))
        if error is not None:
            ok = False
            pairs.append(("error", error))
        _emit(pairs + [("ms", _ms(us)), ("output", output)])
        fn = None
        gc.collect()
    end_heap = _heap_size()
    module_pairs[1] = ("ok", ok)
    module_pairs += [("heap", start_heap), ("heap_total", end_heap), ("heap_grew", end_heap > start_heap)]
    _emit(module_pairs + [("ms", _ms(time.ticks_diff(time.ticks_us(), t0)))])
    return ok


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        sys.stderr.write("usage: micropython [-X heapsize=SIZE] tests/micropython/unix_runner.py TEST_FILE\n")
        return 2
    repo = _dirname(_dirname(_dirname(_absolute(argv[0]))))
    path = _absolute(argv[1])
    try:
        os.stat(path)
    except OSError:
        sys.stderr.write("unix_runner.py: error: no such test file: " + argv[1] + "\n")
        return 2
    rel = _relative(path, repo)
    tmp = private_tmp()
    if repo.startswith("/tmp/") or path.startswith("/tmp/"):
        # A checkout (or a test's own temporary tree) under the real /tmp stays reachable under HOST_TMP.
        os.mount(os.VfsPosix("/tmp"), HOST_TMP)  # not _RootedVfs: imports through a subclass fail
        repo, path = _host_tmp(repo), _host_tmp(path)
    os.chdir(repo)
    try:
        ok = run_module(rel, repo, path)
    finally:
        os.chdir("/")
        if repo.startswith(HOST_TMP + "/"):
            os.umount(HOST_TMP)
        os.umount("/tmp")
        remove_tree(tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
