# The station under load: a connection limit (the oldest connection that has not asked for a protocol is
# closed for a new one; a session is never closed for one), the setup timeout for a connection that sends
# nothing, no busy polling in stream.drive before the peer speaks, and a real EV served while hundreds of
# idle and slow connections come and go (the figure for thousands is bench/station_load.py's).

import argparse
import asyncio
import importlib.util
import os

from evpilot.aio import stream
from evpilot_host.commands import station
from evpilot_sim.station import secc as S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench():
    spec = importlib.util.spec_from_file_location("station_load", os.path.join(ROOT, "bench", "station_load.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_silent_connection_ends_after_the_setup_timeout():
    conn = S.SeccConnection(("iso2",), lambda p: None)
    conn.connection_made(0)
    assert conn.next_deadline() == S.SETUP_TIMEOUT_MS == 20000 < S.SEQUENCE_TIMEOUT_MS
    conn.on_timer(19999)
    assert conn.state == S.RUNNING
    conn.on_timer(20000)
    assert conn.state == S.FAILED and "within 20000 ms" in conn.reason and conn.finished


class _Silent:
    """A reader that never delivers; counts nothing itself."""

    async def read(self, n):
        await asyncio.sleep(3600)


class _Writer:
    def write(self, data):
        pass

    async def drain(self):
        pass

    def close(self):
        pass


class _Conn:
    """A sans-I/O connection with one deadline DEADLINE_MS after connection_made; counts its wake-ups."""

    def __init__(self, deadline_ms):
        self.deadline_ms = deadline_ms
        self.timers = 0
        self.finished = False

    def connection_made(self, now):
        self.deadline = now + self.deadline_ms

    def output(self):
        return []

    def next_deadline(self):
        return self.deadline

    def on_timer(self, now):
        self.timers += 1
        if now - self.deadline >= 0:
            self.finished = True


def test_drive_does_not_poll_a_connection_that_has_said_nothing():
    conn = _Conn(350)
    ticks = []
    asyncio.run(stream.drive(conn, _Silent(), _Writer(), tick=ticks.append, tick_ms=100))
    # One wake-up, at the deadline (polling every tick_ms would have made 4).
    assert conn.finished and conn.timers == 1 and len(ticks) == 1


def _args():
    return argparse.Namespace(mode="dc", seed=1, verbose=False, once=False)


def test_the_oldest_idle_connection_is_closed_for_a_new_one():
    async def run():
        handle = station.make_handler(_args(), ("iso2",), [], {}, max_connections=2)
        server = await asyncio.start_server(handle, "::1", 0)
        port = server.sockets[0].getsockname()[1]
        silent = [await asyncio.open_connection("::1", port) for _ in range(5)]  # take no slot
        slow = []
        for _ in range(3):  # one byte each: a slot each, no session
            slow.append(await asyncio.open_connection("::1", port))
            slow[-1][1].write(b"\x01")
            await asyncio.sleep(0.05)
        first, second, third = slow
        eof = await asyncio.wait_for(first[0].read(10), 5)  # closed by the station for the third
        for _, w in silent:
            w.close()
        stats = dict(handle.stats)
        for _, w in (second, third):
            w.close()
        server.close()
        await server.wait_closed()
        return eof, stats

    eof, stats = asyncio.run(run())
    assert eof == b"" and stats == {"accepted": 3, "evicted": 1, "refused": 0, "silent_closed": 0}


def test_an_ev_is_served_among_hundreds_of_idle_and_slow_connections():
    bench = _bench()
    r = asyncio.run(bench.run_one(300, slow_share=0.2, rate=100))
    assert r["ev"] == "done", r
    # Silent ones were closed without ever taking a slot, slow ones for newer connections; none refused.
    assert r["silent_closed"] > 0 and r["evicted"] > 0 and r["refused"] == 0, r
