# One EV session configured by one JSON object and reported as JSON lines: what `evpilot ev --on micropython`
# runs under MicroPython's unix port, so a developer checks the firmware on the real interpreter before
# flashing a board (the host side is evpilot_host.commands.ev_micropython). The session is the firmware's own
# (evpilot.ev.run, which the board's application runs too); this module adds the simulated vehicle and the
# JSON lines.
#
# How this works
# --------------
# `micropython -m evpilot_sim.ev_run` reads the config from stdin (one JSON object), runs run(config,
# report) and writes every report (evpilot.ev.run lists them) as one JSON line on stdout, flushed at once:
#   {"sdp": {"address": hex, "port": n, "security": "tls"/"none"}}   the station SDP found
#   {"tls": {"version": ..., "cipher": ..., "secc_dc": [...]}}       the handshake is done (TLS only)
#   {"m": "tx"/"rx", "name": NAME, "now": ms, "exi": hex}            each V2G message as its EXI bytes; the
#                       host decodes them with the same codec, so the board never builds a JSON view of a
#                       document (a CertificateInstallationRes would cost tens of KB of heap to render)
#   {"summary": {...}}  the end: the session's summary with result, end, protocol, tls and the timing
#                       keys sdp_ms, tls_ms, first_loop_ms, end_ms (from the start of SDP), as `evpilot ev`
#   {"tls_failed": {"reason": ..., "message": ..., "tls": {...}}}    TLS ended the connection
#   {"error": KIND, "message": TEXT}   no session: KIND "config", "sdp", "connect", "memory", "internal"
# The config is evpilot.ev.run's, and for the SimVehicle: mode ("dc"/"ac"), soc [from, to], capacity_wh
# (null: 4000 DC, 1500 AC).

import json
import sys

try:
    import asyncio
except ImportError:  # pragma: no cover - older MicroPython
    import uasyncio as asyncio

from evpilot.errors import EvpilotError, UsageError
from evpilot.ev import run as ev_session
from evpilot.ev.run import hex_text as _hex
from evpilot.ev.vehicle import AC_THREE_PHASE_CORE, DC_EXTENDED
from evpilot_sim.vehicle import SimVehicle

_HEX_CHUNK = 256  # bytes of EXI turned into hex at a time (a large message is never one big string)


def vehicle(config):
    """The SimVehicle for the config (the same defaults as `evpilot ev`: a small pack, 20 -> 80 %)."""
    dc = config.get("mode", "dc") == "dc"
    soc = config.get("soc") or (20, 80)
    capacity = config.get("capacity_wh") or (4000 if dc else 1500)
    return SimVehicle(capacity_wh=capacity, soc=soc[0], target_soc=soc[1],
                      modes=(DC_EXTENDED,) if dc else (AC_THREE_PHASE_CORE,))


async def run(config, report, veh=None):
    """evpilot.ev.run.run with the config's SimVehicle unless `veh` is given."""
    return await ev_session.run(config, report, vehicle(config) if veh is None else veh)


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
