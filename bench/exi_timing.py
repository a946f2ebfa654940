# EXI encode/decode timing and heap use, on whichever interpreter runs it (MicroPython or CPython).
#
#   python bench/exi_timing.py SAMPLES.json [ROUNDS]
#   node tests/micropython/run.mjs --data SAMPLES.json --script bench/exi_timing.py SAMPLES.json [ROUNDS]
#
# SAMPLES.json comes from bench/samples.py ({name: [schema, hex]}). Prints one JSON object: for each sample
# the best microseconds per decode and per encode over 5 batches of at least 100 ms, and for the
# CertificateInstallationRes the bytes the decoder allocates (garbage collector off while it runs).

import gc
import json
import sys



if "firmware" not in sys.path:
    sys.path.insert(0, "firmware")
if "bench" not in sys.path:
    sys.path.insert(0, "bench")

import clock  # noqa: E402

from evpilot import exi  # noqa: E402


def best_us(fn, rounds):
    return round(clock.best_us(fn, rounds), 2)


def decode_heap(schema, data):
    gc.collect()
    before = gc.mem_alloc() if hasattr(gc, "mem_alloc") else None
    if before is None:
        return None
    gc.disable()
    try:
        exi.decode(schema, data)
        return gc.mem_alloc() - before
    finally:
        gc.enable()


def main(argv):
    with open(argv[1]) as f:
        samples = json.load(f)
    rounds = int(argv[2]) if len(argv) > 2 else 200
    impl = sys.implementation.name
    out = {"interpreter": impl, "rounds": rounds, "us": {}}
    for name in sorted(samples):
        schema, hexdata = samples[name]
        data = bytes.fromhex(hexdata)
        doc = exi.decode(schema, data)
        assert exi.encode(schema, doc) == data
        n = rounds if len(data) < 1000 else max(1, rounds // 20)  # a first guess; best_us adapts it
        out["us"][name] = {
            "bytes": len(data),
            "decode": best_us(lambda: exi.decode(schema, data), n),
            "encode": best_us(lambda: exi.encode(schema, doc), n),
        }
        if name.endswith("CertificateInstallationRes"):
            out["decode_heap_bytes_" + name] = decode_heap(schema, data)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
