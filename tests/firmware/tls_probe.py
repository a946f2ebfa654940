# The firmware's EV behind TLS against a station on a TCP port, as a script for either interpreter:
#
#   python3 tests/firmware/tls_probe.py PORT ROOTS [CLOCK]
#   micropython tests/firmware/tls_probe.py PORT ROOTS [CLOCK]       (firmware/ on MICROPYPATH)
#
# It connects to 127.0.0.1:PORT, runs an ISO 15118-2 DC EIM session (evpilot.ev over evpilot.tls.TlsEndpoint,
# driven by evpilot.net.stream over the interpreter's asyncio) with the V2G root(s) in the file ROOTS, and
# prints one JSON line: how TLS ended (error reason and text, whether the handshake completed, version,
# suite, the SECC's DC), how the EV ended (state, reason), and whether the vehicle's contactors are open.
# CLOCK: trusted time in seconds since 1970 for certificate validity ("none": unknown; default: the
# platform's clock). Used by tests/test_tls_failures.py.

import sys

if "firmware" not in sys.path:
    sys.path.insert(0, "firmware")

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio
import json

from evpilot import tls
from evpilot.ev import client as ev_client
from evpilot.ev.iso2 import Iso2Session
from evpilot.ev.simvehicle import SimVehicle
from evpilot.ev.vehicle import DC_EXTENDED
from evpilot.net import stream
from evpilot.v2g import timers

_STATES = {ev_client.RUNNING: "running", ev_client.DONE: "done", ev_client.FAILED: "failed"}


async def run(port, roots, clock):
    ctx = tls.client_context(roots, clock=clock)
    veh = SimVehicle(capacity_wh=4000, soc=20, target_soc=80, modes=(DC_EXTENDED,))
    ev = ev_client.EvClient(lambda protocol: Iso2Session(veh, tls=True), [("iso2", 1)], timers.msg_timeout)
    endpoint = tls.TlsEndpoint(ev, tls.TlsConnection(ctx), 5000)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await stream.drive(endpoint, reader, writer, tick=veh.advance)
    conn = endpoint.tls
    return {
        "tls_error": endpoint.error.reason if endpoint.error is not None else None,
        "tls_reason": endpoint.reason,
        "handshake_complete": conn.handshake_complete,
        "version": conn.version,
        "cipher": conn.cipher,
        "secc_dc": conn.peer_dc,
        "ev_state": _STATES.get(ev.state, ev.state),
        "ev_reason": ev.reason,
        "ev_started": endpoint.started,
        "contactors_closed": veh.contactors_closed(),
    }


def main(argv):
    port = int(argv[1])
    with open(argv[2], "rb") as f:
        roots = f.read()
    clock = tls.wall_clock_s
    if len(argv) > 3:
        fixed = None if argv[3] == "none" else int(argv[3])
        clock = lambda: fixed  # noqa: E731
    result = asyncio.run(run(port, roots, clock))
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
