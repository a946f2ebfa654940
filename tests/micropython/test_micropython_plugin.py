# The MicroPython plumbing itself: unix_runner.py (the lines run.mjs prints, source order, MICROPYTHON_SKIP,
# captured prints, MemoryError on a fixed heap, a private /tmp), the pytest plugin (ids and markers per port,
# -k and -m, MICROPYTHON_PORTS, the policy when a port is missing) and the evpilot_mp_unix helper.
# Plugin behaviour is checked by running pytest in a temporary tree whose tests/firmware holds a made-up module.

import json
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

import evpilot_mp_unix as mp_unix

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "unix_runner.py")
COMPAT = "tests/firmware/test_compat.py"


def _records(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# --- unix_runner.py ----------------------------------------------------------------------------------------


def test_runner_prints_what_run_mjs_prints(request, micropython_unix):
    plugin = request.config.pluginmanager.get_plugin("evpilot-micropython")
    reason = plugin.PORTS["wasm"].unavailable()
    if reason:
        plugin._skip_or_fail(reason)
    unix = mp_unix.run_script(RUNNER, COMPAT)
    wasm = subprocess.run(
        ["node", plugin.WASM_RUNNER, COMPAT], cwd=mp_unix.REPO, capture_output=True, text=True, timeout=120
    )
    assert unix.returncode == wasm.returncode == 0, unix.stderr + wasm.stderr
    ours, theirs = unix.stdout.splitlines(), wasm.stdout.splitlines()
    assert len(ours) == len(theirs) == 5  # four tests, then the module
    for a, b in zip(ours, theirs):
        ra, rb = json.loads(a), json.loads(b)
        assert list(ra) == list(rb)  # the same keys in the same order
        for key in ("test", "module", "ok", "tests", "output", "heap_grew"):
            assert ra.get(key) == rb.get(key)
        assert a.startswith('{"%s":' % list(ra)[0]) and ", " not in a and '": ' not in a  # no spaces
        # Milliseconds as JavaScript writes them: at most three decimals, no trailing zero.
        ms = a.split('"ms":', 1)[1].split(",")[0].rstrip("}")
        assert re.fullmatch(r"(0|[1-9][0-9]*)(\.[0-9]{0,2}[1-9])?", ms), ms
    assert ours[0].startswith('{"test":"tests/firmware/test_compat.py::test_ticks_diff_plain","ok":true,"ms":')


def test_runner_order_skip_output_failure_and_memory(tmp_path, micropython_unix):
    probe = "evpilot-runner-probe-%d" % os.getpid()
    module = _write(tmp_path / "tests" / "test_made_up.py", """\
        import os
        import evpilot

        MICROPYTHON_SKIP = ["test_c_skipped"]

        def test_z_first():
            print("hello", 42)
            print("second line")

        def test_b_fails():
            print("before the assert")
            assert 1 + 1 == 3, "arithmetic is broken"

        def test_c_skipped():
            raise RuntimeError("a skipped test ran")

        def helper():
            raise RuntimeError("not a test")

        def test_d_needs_more_heap():
            return bytearray(512 * 1024)

        def test_e_runs_after_memory_error():
            assert len(bytearray(64 * 1024)) == 65536

        def test_f_private_tmp():
            assert os.listdir("/tmp") == []
            os.mkdir("/tmp/d")
            for name in ("a", "bb"):
                with open("/tmp/d/" + name, "w") as f:
                    f.write(name)
            # Renames to a name no longer than the old one are those micropython#7389 breaks.
            os.rename("/tmp/d/bb", "/tmp/d/c")
            os.rename("/tmp/d/a", "/tmp/d/c")
            assert os.listdir("/tmp/d") == ["c"] and open("/tmp/d/c").read() == "a"
            with open("/tmp/%(probe)s", "w") as f:
                f.write("x")

        def test_g_where():
            # The repository is the working directory, and evpilot comes from its firmware folder.
            assert "pyproject.toml" in os.listdir() and "firmware" in os.listdir()
            assert evpilot.__file__.endswith("firmware/evpilot/__init__.py")
        """ % {"probe": probe})
    base = tmp_path / "tmpdir"
    base.mkdir()
    proc = mp_unix.run_script(RUNNER, module, heap="256k", env={"TMPDIR": str(base)})
    assert proc.returncode == 1, proc.stderr
    records = _records(proc.stdout)
    rel = os.path.relpath(str(module), mp_unix.REPO).replace(os.sep, "/")
    names = ["test_z_first", "test_b_fails", "test_c_skipped", "test_d_needs_more_heap",
             "test_e_runs_after_memory_error", "test_f_private_tmp", "test_g_where"]
    assert [r.get("test") for r in records] == [rel + "::" + n for n in names] + [None]
    by_name = dict(zip(names, records))
    assert by_name["test_z_first"]["ok"] is True
    assert by_name["test_z_first"]["output"] == "hello 42\nsecond line"
    assert by_name["test_b_fails"]["ok"] is False
    assert "AssertionError: arithmetic is broken" in by_name["test_b_fails"]["error"]
    assert by_name["test_b_fails"]["output"] == "before the assert"
    skipped = {"test": rel + "::test_c_skipped", "skipped": "CPython-only (MICROPYTHON_SKIP)"}
    assert by_name["test_c_skipped"] == skipped
    assert "MemoryError" in by_name["test_d_needs_more_heap"]["error"]
    for name in ("test_e_runs_after_memory_error", "test_f_private_tmp", "test_g_where"):
        assert by_name[name]["ok"] is True, by_name[name]
    module_line = records[-1]
    assert module_line["module"] == rel and module_line["ok"] is False and module_line["tests"] == 7
    assert module_line["heap"] == module_line["heap_total"] < 256 * 1024 and module_line["heap_grew"] is False
    # The private /tmp lived under $TMPDIR and is gone; nothing reached the real /tmp.
    assert list(base.iterdir()) == []
    assert not os.path.exists(os.path.join("/tmp", probe))


def test_runner_reports_a_module_that_fails_to_import(tmp_path, micropython_unix):
    module = _write(tmp_path / "test_broken.py", """\
        print("importing")
        import no_such_module_anywhere

        def test_never():
            pass
        """)
    proc = mp_unix.run_script(RUNNER, module)
    assert proc.returncode == 1
    (line,) = _records(proc.stdout)
    assert list(line) == ["module", "ok", "tests", "error", "output"]
    assert line["ok"] is False and line["tests"] == 1 and line["output"] == "importing"
    assert "no_such_module_anywhere" in line["error"]


def test_runner_usage_errors(tmp_path, micropython_unix):
    assert mp_unix.run_script(RUNNER).returncode == 2
    missing = mp_unix.run_script(RUNNER, tmp_path / "test_missing.py")
    assert missing.returncode == 2 and "no such test file" in missing.stderr


# --- evpilot_mp_unix --------------------------------------------------------------------------------------


def test_run_script_finds_evpilot_and_passes_arguments(tmp_path, micropython_unix):
    import evpilot

    script = _write(tmp_path / "where.py", """\
        import os, sys
        import evpilot
        print(evpilot.__version__, sys.argv[1:], sys.path[1], os.getcwd() == sys.argv[1])
        sys.exit(3)
        """)
    proc = mp_unix.run_script(script, mp_unix.REPO, 7)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.split() == [
        evpilot.__version__, "['%s'," % mp_unix.REPO, "'7']", mp_unix.FIRMWARE, "True"
    ]


def test_run_script_heap_is_fixed(tmp_path, micropython_unix):
    script = _write(tmp_path / "big.py", "buf = bytearray(1024 * 1024)\nprint(len(buf))\n")
    small = mp_unix.run_script(script, heap="256k")
    # This build prints an uncaught exception's traceback on stdout (the standard unix port: stderr).
    assert small.returncode == 1 and "MemoryError" in small.stdout + small.stderr
    large = mp_unix.run_script(script, heap=4 * 1024 * 1024)
    assert large.returncode == 0 and large.stdout.strip() == "1048576", large.stderr
    with pytest.raises(ValueError):
        mp_unix.heap_size("lots")


def test_missing_port_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("EVPILOT_MICROPYTHON", str(tmp_path / "no-such-micropython"))
    assert mp_unix.micropython_path() is None
    with pytest.raises(FileNotFoundError, match="not installed"):
        mp_unix.run_script(tmp_path / "any.py")


# --- the plugin, in a made-up tree ---------------------------------------------------------------------------

CONFTEST = """\
import importlib.util
import os

_spec = importlib.util.spec_from_file_location("evpilot_micropython_plugin", {plugin!r})
plugin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plugin)
plugin.FIRMWARE_TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests", "firmware") + os.sep


def pytest_configure(config):
    config.pluginmanager.register(plugin, "evpilot-micropython")
"""

MADE_UP = """\
MICROPYTHON_SKIP = ["test_cpython_only"]
MICROPYTHON_PORTS = ("unix",)


def test_passes():
    import sys
    assert sys.implementation.name in ("cpython", "micropython")


def test_fails_on_micropython():
    import sys
    print("implementation", sys.implementation.name)
    assert sys.implementation.name == "cpython", "not CPython"


def test_cpython_only():
    import sys
    assert sys.implementation.name == "cpython"
"""


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(CONFTEST.format(plugin=os.path.join(HERE, "pytest_plugin.py")))
    _write(tmp_path / "tests" / "firmware" / "test_made_up.py", MADE_UP)
    return tmp_path


def _pytest(tree, *args, **env):
    # Without the installed plugins (hypothesis, ...) pytest starts in a third of the time.
    environ = dict(os.environ, CI="", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    environ.pop("EVPILOT_MICROPYTHON", None)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=str(tree), env=environ,
        capture_output=True, text=True, timeout=300,
    )


def _outcomes(path):
    """{test name: (outcome, message)} from a JUnit XML report."""
    out = {}
    for case in ET.parse(str(path)).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, (child.get("message") or "") + "\n" + (child.text or "")
        out[case.get("name")] = (outcome, message)
    return out


def _collected(proc):
    return [line.split("::", 1)[1] for line in proc.stdout.splitlines() if "::" in line]


def test_plugin_runs_the_unix_port_and_honours_ports_and_skips(tree, micropython_unix):
    proc = _pytest(tree, "-q", "-m", "micropython", "--junitxml", str(tree / "report.xml"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    got = _outcomes(tree / "report.xml")
    assert set(got) == {name + "[mp-" + port + "]" for name in ("test_passes", "test_fails_on_micropython",
                        "test_cpython_only") for port in ("wasm", "unix")}
    assert got["test_passes[mp-unix]"][0] == "passed"
    outcome, message = got["test_fails_on_micropython[mp-unix]"]
    assert outcome == "failure" and "not CPython" in message and "implementation micropython" in message
    outcome, message = got["test_cpython_only[mp-unix]"]
    assert outcome == "skipped" and "MICROPYTHON_SKIP" in message
    for name in ("test_passes", "test_fails_on_micropython"):
        outcome, message = got[name + "[mp-wasm]"]
        assert outcome == "skipped" and "unix port only (MICROPYTHON_PORTS)" in message


def test_plugin_without_the_port_skips_outside_ci_and_fails_in_ci(tree):
    missing = str(tree / "no-such-micropython")
    names = {"test_passes[mp-unix]", "test_fails_on_micropython[mp-unix]", "test_cpython_only[mp-unix]"}
    proc = _pytest(tree, "-q", "-m", "mp_unix", "--junitxml", str(tree / "local.xml"), EVPILOT_MICROPYTHON=missing)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    local = _outcomes(tree / "local.xml")
    assert set(local) == names
    for name in names:
        assert local[name][0] == "skipped"
    assert "unix port is not installed" in local["test_passes[mp-unix]"][1]
    ci_run = ("-q", "-m", "mp_unix", "--junitxml", str(tree / "ci.xml"))
    proc = _pytest(tree, *ci_run, EVPILOT_MICROPYTHON=missing, CI="true")
    assert proc.returncode == 1
    ci = _outcomes(tree / "ci.xml")
    for name in ("test_passes[mp-unix]", "test_fails_on_micropython[mp-unix]"):
        assert ci[name][0] == "failure" and "cannot run in CI" in ci[name][1]
    assert ci["test_cpython_only[mp-unix]"][0] == "skipped"  # MICROPYTHON_SKIP still skips


def test_plugin_selection_by_marker_and_keyword(tree):
    proc = _pytest(tree, "--collect-only", "-q", "-m", "mp_wasm or not micropython")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _collected(proc) == [
        "test_passes", "test_passes[mp-wasm]", "test_fails_on_micropython", "test_fails_on_micropython[mp-wasm]",
        "test_cpython_only", "test_cpython_only[mp-wasm]",
    ]
    # -k once crashed collection (INTERNALERROR: the items' `function` attribute was a str).
    proc = _pytest(tree, "--collect-only", "-q", "-k", "passes and mp_unix")
    assert proc.returncode == 0 and "INTERNALERROR" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert _collected(proc) == ["test_passes[mp-unix]"]


def test_plugin_refuses_an_unknown_port(tree):
    _write(tree / "tests" / "firmware" / "test_bad_ports.py", """\
        MICROPYTHON_PORTS = ("unix", "esp32")


        def test_x():
            pass
        """)
    proc = _pytest(tree, "--collect-only", "-q", "tests/firmware/test_bad_ports.py")
    assert proc.returncode != 0
    expected = "MICROPYTHON_PORTS must be a tuple of port names out of wasm, unix, not ('unix', 'esp32')"
    assert expected in proc.stdout


def test_module_ports(request):
    plugin = request.config.pluginmanager.get_plugin("evpilot-micropython")
    assert plugin.module_ports(SimpleNamespace()) == ("wasm", "unix")
    assert plugin.module_ports(SimpleNamespace(MICROPYTHON_PORTS=("unix",))) == ("unix",)
    assert plugin.module_ports(SimpleNamespace(MICROPYTHON_PORTS=["wasm"])) == ("wasm",)
    for bad in ("unix", ("unix", "esp32"), ("unix", 1), 1):
        with pytest.raises(ValueError, match="MICROPYTHON_PORTS"):
            plugin.module_ports(SimpleNamespace(MICROPYTHON_PORTS=bad))


def test_every_firmware_test_has_a_twin_per_port():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", COMPAT],
        cwd=mp_unix.REPO, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = _collected(proc)
    plain = [i for i in ids if "[" not in i]
    assert len(plain) >= 4
    assert ids == [x for name in plain for x in (name, name + "[mp-wasm]", name + "[mp-unix]")]


def test_records_go_to_their_module(request):
    plugin = request.config.pluginmanager.get_plugin("evpilot-micropython")
    runs = {m: plugin._ModuleRun("wasm", m) for m in ("tests/firmware/test_a.py", "tests/firmware/test_b.py")}
    stdout = "\n".join([
        '{"test":"tests/firmware/test_a.py::test_x","ok":true,"ms":1,"output":""}',
        'no newline from a test{"test":"tests/firmware/test_a.py::test_y","ok":false,"error":"E","ms":2,"output":""}',
        '{"module":"tests/firmware/test_a.py","ok":false,"tests":2}',
        "Traceback: the interpreter died",
        '{"test":"tests/firmware/test_b.py::test_z","skipped":"CPython-only (MICROPYTHON_SKIP)"}',
    ])
    plugin._ModuleRun.parse(stdout, runs)
    a, b = runs["tests/firmware/test_a.py"], runs["tests/firmware/test_b.py"]
    assert sorted(a.tests) == ["tests/firmware/test_a.py::test_x", "tests/firmware/test_a.py::test_y"]
    assert a.tests["tests/firmware/test_a.py::test_y"]["error"] == "E" and a.module["tests"] == 2
    assert list(b.tests) == ["tests/firmware/test_b.py::test_z"] and b.module == {}
    assert b.stray == ["Traceback: the interpreter died"]


COUNTED = """\
import sys

if sys.implementation.name == "micropython":
    with open(__file__ + ".runs", "a") as f:  # one line per interpreter that imports this module
        f.write("run\\n")


def test_one():
    pass


def test_two():
    pass


def test_three():
    pass
"""


def test_plugin_under_xdist_runs_each_module_once(tree, micropython_unix):
    # pytest-xdist: every worker collects every item; a module's items for a port go to one worker (loadgroup)
    # and only that worker starts the module's interpreter.
    pytest.importorskip("xdist")
    for name in ("test_counted_a.py", "test_counted_b.py"):
        _write(tree / "tests" / "firmware" / name, COUNTED)
    proc = _pytest(tree, "-p", "xdist", "-n", "2", "--dist", "loadgroup", "-m", "mp_unix", "tests/firmware",
                   "--junitxml", str(tree / "report.xml"))
    assert proc.returncode == 1, proc.stdout + proc.stderr  # test_fails_on_micropython[mp-unix]
    got = {name.split("@")[0]: v for name, v in _outcomes(tree / "report.xml").items()}  # name@group
    assert got["test_fails_on_micropython[mp-unix]"][0] == "failure"
    assert got["test_cpython_only[mp-unix]"][0] == "skipped"
    for name in ("test_passes", "test_one", "test_two", "test_three"):
        assert got[name + "[mp-unix]"][0] == "passed", got
    for name in ("test_counted_a.py", "test_counted_b.py"):
        assert (tree / "tests" / "firmware" / (name + ".runs")).read_text() == "run\n"
