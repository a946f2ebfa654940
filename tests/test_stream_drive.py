"""The asyncio stream adapter (evpilot.net.stream.drive) runs the EV and station connection drivers over a
real TCP connection on loopback, with real time."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "firmware"))

from evpilot.ev import client as C  # noqa: E402
from evpilot.net import stream  # noqa: E402
from evpilot_host.station import secc as S  # noqa: E402

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
