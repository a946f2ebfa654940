"""`evpilot ev` and `evpilot station`: either side of a session on a network interface, for two processes or
two machines (a veth pair, or a HomePlug adapter once SLAC is done).

How this works: `evpilot station --iface IF` listens for TCP on a port of IF, answers SDP with IF's IPv6
link-local address and that port, and runs the station simulator (the same SeccConnection and station
sessions as `evpilot demo`) for each connection. `evpilot ev --iface IF` discovers the station with SDP,
connects, and runs the firmware's EV session with a simulated vehicle. Both print one line per message,
take --log FILE for a JSON line per message, and run in real time (evpilot.net.stream drives the sans-I/O
connection over asyncio).

TLS (ISO 15118-2 server authentication, evpilot.tls): `evpilot station --tls --pki DIR` listens with the
server chain DIR/secc_chain.pem and key DIR/secc_leaf.key (as `evpilot pki init DIR` writes them) and its SDP
answers security TLS to every request, since it serves nothing else (an EV that asked for no TLS may take that
or ask again). `evpilot ev --tls --roots FILE_OR_DIR` asks for TLS in SDP, runs the handshake after the TCP
connect, verifying the SECC chain against the V2G roots (a .der/.pem file, or the V2G roots of a PKI
directory) and the leaf's DC (CPO), and drives the session over the TLS streams. A failed handshake ends the
EV with exit status 1 and the reason in its one summary line; the station reports it and goes on (or ends,
with --once). `--keylog FILE` on either side appends the NSS key log (CLIENT_RANDOM lines) for Wireshark.

Plug&Charge (ISO 15118-2, over TLS only): `evpilot ev --tls --pnc --store DIR` pays with a contract from the
EV's certificate store DIR (evpilot.store), installing one through the cable when it has none and updating it
when it expires within 21 days; `--pki PKIDIR` first seeds the store from a test PKI (its V2G and MO roots,
the OEM provisioning chain and key; with --with-contract also its contract). The SECC chain is checked
against the store's V2G roots unless --roots is given. Trusted time is the laptop's clock.
`evpilot station --tls --pki DIR --pnc` offers Contract and the Certificate service: the CPS of DIR issues
contracts (signed by DIR's MO Sub-CA 2) for CertificateInstallation/Update, PaymentDetails and signatures
are checked against DIR's roots, and SalesTariffs are signed with MO Sub-CA 2. The station records every
session (eMAID, times, energy, cost at --price per kWh) in SQLite: --db FILE, else $EVPILOT_SESSIONS_DB, else
evpilot-sessions.sqlite3 in the current directory; `evpilot station report [--db FILE] [--json]` prints the
sessions and the usage per contract.
"""

import argparse
import asyncio
import json
import os
import sys
import time

from evpilot.compat import ticks_diff
from evpilot.ev import client as ev_client
from evpilot.errors import EvpilotError
from evpilot import tls
from evpilot.net import sockets, stream
from evpilot_host import sessions, trace
from evpilot_host.station import records
from evpilot_sim.station import secc

TLS_HANDSHAKE_TIMEOUT_MS = 10000  # either side gives up on a handshake that has not completed by then


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
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--on", choices=("cpython", "micropython"), default="cpython",
                   help="the interpreter the firmware runs on: this one (default), or MicroPython's unix port "
                   "(`micropython` on PATH), as a check before flashing a board")
    p.add_argument("--heap", metavar="SIZE", help="with --on micropython: its heap, e.g. 512k or 2m (default 2m)")
    return p


def _is_v2g_root(file_path):
    """A self-signed CA certificate with the domain component V2G (ISO 15118-2: the EV trusts only V2G roots
    for TLS; the MO and OEM roots of a PKI directory are for other chains)."""
    from evpilot.pnc import x509

    try:
        with open(file_path, "rb") as f:
            cert = x509.parse(f.read())
    except (OSError, EvpilotError):
        return False
    return cert.ca and cert.subject_string == cert.issuer_string and "V2G" in [d.upper() for d in cert.dc]


def load_roots(path):
    """The V2G roots for the EV's TLS: the bytes of a .der/.pem file, or of every V2G root certificate (.der)
    in a directory (sorted by name), as a list. EvpilotError if there are none."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.endswith(".der")
                       and _is_v2g_root(os.path.join(path, n)))
        if not names:
            raise EvpilotError("--roots %s: no V2G root certificate (.der, DC=V2G) in that directory" % path)
        paths = [os.path.join(path, n) for n in names]
    elif os.path.isfile(path):
        paths = [path]
    else:
        raise EvpilotError("--roots %s: no such file or directory" % path)
    roots = []
    for p in paths:
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError as e:
            raise EvpilotError("--roots %s: %s" % (p, e.strerror or e))
        if not data:
            raise EvpilotError("--roots %s: empty file" % p)
        roots.append(data)
    return roots


def _ev_store(args):
    """The EV's Store for --pnc (seeded from --pki first when given), or None; EvpilotError on bad arguments."""
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
    from evpilot.store.store import Store

    if args.pki:
        from evpilot_host import pnc_store

        os.makedirs(args.store, exist_ok=True)
        seeded = pnc_store.seed_store(args.store, args.pki, contract=args.with_contract)
        print("store: %s seeded from %s (PCID %s%s)" % (args.store, args.pki, seeded["pcid"],
              ", contract " + seeded["emaid"] if seeded["emaid"] else ""), flush=True)
    elif not os.path.isdir(args.store):
        raise EvpilotError("--store %s: no such directory (seed one with --pki DIR)" % args.store)
    return Store(args.store)


def _client_tls_context(args, store=None):
    """The EV's TLS context from --roots/--keylog, or the store's V2G roots (None without --tls);
    EvpilotError on bad arguments."""
    if not args.tls:
        if args.roots or args.keylog:
            raise EvpilotError("--roots and --keylog need --tls")
        return None
    if args.roots:
        roots = load_roots(args.roots)
    elif store is not None:
        from evpilot.store import certs

        roots = [c.der for c in certs.root_certificates(store, ("V2G",))]
        if not roots:
            raise EvpilotError("--store %s holds no V2G root for TLS (seed it with --pki DIR, or give --roots)"
                               % args.store)
    else:
        raise EvpilotError("--tls needs --roots FILE_OR_DIR (the V2G root certificates)")
    try:
        return tls.client_context(roots, keylog=args.keylog)
    except (EvpilotError, ValueError) as e:  # ssl.SSLError is an OSError; a bad certificate raises one
        raise EvpilotError("--roots %s: %s" % (args.roots, e))
    except OSError as e:
        raise EvpilotError("--roots %s: not usable as root certificates (%s)" % (args.roots, e))


def _tls_failure_text(error):
    """One line for a failed TLS connection: the reason (verify, dc, handshake, protocol, timeout) and why."""
    message = error.message
    for prefix in ("TLS: ", "TLS handshake failed: "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    return "TLS %s failure: %s" % (error.reason, message)


async def _run_ev(args, log, timing, context=None, tls_info=None, store=None):
    veh = sessions.vehicle(args.mode, args.soc[0], args.soc[1], args.capacity_wh)
    contracts = None
    if store is not None:
        import time

        from evpilot.ev.pnc import ContractManager

        contracts = ContractManager(store, now_s=int(time.time()))
    printer = _printer("ev", log, args.verbose)

    def log_and_time(direction, name, doc, data, now):
        if direction == "tx" and name[:-3] in ("CurrentDemand", "ChargingStatus") and "first_loop" not in timing:
            timing["first_loop"] = stream.now_ms()
        printer(direction, name, doc, data, now)

    ev = sessions.ev_client_for(args.standard, veh, log=log_and_time, pnc=contracts, tls=context is not None,
                                msg_timeouts=args.timeouts)
    timing["start"] = stream.now_ms()
    found = await sockets.discover(args.iface, "tls" if args.tls else "none")
    timing["sdp"] = stream.now_ms()
    print("SDP: station at [%s]:%d" % (sockets.address_text(found["address"]), found["port"]), flush=True)
    try:
        reader, writer = await sockets.open_tcp(found["address"], found["port"], args.iface)
    except OSError as e:
        raise EvpilotError("cannot connect to the station at [%s]:%d: %s" % (
            sockets.address_text(found["address"]), found["port"], e.strerror or e))
    conn = ev
    if context is not None:
        def established(connection):
            tls_info.update({"version": connection.version, "cipher": connection.cipher,
                             "secc_dc": connection.peer_dc})
            timing["tls"] = stream.now_ms()
            print("TLS: %s %s, SECC certificate DC %s" % (connection.version, connection.cipher,
                                                          ",".join(connection.peer_dc or ())), flush=True)

        conn = tls.TlsEndpoint(ev, tls.TlsConnection(context), TLS_HANDSHAKE_TIMEOUT_MS, established)
    await stream.drive(conn, reader, writer, tick=veh.advance)
    timing["end"] = stream.now_ms()
    if conn is not ev and conn.error is not None and not conn.started:
        raise conn.error  # the handshake failed: no session ran
    return ev, veh, conn


def ev_main(argv):
    args = _ev_parser().parse_args(argv)
    if args.on == "micropython" or args.heap:
        from evpilot_host import ev_on_micropython

        return ev_on_micropython.ev_main(args)
    try:
        args.timeouts = sessions.parse_msg_timeouts(args.msg_timeout)
    except ValueError as e:
        raise EvpilotError(str(e))
    store = _ev_store(args)
    context = _client_tls_context(args, store)
    log = trace.JsonLog(args.log) if args.log else None
    timing = {}
    tls_info = {}
    failure = None
    try:
        ev, veh, conn = asyncio.run(_run_ev(args, log, timing, context, tls_info, store))
    except tls.TlsError as e:
        failure = e
    finally:
        if log is not None:
            log.close()
    if failure is not None:  # the handshake, or a TLS record later in the session, failed
        end = _tls_failure_text(failure)
        summary = {"result": "failed", "end": end, "protocol": None,
                   "tls": dict(tls_info, error=failure.reason)}
        print(json.dumps(summary, default=str) if args.json else "EV: failed (%s)" % end, flush=True)
        return 1
    summary = dict(ev.session.summary()) if ev.session is not None else {}
    summary.update({"result": "ok" if ev.state == ev_client.DONE else "failed", "end": ev.reason,
                    "protocol": ev.protocol})
    if context is not None:
        summary["tls"] = tls_info
        if conn.error is not None:  # TLS failed during the session: the EV went to its safe state
            summary["tls"] = dict(tls_info, error=conn.error.reason)
    # Timing from the start of SDP: the answer, the TLS handshake, the first charge-loop request, the end.
    for key in ("sdp", "tls", "first_loop", "end"):
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
                   "cable_check_ms=3000, isolation_result=Fault (see evpilot_sim.evse.EVSEConfig)")
    p.add_argument("--once", action="store_true", help="exit after the first session")
    p.add_argument("--seed", type=int, default=None, help="seed for SessionIDs (reproducible runs)")
    p.add_argument("--tls", action="store_true", help="serve TLS 1.2 only (ECDHE-ECDSA-AES128-SHA256; needs "
                   "--pki) and announce it in SDP")
    p.add_argument("--pki", metavar="DIR", help="a directory from `evpilot pki init`: the server chain "
                   "secc_chain.pem and its key secc_leaf.key")
    p.add_argument("--pnc", action="store_true", help="Plug&Charge: offer Contract and the Certificate service "
                   "with the CPS, MO and roots of --pki (needs --tls)")
    p.add_argument("--db", metavar="FILE", help="session records (SQLite; default $%s or %s)"
                   % (records.DB_ENV, records.DEFAULT_DB))
    p.add_argument("--price", type=float, default=records.DEFAULT_PRICE_PER_KWH, metavar="PER_KWH",
                   help="tariff for the records (default %.2f)" % records.DEFAULT_PRICE_PER_KWH)
    p.add_argument("--currency", default=records.DEFAULT_CURRENCY, help="currency of --price (default %s)"
                   % records.DEFAULT_CURRENCY)
    p.add_argument("--keylog", metavar="FILE", help="append the TLS key log (NSS format, for Wireshark)")
    p.add_argument("--log", metavar="FILE", help="write every message as a JSON line")
    p.add_argument("--verbose", action="store_true", help="print every message of the charging loops")
    return p


def _station_pnc(args):
    """The StationPnc for --pnc (None without); EvpilotError on bad arguments."""
    if not args.pnc:
        return None
    if not args.tls or not args.pki:
        raise EvpilotError("--pnc needs --tls and --pki DIR (ISO 15118-2 offers Contract only over TLS)")
    import time

    from evpilot_host import pnc_store

    try:
        return pnc_store.station_pnc(args.pki, clock=time.time)
    except (OSError, ValueError) as e:
        raise EvpilotError("--pki %s: cannot load the Plug&Charge material: %s" % (args.pki, e))


SECC_CHAIN = "secc_chain.pem"
SECC_KEY = "secc_leaf.key"


def _server_tls_context(args):
    """The station's TLS context from --pki/--keylog (None without --tls); EvpilotError on bad arguments."""
    if not args.tls:
        if args.pki or args.keylog:
            raise EvpilotError("--pki and --keylog need --tls")
        return None
    if not args.pki:
        raise EvpilotError("--tls needs --pki DIR (with %s and %s, as `evpilot pki init DIR` writes them)"
                           % (SECC_CHAIN, SECC_KEY))
    chain, key = os.path.join(args.pki, SECC_CHAIN), os.path.join(args.pki, SECC_KEY)
    missing = [n for n, p in ((SECC_CHAIN, chain), (SECC_KEY, key)) if not os.path.isfile(p)]
    if missing:
        raise EvpilotError("--pki %s: missing %s (write a test PKI with `evpilot pki init DIR`)"
                           % (args.pki, " and ".join(missing)))
    try:
        return tls.server_context(chain, key, keylog=args.keylog)
    except (EvpilotError, ValueError) as e:
        raise EvpilotError("--pki %s: %s" % (args.pki, e))
    except OSError as e:  # ssl.SSLError: not a certificate chain, or the key does not match
        raise EvpilotError("--pki %s: cannot use %s with %s: %s" % (args.pki, SECC_CHAIN, SECC_KEY, e))


async def _serve(args, log, context=None, pnc=None, db=None):
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
                                           log=_printer("secc", log, args.verbose), paused=paused, pnc=pnc,
                                           tls=context is not None)
        outer = conn
        if context is not None:
            def established(connection):
                print("station: TLS %s %s" % (connection.version, connection.cipher), flush=True)

            outer = tls.TlsEndpoint(conn, tls.TlsConnection(context), TLS_HANDSHAKE_TIMEOUT_MS, established)
        started = time.time()
        await stream.drive(outer, reader, writer, tick=evse.advance)
        if outer is not conn and not outer.started:
            print("station: session failed (%s)" % _tls_failure_text(outer.error), flush=True)
            results.append(False)
            if args.once:
                done.set()
            return
        reason = conn.reason if outer is conn or outer.error is None else outer.reason
        print("station: session %s (%s)" % ("ok" if conn.state == secc.DONE else "failed", reason), flush=True)
        if db is not None and conn.session is not None:
            row = db.record(conn, started, time.time())
            if row["emaid"]:
                print("station: contract %s, %.3f kWh, %.2f %s" % (row["emaid"], row["energy_wh"] / 1000.0,
                                                                  row["cost"], row["currency"]), flush=True)
        results.append(conn.state == secc.DONE)
        if args.once:
            done.set()

    server = await _listen(handle, args.port)
    port = server.sockets[0].getsockname()[1]
    print("station: SECC [%s%%%s]:%d, protocols %s, %s%s" % (
        sockets.address_text(address), args.iface, port, ",".join(protocols), args.mode.upper(),
        ", TLS only" if context is not None else ""), flush=True)
    if context is not None:
        sdp_task = asyncio.ensure_future(sockets.serve_sdp(args.iface, address, port, tls=True, tls_only=True))
    else:
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
    if argv and argv[0] == "report":
        from evpilot_host.station import report_cli

        return report_cli.report_main(argv[1:])
    args = _station_parser().parse_args(argv)
    context = _server_tls_context(args)
    pnc = _station_pnc(args)
    try:
        db = records.Records(args.db, price_per_kwh=args.price, currency=args.currency)
    except (ValueError, records.RecordsError) as e:
        raise EvpilotError("session records: %s" % e)
    log = trace.JsonLog(args.log) if args.log else None
    try:
        results = asyncio.run(_serve(args, log, context, pnc, db))
    except KeyboardInterrupt:
        return 130
    finally:
        db.close()
        if log is not None:
            log.close()
    return 0 if results and all(results) else 1


def main(argv):  # pragma: no cover - dispatch for `python -m evpilot_host.link_cli ev|station`
    if argv and argv[0] == "ev":
        return ev_main(argv[1:])
    return station_main(argv[1:])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
