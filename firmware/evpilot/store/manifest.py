# The store's manifest: its shape, check value and which data files it references.
#
# On disk: compact JSON, a newline, the check value (first 8 bytes of SHA-256 of the JSON, in hex), a
# newline. A torn or damaged manifest fails the check value; one of the wrong shape fails check(). Fields:
#   {"v": 1, "next": <number for the next data file>,
#    "roots": {<SKI hex>: {"subject": str, "cert": ENTRY}},
#    "oem": null | {"pcid": str, "chain": [ENTRY, ...], "key": ENTRY},
#    "contracts": {<name>: {"emaid": str, "nb": int, "na": int, "chain": [ENTRY, ...], "key": ENTRY}},
#    "meta": {...}}
# ENTRY = [file name "f<n>.der" | "f<n>.key", size, check value of the file's bytes]. No key bytes here.

import hashlib
import json

VERSION = 1


def check_value(data):
    return hashlib.sha256(data).digest()[:8].hex()


def is_data_name(name):
    dot = name.find(".")
    return name[:1] == "f" and name[1:dot].isdigit() and name[dot:] in (".der", ".key")


def encode(m):
    body = json.dumps(m, separators=(",", ":")).encode()
    return body + b"\n" + check_value(body).encode() + b"\n"


def decode(data):
    """The manifest from the file's bytes; ValueError (with the reason) when torn, damaged or malformed."""
    cut = data.rfind(b"\n", 0, len(data) - 1)
    if cut < 0 or data[-1:] != b"\n":
        raise ValueError("truncated (no check value)")
    body = data[:cut]
    if check_value(body).encode() != data[cut + 1:-1]:
        raise ValueError("check value mismatch (truncated or damaged)")
    try:
        m = json.loads(body.decode())
        check(m)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, UnicodeError):
        raise ValueError("not a store manifest (wrong JSON or fields)")
    return m


def empty():
    return {"v": VERSION, "next": 1, "roots": {}, "oem": None, "contracts": {}, "meta": {}}


def _check_entry(e):
    if not (isinstance(e, list) and len(e) == 3 and is_data_name(e[0]) and isinstance(e[1], int)
            and isinstance(e[2], str)):
        raise ValueError("bad file entry")


def check(m):
    """Raise ValueError/TypeError/KeyError unless m has the manifest's shape (so later code can trust it)."""
    if m["v"] != VERSION or not isinstance(m["next"], int):
        raise ValueError("version")
    for ski in m["roots"]:
        r = m["roots"][ski]
        str(r["subject"])
        _check_entry(r["cert"])
    oem = m["oem"]
    if oem is not None:
        str(oem["pcid"])
        _check_entry(oem["key"])
        for e in oem["chain"]:
            _check_entry(e)
    for name in m["contracts"]:
        c = m["contracts"][name]
        if not (isinstance(c["emaid"], str) and isinstance(c["nb"], int) and isinstance(c["na"], int)):
            raise ValueError("contract")
        _check_entry(c["key"])
        for e in c["chain"]:
            _check_entry(e)
    if not isinstance(m["meta"], dict):
        raise ValueError("meta")


def referenced(m):
    names = [m["roots"][k]["cert"][0] for k in m["roots"]]
    sets = [m["contracts"][k] for k in m["contracts"]]
    if m["oem"] is not None:
        sets.append(m["oem"])
    for s in sets:
        names.append(s["key"][0])
        for e in s["chain"]:
            names.append(e[0])
    return names
