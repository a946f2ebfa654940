"""Access to the shared test vectors (../shared/vectors beside the repository) and their normalisation.

libcbv2g's rendering of a document (the `libcbv2g.doc` field of exi.jsonl) differs from ours in ways its
README lists; `lib_to_ours` undoes them so both can be compared exactly:
  binary as hex strings -> bytes; booleans as 0/1 -> bool (guided by our decoded value's type);
  absent repeatable elements as [] -> absent; empty elements as {"_unused": 0} -> {};
  xs:integer as {"negative", "raw_octets"} -> int; a repeatable Transform rendered as one dict -> [dict]
  (libcbv2g sizes that array at one element and drops the list).
"""

import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
VECTORS = os.path.join(SHARED, "vectors")
EXI_JSONL = os.path.join(VECTORS, "exi.jsonl")
RISE = os.path.join(VECTORS, "pnc", "rise-v2g-signature-testdata")

SCHEMA_OF_STANDARD = {"apphand": "apphand", "din70121": "din", "iso15118-2": "iso2"}


def records(standards=("apphand", "din70121", "iso15118-2")):
    with open(EXI_JSONL, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["standard"] in standards:
                yield r


def lib_to_ours(lib, ours):
    """libcbv2g's rendering of a value, turned into ours where the two only differ in rendering."""
    if isinstance(lib, dict) and set(lib) == {"negative", "raw_octets"} and isinstance(ours, int):
        v = int(lib["raw_octets"], 16) if lib["raw_octets"] else 0
        return -v - 1 if lib["negative"] else v
    if isinstance(lib, dict) and lib == {"_unused": 0}:
        return {}
    if isinstance(lib, dict):
        out = {}
        for k, v in lib.items():
            if v == [] and k not in (ours or {}):
                continue
            o = ours.get(k) if isinstance(ours, dict) else None
            if k == "Transform" and isinstance(v, dict) and isinstance(o, list):
                v = [v]
            out[k] = lib_to_ours(v, o)
        return out
    if isinstance(lib, list):
        ol = ours if isinstance(ours, list) else [None] * len(lib)
        return [lib_to_ours(v, o) for v, o in zip(lib, ol + [None] * (len(lib) - len(ol)))]
    if isinstance(lib, str) and isinstance(ours, (bytes, bytearray)):
        return bytes.fromhex(lib)
    if isinstance(lib, int) and isinstance(ours, bool):
        return bool(lib)
    return lib


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
