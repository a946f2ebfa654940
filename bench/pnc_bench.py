"""Plug&Charge benchmark driver (CPython): the smallest MicroPython heap for the EV's side of ISO-2 sessions
(Plug&Charge with certificate installation, EIM; each with and without TLS), where that heap goes, and the EV's
CPU time. Prints one JSON object.

    python3 bench/pnc_bench.py [--quick] [--mp-src DIR] [--unix BIN] [--unix-frozen BIN] [--no-wasm]

How this works
--------------
1. bench/pnc_heap.py record: one live session each (EV against station, CPython) -> .cache/bench/pnc_trace.bin
   and eim_trace.bin (the station's bytes and every call into the EV, plus hashes of the EV's requests);
   pnc_heap.py replay on CPython must reach Done with identical requests before anything is measured.
2. The firmware (and sim/evpilot_sim, whose SimVehicle stands in for a board's vehicle code) is compiled to
   .mpy into .cache/bench/mpy, the harness bench/pnc_heap.py into .cache/bench/harness (bench/heap_bench.py).
3. The MicroPython unix port built 32-bit (same version as the webassembly port, v1.27.0), whose GC runs
   normally and raises MemoryError (-X heapsize=N): firmware from .py, from .mpy (into RAM, as a board loads
   .mpy files from its filesystem) and frozen into the binary (bytecode in ROM, as a board with frozen
   firmware: the budget's figure). Binaries in .cache/micropython-unix/; --mp-src DIR (re)builds them from a
   MicroPython source tree at tag v1.27.0 (needs gcc -m32: Debian package gcc-multilib; about two minutes).
     The frozen one holds the firmware (and sim/evpilot_sim, whose SimVehicle stands in for a board's own
     vehicle code) as it was when built: pass --mp-src again after firmware changes. With mbedTLS in the
     tree's lib/mbedtls (its git submodule) the binaries have the `tls` module and the TLS sessions run.
   For every binary and session, bench/heap_bench.py measure(): the live set before the session and the
   largest at checkpoints (a profile run in a 4 MB heap), heap_min_bytes by bisection (1 KB steps; the
   smallest size from which 5 consecutive sizes pass: fragmentation makes "fits" not quite monotonic), and
   fails_at, where the largest failing heap ran out (the MemoryError's innermost frames, or the TLS error).
   Budget (DESIGN.md): PnC with installation over TLS, frozen, <= 128 KB (budget_met); 64 KB the aim
   (aim_met). The heap includes the harness (pnc_heap.py as .mpy, its buffers; live_start_harness).
4. The webassembly port (tests/micropython/run.mjs --heap N), firmware as .py and as .mpy, Plug&Charge
   without TLS only. This port never collects garbage while a script runs: its gc_collect() only marks a
   collection as pending, done the next time JavaScript calls into the interpreter
   (ports/webassembly/main.c, MICROPY_GC_SPLIT_HEAP_AUTO), and a full heap gets another heap area instead. A
   single run.mjs --script therefore needs a heap as large as everything it allocates, garbage included
   (bisected only up to 512k; heap_min_bisection says how much the heap grew in a 512k run); not the
   budget's figure.
5. ev_cpu_ms: bench/pnc_session.py on CPython, the webassembly port and the unix port (best of a few runs).
--quick: 3 consecutive passing sizes instead of 5 and 2 timing runs; --no-wasm: leave the webassembly port out.
"""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench_cli  # noqa: E402

RUNNER = os.path.join(ROOT, "tests", "micropython", "run.mjs")
CACHE = os.path.join(ROOT, ".cache", "bench")
TRACE = os.path.join(CACHE, "pnc_trace.bin")
MPY_DIR = os.path.join(CACHE, "mpy")
UNIX_DIR = os.path.join(ROOT, ".cache", "micropython-unix")
UNIX = os.path.join(UNIX_DIR, "micropython-1.27.0-x86-32")
UNIX_FROZEN = os.path.join(UNIX_DIR, "micropython-1.27.0-x86-32-frozen")
BUDGET = 64 * 1024  # the aim (DESIGN.md)
BUDGET_MUST = 128 * 1024  # the budget: ISO-2 Plug&Charge with installation over TLS, firmware frozen, 32-bit
REPLAY = ["bench/pnc_heap.py", "replay", os.path.relpath(TRACE, ROOT)]


def rel(path):
    return os.path.relpath(path, ROOT)


def last_json(text):
    for line in reversed((text or "").strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


def run(cmd, timeout=900):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


# ---- MicroPython unix port, 32-bit ---------------------------------------------------------------------------

def build_unix(src):
    """Build the plain and the frozen-firmware 32-bit unix binaries from a MicroPython source tree; with TLS
    (the `tls` module on mbedTLS) when the tree has mbedTLS in lib/mbedtls (its submodule), without it
    otherwise."""
    unix = os.path.join(src, "ports", "unix")
    ssl = "1" if os.path.isdir(os.path.join(src, "lib", "mbedtls", "library")) else "0"
    common = ["make", "-C", unix, "-j8", "MICROPY_FORCE_32BIT=1", "MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0",
              "MICROPY_PY_SSL=" + ssl]
    os.makedirs(UNIX_DIR, exist_ok=True)
    steps = [(["make", "-C", os.path.join(src, "mpy-cross"), "-j8"], None),
             (common + ["BUILD=build-evpilot32", "FROZEN_MANIFEST="], ("build-evpilot32", UNIX))]
    manifest = os.path.join(CACHE, "frozen_manifest.py")
    native_dir = os.path.join(CACHE, "frozen-native")
    os.makedirs(os.path.join(native_dir, "evpilot", "pnc"), exist_ok=True)
    sys.path.insert(0, os.path.join(ROOT, "firmware"))
    from evpilot.pnc import p256_viper

    with open(os.path.join(native_dir, "evpilot", "pnc", "p256_viper_native.py"), "w") as f:
        f.write(p256_viper.native_module(13, False))
    with open(manifest, "w") as f:
        f.write('package("evpilot", base_path=%r)\n' % os.path.join(ROOT, "firmware"))
        # The simulated vehicle stands in for the board's own vehicle code, which a board freezes too.
        f.write('package("evpilot_sim", base_path=%r)\n' % os.path.join(ROOT, "sim"))
        # P-256's viper code prebuilt for the 32-bit layout (p256_viper.native_module), frozen with the
        # port's native emitter (-march=x86 below), as a board's build freezes it for its architecture.
        f.write('freeze(%r, "evpilot/pnc/p256_viper_native.py")\n' % native_dir)
    # makemanifest only checks that micropython-lib is there; the manifest needs nothing from it.
    fake_lib = os.path.join(CACHE, "no-micropython-lib")
    os.makedirs(fake_lib, exist_ok=True)
    open(os.path.join(fake_lib, "README.md"), "w").close()
    steps.append((common + ["BUILD=build-evpilot32-frozen", "FROZEN_MANIFEST=" + manifest, "MPY_LIB_DIR=" + fake_lib,
                            "MPY_CROSS_FLAGS=-march=x86"],
                  ("build-evpilot32-frozen", UNIX_FROZEN)))
    import shutil

    # makemanifest recompiles a frozen module only when its .py is newer than its .mpy in the build tree: a
    # checkout (git archive, an older commit) can be older, so the frozen .mpy files are always made again.
    shutil.rmtree(os.path.join(unix, "build-evpilot32-frozen", "frozen_mpy"), ignore_errors=True)
    for cmd, result in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit("building MicroPython failed: %s\n%s" % (" ".join(cmd), proc.stderr[-2000:]))
        if result:
            shutil.copy(os.path.join(unix, result[0], "micropython"), result[1])


def replay_unix(binary, heap_kb, mpy=False, profile=False):
    cmd = [binary]
    if heap_kb:
        cmd += ["-X", "heapsize=%dk" % heap_kb]
    cmd += REPLAY + (["mpy"] if mpy else []) + (["profile"] if profile else ["bare"])
    proc = run(cmd)
    out = last_json(proc.stdout)
    return proc.returncode == 0 and out is not None and out.get("done") is True, out, proc


# ---- webassembly port ----------------------------------------------------------------------------------------

def replay_wasm(heap_kb, mpy=False):
    cmd = ["node", RUNNER, "--heap", "%dk" % heap_kb, "--data", rel(TRACE)]
    if mpy:
        cmd += ["--data", rel(MPY_DIR)]
    cmd += ["--script"] + REPLAY + (["mpy"] if mpy else [])
    proc = run(cmd)
    out = last_json(proc.stdout)
    ok = proc.returncode == 0 and out is not None and out.get("done") is True and not out.get("heap_grew")
    return ok, out, proc


# ---- bisection -------------------------------------------------------------------------------------------------

def bisect(fits, lo=16, hi=512, top=2048, window=0):
    """Smallest heap (KB) for which fits(kb) holds, by bisection (1 KB steps) as if larger always fitted. That
    is not quite so (fragmentation: a heap can fail where a smaller one passed), so with `window` the sizes
    from kb - window to kb + window are all tried: "kb" is then the smallest size from which every tried size
    passes, "lowest_pass_kb" the smallest that passed, "fails_kb" the sizes in the window that failed."""
    runs = [0]

    def ok(kb):
        runs[0] += 1
        return fits(kb)

    while not ok(hi):
        if hi >= top:
            return {"kb": None, "tried_up_to_kb": hi, "runs": runs[0]}
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    if not window:
        return {"kb": hi, "one_kb_less_fails": not ok(hi - 1), "runs": runs[0]}
    tried = dict((kb, ok(kb)) for kb in range(max(1, hi - window), hi + window + 1))
    stable = hi + window
    while stable - 1 in tried and tried[stable - 1]:
        stable -= 1
    passed = [kb for kb in tried if tried[kb]]
    return {"kb": stable if tried[stable] else None, "bisection_kb": hi,
            "lowest_pass_kb": min(passed) if passed else None,
            "fails_kb": sorted(kb for kb in tried if not tried[kb]), "window_kb": [min(tried), max(tried)],
            "runs": runs[0]}


# ---- EV CPU time -----------------------------------------------------------------------------------------------

def session_summary(out):
    if not out:
        return None
    keep = ("ev_ms", "ev_cpu_ms", "split_ms", "certificate_installation_ms", "accept_ms", "messages",
            "current_demand_cycles", "p256_ops", "p256_ms")
    res = {"runs": out["runs"], "first_install_session_ev_ms": out["first_install_session_ev_ms"]}
    for kind in ("install", "contract"):
        res[kind] = dict((k, out[kind][k]) for k in keep if k in out[kind])
    return res


def main(argv):
    opts = bench_cli.options(argv, __doc__, ("--quick", "--no-wasm"), ("--mp-src", "--unix", "--unix-frozen"))
    quick = "--quick" in argv
    os.makedirs(CACHE, exist_ok=True)
    result = {"bench": "pnc", "session": "ISO-2 DC Plug&Charge with certificate installation (EV store: V2G root, "
              "MO root, OEM provisioning chain + key, no contract), EV side only; unix32 also ISO-2 DC EIM, and "
              "both over TLS (bench/heap_bench.py SESSIONS)",
              "tls": "unix32 *_tls rows: TLS 1.2 on the port's mbedTLS against a CPython ssl station "
                     "(bench/tls_station.py); elsewhere both sides are only told the link is TLS (no ssl in the "
                     "webassembly port)",
              "budget_heap_bytes": BUDGET, "budget_must_bytes": BUDGET_MUST}

    # 1. Record (both traces), and check that the EV alone reproduces the session.
    import heap_bench

    for trace, extra in ((TRACE, []), (os.path.join(CACHE, "eim_trace.bin"), ["eim"])):
        proc = run([sys.executable, "bench/pnc_heap.py", "record", rel(trace)] + extra)
        if proc.returncode != 0:
            raise SystemExit("recording failed:\n" + proc.stdout[-2000:] + proc.stderr[-2000:])
    ok, check, proc = replay_unix(sys.executable, None, profile=True)  # CPython: no heap figures, all checks
    if not ok:
        raise SystemExit("the replay on CPython does not reproduce the session:\n" + proc.stdout + proc.stderr[-2000:])
    result["trace"] = {"bytes": os.path.getsize(TRACE), "events": check["events"], "cpython_replay_done": True}

    # 2. .mpy files (firmware and sim, bench/heap_bench.py), and the harness as .mpy.
    try:
        heap_bench.compile_mpy()
        have_mpy = True
    except ImportError:
        have_mpy = False
    heap_bench.harness_mpy()
    import shutil

    shutil.rmtree(heap_bench.STORE, ignore_errors=True)  # provisioned again by this firmware

    # 3. Unix binaries: every session, in the heap_bench way (bisection, live set, largest failing heap).
    unix = opts.get("--unix", os.environ.get("EVPILOT_MP_UNIX", UNIX))
    frozen = opts.get("--unix-frozen", os.environ.get("EVPILOT_MP_UNIX_FROZEN", UNIX_FROZEN))
    if "--mp-src" in opts:
        build_unix(opts["--mp-src"])
    variants = []  # (key, binary, form)
    if os.path.exists(unix):
        variants.append(("unix32_py", unix, "py"))
        if have_mpy:
            variants.append(("unix32_mpy", unix, "mpy"))
    if os.path.exists(frozen):
        variants.append(("unix32_frozen", frozen, "frozen"))

    heap_min, checks, where_goes = {}, {}, {}
    for key, binary, form in variants:
        has_tls = run([binary, "-c", "import tls"]).returncode == 0
        for session in heap_bench.SESSIONS:
            if heap_bench.SESSIONS[session][3] and not has_tls:
                continue
            row = heap_bench.measure(binary, session, form, 2 if quick else 4)
            name = key + "_" + session
            heap_min[name] = row.pop("heap_min_bytes", None)
            checks[name] = row.pop("bisection", None)
            where_goes[name] = row
    if "--no-wasm" not in argv:
        for key, mpy in (("wasm_py", False), ("wasm_mpy", True)):
            if mpy and not have_mpy:
                continue
            b = bisect(lambda kb: replay_wasm(kb, mpy=mpy)[0], top=512)
            heap_min[key] = None if b["kb"] is None else b["kb"] * 1024
            checks[key] = b
            ok, out, proc = replay_wasm(512, mpy=mpy)
            if out and out.get("heap_grew"):
                checks[key]["heap_areas_added_in_512k_run_bytes"] = out.get("heap_total_growth")
                checks[key]["first_growth_at"] = out.get("heap_grew_at")
        result["wasm_note"] = ("the webassembly port does not collect garbage while a script runs (gc_collect only "
                               "sets a flag; MICROPY_GC_SPLIT_HEAP_AUTO), it adds heap areas: a run.mjs --heap "
                               "bisection measures all bytes allocated, garbage included, not the heap a board needs")
    result["heap_min_bytes"] = heap_min
    result["budget_met"] = dict((k, v is not None and v <= BUDGET_MUST) for k, v in heap_min.items())
    result["aim_met"] = dict((k, v is not None and v <= BUDGET) for k, v in heap_min.items())
    result["heap_min_bisection"] = checks
    result["where_the_heap_goes"] = where_goes

    # 5. EV CPU time.
    runs = "2" if quick else None
    cpu = {}
    proc = run([sys.executable, "bench/pnc_session.py"] + ([runs] if runs else []))
    cpu["cpython"] = session_summary(last_json(proc.stdout)) or {"error": proc.stderr[-400:]}
    if "--no-wasm" not in argv:
        proc = run(["node", RUNNER, "--script", "bench/pnc_session.py"] + ([runs] if runs else []))
        cpu["micropython_wasm"] = session_summary(last_json(proc.stdout)) or {"error": proc.stderr[-400:]}
    if os.path.exists(unix):
        proc = run([unix, "-X", "heapsize=8m", "bench/pnc_session.py"] + ([runs] if runs else []))
        cpu["micropython_unix32"] = session_summary(last_json(proc.stdout)) or {"error": proc.stderr[-400:]}
    result["ev_cpu_ms"] = cpu
    print(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
