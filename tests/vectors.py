"""Access to the shared test vectors (../shared/vectors beside the repository) for CPython-only tests.

The normalisation of libcbv2g's rendering (lib_to_ours) lives in tests/firmware/vectorlib.py, which the
MicroPython tests use too.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "firmware"))
from vectorlib import SCHEMA_OF_STANDARD, lib_to_ours  # noqa: E402,F401  (shared with the firmware tests)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
VECTORS = os.path.join(SHARED, "vectors")
EXI_JSONL = os.path.join(VECTORS, "exi.jsonl")
RISE = os.path.join(VECTORS, "pnc", "rise-v2g-signature-testdata")

def records(standards=("apphand", "din70121", "iso15118-2")):
    with open(EXI_JSONL, encoding="utf-8") as f:
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
