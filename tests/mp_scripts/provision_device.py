# The provisioning service alone on the console of MicroPython's unix port, for tests/test_provision_pty.py:
#     micropython provision_device.py STORE_DIR [CUT_STEP CUT_FILE]
# With CUT_STEP, the store's filesystem stops dead at its CUT_STEP-th changing step (open for writing,
# write, fsync, close, rename, remove, directory sync): it writes CUT_FILE and hangs there, so the test can
# kill the process at exactly that point, as a power cut would.

import sys
import time

try:
    import asyncio
except ImportError:
    import uasyncio as asyncio

from evpilot.provision import serial
from evpilot.store import fs as fs_module
from evpilot.store.keystore import Store


class CutFs(fs_module.Fs):
    def __init__(self, at, marker):
        self.at = at
        self.marker = marker
        self.steps = 0

    def _step(self, what):
        self.steps += 1
        if self.steps == self.at:
            with open(self.marker, "w") as f:
                f.write(what)
            while True:  # wait here to be killed
                time.sleep(1)


for _name in ("open_write", "write", "fsync", "close", "rename", "remove", "sync_dir", "mkdir"):
    def _wrap(name):
        base = getattr(fs_module.Fs, name)

        def step(self, *args):
            self._step(name)
            return base(self, *args)

        return step

    setattr(CutFs, _name, _wrap(_name))

store_dir = sys.argv[1]
fs = CutFs(int(sys.argv[2]), sys.argv[3]) if len(sys.argv) > 3 else None
asyncio.run(serial.serve_stdio(Store(store_dir, fs=fs), {"board": "unix"}))
