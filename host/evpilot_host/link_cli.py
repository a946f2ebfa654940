"""`evpilot ev` and `evpilot station`: either side of a session on a network interface, for two processes or
two machines (a veth pair, or a HomePlug adapter once SLAC is done).

How this works: `evpilot station --iface IF` listens for TCP on a port of IF, answers SDP with IF's IPv6
link-local address and that port, and runs the station simulator (the same SeccConnection and station
sessions as `evpilot demo`) for each connection. `evpilot ev --iface IF` discovers the station with SDP,
connects, and runs the firmware's EV session with a simulated vehicle. Both print one line per message,
take --log FILE for a JSON line per message, and run in real time (evpilot.net.stream drives the sans-I/O
connection over asyncio).
"""

import argparse
import asyncio
import json
import sys

from evpilot.compat import ticks_diff
from evpilot.ev import client as ev_client
from evpilot.errors import EvpilotError
from evpilot.net import sockets, stream
from evpilot_host import sessions, trace
from evpilot_host.station import secc


def link_local(iface):
    """The IPv6 link-local address (16 bytes) of `iface`, from /proc/net/if_inet6 (Linux)."""
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5] == iface and parts[0].startswith("fe80"):
                    return bytes.fromhex(parts[0])
    except OSError:
        pass
    raise EvpilotError("interface %s has no IPv6 link-local address" % iface)


def _printer(side, log, verbose=False, every_s=5.0):
    """A connection's log callback: a line per message (times from the first message; charge loops sampled
    every `every_s` unless verbose) and the JSON log (every message)."""
    start = []
    sampler = trace.LoopSampler(every_s * 1000, verbose)

    def write(direction, name, doc, data, now):
        if not start:
            start.append(now)
        t = ticks_diff(now, start[0])
        if direction == "fault":
            print("%9.3f s  station fault: %s %s" % (t / 1000.0, name, json.dumps(doc)), flush=True)
            return
        sender = side if direction == "tx" else ("secc" if side == "ev" else "ev")
        if log is not None:
            log.write(sender, name, doc, data, t)
        if sampler.show(name, t):
            print(trace.line(sender, name, doc, t), flush=True)

    return write


def _ev_parser():
    p = argparse.ArgumentParser(prog="evpilot ev", description="The firmware's EV on a network interface.")
    p.add_argument("--iface", required=True, help="network interface (e.g. a veth end or the PLC adapter)")
    sessions.add_vehicle_options(p)
    p.add_argument("--tls", action="store_true", help="ask for TLS in SDP (Plug&Charge: not yet)")
    p.add_argument("--log", metavar="FILE", help="write every message as a JSON line")
    p.add_argument("--verbose", action="store_true", help="print every message of the charging loops")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


async def _run_ev(args, log, timing):
    veh = sessions.vehicle(args.mode, args.soc[0], args.soc[1], args.capacity_wh)
    printer = _printer("ev", log, args.verbose)

    def log_and_time(direction, name, doc, data, now):
        if direction == "tx" and name[:-3] in ("CurrentDemand", "ChargingStatus") and "first_loop" not in timing:
            timing["first_loop"] = stream.now_ms()
        printer(direction, name, doc, data, now)

    ev = sessions.ev_client_for(args.standard, veh, log=log_and_time)
    timing["start"] = stream.now_ms()
    found = await sockets.discover(args.iface, "tls" if args.tls else "none")
    timing["sdp"] = stream.now_ms()
    print("SDP: station at [%s]:%d" % (sockets.address_text(found["address"]), found["port"]), flush=True)
    reader, writer = await sockets.open_tcp(found["address"], found["port"], args.iface)
    await stream.drive(ev, reader, writer, tick=veh.advance)
    timing["end"] = stream.now_ms()
    return ev, veh


def ev_main(argv):
    args = _ev_parser().parse_args(argv)
    log = trace.JsonLog(args.log) if args.log else None
    timing = {}
    try:
        ev, veh = asyncio.run(_run_ev(args, log, timing))
    finally:
        if log is not None:
            log.close()
    summary = dict(ev.session.summary()) if ev.session is not None else {}
    summary.update({"result": "ok" if ev.state == ev_client.DONE else "failed", "end": ev.reason,
                    "protocol": ev.protocol})
    # Timing from the start of SDP: the answer, the first charge-loop request, the end.
    for key in ("sdp", "first_loop", "end"):
        if key in timing:
            summary[key + "_ms"] = ticks_diff(timing[key], timing["start"])
    print(json.dumps(summary, default=str) if args.json else "EV: %s (%s)" % (summary["result"], ev.reason))
    return 0 if ev.state == ev_client.DONE else 1


def _station_parser():
    p = argparse.ArgumentParser(prog="evpilot station", description="The station simulator on a network "
                                "interface.")
    p.add_argument("--iface", required=True, help="network interface to serve on")
    p.add_argument("--protocols", default="iso2,din", help="protocols offered, best first (default iso2,din)")
    p.add_argument("--mode", choices=("ac", "dc"), default="dc", help="energy transfer (default dc)")
    p.add_argument("--port", type=int, default=0,
                   help="TCP port announced by SDP (default: a free one of the dynamic range 49152-65535, "
                   "which EVs expect: Josev's EV refuses others)")
    p.add_argument("--fault", action="append", default=[], metavar="RESPONSE:ACTION[:NTH[:DELAY_MS]]",
                   help="inject a fault, e.g. CurrentDemandRes:withhold:5 (actions: %s)"
                   % ", ".join(secc.Fault.ACTIONS))
    p.add_argument("--evse", action="append", default=[], metavar="SETTING=VALUE",
                   help="an EVSE rating or behaviour, e.g. dc_max_power=50000, ac_max_current=16, "
                   "cable_check_ms=3000, isolation_result=Fault (see evpilot_host.station.evse.EVSEConfig)")
    p.add_argument("--once", action="store_true", help="exit after the first session")
    p.add_argument("--seed", type=int, default=None, help="seed for SessionIDs (reproducible runs)")
    p.add_argument("--log", metavar="FILE", help="write every message as a JSON line")
    p.add_argument("--verbose", action="store_true", help="print every message of the charging loops")
    return p


async def _serve(args, log):
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    for p in protocols:
        if p not in sessions.PROTOCOLS:
            raise EvpilotError("unknown protocol %r (known: %s)" % (p, ", ".join(sessions.PROTOCOLS)))
    try:
        faults = [sessions.parse_fault(f) for f in args.fault]
        evse_settings = sessions.parse_settings(args.evse)
    except ValueError as e:
        raise EvpilotError(str(e))
    sessions.new_evse(**evse_settings)  # refuses unknown settings before anything listens
    address = link_local(args.iface)
    done = asyncio.Event()
    results = []
    paused = {}

    async def handle(reader, writer):
        evse = sessions.new_evse(**evse_settings)
        conn = sessions.station_connection(protocols, args.mode, evse, seed=args.seed, faults=faults,
                                           log=_printer("secc", log, args.verbose), paused=paused)
        await stream.drive(conn, reader, writer, tick=evse.advance)
        print("station: session %s (%s)" % ("ok" if conn.state == secc.DONE else "failed", conn.reason),
              flush=True)
        results.append(conn.state == secc.DONE)
        if args.once:
            done.set()

    server = await _listen(handle, args.port)
    port = server.sockets[0].getsockname()[1]
    print("station: SECC [%s%%%s]:%d, protocols %s, %s" % (
        sockets.address_text(address), args.iface, port, ",".join(protocols), args.mode.upper()), flush=True)
    sdp_task = asyncio.ensure_future(sockets.serve_sdp(args.iface, address, port, tls=False))
    try:
        await done.wait()
    finally:
        sdp_task.cancel()
        server.close()
        await server.wait_closed()
    return results


async def _listen(handle, port):
    """A TCP server on `port`, or on a free port of the dynamic range (RFC 6335) when port is 0."""
    if port:
        return await asyncio.start_server(handle, "::", port)
    import random

    for _ in range(50):
        try:
            return await asyncio.start_server(handle, "::", random.randint(49152, 65535))
        except OSError:
            continue
    raise EvpilotError("no free TCP port in 49152-65535")


def station_main(argv):
    args = _station_parser().parse_args(argv)
    log = trace.JsonLog(args.log) if args.log else None
    try:
        results = asyncio.run(_serve(args, log))
    except KeyboardInterrupt:
        return 130
    finally:
        if log is not None:
            log.close()
    return 0 if results and all(results) else 1


def main(argv):  # pragma: no cover - dispatch for `python -m evpilot_host.link_cli ev|station`
    if argv and argv[0] == "ev":
        return ev_main(argv[1:])
    return station_main(argv[1:])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
