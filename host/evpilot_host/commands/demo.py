"""`evpilot demo`: a whole charging session, the firmware's EV against the station simulator, in one process.

How this works: the two ends come from evpilot_host.ends: the EV (the firmware's EvClient with the DIN or
ISO-2 session and a simulated vehicle with a plugged-in control pilot) and the station (a SeccConnection with
the matching station session and a simulated EVSE). They run back to back through evpilot_sim.pipe on a
virtual clock with a message latency like a PLC link's, so the protocol's timers are real while the session
takes seconds, not the half hour a battery needs. Every message is encoded and decoded by the EXI codec on
the way. evpilot_host.trace.Printer prints one line per message with its key values (charge-loop messages
are shown every --every seconds of session time, or all with --verbose), then a summary; --log FILE writes
every message as a JSON line. Exit status 0 when both sides end the session cleanly. `--pnc` runs two
Plug&Charge sessions instead (demo_pnc.py).
"""

import json
import sys
import time

from evpilot.errors import EvpilotError
from evpilot.ev import client as ev_client
from evpilot_host import ends, trace
from evpilot_host.commands import options
from evpilot_sim import pipe
from evpilot_sim.station import secc


def _parser():
    p = options.parser("evpilot demo", __doc__.split("\n")[0])
    options.add_vehicle_options(p)
    p.add_argument("--log", metavar="FILE", help="write every message as a JSON line")
    p.add_argument("--verbose", action="store_true", help="print every message of the charging loops")
    p.add_argument("--every", type=options.number(float, 0.001), default=20.0, metavar="S",
                   help="show charge-loop messages every S seconds of session time (default 20)")
    p.add_argument("--latency-ms", type=options.number(int, 1, 10000), default=50,
                   help="one-way message latency, 1 to 10000 (default 50)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (and nothing else on stdout)")
    g = p.add_argument_group("Plug&Charge (--pnc: ISO-2 over TLS, a contract installed, then used)")
    g.add_argument("--pnc", action="store_true",
                   help="two Plug&Charge sessions: certificate installation, then the installed contract")
    g.add_argument("--pki", metavar="DIR", help="test PKI made by `evpilot pki init` (default: a fresh one)")
    g.add_argument("--store", metavar="DIR", help="the EV's certificate store (default: a temporary one)")
    g.add_argument("--db", metavar="FILE", help="the station's session database (default: a temporary one)")
    return p


def main(argv=None):
    try:
        return _main(argv)
    except EvpilotError as e:  # one line, as cli.py prints it (tests call main directly)
        print("evpilot: error: %s" % e, file=sys.stderr)
        return 2


def _main(argv):
    args = _parser().parse_args(argv)
    options.check_vehicle(args)
    options.output_file(args.log, "--log")
    if args.pnc:
        if args.standard != "iso2":
            raise EvpilotError("Plug&Charge here is ISO 15118-2: use --standard iso2")
        args.pki = options.directory(args.pki, "--pki")
        args.store = options.directory(args.store, "--store", create=True)
        args.db = options.sqlite_file(args.db, "--db")
        from evpilot_host.commands import demo_pnc

        return demo_pnc.run(args)
    for name in ("pki", "store", "db"):
        if getattr(args, name):
            raise EvpilotError("--%s needs --pnc (it is the Plug&Charge demo's)" % name)
    log = trace.open_log(args.log)
    printer = trace.Printer("ev", log, args.every, args.verbose, relative=False, quiet=args.json)
    ev = ends.ev_end(args.standard, args.mode, args.soc, args.capacity_wh, plugged=True, log=printer)
    st = ends.station_end((args.standard,), args.mode, seed=1)
    vehicle, evse = ev.vehicle, st.evse
    cp = [vehicle.pilot.name()]  # the control pilot's states as the station sees them

    def tick(now):
        vehicle.advance(now)
        evse.advance(now)
        if vehicle.pilot.name() != cp[-1]:
            cp.append(vehicle.pilot.name())

    soc_from = vehicle.soc()
    stored_from = vehicle.energy_wh()
    t0 = time.perf_counter()
    end = pipe.run(ev.outer, st.outer, latency_ms=args.latency_ms, tick=tick)
    wall = time.perf_counter() - t0
    if log is not None:
        log.close()
    client, conn = ev.client, st.connection
    summary = {
        "result": "ok" if client.state == ev_client.DONE and conn.state == secc.DONE else "failed",
        "protocol": client.protocol,
        "mode": args.mode.upper(),
        "identification": "ExternalPayment (EIM)",
        # What the EV's session counted from the station's meter (ISO-2) or its own V x I (DIN), else what
        # the battery stored (AC stations without a meter reading).
        "energy_wh": round((ev.session.summary().get("energy_wh") if ev.session is not None else 0)
                           or vehicle.energy_wh() - stored_from, 1),
        "session_s": round(end / 1000.0, 1),
        "soc_from": round(soc_from, 1),
        "soc_to": round(vehicle.soc(), 1),
        "messages": printer.count,
        "control_pilot": " -> ".join(cp),
        "wall_s": round(wall, 2),
        "ev_end": client.reason,
        "station_end": conn.reason,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print()
        print("%s %s session: %s" % (summary["protocol"] or args.standard, summary["mode"], summary["result"]))
        print("  identification   %s" % summary["identification"])
        print("  control pilot    %s" % summary["control_pilot"])
        print("  energy           %.1f Wh" % summary["energy_wh"])
        print("  state of charge  %.1f %% -> %.1f %%" % (summary["soc_from"], summary["soc_to"]))
        print("  session time     %.1f s, %d messages (ran in %.2f s)"
              % (summary["session_s"], printer.count, wall))
        counts = printer.sampler.counts
        for base in sorted(counts):
            if counts[base] > 2:
                print("  %-16s %d requests" % (base, counts[base]))
        print("  ended            EV: %s; station: %s" % (client.reason, conn.reason))
        if log is not None:
            print("  log              %s (%d messages)" % (args.log, log.count))
    return 0 if summary["result"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
