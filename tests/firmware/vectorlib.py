# Test-vector helpers for tests that run under CPython and MicroPython alike (no os.path, no pathlib).
#
# vector(path) names a file of the project's own vectors, tests/vectors (a subset of the full corpus chosen by
# tests/make_vectors.py: every message of every schema set, real cars and chargers first, and the Plug&Charge
# files the tests read). shared(path) names a file under ../shared beside the repository (or
# $EVPILOT_SHARED), which holds the full corpus of 3,664 streams and the reference PKIs and may be absent: a
# test that needs it calls need_shared(path) first, which skips it under pytest with the reason, and its
# module lists it in MICROPYTHON_SKIP when shared_missing(path) gives a reason, so the MicroPython runners
# skip it too. All paths are found from this file's own place (the MicroPython runners mirror the layout).
#
# lib_to_ours(lib, ours) turns libcbv2g's rendering of a document (the `libcbv2g.doc` field of exi.jsonl) into
# ours where the two differ only in rendering:
#   binary as hex strings -> bytes; booleans as 0/1 -> bool; absent repeatable elements as [] -> absent;
#   empty elements as {"_unused": 0} -> {}; xs:integer as {"negative", "raw_octets"} -> int; a repeatable
#   Transform rendered as one dict -> a one-item list (libcbv2g sizes that array at one).

import json

try:
    _HERE = __file__.rsplit("/", 1)[0]
except NameError:  # pragma: no cover
    _HERE = "tests/firmware"

SCHEMA_OF_STANDARD = {"apphand": "apphand", "din70121": "din", "iso15118-2": "iso2"}


def _shared_root():
    try:
        import os

        root = os.getenv("EVPILOT_SHARED")  # the webassembly port has no environment: None or no getenv
    except (ImportError, AttributeError):
        root = None
    return root.rstrip("/") + "/" if root else _HERE + "/../../../shared/"


_SHARED = _shared_root()


def vector(path):
    return _HERE + "/../vectors/" + path


def shared(path):
    return _SHARED + path


def shared_missing(path):
    """None when ../shared/<path> can be read, else why the tests that need it skip."""
    try:
        open(shared(path)).close()
    except OSError:
        return "needs ../shared/%s beside the repository (the full test corpus and reference PKIs; CI has it)" % path
    return None


def need_shared(path):
    """Skip the calling test under pytest when ../shared/<path> is missing. MicroPython never runs such a test
    then: its module names it in MICROPYTHON_SKIP when shared_missing(path) gives a reason."""
    reason = shared_missing(path)
    if reason:
        import pytest  # CPython only: see above

        pytest.skip(reason)


def exi_records(every=1, standards=("apphand", "din70121", "iso15118-2"), full=False):
    """Records of the project's exi.jsonl (with full=True: the full corpus in ../shared), one in `every` (by
    line number), parsed lazily."""
    n = 0
    with open(shared("vectors/exi.jsonl") if full else vector("exi.jsonl")) as f:
        for line in f:
            n += 1
            if (n - 1) % every:
                continue
            r = json.loads(line)
            if r["standard"] in standards:
                yield r


def lib_to_ours(lib, ours):
    if isinstance(lib, dict):
        if isinstance(ours, int) and not isinstance(ours, bool) and "raw_octets" in lib:
            v = int(lib["raw_octets"], 16) if lib["raw_octets"] else 0
            return -v - 1 if lib["negative"] else v
        if lib == {"_unused": 0}:
            return {}
        out = {}
        for k in lib:
            v = lib[k]
            if v == [] and not (isinstance(ours, dict) and k in ours):
                continue
            o = ours.get(k) if isinstance(ours, dict) else None
            if k == "Transform" and isinstance(v, dict) and isinstance(o, list):
                v = [v]
            out[k] = lib_to_ours(v, o)
        return out
    if isinstance(lib, list):
        ol = ours if isinstance(ours, list) else []
        return [lib_to_ours(lib[i], ol[i] if i < len(ol) else None) for i in range(len(lib))]
    if isinstance(lib, str) and isinstance(ours, (bytes, bytearray)):
        return bytes.fromhex(lib)
    if isinstance(lib, int) and isinstance(ours, bool):
        return bool(lib)
    return lib


def check_record(exi, r):
    """Decode a record's stream, compare with libcbv2g's document, re-encode to the same bytes; returns the
    number of trailing zero bytes the stream carried after the document."""
    lib = r["libcbv2g"]
    data = bytes.fromhex(r["hex"])
    # lenient: libcbv2g, like the deployed codecs, reads values the XSD facets forbid but the bits carry; a
    # few captures hold one (tests/firmware/test_exi_facets.py checks the strict codec on every record).
    if lib["schema"] == "iso2frag":
        doc = exi.decode_fragment("iso2", data, lenient=True)
        again = exi.encode_fragment("iso2", doc, lenient=True)
    else:
        assert lib["schema"] == SCHEMA_OF_STANDARD[r["standard"]], r["source"]
        doc = exi.decode(lib["schema"], data, lenient=True)
        again = exi.encode(lib["schema"], doc, lenient=True)
    assert doc == lib_to_ours(lib["doc"], doc), r["source"]
    trailing = lib["trailing_zero_bytes"]
    assert again == data[: len(data) - trailing], r["source"]
    return trailing
