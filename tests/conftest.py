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

import pytest

_spec = importlib.util.spec_from_file_location(
    "evpilot_micropython_plugin", os.path.join(os.path.dirname(__file__), "micropython", "pytest_plugin.py")
)
_plugin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_plugin)


_SESSIONS_TMP = []

# pytest-xdist (`-n N --dist loadgroup`, the README's test command) spreads single tests over the workers; the
# files named here go whole to one worker each (an xdist_group named after the file), because their tests
# share what a module builds once per process:
_ONE_WORKER = (
    "tests/test_install.py",  # the `venv` fixture builds and installs the wheel (45 s on each worker that asks)
    # Josev's sessions, each run kept for the tests that read it (_runs, module fixtures); and so one Josev
    # station (py4j and Java, slow to answer on a busy machine) at a time per file.
    "tests/interop/test_josev_sessions.py",
    "tests/interop/test_josev_pnc.py",
)


def pytest_configure(config):
    config.pluginmanager.register(_plugin, "evpilot-micropython")
    if not config.pluginmanager.hasplugin("xdist"):  # pytest-xdist registers it; without it the mark is inert
        config.addinivalue_line("markers", "xdist_group(name): tests that pytest-xdist runs on one worker")
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


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    root = str(config.rootpath)
    for item in items:
        path = os.path.relpath(str(item.path), root).replace(os.sep, "/")
        if path in _ONE_WORKER:
            item.add_marker(pytest.mark.xdist_group(path))
