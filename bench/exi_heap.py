# Decode one sample under a small MicroPython heap: used by bench/exi_bench.py to find the smallest heap
# (run.mjs --heap) in which the codec, the schema set's tables and the decode of that sample fit.
#
#   node tests/micropython/run.mjs --heap 48k --data SAMPLES.json [--data MPYDIR] --script bench/exi_heap.py \
#       SAMPLES.json NAME [mpy]

import gc
import json
import sys

if "firmware" not in sys.path:
    sys.path.insert(0, "firmware")


def main(argv):
    if len(argv) > 3 and argv[3] == "mpy":
        sys.path.insert(0, "/repo/.cache/bench/mpy")  # the firmware as .mpy, as a board loads it
    with open(argv[1]) as f:
        schema, hexdata = json.load(f)[argv[2]]
    data = bytes.fromhex(hexdata)
    del hexdata
    gc.collect()
    from evpilot import exi

    doc = exi.decode(schema, data)
    assert exi.encode(schema, doc) == data
    print(json.dumps({"sample": argv[2], "mem_alloc": gc.mem_alloc() if hasattr(gc, "mem_alloc") else None}))


if __name__ == "__main__":
    main(sys.argv)
