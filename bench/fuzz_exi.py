"""Fuzz the EXI decoders with mutated real streams; prints one JSON object.

    python bench/fuzz_exi.py [--full] [CASES] [SEED]        (default 100000 cases, seed 1)

Each case mutates a random stream of the project's tests/vectors/exi.jsonl (every message of every schema
set; with --full, of the full corpus, which then must be at ../shared/vectors/exi.jsonl beside the
repository or in $EVPILOT_SHARED) with tests/exi_mutate.py (bit flips, truncation, extension, inserted and
deleted bytes, runs that become huge lengths, splices, random bodies) and decodes it with its own schema
set, as a document and as a fragment. Only ExiError may come out; any
other exception is counted, and the first few are printed with their input. The slowest case is reported
in milliseconds (a decoder that could loop or allocate without bound would show here).
"""

import json
import os
import random
import sys
import time
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "firmware"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from evpilot import exi  # noqa: E402
from evpilot.errors import ExiError  # noqa: E402
from exi_mutate import mutate  # noqa: E402
from vectors import CORPUS, EXI_JSONL, records, shared_missing  # noqa: E402


def main(argv):
    full = "--full" in argv
    argv = [a for a in argv if a != "--full"]
    if full and shared_missing():
        print(json.dumps({"bench": "fuzz_exi", "error": "--full " + shared_missing()}))
        return 2
    cases = int(argv[0]) if argv else 100000
    seed = int(argv[1]) if len(argv) > 1 else 1
    rnd = random.Random(seed)
    corpus = {"apphand": [], "din": [], "iso2": []}
    for r in records(full=full):
        s = r["libcbv2g"]["schema"]
        if s in corpus:
            corpus[s].append(bytes.fromhex(r["hex"]))
    schemas = sorted(corpus)
    counts = {"decoded": 0, "exi_error": 0, "other_error": 0}
    failures = []
    slowest = (0.0, None)
    largest_input = 0
    tracemalloc.start()
    t_start = time.perf_counter()
    for i in range(cases):
        schema = schemas[i % 3]
        data = mutate(rnd.choice(corpus[schema]), rnd, corpus[schema])
        largest_input = max(largest_input, len(data))
        for fn in (exi.decode, exi.decode_fragment):
            t0 = time.perf_counter()
            try:
                fn(schema, data)
                counts["decoded"] += 1
            except ExiError:
                counts["exi_error"] += 1
            except Exception as e:  # the defect this script looks for
                counts["other_error"] += 1
                if len(failures) < 5:
                    failures.append({"schema": schema, "hex": data.hex(), "error": repr(e)})
            dt = (time.perf_counter() - t0) * 1000
            if dt > slowest[0]:
                slowest = (dt, len(data))
    _, peak = tracemalloc.get_traced_memory()
    print(json.dumps({
        "bench": "fuzz_exi", "corpus": os.path.relpath(CORPUS if full else EXI_JSONL, ROOT),
        "streams": sum(len(v) for v in corpus.values()), "cases": cases, "decodes": 2 * cases, "seed": seed, **counts,
        "slowest_ms": round(slowest[0], 3), "slowest_input_bytes": slowest[1],
        "largest_input_bytes": largest_input, "peak_traced_kib": round(peak / 1024, 1),
        "seconds": round(time.perf_counter() - t_start, 1), "failures": failures,
    }, indent=1))
    return 1 if counts["other_error"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
