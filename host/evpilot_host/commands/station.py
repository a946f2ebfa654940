"""`evpilot station`: the station simulator on a network interface, for an EV in another process or on another
machine (a veth pair, or a HomePlug adapter once SLAC is done), with faults injected on request.

How this works: `evpilot station --iface IF` listens for TCP on a port of IF, answers SDP with IF's IPv6
link-local address and that port, and runs a station end of evpilot_host.ends (the same SeccConnection and
station sessions as `evpilot demo`, on a new simulated EVSE) for each connection, in real time
(evpilot.aio.stream drives the sans-I/O connection over asyncio). evpilot_host.trace.Printer prints one line
per message (charge loops sampled; --verbose for all) and the faults injected, and writes --log FILE (a JSON
line per message); each session ends with one line. --once exits after the first session, with status 0
when it ended cleanly.

TLS (ISO 15118-2 server authentication, evpilot.tls): `--tls --pki DIR` listens with the server chain
DIR/secc_chain.pem and key DIR/secc_leaf.key (as `evpilot pki init DIR` writes them) and its SDP answers
security TLS to every request, since it serves nothing else (an EV that asked for no TLS may take that or ask
again). A failed handshake is reported and the station goes on (or ends, with --once). `--keylog FILE`
appends the NSS key log (CLIENT_RANDOM lines) for Wireshark.

Plug&Charge: `--tls --pki DIR --pnc` offers Contract and the Certificate service: the CPS of DIR issues
contracts (signed by DIR's MO Sub-CA 2) for CertificateInstallation/Update, PaymentDetails and signatures
are checked against DIR's roots, and SalesTariffs are signed with MO Sub-CA 2. The station records every
session (eMAID, times, energy, cost at --price per kWh) in SQLite: --db FILE, else $EVPILOT_SESSIONS_DB, else
evpilot-sessions.sqlite3 in the current directory; `evpilot station report [--db FILE] [--json]` (report.py)
prints the sessions and the usage per contract.

SLAC (ISO 15118-3): `--slac` first runs the EVSE side of SLAC on IF (slac_link.py; with a simulated modem
when IF has none, reporting `--slac-attenuation DB`) until an EV matched, within TT_EVSE_SLAC_init, and
prints one line; then the station serves as above.
"""

import asyncio
import sys
import time

from evpilot.errors import EvpilotError
from evpilot.aio import sockets, stream
from evpilot_host import ends, trace
from evpilot_host.commands import options, slac_link
from evpilot_host.station import records
from evpilot_sim.station import secc


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


def _parser():
    p = options.parser("evpilot station", "The station simulator on a network interface.")
    p.add_argument("--iface", required=True, help="network interface to serve on")
    p.add_argument("--protocols", default="iso2,din", help="protocols offered, best first (default iso2,din)")
    p.add_argument("--mode", choices=("ac", "dc"), default="dc", help="energy transfer (default dc)")
    p.add_argument("--port", type=options.number(int, 1, 65535), default=0,
                   help="TCP port announced by SDP (default: a free one of the dynamic range 49152-65535, "
                   "which EVs expect: Josev's EV refuses others)")
    p.add_argument("--fault", action="append", default=[], metavar="RESPONSE:ACTION[:NTH[:DELAY_MS]]",
                   help="inject a fault, e.g. CurrentDemandRes:withhold:5 (actions: %s)"
                   % ", ".join(secc.Fault.ACTIONS))
    p.add_argument("--evse", action="append", default=[], metavar="SETTING=VALUE",
                   help="an EVSE rating or behaviour, e.g. dc_max_power=50000, ac_max_current=16, "
                   "cable_check_ms=3000, isolation_result=Fault (see evpilot_sim.evse.EVSEConfig)")
    p.add_argument("--once", action="store_true", help="exit after the first session")
    p.add_argument("--max-connections", type=options.number(int, 1, 1000), default=MAX_CONNECTIONS, metavar="N",
                   help="open TCP connections at most (default %d: one EV in session, the others waiting for "
                   "their first request; the oldest waiting one is closed for a new one)" % MAX_CONNECTIONS)
    p.add_argument("--seed", type=options.number(int, 0), default=None, help="seed for SessionIDs (reproducible runs)")
    p.add_argument("--tls", action="store_true", help="serve TLS 1.2 only (ECDHE-ECDSA-AES128-SHA256; needs "
                   "--pki) and announce it in SDP")
    p.add_argument("--pki", metavar="DIR", help="a directory from `evpilot pki init`: the server chain "
                   "secc_chain.pem and its key secc_leaf.key")
    p.add_argument("--pnc", action="store_true", help="Plug&Charge: offer Contract and the Certificate service "
                   "with the CPS, MO and roots of --pki (needs --tls)")
    p.add_argument("--db", metavar="FILE", help="session records (SQLite; default $%s or %s)"
                   % (records.DB_ENV, records.DEFAULT_DB))
    p.add_argument("--price", type=options.number(float, 0, 1000), default=records.DEFAULT_PRICE_PER_KWH,
                   metavar="PER_KWH",
                   help="tariff for the records (default %.2f)" % records.DEFAULT_PRICE_PER_KWH)
    p.add_argument("--currency", default=records.DEFAULT_CURRENCY, help="currency of --price (default %s)"
                   % records.DEFAULT_CURRENCY)
    p.add_argument("--keylog", metavar="FILE", help="append the TLS key log (NSS format, for Wireshark)")
    p.add_argument("--log", metavar="FILE", help="write every message as a JSON line")
    p.add_argument("--verbose", action="store_true", help="print every message of the charging loops")
    slac_link.add_station_options(p)
    return p


def _tls_context(args):
    """The station's TLS context from --pki/--keylog (None without --tls); EvpilotError on bad arguments."""
    if not args.tls:
        if args.pki or args.keylog:
            raise EvpilotError("--pki and --keylog need --tls")
        return None
    if not args.pki:
        raise EvpilotError("--tls needs --pki DIR (with %s and %s, as `evpilot pki init DIR` writes them)"
                           % (ends.SECC_CHAIN, ends.SECC_KEY))
    return ends.station_tls_context(args.pki, args.keylog)


def _pnc(args):
    """The station's Plug&Charge for --pnc (None without); EvpilotError on bad arguments."""
    if not args.pnc:
        return None
    if not args.tls or not args.pki:
        raise EvpilotError("--pnc needs --tls and --pki DIR (ISO 15118-2 offers Contract only over TLS)")
    return ends.station_pnc(args.pki)


def _check(args):
    """Everything the command line says, checked before anything listens: (protocols, faults, EVSE settings)."""
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    if not protocols:
        raise EvpilotError("--protocols %r: name at least one of %s" % (args.protocols, ", ".join(ends.PROTOCOLS)))
    for p in protocols:
        if p not in ends.PROTOCOLS:
            raise EvpilotError("--protocols: unknown protocol %r (known: %s)" % (p, ", ".join(ends.PROTOCOLS)))
    if args.mode == "ac" and protocols == ["din"]:
        raise EvpilotError("DIN SPEC 70121 is DC only: use --mode dc or offer iso2")
    try:
        faults = [options.parse_fault(f) for f in args.fault]
        evse_settings = options.parse_settings(args.evse)
    except ValueError as e:
        raise EvpilotError(str(e))
    ends.new_evse(**evse_settings)  # refuses unknown settings before anything listens
    options.iface(args.iface)
    options.output_file(args.log, "--log")
    options.output_file(args.keylog, "--keylog")
    options.sqlite_file(args.db, "--db")
    return protocols, faults, evse_settings


# A charging point serves one EV (IEC 61851-1: one vehicle per connector). A new TCP connection first waits,
# holding no slot, for its first bytes (a real EV sends its SupportedAppProtocolReq, or its TLS ClientHello,
# at once); one that sends nothing within secc.SETUP_TIMEOUT_MS is closed, and beyond MAX_SILENT such
# connections the oldest is closed. A connection that has spoken takes one of MAX_CONNECTIONS slots; when
# they are all taken, the oldest connection that has not started a session (a slow one) is closed for it,
# and a session is never closed for a newcomer. So idle or slow connections cannot keep a real EV out.
MAX_CONNECTIONS = 4
MAX_SILENT = 256


class _Prefixed:
    """A stream reader that hands out `first` (bytes already read) before reading on."""

    def __init__(self, first, reader):
        self.first = first
        self.reader = reader

    async def read(self, n):
        if self.first:
            data, self.first = self.first, b""
            return data
        return await self.reader.read(n)


def _session_started(st):
    return st.connection.session is not None


def make_handler(args, protocols, faults, evse_settings, log=None, context=None, pnc=None, db=None,
                 max_connections=MAX_CONNECTIONS):
    """The asyncio server callback for one station: handle(reader, writer), with .results (True/False per
    session), .done (set after the first session with --once) and .stats (accepted, evicted, refused)."""
    done = asyncio.Event()
    results = []
    paused = {}
    open_ends = []  # [(StationEnd, writer)], oldest first
    stats = {"accepted": 0, "evicted": 0, "refused": 0, "silent_closed": 0}
    silent = []  # writers of connections that have not sent anything yet, oldest first

    def established(connection):
        print("station: TLS %s %s" % (connection.version, connection.cipher), flush=True)

    def admit():
        """Make room for a new connection; False when no slot can be freed (the new one is refused)."""
        if len(open_ends) < max_connections:
            return True
        idle = [(st, w) for st, w in open_ends if not _session_started(st)]
        if not idle:
            return False
        open_ends.remove(idle[0])
        stats["evicted"] += 1
        _abort(idle[0][1])
        return True

    async def handle(reader, writer):
        silent.append(writer)
        if len(silent) > MAX_SILENT:
            _abort(silent.pop(0))
            stats["silent_closed"] += 1
        try:
            first = await asyncio.wait_for(reader.read(4096), S_SETUP_TIMEOUT_S)
        except (asyncio.TimeoutError, OSError):
            first = b""
        if writer not in silent:  # closed for a newer one
            return
        silent.remove(writer)
        if not first:
            stats["silent_closed"] += 1
            _abort(writer)
            return
        reader = _Prefixed(first, reader)
        if not admit():
            stats["refused"] += 1
            _abort(writer)
            return
        stats["accepted"] += 1
        st = ends.station_end(protocols, args.mode, evse_settings, seed=args.seed, faults=faults,
                              log=trace.Printer("secc", log, verbose=args.verbose), paused=paused, pnc=pnc,
                              tls_context=context, on_established=established)
        conn, outer = st.connection, st.outer
        entry = (st, writer)
        open_ends.append(entry)
        started = time.time()
        try:
            await stream.drive(outer, reader, writer, tick=st.tick)
        finally:
            evicted = entry not in open_ends
            if not evicted:
                open_ends.remove(entry)
        if evicted:
            return  # closed for a newer connection before it asked for a protocol: no session to report
        if st.tls is not None and not outer.started:
            print("station: session failed (%s)" % ends.tls_failure_text(outer.error), flush=True)
            results.append(False)
            if args.once:
                done.set()
            return
        reason = conn.reason if st.tls is None or outer.error is None else outer.reason
        print("station: session %s (%s)" % ("ok" if conn.state == secc.DONE else "failed", reason), flush=True)
        if db is not None and conn.session is not None:
            row = db.record(conn, started, time.time())
            if row["emaid"]:
                print("station: contract %s, %.3f kWh, %.2f %s" % (row["emaid"], row["energy_wh"] / 1000.0,
                                                                  row["cost"], row["currency"]), flush=True)
        results.append(conn.state == secc.DONE)
        if args.once:
            done.set()

    handle.results, handle.done, handle.stats = results, done, stats
    return handle


S_SETUP_TIMEOUT_S = secc.SETUP_TIMEOUT_MS / 1000


def _abort(writer):
    transport = getattr(writer, "transport", None)
    if transport is not None:
        transport.abort()  # no lingering close for a connection we drop
    else:
        writer.close()


async def _serve(args, log, context=None, pnc=None, db=None):
    protocols, faults, evse_settings = _check(args)
    address = link_local(args.iface)
    if args.slac:  # the EV finds this station on the powerline first; SDP and TCP follow on the OS's sockets
        await slac_link.cli_station(args)
    handle = make_handler(args, protocols, faults, evse_settings, log, context, pnc, db, args.max_connections)
    done, results = handle.done, handle.results
    server = await _listen(handle, args.port)
    port = server.sockets[0].getsockname()[1]
    print("station: SECC [%s%%%s]:%d, protocols %s, %s%s" % (
        sockets.address_text(address), args.iface, port, ",".join(protocols), args.mode.upper(),
        ", TLS only" if context is not None else ""), flush=True)
    print("station: waiting for an EV (SDP on %s) ..." % args.iface, file=sys.stderr, flush=True)
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


def main(argv):
    args = _parser().parse_args(argv)
    _check(args)
    context = _tls_context(args)
    pnc = _pnc(args)
    db = ends.station_records(args.db, price_per_kwh=args.price, currency=args.currency)
    log = trace.open_log(args.log)
    try:
        results = asyncio.run(_serve(args, log, context, pnc, db))
    except KeyboardInterrupt:
        return 130
    finally:
        db.close()
        if log is not None:
            log.close()
    return 0 if results and all(results) else 1


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main(sys.argv[1:]))
