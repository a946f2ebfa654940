# EV work per charge-loop cycle, on whichever interpreter runs it (MicroPython or CPython).
#
#   python bench/session_cycle.py
#   node tests/micropython/run.mjs --script bench/session_cycle.py
#
# Runs a whole in-memory session (the firmware's EV against the station simulator through the pipe, virtual
# clock) for ISO-2 DC, ISO-2 AC and DIN DC, and times only the EV's side: every call into its connection
# driver (data received -> decode, session logic, encode of the next request). Prints one JSON object: per
# protocol the charge-loop cycles, the EV's microseconds per cycle, the whole session's wall time and the
# wall time per request/response round trip of both sides together (what `evpilot demo` spends).

import json
import sys


for path in ("firmware", "sim", "host", "bench"):
    if path not in sys.path:
        sys.path.append(path)

import clock  # noqa: E402

from evpilot_sim import pipe  # noqa: E402
from evpilot_host import ends  # noqa: E402


class Timed:
    """Wraps the EV connection: counts the time spent in it."""

    def __init__(self, inner):
        self.inner = inner
        self.us = 0.0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _timed(self, fn, *args):
        t0 = clock.now()
        r = fn(*args)
        self.us += clock.us(t0, clock.now())
        return r

    def connection_made(self, now):
        return self._timed(self.inner.connection_made, now)

    def data_received(self, data, now):
        return self._timed(self.inner.data_received, data, now)

    def on_timer(self, now):
        return self._timed(self.inner.on_timer, now)

    def output(self):
        return self._timed(self.inner.output)

    @property
    def finished(self):
        return self.inner.finished


def one(standard, mode, loop):
    veh = ends.vehicle(mode, 20, 80)
    evse = ends.new_evse()
    counted = {"n": 0, "messages": 0}

    def log(direction, name, doc, data, now):
        counted["messages"] += 1
        if direction == "tx" and name == loop:
            counted["n"] += 1

    ev = Timed(ends.ev_client(standard, veh, log=log))
    st = ends.station_connection((standard,), mode, evse, seed=1)

    def tick(now):
        veh.advance(now)
        evse.advance(now)

    t0 = clock.now()
    pipe.run(ev, st, latency_ms=50, tick=tick)
    wall = clock.us(t0, clock.now())
    assert ev.inner.state == 2, ev.inner.reason
    # A round trip in the demo: the EV encodes a request, the station decodes it, acts, encodes the response,
    # the EV decodes it (no latency: the virtual clock jumps).
    return {"cycles": counted["n"], "ev_us_per_cycle": round(ev.us / counted["n"], 1),
            "ev_us_total": round(ev.us), "session_wall_ms": round(wall / 1000, 1),
            "round_trip_us": round(wall / (counted["messages"] / 2), 1)}


def main():
    out = {"interpreter": sys.implementation.name}
    out["iso2_dc"] = one("iso2", "dc", "CurrentDemandReq")
    out["iso2_ac"] = one("iso2", "ac", "ChargingStatusReq")
    out["din_dc"] = one("din", "dc", "CurrentDemandReq")
    print(json.dumps(out))


main()
