"""The test vectors for CPython-only tests: the project's own (tests/vectors) and the full corpus (../shared).

tests/vectors holds a subset of the full corpus chosen by tests/make_vectors.py (every message of every schema
set, real cars and chargers first) and the Plug&Charge files the tests read; every test can use it. The full
corpus of 3,664 streams and the reference PKIs live in ../shared beside the repository (or $EVPILOT_SHARED),
which CI has and a clone may not: a test that needs them takes its path from need_shared(), which skips the
test with the reason when it is missing.

The normalisation of libcbv2g's rendering (lib_to_ours) lives in tests/firmware/vectorlib.py, which the
MicroPython tests use too.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "firmware"))
from vectorlib import SCHEMA_OF_STANDARD, lib_to_ours  # noqa: E402,F401  (shared with the firmware tests)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VECTORS = os.path.join(ROOT, "tests", "vectors")
EXI_JSONL = os.path.join(VECTORS, "exi.jsonl")
RISE = os.path.join(VECTORS, "pnc", "rise-v2g-signature-testdata")
SCHEMAS = os.path.join(ROOT, "schemas")

SHARED = os.environ.get("EVPILOT_SHARED") or os.path.join(ROOT, "..", "shared")
CORPUS = os.path.join(SHARED, "vectors", "exi.jsonl")
HUBJECT = os.path.join(SHARED, "pki-reference", "hubject-test-2018")


def shared_missing(path=CORPUS):
    """None when `path` (under SHARED) exists, else why the tests that need it skip."""
    if os.path.exists(path):
        return None
    return "needs ../shared/%s beside the repository (the full test corpus and reference PKIs; CI has it)" % (
        os.path.relpath(path, SHARED).replace(os.sep, "/"))


def need_shared(path=CORPUS):
    """`path` (under SHARED); skips the calling test when it is missing."""
    reason = shared_missing(path)
    if reason:
        import pytest  # here, so that bench/ scripts can use records() without pytest

        pytest.skip(reason)
    return path


def records(standards=("apphand", "din70121", "iso15118-2"), full=False):
    """The records of the project's exi.jsonl of `standards`; with full=True those of the full corpus (the
    caller checks need_shared() first)."""
    with open(CORPUS if full else EXI_JSONL, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["standard"] in standards:
                yield r


def rise_fragments():
    """The RISE-V2G README's EXI blocks with their SHA-256, in order, for the MsgBody namespace section
    (the four referenced fragments, then the SignedInfo)."""
    with open(os.path.join(RISE, "README.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("CORRECT XML NAMESPACE \"urn:iso:15118:2:2013:MsgBody\"")
    end = text.index("## ", text.index("SIGNATURE GENERATION WITH CORRECT XML NAMESPACE"))
    section = text[start:end]
    out = []
    parts = section.split("EXI:\n")[1:]
    for part in parts:
        lines = part.split("\n")
        exi_hex = lines[0].strip()
        digest = None
        if "SHA-256:" in part:
            digest = part.split("SHA-256:\n", 1)[1].split("\n", 1)[0].strip()
        out.append((bytes.fromhex(exi_hex), digest))
    return out
