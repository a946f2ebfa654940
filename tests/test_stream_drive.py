"""The asyncio stream adapter (evpilot.aio.stream.drive) runs the EV and station connection drivers over a
real TCP connection on loopback, with real time; and the EV's under MicroPython's asyncio (the unix port, a
subprocess) against the station here."""

import asyncio
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "firmware"))

from evpilot.ev import client as C  # noqa: E402
from evpilot.aio import stream  # noqa: E402
from evpilot_sim.station import secc as S  # noqa: E402

from test_ev_client import FakeSession, timeouts  # noqa: E402
from test_secc import FakeStationSession  # noqa: E402


def _session(faults=()):
    async def main():
        stations = []

        async def serve(reader, writer):
            conn = S.SeccConnection(("din",), FakeStationSession, faults=faults)
            stations.append(conn)
            await stream.drive(conn, reader, writer)

        server = await asyncio.start_server(serve, "::1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("::1", port)
        ev = C.EvClient(FakeSession, [("din", 1)], timeouts)
        ticks = []
        await asyncio.wait_for(stream.drive(ev, reader, writer, tick=ticks.append, tick_ms=50), 10)
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()
        return ev, stations[0], ticks

    return asyncio.run(main())


def test_session_over_loopback_tcp():
    ev, st, _ = _session()
    assert ev.state == C.DONE and st.state == S.DONE and ev.session_id == st.session.session_id


def test_timeout_in_real_time():
    ev, st, ticks = _session([S.Fault("SessionSetupRes", "withhold")])
    assert ev.state == C.FAILED and "no SessionSetupRes" in ev.reason
    # The 2 s message timeout passed in real time, with the models ticked on the way.
    assert len(ticks) >= 10
    assert st.state == S.FAILED


# --- the same driver under MicroPython's asyncio (the unix port), against this station over loopback --------

_EV_UNDER_MICROPYTHON = r"""
import asyncio, json, sys
from evpilot.ev import client as C
from evpilot.aio import sockets, stream
from test_ev_client import FakeSession, timeouts

async def main(port):
    reader, writer = await sockets.open_tcp("::1", port, "lo")
    ev = C.EvClient(FakeSession, [("din", 1)], timeouts)
    ticks = []
    start = stream.now_ms()
    await asyncio.wait_for_ms(stream.drive(ev, reader, writer, tick=ticks.append, tick_ms=50), 10000)
    print(json.dumps({"state": ev.state, "reason": ev.reason, "sid": ev.session_id.hex(), "ticks": len(ticks),
                      "ms": stream.now_ms() - start}))
    await asyncio.sleep_ms(5000)  # still running: the station sees EOF only if drive() closed the socket

asyncio.run(main(int(sys.argv[1])))
"""


def _session_under_micropython(tmp_path, faults=()):
    from test_sockets_micropython import mp_command, mp_env

    async def main():
        stations = []
        closed = asyncio.Event()

        async def serve(reader, writer):
            conn = S.SeccConnection(("din",), FakeStationSession, faults=faults)
            stations.append(conn)
            await stream.drive(conn, reader, writer)
            # The EV closed its end: drive() on MicroPython must close the socket, not only the Stream.
            closed.set()

        server = await asyncio.start_server(serve, "::1", 0)
        proc = await asyncio.create_subprocess_exec(
            *mp_command(tmp_path, _EV_UNDER_MICROPYTHON, server.sockets[0].getsockname()[1]), env=mp_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 15)
            assert line.startswith(b"{"), line + await proc.stderr.read()
            await asyncio.wait_for(closed.wait(), 2)
        finally:
            proc.kill()
            await proc.communicate()
            server.close()
            await server.wait_closed()
        return json.loads(line), stations[0]

    return asyncio.run(main())


def test_session_under_micropython(micropython_unix, tmp_path):
    ev, st = _session_under_micropython(tmp_path)
    assert ev["state"] == C.DONE and ev["reason"] == "session stopped"
    assert st.state == S.DONE and ev["sid"] == st.session.session_id.hex()


def test_timeout_in_real_time_under_micropython(micropython_unix, tmp_path):
    ev, st = _session_under_micropython(tmp_path, [S.Fault("SessionSetupRes", "withhold")])
    assert ev["state"] == C.FAILED and "no SessionSetupRes" in ev["reason"]
    # The 2 s message timeout passed in MicroPython's real time, the models ticked every 50 ms on the way.
    assert 2000 <= ev["ms"] < 4000 and ev["ticks"] >= 20
    assert st.state == S.FAILED
