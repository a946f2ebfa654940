# One EV session over a link, from SDP to the end of the V2G session, configured by one dict and reported as
# dicts: what the firmware application runs for every plug-in (evpilot.app), and what `evpilot ev --on
# micropython` runs under MicroPython's unix port (evpilot_sim.ev_run, which writes the reports as JSON lines).
#
# How this works
# --------------
# run(config, report, veh, net) discovers the station (SDP), opens TCP, puts TLS in front when config "tls",
# and drives the EvClient (DIN or ISO-2, EIM or Plug&Charge from the store) with evpilot.aio.stream.drive.
# The link: `net`, a started NetStack (the board's own IPv6/TCP, brought up by SLAC: evpilot.aio.plc), else
# config "stack" "own" (the own stack on raw Ethernet, for laptops), else the platform's OS sockets.
# report(dict) gets, in order:
#   {"sdp": {"address": hex, "port": n, "security": "tls"/"none"}}   the station SDP found
#   {"tls": {"version": ..., "cipher": ..., "secc_dc": [...]}}       the handshake is done (TLS only)
#   {"m": "tx"/"rx", "name": NAME, "now": ms, "exi": bytes}          each V2G message as its EXI bytes (the
#                       board never builds a readable view of a document: a CertificateInstallationRes would
#                       cost tens of KB of heap to render)
#   {"summary": {...}}  the end: the session's summary with result, end, protocol, tls and the timing
#                       keys sdp_ms, tls_ms, first_loop_ms, end_ms (from the start of SDP), as `evpilot ev`
#   {"tls_failed": {"reason": ..., "message": ..., "tls": {...}}}    TLS ended the connection
#   {"error": KIND, "message": TEXT}   no session: KIND "sdp" or "connect"
# Bad configuration raises UsageError. The config: iface, standard ("iso2" offers ISO-2 then DIN, "din" only
# DIN), msg_timeouts {request: ms} (replacing the standard's V2G_EVCC_Msg_Timeout), tls (bool), roots [hex
# DER] (the V2G roots for TLS), pnc (bool), store (the certificate store's directory), now_s (trusted time
# for the contract checks, s since 1970), stack ("own" or not). Session time is evpilot.aio.stream.now_ms;
# calendar time only checks certificates: config now_s for the contract, the TLS context's own clock for the
# SECC chain.

try:
    import asyncio
except ImportError:  # pragma: no cover - older MicroPython
    import uasyncio as asyncio

from evpilot.aio import sockets, stream
from evpilot.compat import ticks_diff
from evpilot.errors import UsageError
from evpilot.ev import client as ev_client
from evpilot.v2g import sdp, timers

LOOPS = ("CurrentDemandReq", "ChargingStatusReq")  # the first of these marks the start of charging


def hex_text(b):
    return "".join("%02x" % c for c in b)


def client_for(config, veh, log, contracts=None):
    """An EvClient offering config["standard"] (ISO-2 also offers DIN as second choice)."""
    standard = config.get("standard", "iso2")
    if standard not in ("iso2", "din"):
        raise UsageError("standard must be iso2 or din, not %r" % (standard,))
    tls = bool(config.get("tls"))

    def make(protocol):
        if protocol == "din":
            from evpilot.ev.din import DinSession

            return DinSession(veh)
        from evpilot.ev.iso2 import Iso2Session

        return Iso2Session(veh, pnc=contracts, tls=tls)

    relaxed = config.get("msg_timeouts") or {}

    def timeout(protocol, name):
        return relaxed.get(name) or timers.msg_timeout(protocol, name)

    offers = [("din", 1)] if standard == "din" else [("iso2", 1), ("din", 2)]
    return ev_client.EvClient(make, offers, timeout, log=log)


def contracts(config):
    """The ContractManager over the config's store for Plug&Charge, or None."""
    if not config.get("pnc"):
        return None
    from evpilot.ev.contracts import ContractManager
    from evpilot.store.keystore import Store

    if not config.get("store"):
        raise UsageError("pnc needs store (the certificate store's directory)")
    return ContractManager(Store(config["store"]), now_s=config.get("now_s"))


def tls_endpoint(config, ev, established):
    """The EV client behind TLS when config["tls"] (established(tls) is called once the handshake is
    complete), else the client itself."""
    if not config.get("tls"):
        return ev
    from evpilot import tls

    roots = [bytes.fromhex(r) for r in config.get("roots") or ()]
    if not roots:
        raise UsageError("tls needs roots (the V2G root certificates)")
    return tls.TlsEndpoint(ev, tls.TlsConnection(tls.client_context(roots)), tls.HANDSHAKE_TIMEOUT_MS,
                           established)


async def run(config, report, veh, net=None):
    """Discover the station, connect, run one session with the vehicle controller `veh`; report(dict) sees
    every report (see above). Returns the EvClient, or None when there was no session (an error was
    reported). `net`: a started evpilot.aio.netstack.NetStack to run SDP and TCP over (the board's link,
    which its owner keeps and closes); else config "stack" "own" opens one on config "iface" for this
    session, and anything else uses the platform's sockets."""
    timing = {}
    tls_info = {}

    def log(direction, name, doc, data, now):
        if direction == "tx" and name in LOOPS and "first_loop" not in timing:
            timing["first_loop"] = stream.now_ms()
        report({"m": direction, "name": name, "now": now, "exi": data})

    def established(connection):
        timing["tls"] = stream.now_ms()
        tls_info["version"] = connection.version
        tls_info["cipher"] = connection.cipher
        tls_info["secc_dc"] = connection.peer_dc
        report({"tls": tls_info})

    ev = client_for(config, veh, log, contracts(config))
    endpoint = tls_endpoint(config, ev, established)
    iface = config.get("iface") or ""
    timing["start"] = stream.now_ms()
    if net is not None:  # the board's link, already up
        return await _session(config, report, ev, endpoint, veh, timing, tls_info, iface, net.discover,
                              net.open_tcp)
    if config.get("stack") == "own":  # the firmware's own IPv6/UDP/TCP over raw Ethernet, as on a board
        from evpilot.aio import netstack

        net = await netstack.open_stack(iface)
        try:
            return await _session(config, report, ev, endpoint, veh, timing, tls_info, iface, net.discover,
                                  net.open_tcp)
        finally:
            await net.close()
    return await _session(config, report, ev, endpoint, veh, timing, tls_info, iface, sockets.discover,
                          sockets.open_tcp)


async def _session(config, report, ev, endpoint, veh, timing, tls_info, iface, discover, open_tcp):
    try:
        found = await discover(iface, "tls" if config.get("tls") else "none")
    except sdp.SdpFailed as e:
        report({"error": "sdp", "message": str(e)})
        return None
    timing["sdp"] = stream.now_ms()
    report({"sdp": {"address": hex_text(found["address"]), "port": found["port"], "security": found["security"]}})
    try:
        reader, writer = await open_tcp(found["address"], found["port"], iface)
    except asyncio.TimeoutError:
        report({"error": "connect", "message": "no TCP connection to [%s]:%d within 5 s"
                % (sockets.address_text(found["address"]), found["port"])})
        return None
    except OSError as e:
        report({"error": "connect", "message": "TCP connection to [%s]:%d failed: %s"
                % (sockets.address_text(found["address"]), found["port"], e)})
        return None
    await stream.drive(endpoint, reader, writer, tick=veh.advance)
    timing["end"] = stream.now_ms()
    error = None if endpoint is ev else endpoint.error
    if error is not None and not endpoint.started:  # the handshake failed: no session ran
        report({"tls_failed": {"reason": error.reason, "message": error.message, "tls": tls_info}})
        return ev
    summary = ev.session.summary() if ev.session is not None else {}
    summary["result"] = "ok" if ev.state == ev_client.DONE else "failed"
    summary["end"] = ev.reason
    summary["protocol"] = ev.protocol
    if endpoint is not ev:
        summary["tls"] = tls_info
        if error is not None:  # TLS failed during the session: the EV went to its safe state
            tls_info["error"] = error.reason
    for key in ("sdp", "tls", "first_loop", "end"):
        if key in timing:
            summary[key + "_ms"] = ticks_diff(timing[key], timing["start"])
    report({"summary": summary})
    return ev
