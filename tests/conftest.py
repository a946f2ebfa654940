# Test-suite set-up shared by all tests: registers the plugin that also runs tests/firmware under MicroPython
# on its webassembly and unix ports (see tests/micropython/pytest_plugin.py). Loading the plugin also makes
# tests/micropython/unix.py importable as `evpilot_mp_unix` (run a script under the unix port), and the
# plugin gives the fixture `micropython_unix`.

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "evpilot_micropython_plugin", os.path.join(os.path.dirname(__file__), "micropython", "pytest_plugin.py")
)
_plugin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_plugin)


def pytest_configure(config):
    config.pluginmanager.register(_plugin, "evpilot-micropython")
