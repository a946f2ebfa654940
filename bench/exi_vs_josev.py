"""Our EXI codec next to Josev's (EXIficient in a JVM over py4j, from the iso15118 package; test-only).

    python bench/exi_vs_josev.py

Prints one JSON object: for DIN and ISO-2 CurrentDemandReq/Res (real captures), microseconds per encode and
per decode with evpilot's codec and with Josev's path (JSON -> Java data model -> EXIficient, as Josev runs
it), plus the bridge's direct XML path, all warmed up; and the JVM start time. Josev's figures include the
py4j round trip and the document conversion, as in Josev itself.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "firmware"))
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))
sys.path.insert(0, HERE)

import exificient  # noqa: E402
from samples import samples  # noqa: E402

from evpilot import exi  # noqa: E402


def per_call_us(fn, n):
    for _ in range(max(1, n // 5)):
        fn()
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = (time.perf_counter() - t0) / n * 1e6
        best = dt if best is None or dt < best else best
    return round(best, 1)


def main():
    ok, reason = exificient.available()
    if not ok:
        print(json.dumps({"bench": "exi_vs_josev", "error": reason}))
        return 1
    out = {"bench": "exi_vs_josev", "jvm_start_s": round(exificient.startup_seconds(), 2), "us": {}}
    for name, (schema, data) in samples().items():
        if "CurrentDemand" not in name:
            continue
        doc = exi.decode(schema, data)
        assert exificient.encode(schema, doc) == data
        row = {"bytes": len(data)}
        row["evpilot_encode"] = per_call_us(lambda: exi.encode(schema, doc), 2000)
        row["evpilot_decode"] = per_call_us(lambda: exi.decode(schema, data), 2000)
        row["josev_encode"] = per_call_us(lambda: exificient.encode(schema, doc, via="json"), 30)
        row["josev_decode"] = per_call_us(lambda: exificient.decode(schema, data, via="json"), 30)
        row["exificient_xml_encode"] = per_call_us(lambda: exificient.encode(schema, doc, via="xml"), 200)
        row["exificient_xml_decode"] = per_call_us(lambda: exificient.decode(schema, data, via="xml"), 200)
        out["us"][name] = row
    print(json.dumps(out, indent=1))
    exificient.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
