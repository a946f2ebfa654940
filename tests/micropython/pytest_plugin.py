"""pytest plugin: every firmware test also runs under real MicroPython.

How this works
--------------
Modules named tests/firmware/test_*.py are collected as usual (they run on CPython), and next to each plain
test function `test_y` the plugin adds an item `test_y[micropython]`. The first such item to run starts
Node.js once for the whole session: run.mjs (beside this file) runs every firmware module with MicroPython
items, each in a fresh interpreter, and prints one JSON line per test function; the items then only look up
their result. A failure under MicroPython fails the suite like any other.

A firmware test that cannot run on MicroPython is named in its module's `MICROPYTHON_SKIP` list:
    MICROPYTHON_SKIP = ["test_uses_cpython_only_feature"]
A whole module that needs CPython (hypothesis, cryptography, ...) belongs outside tests/firmware.

Without node (or without npm before the port is installed) the MicroPython items are skipped with the
reason, except in CI (environment CI=true), where they fail. EVPILOT_MP_TIMEOUT (seconds, default 900)
bounds the Node.js run.
"""

import json
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RUNNER = os.path.join(HERE, "run.mjs")
FIRMWARE_TESTS = os.path.join(REPO, "tests", "firmware") + os.sep
PORT_MODULE = os.path.join(
    os.environ.get("EVPILOT_MP_CACHE") or os.path.join(REPO, ".cache", "micropython"),
    "node_modules", "@micropython", "micropython-webassembly-pyscript", "micropython.mjs",
)
SUFFIX = "[micropython]"


def _in_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _relpath(path):
    return os.path.relpath(str(path), REPO).replace(os.sep, "/")


def pytest_pycollect_makemodule(module_path, parent):
    path = str(module_path)
    if path.startswith(FIRMWARE_TESTS) and os.path.basename(path).startswith("test_"):
        return FirmwareModule.from_parent(parent, path=module_path)
    return None


class FirmwareModule(pytest.Module):
    def collect(self):
        skip = getattr(self.obj, "MICROPYTHON_SKIP", ())
        for item in super().collect():
            yield item
            # Only plain functions: parametrized tests and fixtures are pytest features MicroPython lacks.
            if isinstance(item, pytest.Function) and item.name == item.originalname:
                twin = MicroPythonItem.from_parent(
                    self, name=item.name + SUFFIX, function=item.name, line=item.location[1]
                )
                if item.name in skip:
                    twin.add_marker(pytest.mark.skip(reason="CPython-only (MICROPYTHON_SKIP)"))
                yield twin


class MicroPythonFailure(Exception):
    pass


class MicroPythonItem(pytest.Item):
    def __init__(self, *, function, line, **kwargs):
        super().__init__(**kwargs)
        self.function = function
        self.line = line
        self.add_marker("micropython")

    def runtest(self):
        batch = _Batch.of(self.session)
        if batch.unavailable:
            if _in_ci():
                pytest.fail("MicroPython tests cannot run in CI: " + batch.unavailable, pytrace=False)
            pytest.skip(batch.unavailable)
        module = _relpath(self.path)
        result = batch.tests.get(module + "::" + self.function)
        if result is None:
            line = batch.modules.get(module) or {}
            if "error" in line:
                raise MicroPythonFailure("the module failed to import under MicroPython:\n" + line["error"])
            raise MicroPythonFailure("the MicroPython runner gave no result for this test.\n" + batch.problem)
        if "skipped" in result:
            pytest.skip(result["skipped"])
        if not result.get("ok"):
            text = result.get("error") or "failed"
            if result.get("output"):
                text += "\n--- printed under MicroPython ---\n" + result["output"]
            raise MicroPythonFailure(text)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, MicroPythonFailure):
            return "MicroPython: " + str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, self.line, _relpath(self.path) + "::" + self.name


class _Batch:
    """One Node.js run for all firmware modules of the session; results by test id."""

    def __init__(self, modules):
        self.tests = {}
        self.modules = {}
        self.problem = ""
        self.unavailable = None
        if not shutil.which("node"):
            self.unavailable = "node (Node.js 20) is not installed"
            return
        if not os.path.exists(PORT_MODULE) and not shutil.which("npm"):
            self.unavailable = "npm is not installed, so the MicroPython webassembly port cannot be installed"
            return
        timeout = float(os.environ.get("EVPILOT_MP_TIMEOUT", "900"))
        try:
            proc = subprocess.run(
                ["node", RUNNER] + modules, cwd=REPO, capture_output=True, text=True, timeout=timeout
            )
            stdout, stderr, status = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            stderr, status = "timed out after %d s (EVPILOT_MP_TIMEOUT)" % timeout, None
        for line in stdout.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if "test" in record:
                self.tests[record["test"]] = record
            elif "module" in record:
                self.modules[record["module"]] = record
        if status not in (0, 1):
            self.problem = "run.mjs exit status %s; its stderr ends:\n%s" % (status, stderr[-4000:])

    @classmethod
    def of(cls, session):
        batch = getattr(session, "_evpilot_micropython", None)
        if batch is None:
            modules = sorted(
                {_relpath(item.path) for item in session.items
                 if isinstance(item, MicroPythonItem) and not item.get_closest_marker("skip")}
            )
            batch = session._evpilot_micropython = cls(modules)
        return batch


def pytest_configure(config):
    config.addinivalue_line("markers", "micropython: a firmware test run under the MicroPython webassembly port")
