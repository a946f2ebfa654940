# One EV session over the platform's own sockets, configured by one JSON object and reported as JSON lines:
# what `evpilot ev --on micropython` runs under MicroPython's unix port, so a developer checks the firmware
# on the real interpreter before flashing a board (the host side is evpilot_host.commands.ev_micropython).
#
# How this works
# --------------
# `micropython -m evpilot_sim.ev_run` reads the config from stdin (one JSON object), runs run(config,
# report) and writes every report as one JSON line on stdout, flushed at once:
#   {"sdp": {"address": hex, "port": n, "security": "tls"/"none"}}   the station SDP found
#   {"tls": {"version": ..., "cipher": ..., "secc_dc": [...]}}       the handshake is done (TLS only)
#   {"m": "tx"/"rx", "name": NAME, "now": ms, "exi": hex}            each V2G message as its EXI bytes; the
#                       host decodes them with the same codec, so the board never builds a JSON view of a
#                       document (a CertificateInstallationRes would cost tens of KB of heap to render)
#   {"summary": {...}}  the end: the session's summary with result, end, protocol, tls and the timing
#                       keys sdp_ms, tls_ms, first_loop_ms, end_ms (from the start of SDP), as `evpilot ev`
#   {"tls_failed": {"reason": ..., "message": ..., "tls": {...}}}    TLS ended the connection
#   {"error": KIND, "message": TEXT}   no session: KIND "config", "sdp", "connect", "memory", "internal"
# The config: iface, standard ("iso2" offers ISO-2 then DIN, "din" only DIN), mode ("dc"/"ac"), soc [from,
# to], capacity_wh (null: 4000 DC, 1500 AC), msg_timeouts {request: ms} (replacing the standard's
# V2G_EVCC_Msg_Timeout), tls (bool), roots [hex DER] (the V2G roots for TLS), pnc (bool), store (the
# certificate store's directory), now_s (trusted time for the contract checks, s since 1970).
# Session time is evpilot.aio.stream.now_ms (the sessions get `now` from drive()); calendar time only checks
# certificates: config now_s for the contract, the TLS context's own clock for the SECC chain.

import json
import sys

try:
    import asyncio
except ImportError:  # pragma: no cover - older MicroPython
    import uasyncio as asyncio

from evpilot.compat import ticks_diff
from evpilot.errors import EvpilotError, UsageError
from evpilot.ev import client as ev_client
from evpilot_sim.vehicle import SimVehicle
from evpilot.ev.vehicle import AC_THREE_PHASE_CORE, DC_EXTENDED
from evpilot.aio import sockets, stream
from evpilot.v2g import sdp, timers

_HEX_CHUNK = 256  # bytes of EXI turned into hex at a time (a large message is never one big string)
_LOOPS = ("CurrentDemandReq", "ChargingStatusReq")  # the first of these marks the start of charging


def _hex(b):
    return "".join("%02x" % c for c in b)


def vehicle(config):
    """The SimVehicle for the config (the same defaults as `evpilot ev`: a small pack, 20 -> 80 %)."""
    dc = config.get("mode", "dc") == "dc"
    soc = config.get("soc") or (20, 80)
    capacity = config.get("capacity_wh") or (4000 if dc else 1500)
    return SimVehicle(capacity_wh=capacity, soc=soc[0], target_soc=soc[1],
                      modes=(DC_EXTENDED,) if dc else (AC_THREE_PHASE_CORE,))


def ev_client_for(config, veh, log, contracts=None):
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


def _contracts(config):
    """The ContractManager over the config's store for Plug&Charge, or None."""
    if not config.get("pnc"):
        return None
    from evpilot.ev.contracts import ContractManager
    from evpilot.store.keystore import Store

    if not config.get("store"):
        raise UsageError("pnc needs store (the certificate store's directory)")
    return ContractManager(Store(config["store"]), now_s=config.get("now_s"))


def _tls_endpoint(config, ev, established):
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


async def run(config, report, veh=None):
    """Discover the station, connect, run one session; report(dict) sees every report (see above). Returns
    the EvClient, or None when there was no session (an error was reported). `veh`: the vehicle controller
    (the firmware application passes its own), else the config's SimVehicle."""
    if veh is None:
        veh = vehicle(config)
    timing = {}
    tls_info = {}

    def log(direction, name, doc, data, now):
        if direction == "tx" and name in _LOOPS and "first_loop" not in timing:
            timing["first_loop"] = stream.now_ms()
        report({"m": direction, "name": name, "now": now, "exi": data})

    def established(connection):
        timing["tls"] = stream.now_ms()
        tls_info["version"] = connection.version
        tls_info["cipher"] = connection.cipher
        tls_info["secc_dc"] = connection.peer_dc
        report({"tls": tls_info})

    ev = ev_client_for(config, veh, log, _contracts(config))
    endpoint = _tls_endpoint(config, ev, established)
    iface = config.get("iface") or ""
    timing["start"] = stream.now_ms()
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
    report({"sdp": {"address": _hex(found["address"]), "port": found["port"], "security": found["security"]}})
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


def _jsonable(value):
    """The JSON view of a summary value: bytes as hex (MicroPython's json has no default=)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _hex(value)
    return value


def _write(report):
    out = sys.stdout
    if "m" in report:  # a message: the EXI as hex, written a piece at a time
        out.write('{"m": "%s", "name": "%s", "now": %d, "exi": "' % (report["m"], report["name"], report["now"]))
        data = memoryview(report["exi"])
        for i in range(0, len(data), _HEX_CHUNK):
            out.write(_hex(data[i:i + _HEX_CHUNK]))
        out.write('"}\n')
    else:
        out.write(json.dumps(_jsonable(report)) + "\n")
    if hasattr(out, "flush"):
        out.flush()


def main():
    """Config from stdin, reports to stdout; exit status 0 (a report says how it went) or 3 (out of heap)."""
    try:
        try:
            config = json.loads(sys.stdin.readline())
        except ValueError as e:
            raise UsageError("not a JSON object: %s" % (e,))
        if not isinstance(config, dict):
            raise UsageError("not a JSON object")
        asyncio.run(run(config, _write))
    except MemoryError:
        # Whatever the heap still holds, one short line fits.
        sys.stdout.write('{"error": "memory", "message": "out of memory"}\n')
        sys.exit(3)
    except EvpilotError as e:
        _write({"error": "config", "message": str(e)})
    except Exception as e:  # nothing may end this program with a traceback: the host shows one line
        _write({"error": "internal", "message": "%s: %s" % (type(e).__name__, e)})


if __name__ == "__main__":
    main()
