# Decode one sample under a small MicroPython heap: used by bench/exi_bench.py to find the smallest heap
# (run.mjs --heap) in which the codec, the schema set's tables and the decode of that sample fit, and to
# report what each of them holds.
#
#   node tests/micropython/run.mjs --heap 48k --data SAMPLES.json [--data MPYDIR] --script bench/exi_heap.py \
#       SAMPLES.json NAME [mpy]
#
# Prints one JSON line: gc.mem_alloc() (live bytes, after a collection) once the sample is read
# ("baseline"), after importing the codec, after loading the schema set's tables, with the decoded document
# alive, and the bytes the decode allocated in all (collector off).

import gc
import json
import sys

if "firmware" not in sys.path:
    sys.path.insert(0, "firmware")


def live():
    gc.collect()
    return gc.mem_alloc()


def main(argv):
    if len(argv) > 3 and argv[3] == "mpy":
        sys.path.insert(0, "/repo/.cache/bench/mpy")  # the firmware as .mpy, as a board loads it
    with open(argv[1]) as f:
        schema, hexdata = json.load(f)[argv[2]]
    data = bytes.fromhex(hexdata)
    del hexdata
    out = {"sample": argv[2], "bytes": len(data), "baseline": live()}
    from evpilot import exi
    from evpilot.exi import codec  # noqa: F401

    out["codec"] = live() - out["baseline"]
    exi.grammar(schema)
    out["tables"] = live() - out["baseline"] - out["codec"]
    before = live()
    gc.disable()
    doc = exi.decode(schema, data)
    out["decode_allocated"] = gc.mem_alloc() - before
    gc.enable()
    out["document"] = live() - before
    assert exi.encode(schema, doc) == data
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
