"""One build step beside pyproject.toml, which holds everything else about the distribution.

The installed `evpilot` command reads two kinds of data that live at the top of the source tree, outside the
three package folders (firmware/evpilot, sim/evpilot_sim, host/evpilot_host): the XSDs (schemas/, for `evpilot exi generate`)
and the test-PKI profiles (certs/profiles.json, for `evpilot pki` and `evpilot demo --pnc`). package-data can
only name files inside a package folder, so build_py copies them into the built evpilot_host package, as
evpilot_host/schemas/... and evpilot_host/certs/profiles.json. An editable install leaves them where they are:
exigen.default_schemas_dir() and pki.PROFILES_PATH look in the package first and in the source tree second.
MANIFEST.in puts the same files into an sdist.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

# (source, relative to this file; destination inside the built evpilot_host package)
PACKAGE_DATA = (("schemas", "schemas"), ("certs/profiles.json", "certs/profiles.json"))


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        here = os.path.dirname(os.path.abspath(__file__))
        for src, dst in PACKAGE_DATA:
            source = os.path.join(here, *src.split("/"))
            target = os.path.join(self.build_lib, "evpilot_host", *dst.split("/"))
            if os.path.isdir(source):
                self.copy_tree(source, target)
            else:
                self.mkpath(os.path.dirname(target))
                self.copy_file(source, target)


setup(cmdclass={"build_py": BuildPyWithData})
