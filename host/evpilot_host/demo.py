"""`evpilot demo`: a whole charging session, the firmware's EV against the station simulator, in one process.

How this works: the EV (evpilot.ev: EvClient with the DIN or ISO-2 session and a SimVehicle) and the station
(evpilot_host.station: SeccConnection with the matching station session and a simulated EVSE) run back to
back through evpilot_host.pipe on a virtual clock with a message latency like a PLC link's, so the
protocol's timers are real while the session takes seconds, not the half hour a battery needs. Every message
is encoded and decoded by the EXI codec on the way. One line is printed per message with its key values
(charge-loop messages are shown every --every seconds of session time, or all with --verbose), then a
summary; --log FILE writes every message as a JSON line. Exit status 0 when both sides end the session
cleanly.
"""

import argparse
import json
import sys
import time

from evpilot.ev import client as ev_client
from evpilot.ev.simvehicle import SimVehicle
from evpilot.ev.vehicle import AC_THREE_PHASE_CORE, DC_EXTENDED
from evpilot.v2g import timers
from evpilot_host import pipe, trace
from evpilot_host.station import secc
from evpilot_host.station.evse import EVSE

# Messages of the charging loops: shown every --every seconds (first two always).
_LOOPS = ("CurrentDemand", "ChargingStatus", "PreCharge", "CableCheck", "WeldingDetection", "Authorization",
          "ContractAuthentication", "ChargeParameterDiscovery")


def _parser():
    p = argparse.ArgumentParser(prog="evpilot demo", description=__doc__.split("\n")[0])
    p.add_argument("--standard", choices=("din", "iso2"), default="iso2", help="protocol (default iso2)")
    p.add_argument("--mode", choices=("ac", "dc"), default="dc", help="energy transfer (DIN: dc only)")
    p.add_argument("--log", metavar="FILE", help="write every message as a JSON line")
    p.add_argument("--verbose", action="store_true", help="print every message of the charging loops")
    p.add_argument("--every", type=float, default=20.0, metavar="S",
                   help="show charge-loop messages every S seconds of session time (default 20)")
    p.add_argument("--soc", type=float, nargs=2, default=(20.0, 80.0), metavar=("FROM", "TO"),
                   help="state of charge at the start and the target (default 20 80)")
    p.add_argument("--capacity-wh", type=int, default=None,
                   help="battery capacity (default: a small demo pack, 4000 Wh DC, 1500 Wh AC)")
    p.add_argument("--latency-ms", type=int, default=50, help="one-way message latency (default 50)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def build(standard, mode, soc_from, soc_to, capacity_wh, seed=1):
    """(EvClient, SeccConnection, vehicle, evse, sessions dict) for one demo session."""
    dc = mode == "dc"
    vehicle = SimVehicle(capacity_wh=capacity_wh, soc=soc_from, target_soc=soc_to,
                         modes=(DC_EXTENDED,) if dc else (AC_THREE_PHASE_CORE,))
    evse = EVSE()
    made = {}

    def make_ev(protocol):
        if protocol == "din":
            from evpilot.ev.din import DinSession

            made["ev"] = DinSession(vehicle)
        else:
            from evpilot.ev.iso2 import Iso2Session

            made["ev"] = Iso2Session(vehicle)
        return made["ev"]

    def make_station(protocol):
        if protocol == "din":
            from evpilot_host.station.din import DinStationSession

            made["station"] = DinStationSession(evse, seed=seed)
        else:
            from evpilot_host.station.iso2 import Iso2StationSession

            made["station"] = Iso2StationSession(evse, seed=seed, energy_modes=(
                "DC_extended",) if dc else ("AC_three_phase_core",))
        return made["station"]

    offers = [("din", 1)] if standard == "din" else [("iso2", 1), ("din", 2)]
    ev = ev_client.EvClient(make_ev, offers, timers.msg_timeout)
    st = secc.SeccConnection((standard,), make_station)
    return ev, st, vehicle, evse, made


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.standard == "din" and args.mode == "ac":
        print("evpilot: error: DIN SPEC 70121 is DC only: use --mode dc", file=sys.stderr)
        return 2
    capacity = args.capacity_wh or (4000 if args.mode == "dc" else 1500)
    ev, st, vehicle, evse, made = build(args.standard, args.mode, args.soc[0], args.soc[1], capacity)
    log = trace.JsonLog(args.log) if args.log else None
    counts = {}  # charge-loop requests sent, by message
    last = {}  # when one was last shown
    showing = {}  # whether the current one (and its response) is shown
    total = [0]

    def ev_log(direction, name, doc, data, now):
        sender = "ev" if direction == "tx" else "secc"
        total[0] += 1
        if log is not None:
            log.write(sender, name, doc, data, now)
        base = name[:-3]
        if not args.verbose and base in _LOOPS:
            if name.endswith("Req"):
                n = counts[base] = counts.get(base, 0) + 1
                showing[base] = n <= 2 or base not in last or now - last[base] >= args.every * 1000
                if showing[base]:
                    last[base] = now
            if not showing.get(base, True):
                return
        print(trace.line(sender, name, doc, now))

    def st_log(direction, name, doc, data, now):
        if direction == "fault":
            print("%9.3f s  station fault: %s" % (now / 1000.0, json.dumps(doc)))

    ev.log = ev_log
    st.log = st_log

    def tick(now):
        vehicle.advance(now)
        evse.advance(now)

    soc_from = vehicle.soc()
    t0 = time.perf_counter()
    end = pipe.run(ev, st, latency_ms=args.latency_ms, tick=tick)
    wall = time.perf_counter() - t0
    if log is not None:
        log.close()
    summary = {
        "result": "ok" if ev.state == ev_client.DONE and st.state == secc.DONE else "failed",
        "protocol": ev.protocol,
        "mode": args.mode.upper(),
        "identification": "ExternalPayment (EIM)",
        "energy_wh": round(evse.meter_wh if hasattr(evse, "meter_wh") else 0, 1),
        "session_s": round(end / 1000.0, 1),
        "soc_from": round(soc_from, 1),
        "soc_to": round(vehicle.soc(), 1),
        "messages": total[0],
        "wall_s": round(wall, 2),
        "ev_end": ev.reason,
        "station_end": st.reason,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print()
        print("%s %s session: %s" % (summary["protocol"] or args.standard, summary["mode"], summary["result"]))
        print("  identification   %s" % summary["identification"])
        print("  energy           %.1f Wh" % summary["energy_wh"])
        print("  state of charge  %.1f %% -> %.1f %%" % (summary["soc_from"], summary["soc_to"]))
        print("  session time     %.1f s, %d messages (ran in %.2f s)" % (summary["session_s"], total[0], wall))
        for base in sorted(counts):
            if counts[base] > 2:
                print("  %-16s %d requests" % (base, counts[base]))
        print("  ended            EV: %s; station: %s" % (ev.reason, st.reason))
        if log is not None:
            print("  log              %s (%d messages)" % (args.log, log.count))
    return 0 if summary["result"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
