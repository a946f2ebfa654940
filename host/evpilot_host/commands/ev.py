"""`evpilot ev`: the firmware's EV on a network interface, against a station in another process or on another
machine (a veth pair, or a HomePlug adapter once SLAC is done).

How this works: `evpilot ev --iface IF` discovers the station with SDP, connects over TCP, and runs the
firmware's EV session with a simulated vehicle, in real time (evpilot.aio.stream drives the sans-I/O
connection over asyncio). The EV end, its TLS context and its certificate store are built by
evpilot_host.ends; evpilot_host.trace.Printer prints one line per message (charge loops sampled; --verbose
for all) and writes --log FILE (a JSON line per message); the summary is one line (--json: a JSON object
with the session's summary and the timing from the start of SDP). `--on micropython` runs the same session
in MicroPython's unix port instead (ev_micropython.py), after the same argument checks (check_store here).

TLS (ISO 15118-2 server authentication, evpilot.tls): `--tls --roots FILE_OR_DIR` asks for TLS in SDP, runs
the handshake after the TCP connect, verifying the SECC chain against the V2G roots (a .der/.pem file, or the
V2G roots of a PKI directory) and the leaf's DC (CPO), and drives the session over the TLS streams. A failed
handshake ends the EV with exit status 1 and the reason in its one summary line. `--keylog FILE` appends the
NSS key log (CLIENT_RANDOM lines) for Wireshark.

Plug&Charge (ISO 15118-2, over TLS only): `--tls --pnc --store DIR` pays with a contract from the EV's
certificate store DIR (evpilot.store), installing one through the cable when it has none and updating it
when it expires within 21 days; `--pki PKIDIR` first seeds the store from a test PKI (its V2G and MO roots,
the OEM provisioning chain and key; with --with-contract also its contract). The SECC chain is checked
against the store's V2G roots unless --roots is given. Trusted time is the laptop's clock.

SLAC (ISO 15118-3): `--slac` first runs the EV side of SLAC on IF (slac_link.py: raw HomePlug frames, the
EVSE with the lowest attenuation chosen, `--slac-limit DB` refusing those above; a simulated modem when IF
has none, as a veth), prints one line and adds "slac" to the summary; then SDP and the session as above,
over the firmware's own IPv6/UDP/TCP on IF (evpilot.aio.netstack over AF_PACKET) instead of the OS's.
A failed SLAC ends the EV with status 1 and the reason.
"""

import asyncio
import json
import os
import sys

from evpilot import tls
from evpilot.compat import ticks_diff
from evpilot.errors import EvpilotError
from evpilot.ev import client as ev_client
from evpilot.aio import sockets, stream
from evpilot_host import ends, trace
from evpilot_host.commands import options, slac_link


def _parser():
    p = options.parser("evpilot ev", "The firmware's EV on a network interface.")
    p.add_argument("--iface", required=True, help="network interface (e.g. a veth end or the PLC adapter)")
    options.add_vehicle_options(p)
    p.add_argument("--tls", action="store_true", help="ask for TLS in SDP and run the session over TLS 1.2 "
                   "(needs --roots, or --pnc with a store holding V2G roots)")
    p.add_argument("--roots", metavar="FILE_OR_DIR", help="the V2G root(s) the SECC chain must verify against: "
                   "a .der or .pem file, or a PKI directory (the V2G roots in it); default with --pnc: the "
                   "store's V2G roots")
    p.add_argument("--pnc", action="store_true", help="Plug&Charge: pay with a contract from --store, "
                   "installing or updating it through the cable when needed (needs --tls)")
    p.add_argument("--store", metavar="DIR", help="the EV's certificate and key store (created when missing)")
    p.add_argument("--pki", metavar="DIR", help="seed --store from a test PKI (`evpilot pki init`): its V2G and "
                   "MO roots and the OEM provisioning chain and key")
    p.add_argument("--with-contract", action="store_true", help="with --pki: also store the PKI's contract")
    p.add_argument("--msg-timeout", action="append", default=[], metavar="REQUEST=MS",
                   help="wait MS for this request's response instead of the standard's V2G_EVCC_Msg_Timeout "
                   "(for slow stations on a bench), e.g. CurrentDemandReq=1000")
    p.add_argument("--keylog", metavar="FILE", help="append the TLS key log (NSS format, for Wireshark)")
    p.add_argument("--log", metavar="FILE", help="write every message as a JSON line")
    p.add_argument("--verbose", action="store_true", help="print every message of the charging loops")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout (the trace and "
                   "status lines go to stderr)")
    p.add_argument("--on", choices=("cpython", "micropython"), default="cpython",
                   help="the interpreter the firmware runs on: this one (default), or MicroPython's unix port "
                   "(`micropython` on PATH), as a check before flashing a board")
    p.add_argument("--heap", metavar="SIZE", help="with --on micropython: its heap, e.g. 512k or 2m (default 2m)")
    slac_link.add_ev_options(p)
    return p


def check_store(args):
    """The EV's Store for --pnc (seeded from --pki first when given, which is printed), or None; EvpilotError
    on bad arguments. Shared with ev_micropython.py, so both paths check the same and say the same."""
    if not args.pnc:
        if args.store or args.pki or args.with_contract:
            raise EvpilotError("--store, --pki and --with-contract need --pnc")
        return None
    if not args.tls:
        raise EvpilotError("--pnc needs --tls (ISO 15118-2 offers Contract only over TLS)")
    if not args.store:
        raise EvpilotError("--pnc needs --store DIR (the EV's certificate store; --pki DIR seeds it)")
    if args.with_contract and not args.pki:
        raise EvpilotError("--with-contract needs --pki DIR")
    options.directory(args.store, "--store", create=True)
    options.directory(args.pki, "--pki")
    store, seeded = ends.ev_store(args.store, args.pki, args.with_contract)
    if seeded is not None:
        print("store: %s seeded from %s (PCID %s%s)" % (args.store, args.pki, seeded["pcid"],
              ", contract " + seeded["emaid"] if seeded["emaid"] else ""), file=status_stream(args), flush=True)
    return store


def _tls_context(args, store=None):
    """The EV's TLS context from --roots/--keylog, or the store's V2G roots (None without --tls);
    EvpilotError on bad arguments."""
    if not args.tls:
        if args.roots or args.keylog:
            raise EvpilotError("--roots and --keylog need --tls")
        return None
    roots = ends.ev_roots(args.roots, store, args.store)
    return ends.ev_tls_context(roots, args.keylog, args.roots)


def status_stream(args):
    """Where lines other than the result go: stdout, or stderr under --json (stdout is the JSON alone)."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout


def check_args(args):
    """What both interpreters' paths check up front; EvpilotError naming the option."""
    options.check_vehicle(args)
    options.iface(args.iface)
    options.output_file(args.log, "--log")
    options.output_file(args.keylog, "--keylog")
    if args.roots and not os.path.isdir(args.roots):
        options.input_file(args.roots, "--roots")


async def _run(args, log, timing, context=None, tls_info=None, store=None):
    out = status_stream(args)
    printer = trace.Printer("ev", log, verbose=args.verbose, stream=out)

    def log_and_time(direction, name, doc, data, now):
        if direction == "tx" and name[:-3] in ("CurrentDemand", "ChargingStatus") and "first_loop" not in timing:
            timing["first_loop"] = stream.now_ms()
        printer(direction, name, doc, data, now)

    def established(connection):
        tls_info.update({"version": connection.version, "cipher": connection.cipher,
                         "secc_dc": connection.peer_dc})
        timing["tls"] = stream.now_ms()
        print("TLS: %s %s, SECC certificate DC %s" % (connection.version, connection.cipher,
                                                      ",".join(connection.peer_dc or ())), file=out, flush=True)

    ev = ends.ev_end(args.standard, args.mode, args.soc, args.capacity_wh, log=log_and_time, store=store,
                     tls_context=context, on_established=established, msg_timeouts=args.timeouts)
    timing["start"] = stream.now_ms()
    # SDP may take up to SDP_MAX_REQUESTS x V2G_EVCC_SDP_Timeout (ISO 15118-2 [V2G2-161]): say so first.
    print("SDP: searching for a station on %s (%s) ..." % (args.iface, "TLS" if args.tls else "no TLS"),
          file=sys.stderr, flush=True)
    discover, open_tcp, net = sockets.discover, sockets.open_tcp, None
    if getattr(args, "slac", False):
        # After SLAC, SDP and the session run over the firmware's own IPv6/TCP (evpilot.net) on the
        # interface, as on a board; the OS's sockets only without --slac.
        from evpilot.aio import netstack

        net = await netstack.open_stack(args.iface)
        discover, open_tcp = net.discover, net.open_tcp
    try:
        return await _session(args, ev, timing, context, out, discover, open_tcp)
    finally:
        if net is not None:
            await net.close()


async def _session(args, ev, timing, context, out, discover, open_tcp):
    found = await discover(args.iface, "tls" if args.tls else "none")
    timing["sdp"] = stream.now_ms()
    print("SDP: station at [%s]:%d" % (sockets.address_text(found["address"]), found["port"]), file=out,
          flush=True)
    if context is not None:
        print("TLS: handshake with the station ...", file=sys.stderr, flush=True)
    try:
        reader, writer = await open_tcp(found["address"], found["port"], args.iface)
    except OSError as e:
        raise EvpilotError("cannot connect to the station at [%s]:%d: %s" % (
            sockets.address_text(found["address"]), found["port"], e.strerror or e))
    await stream.drive(ev.outer, reader, writer, tick=ev.tick)
    timing["end"] = stream.now_ms()
    if ev.tls is not None and ev.outer.error is not None and not ev.outer.started:
        raise ev.outer.error  # the handshake failed: no session ran
    return ev


def main(argv):
    args = _parser().parse_args(argv)
    slac_link.check(args)
    if args.on == "micropython" or args.heap:
        from evpilot_host.commands import ev_micropython

        return ev_micropython.main(args)
    check_args(args)
    try:
        args.timeouts = options.parse_msg_timeouts(args.msg_timeout)
    except ValueError as e:
        raise EvpilotError(str(e))
    store = check_store(args)
    context = _tls_context(args, store)
    log = trace.open_log(args.log)
    timing = {}
    tls_info = {}
    failure = None
    slac = slac_link.cli_ev(args) if args.slac else None  # SLAC first: the station's network, then SDP
    if slac is not None and slac["result"] != "matched":
        if log is not None:
            log.close()
        end = "SLAC: " + slac["reason"]
        print(json.dumps({"result": "failed", "end": end, "protocol": None, "slac": slac}) if args.json
              else "EV: failed (%s)" % end, flush=True)
        return 1
    try:
        ev = asyncio.run(_run(args, log, timing, context, tls_info, store))
    except tls.TlsError as e:
        failure = e
    finally:
        if log is not None:
            log.close()
    if failure is not None:  # the handshake, or a TLS record later in the session, failed
        end = ends.tls_failure_text(failure)
        summary = {"result": "failed", "end": end, "protocol": None,
                   "tls": dict(tls_info, error=failure.reason)}
        print(json.dumps(summary, default=str) if args.json else "EV: failed (%s)" % end, flush=True)
        return 1
    client = ev.client
    summary = dict(ev.session.summary()) if ev.session is not None else {}
    summary.update({"result": "ok" if client.state == ev_client.DONE else "failed", "end": client.reason,
                    "protocol": client.protocol})
    if slac is not None:
        summary["slac"] = slac
    if context is not None:
        summary["tls"] = tls_info
        if ev.outer.error is not None:  # TLS failed during the session: the EV went to its safe state
            summary["tls"] = dict(tls_info, error=ev.outer.error.reason)
    # Timing from the start of SDP: the answer, the TLS handshake, the first charge-loop request, the end.
    for key in ("sdp", "tls", "first_loop", "end"):
        if key in timing:
            summary[key + "_ms"] = ticks_diff(timing[key], timing["start"])
    print(json.dumps(summary, default=str) if args.json else "EV: %s (%s)" % (summary["result"], client.reason))
    return 0 if client.state == ev_client.DONE else 1


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main(sys.argv[1:]))
