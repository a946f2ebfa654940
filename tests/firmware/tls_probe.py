# The firmware's EV behind TLS against a station on a TCP port, as a script for either interpreter:
#
#   python3 tests/firmware/tls_probe.py PORT ROOTS [CLOCK]
#   micropython tests/firmware/tls_probe.py PORT ROOTS [CLOCK]       (firmware/, sim/ on MICROPYPATH)
#
# It connects to 127.0.0.1:PORT, runs an ISO 15118-2 DC EIM session (evpilot.ev over evpilot.tls.TlsEndpoint,
# driven by evpilot.aio.stream over the interpreter's asyncio) with the V2G root(s) in the file ROOTS, and
# prints one JSON line: how TLS ended (error reason and text, whether the handshake completed, version,
# suite, the SECC's DC), how the EV ended (state, reason), and whether the vehicle's contactors are open.
# CLOCK: trusted time in seconds since 1970 for certificate validity ("none": unknown; default: the
# platform's clock).
#
#   ... tls_probe.py memory CHAIN KEY ROOTS STEP
#
# runs both ends in this interpreter instead (our client against our server_context with CHAIN and KEY, no
# sockets), moving the ciphertext STEP bytes at a time, and prints what each end read. Used by
# tests/test_tls_failures.py.

import sys

for _path in ("firmware", "sim"):
    if _path not in sys.path:
        sys.path.insert(0, _path)

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio
import json

from evpilot import tls
from evpilot.ev import client as ev_client
from evpilot.ev.iso2 import Iso2Session
from evpilot_sim.vehicle import SimVehicle
from evpilot.ev.vehicle import DC_EXTENDED
from evpilot.aio import stream
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


def memory(chain, key, roots, step):
    ev = tls.TlsConnection(tls.client_context(roots))
    st = tls.TlsConnection(tls.server_context(chain, key))
    ev.write(b"queued before the handshake")
    held = {0: b"", 1: b""}
    got = {0: b"", 1: b""}
    sent = {0: False, 1: False}
    for _ in range(200000):
        moved = False
        for i, src, dst in ((0, ev, st), (1, st, ev)):
            data = held[i] + src.data_to_send()
            held[i] = data[step:]
            data = data[:step]
            if data:
                dst.receive(data)
                moved = True
        for i, conn in ((0, ev), (1, st)):
            got[i] += conn.read()
            if conn.handshake_complete and not sent[i]:
                sent[i] = True
                conn.write(b"from the %s: " % (b"station" if i else b"EV") + bytes(range(256)) * 12)
        if not moved and not held[0] and not held[1]:
            break
    events = []
    while True:
        e = ev.next_event()
        if e is None:
            break
        events.append(e[0])
    return {"ev_read": len(got[0]), "ev_head": got[0][:18].decode(), "station_read": len(got[1]),
            "station_head": got[1][:27].decode(), "version": ev.version, "cipher": ev.cipher,
            "secc_dc": ev.peer_dc, "events": events, "client_random": len(ev.client_random or b""),
            "station_cipher": st.cipher}


def main(argv):
    if argv[1] == "memory":
        with open(argv[4], "rb") as f:
            roots = f.read()
        print(json.dumps(memory(argv[2], argv[3], roots, int(argv[5]))))
        return
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
