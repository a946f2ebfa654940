# firmware/package.json (for `mpremote mip install`) lists every firmware module, each from its own path
# relative to package.json, with the package's version; firmware/manifest.py freezes the whole package.

import json
import os

import evpilot
from evpilot_host import deploy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(REPO, "firmware")


def _modules():
    found = []
    for folder, dirs, names in os.walk(os.path.join(FIRMWARE, "evpilot")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found += [os.path.relpath(os.path.join(folder, n), FIRMWARE).replace(os.sep, "/")
                  for n in names if n.endswith(".py")]
    return sorted(found)


def test_package_json_lists_every_module():
    with open(os.path.join(FIRMWARE, "package.json")) as f:
        doc = json.load(f)
    assert doc["version"] == evpilot.__version__
    dests = [u[0] for u in doc["urls"]]
    assert dests == _modules(), ("firmware/package.json differs from firmware/evpilot: regenerate it with "
                                 "`python3 -m evpilot_host.deploy package-json`")
    for dest, src in doc["urls"]:
        assert src == dest and os.path.isfile(os.path.join(FIRMWARE, src))
    with open(os.path.join(FIRMWARE, "package.json")) as f:
        assert f.read() == deploy.package_json()


def test_manifest_freezes_the_package_after_the_port_default(tmp_path, monkeypatch):
    # Run as makemanifest runs it (in its own folder, with options); the prebuilt P-256 viper module it writes
    # goes to a .cache beside firmware/, here redirected into tmp_path by running a copy of the manifest.
    import shutil

    fw = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, fw, ignore=shutil.ignore_patterns("__pycache__"))

    class Options:
        def __init__(self, **kw):
            self.__dict__.update(kw)

        def __getattr__(self, name):
            return None

    for bits, layout in ((None, (13, 20, False)), (64, (29, 9, True))):
        calls = []
        env = {"include": lambda p: calls.append(("include", p)),
               "package": lambda name, **kw: calls.append(("package", name)),
               "module": lambda name, base_path=".": calls.append(("module", name, base_path)),
               "options": Options(word_bits=bits) if bits else Options()}
        monkeypatch.chdir(fw)
        with open(fw / "manifest.py") as f:
            exec(compile(f.read(), "manifest.py", "exec"), env)
        assert calls[:2] == [("include", "$(PORT_DIR)/boards/manifest.py"), ("package", "evpilot")]
        assert calls[2][:2] == ("module", "evpilot/pnc/p256_viper_native.py")
        native = os.path.join(calls[2][2], "evpilot", "pnc", "p256_viper_native.py")
        assert os.path.dirname(os.path.dirname(os.path.dirname(native))) == str(tmp_path / ".cache" / "frozen-native")
        text = open(native).read()
        assert "LAYOUT = (%d, %d, %s)" % layout in text and text.count("@micropython.viper") > 20
