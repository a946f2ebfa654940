# P-256 timing and allocation (evpilot.pnc.p256), on whichever interpreter runs it (MicroPython or CPython).
#
#   python bench/p256_bench.py
#   node tests/micropython/run.mjs --script bench/p256_bench.py
#
# Prints one JSON object: the one-time cost of building the comb table for G (first public_key/sign), then
# for public_key, sign (559-byte SignedInfo of the RISE-V2G vector, SHA-256 included), verify and ecdh the
# best milliseconds per call over 5 batches of at least 100 ms, and (MicroPython only) the bytes each call
# allocates with the garbage collector off -- garbage, not live heap: it says how hard the GC works.
# Budgets (DESIGN.md): sign <= 5 ms, verify <= 10 ms on the MicroPython unix port.

import gc
import json
import sys

if "firmware" not in sys.path:
    sys.path.insert(0, "firmware")
if "bench" not in sys.path:
    sys.path.insert(0, "bench")

import clock  # noqa: E402

from evpilot.pnc import p256  # noqa: E402

D = bytes.fromhex("169FE1CBCE6CED08391F3235FD530DB84430F165E474117C0AC587D6554F581C")
PEER = bytes.fromhex(
    "040217e617f0b6443928278f96999e69a23a4f2c152bdf6d6cdf66e5b80282d4ed"
    "194a7debcb97712d2dda3ca85aa8765a56f45fc758599652f2897c65306e5794"
)
MESSAGE = bytes(range(256)) * 2 + bytes(47)  # as long as the vector's SignedInfo (559 bytes)


def best_ms(fn):
    return round(clock.best_us(fn) / 1000, 3)


def alloc_bytes(fn):
    if not hasattr(gc, "mem_alloc"):
        return None
    gc.collect()
    before = gc.mem_alloc()
    gc.disable()
    try:
        fn()
        return gc.mem_alloc() - before
    finally:
        gc.enable()


def main():
    t0 = clock.now()
    pub = p256.public_key(D)
    first_ms = clock.us(t0, clock.now()) / 1000
    sig = p256.sign(D, MESSAGE)
    assert p256.verify(pub, MESSAGE, sig)
    ops = {
        "public_key": lambda: p256.public_key(D),
        "sign": lambda: p256.sign(D, MESSAGE),
        "verify": lambda: p256.verify(pub, MESSAGE, sig),
        "ecdh": lambda: p256.ecdh(D, PEER),
    }
    out = {"interpreter": sys.implementation.name, "first_public_key_ms_with_table": round(first_ms, 3), "ms": {}}
    heap = {}
    for name in ("public_key", "sign", "verify", "ecdh"):
        out["ms"][name] = best_ms(ops[name])
        heap[name] = alloc_bytes(ops[name])
    if heap["sign"] is not None:
        out["alloc_bytes_per_call"] = heap
    print(json.dumps(out))


if __name__ == "__main__":
    main()
