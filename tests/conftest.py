# Test-suite set-up shared by all tests: registers the plugin that also runs tests/firmware under MicroPython
# on its webassembly and unix ports (see tests/micropython/pytest_plugin.py). Loading the plugin also makes
# tests/micropython/unix.py importable as `evpilot_mp_unix` (run a script under the unix port), and the
# plugin gives the fixture `micropython_unix`.
#
# Nothing a test runs may write into the repository: a station started without --db records its sessions in
# $EVPILOT_SESSIONS_DB, else in the current directory (the repository, for most runs), so the whole test
# session (and every process it starts) gets a database in a temporary folder of its own, removed at the end.
# Under pytest-xdist each worker gets its own too (stations on several workers never share one file).

import importlib.util
import os
import shutil
import tempfile

_spec = importlib.util.spec_from_file_location(
    "evpilot_micropython_plugin", os.path.join(os.path.dirname(__file__), "micropython", "pytest_plugin.py")
)
_plugin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_plugin)


_SESSIONS_TMP = []


def pytest_configure(config):
    config.pluginmanager.register(_plugin, "evpilot-micropython")
    ours = os.environ.get("EVPILOT_SESSIONS_DB", "") == os.environ.get("EVPILOT_TESTS_SESSIONS_DB")
    if not os.environ.get("EVPILOT_SESSIONS_DB") or (ours and hasattr(config, "workerinput")):
        _SESSIONS_TMP.append(tempfile.mkdtemp(prefix="evpilot-tests-"))
        os.environ["EVPILOT_SESSIONS_DB"] = os.path.join(_SESSIONS_TMP[0], "evpilot-sessions.sqlite3")
        os.environ["EVPILOT_TESTS_SESSIONS_DB"] = os.environ["EVPILOT_SESSIONS_DB"]  # set here, not by the user


def pytest_unconfigure(config):
    for path in _SESSIONS_TMP:
        shutil.rmtree(path, ignore_errors=True)
        os.environ.pop("EVPILOT_SESSIONS_DB", None)
        os.environ.pop("EVPILOT_TESTS_SESSIONS_DB", None)
