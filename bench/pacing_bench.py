# Requests per second in each repeated loop of the EV, with and without pacing (ev/client.py PACING).
#
#   python bench/pacing_bench.py [latency_ms]
#   node tests/micropython/run.mjs --script bench/pacing_bench.py
#
# Runs whole sessions, the firmware's EV against the station simulator (evpilot_sim.station with the
# simulated EVSE: cable check 2 s, pre-charge at 500 V/s, 3 Ongoing rounds of Authorization and
# ChargeParameterDiscovery), through the in-memory pipe on a virtual clock with a one-way latency of
# latency_ms (default 1: a station next to the EV), for DIN SPEC 70121 DC, ISO 15118-2 DC and AC. For every
# loop of repeated requests it prints the number of requests, the loop's duration in virtual ms and the
# requests per second, paced (the default) and unpaced (pacing=None; DC only). Virtual time makes the figures the same
# on every interpreter; "wall_ms" is what the whole session cost on this one. "checks_us_per_cycle" is what
# the plausibility checks (ev/plausibility.py) cost one CurrentDemand cycle on this interpreter: reading and
# checking CurrentDemandRes's five values and clamping the next targets.

import json
import sys

for path in ("firmware", "sim", "bench"):
    if path not in sys.path:
        sys.path.append(path)

import clock  # noqa: E402

from evpilot.ev import client as C  # noqa: E402
from evpilot.ev import din  # noqa: E402
from evpilot.ev.iso2 import Iso2Session  # noqa: E402
from evpilot.ev.plausibility import Checks  # noqa: E402
from evpilot.v2g import timers  # noqa: E402
from evpilot_sim import pipe  # noqa: E402
from evpilot_sim.evse import EVSE  # noqa: E402
from evpilot_sim.station import secc as S  # noqa: E402
from evpilot_sim.station.din import DinStationSession  # noqa: E402
from evpilot_sim.station.iso2 import Iso2StationSession  # noqa: E402
from evpilot_sim.vehicle import SimVehicle  # noqa: E402


def session(std, mode, pacing, latency):
    modes = ("AC_three_phase_core",) if mode == "ac" else ("DC_extended",)
    car = SimVehicle(capacity_wh=1000, soc=20, target_soc=30, modes=modes)
    evse = EVSE()
    sent = []

    def make_ev(protocol):
        return din.DinSession(car, pacing=pacing) if std == "din" else Iso2Session(car, pacing=pacing)

    def make_st(protocol):
        if std == "din":
            return DinStationSession(evse, seed=7, auth_ongoing_rounds=3, cpd_ongoing_rounds=3)
        return Iso2StationSession(evse, seed=7, energy_modes=modes, auth_ongoing=3, cpd_ongoing=3)

    def log(direction, name, doc, data, now):
        if direction == "tx":
            sent.append((name, now))

    def tick(now):
        car.advance(now)
        evse.advance(now)
        evse.set_battery_voltage(car.present_voltage())
        evse.ac_request(now, car.ac_current)

    ev = C.EvClient(make_ev, [(std, 1)], timers.msg_timeout, log=log)
    st = S.SeccConnection((std,), make_st)
    t0 = clock.now()
    end = pipe.run(ev, st, latency_ms=latency, tick=tick)
    wall = clock.us(t0, clock.now()) / 1000.0
    return sent, end, wall, ev.state == C.DONE


def loops(sent):
    out = {}
    prev = None
    for name, now in sent:
        if name == prev:
            out[name][0] += 1
            out[name][2] = now
        else:
            out[name] = [1, now, now]
        prev = name
    res = {}
    for name in out:
        n, first, last = out[name]
        if n > 1:
            res[name] = {"requests": n, "ms": last - first, "per_s": round((n - 1) * 1000.0 / (last - first), 1)}
    return res


def checks_cost():
    c = Checks(SimVehicle())
    body = {"EVSEPresentVoltage": {"Multiplier": -1, "Unit": "V", "Value": 3600},
            "EVSEPresentCurrent": {"Multiplier": -1, "Unit": "A", "Value": 1500},
            "EVSEMaximumCurrentLimit": {"Multiplier": 0, "Unit": "A", "Value": 200},
            "EVSEMaximumPowerLimit": {"Multiplier": 3, "Unit": "W", "Value": 50},
            "EVSEMaximumVoltageLimit": {"Multiplier": 0, "Unit": "V", "Value": 500}}

    def cycle():
        c.targets = (150.0, 150.0)
        c.current_demand("CurrentDemandRes", body, 1000)
        c.target_current(160.0, c.target_voltage(400.0))

    return round(clock.best_us(cycle, 200), 1)


def main():
    latency = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    result = {"latency_ms": latency, "pacing_ms": list(C.PACING), "checks_us_per_cycle": checks_cost(), "sessions": {}}
    for std, mode in (("din", "dc"), ("iso2", "dc"), ("iso2", "ac")):
        entry = {}
        for label, pacing in (("paced", C.PACING), ("unpaced", None)):
            if mode == "ac" and label == "unpaced":
                continue  # 16,000 ChargingStatusReq in 33 s of charging: the DC loops show the same 1/(2 latency)
            sent, end, wall, ok = session(std, mode, pacing, latency)
            entry[label] = {"ok": ok, "loops": loops(sent), "requests": len(sent), "session_ms": end,
                            "wall_ms": round(wall, 1)}
        result["sessions"][std + "-" + mode] = entry
    print(json.dumps(result))


main()
