# The fixed test PKI of tests/firmware/data/pnc (made by tests/make_pnc_fixture.py), for tests that run under
# CPython and MicroPython alike: der(role) -> certificate bytes, key(role) -> 32-byte private scalar,
# chain(leaf_role) -> [leaf, Sub-CA 2, Sub-CA 1] DERs, NOW_S the trusted time the tests pass, EMAID, PCID.

import binascii
import json

try:
    _HERE = __file__.rsplit("/", 1)[0]
except NameError:  # pragma: no cover
    _HERE = "tests/firmware"

_DIR = _HERE + "/data/pnc/"

with open(_DIR + "index.json") as _f:
    INDEX = json.load(_f)

NOW_S = INDEX["now_s"]
EMAID = INDEX["emaid"]
PCID = INDEX["pcid"]

# leaf role -> (Sub-CA 2, Sub-CA 1, root)
_CHAINS = {
    "secc_leaf": ("cpo_sub_ca2", "cpo_sub_ca1", "v2g_root"),
    "cps_leaf": ("cps_sub_ca2", "cps_sub_ca1", "v2g_root"),
    "contract_leaf": ("mo_sub_ca2", "mo_sub_ca1", "mo_root"),
    "contract_new": ("mo_sub_ca2", "mo_sub_ca1", "mo_root"),
    "oem_prov_leaf": ("oem_sub_ca2", "oem_sub_ca1", "oem_root"),
}


def der(role):
    with open(_DIR + role + ".der", "rb") as f:
        return f.read()


def key(role):
    with open(_DIR + role + ".hex") as f:
        return binascii.unhexlify(f.read().strip())


def chain(leaf_role):
    """[leaf, Sub-CA 2, Sub-CA 1] as DER, the order the messages carry them."""
    sub2, sub1, _root = _CHAINS[leaf_role]
    return [der(leaf_role), der(sub2), der(sub1)]


def root_of(leaf_role):
    return der(_CHAINS[leaf_role][2])
