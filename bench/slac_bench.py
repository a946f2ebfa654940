# SLAC (ISO 15118-3) figures: the time from CM_SLAC_PARM.REQ to the match, the EV core's CPU time, and the
# heap the SLAC layer adds, on whichever interpreter runs it; from CPython also under MicroPython's unix port
# and, as root, over a real veth pair.
#
#   python3 bench/slac_bench.py            CPython here, then the unix port (`micropython`), then the veth
#                                          runs when root; one JSON object
#   micropython bench/slac_bench.py local  (MICROPYPATH=firmware:sim) the in-process figures only
#
# In process: evpilot.slac.ev.SlacEv against 1 and 3 simulated EVSEs and the simulated modem on the virtual
# clock (evpilot_sim.slac_evse.Medium, 2 ms per frame, 200 ms modem settle): "protocol_ms" is virtual time
# from PARM.REQ to the matched event (set by the standard's timers: TT_EV_atten_results is 1200 ms of it),
# "ev_cpu_us" the wall time spent inside the EV's receive/on_timer/start calls, "ev_alloc_bytes" (MicroPython)
# what those calls allocate. "heap_import_bytes" is what importing evpilot.slac.ev (with mme and timers)
# costs the heap, "heap_instance_bytes" one SlacEv. Over a veth (root): the EV process (CPython, and the unix
# port) against an EVSE process on a real AF_PACKET link: "wall_ms" from PARM.REQ to MATCH.CNF and to joined.

import json
import sys

for _p in ("firmware", "sim", "host", "bench"):
    if _p not in sys.path:
        sys.path.append(_p)

import gc  # noqa: E402

try:
    from micropython import mem_info  # noqa: F401

    MICROPYTHON = True
except ImportError:
    MICROPYTHON = False


def _alloc():
    return gc.mem_alloc() if MICROPYTHON else 0


def _local():
    import clock

    gc.collect()
    m0 = _alloc()
    from evpilot.slac import ev as slac_ev  # noqa: F401
    from evpilot.slac import mme  # noqa: F401

    gc.collect()
    m1 = _alloc()
    from evpilot.slac.ev import SlacEv
    from evpilot_sim.slac_evse import Medium, SimModem, SlacEvse

    mac = b"\x02\x00\x00\x00\x00\x01"
    gc.collect()
    m2 = _alloc()
    probe = SlacEv(mac)
    gc.collect()
    m3 = _alloc()
    del probe
    out = {"interpreter": "micropython" if MICROPYTHON else "cpython"}
    if MICROPYTHON:
        out["heap_import_bytes"] = m1 - m0
        out["heap_instance_bytes"] = m3 - m2

    class Timed:
        def __init__(self, inner):
            self.inner = inner
            self.us = 0.0
            self.alloc = 0

        def _call(self, fn, *args):
            a = _alloc()
            t0 = clock.now()
            r = fn(*args)
            self.us += clock.us(t0, clock.now())
            self.alloc += _alloc() - a
            return r

        def start(self, now):
            return self._call(self.inner.start, now)

        def receive(self, frame, now):
            return self._call(self.inner.receive, frame, now)

        def on_timer(self, now):
            return self._call(self.inner.on_timer, now)

        def next_deadline(self):
            return self.inner.next_deadline()

    for count in (1, 3):
        best = None
        for _ in range(5):
            n = [0]

            def rnd(size):
                n[0] += 1
                return bytes([n[0] & 0xFF]) * size

            ev = SlacEv(mac, random=rnd, settle=200)
            timed = Timed(ev)
            evses = [SlacEvse(bytes([2, 0, 0, 0, 0, 0xA0 + i]), nmk=bytes([i + 1]) * 16, attenuation=10 + 7 * i)
                     for i in range(count)]
            medium = Medium([timed, SimModem(mac, join_delay=100)] + evses)
            if MICROPYTHON:
                gc.collect()
                gc.disable()
            medium.send(0, timed.start(0), 0)
            end = medium.run(0, ev.done)
            if MICROPYTHON:
                gc.enable()
            assert ev.result is not None
            if best is None or timed.us < best[1]:
                best = (end, timed.us, timed.alloc)
        key = "evses_%d" % count
        out[key] = {"protocol_ms": best[0], "ev_cpu_us": int(best[1])}
        if MICROPYTHON:
            out[key]["ev_alloc_bytes"] = best[2]
    return out


# --- the EV over a real link (run in a namespace by _veth) -------------------------------------------------

def _veth_ev(iface):
    try:
        import asyncio
    except ImportError:
        import uasyncio as asyncio
    from evpilot.aio import ether, slac_link
    from evpilot.compat import ticks_diff
    from evpilot.slac import mme
    from evpilot.slac.ev import SlacEv
    from evpilot_sim.slac_evse import SimModem

    times = {}

    async def main():
        link = ether.open(iface, mme.ETHERTYPE)
        ev = SlacEv(link.mac, settle=200)

        def seen(direction, frame):
            t = mme.mmtype(frame)
            if t == mme.CM_SLAC_MATCH | mme.CNF and "match_cnf" not in times:
                times["match_cnf"] = slac_link.now_ms()

        t0 = slac_link.now_ms()
        first = ev.start(t0)
        await slac_link.drive(ev, link, ev.done, first, [SimModem(link.mac, join_delay=0)], 30000, seen)
        link.close()
        done = slac_link.now_ms()
        r = {"ok": ev.result is not None}
        if "match_cnf" in times:
            r["to_match_cnf_ms"] = ticks_diff(times["match_cnf"], t0)
        r["to_joined_ms"] = ticks_diff(done, t0)
        print(json.dumps(r))

    asyncio.run(main())


def _veth(interpreter):
    import os
    import subprocess
    import uuid

    tag = uuid.uuid4().hex[:6]
    ns_ev, ns_se = "sbe" + tag, "sbs" + tag
    if_ev, if_se = "sbe" + tag, "sbs" + tag
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(os.path.join(here, d) for d in ("firmware", "sim", "host")))

    def sh(*a):
        subprocess.run(a, check=True, capture_output=True, timeout=20)

    results = []
    try:
        sh("ip", "netns", "add", ns_ev)
        sh("ip", "netns", "add", ns_se)
        sh("ip", "link", "add", if_ev, "netns", ns_ev, "type", "veth", "peer", "name", if_se, "netns", ns_se)
        sh("ip", "-n", ns_ev, "link", "set", if_ev, "up")
        sh("ip", "-n", ns_se, "link", "set", if_se, "up")
        for _ in range(3):
            evse = subprocess.Popen(["ip", "netns", "exec", ns_se, sys.executable, "-m",
                                     "evpilot_host.commands.slac_link", "evse", "--iface", if_se, "--modem", "sim",
                                     "--timeout", "10", "--linger", "0.5"], env=env, stdout=subprocess.PIPE,
                                    text=True, cwd=here)
            evse.stdout.readline()
            if interpreter == "micropython":
                sys.path.append(os.path.join(here, "tests", "micropython"))
                import unix as mp_unix

                argv = mp_unix.command(os.path.join(here, "bench", "slac_bench.py"), "veth-ev", if_ev, heap="512k")
                envx = mp_unix.script_env()
            else:
                argv = [sys.executable, os.path.join(here, "bench", "slac_bench.py"), "veth-ev", if_ev]
                envx = env
            p = subprocess.run(["ip", "netns", "exec", ns_ev] + argv, env=envx, capture_output=True, text=True,
                               timeout=60, cwd=here)
            evse.communicate(timeout=30)
            lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
            if lines:
                results.append(json.loads(lines[-1]))
            else:
                results.append({"ok": False, "error": (p.stdout + p.stderr)[-300:]})
    finally:
        for ns in (ns_ev, ns_se):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
    return results


def main():
    args = sys.argv[1:]
    if args and args[0] == "veth-ev":
        _veth_ev(args[1])
        return
    local = _local()
    if args and args[0] == "local" or MICROPYTHON:
        print(json.dumps(local))
        return
    import os
    import subprocess

    out = {"cpython": local}
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.append(os.path.join(here, "tests", "micropython"))
    import unix as mp_unix

    try:
        p = subprocess.run(mp_unix.command(os.path.join(here, "bench", "slac_bench.py"), "local", heap="2m"),
                           env=mp_unix.script_env(), capture_output=True, text=True, timeout=300, cwd=here)
        lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
        out["micropython_unix"] = json.loads(lines[-1]) if lines else {"error": (p.stdout + p.stderr)[-500:]}
    except FileNotFoundError as e:
        out["micropython_unix"] = {"error": str(e)}
    if os.geteuid() == 0:
        out["veth_cpython"] = _veth("cpython")
        out["veth_micropython_unix"] = _veth("micropython")
    print(json.dumps(out))


main()
