"""Two sans-I/O V2G endpoints back to back in one process, on a virtual clock.

run(ev, secc) connects an EV connection (evpilot.ev.client.EvClient) and a station connection
(evpilot_sim.station.secc.SeccConnection) as TCP would: bytes one side outputs reach the other
`latency_ms` later, in order. Time jumps from event to event (a delivery or the next deadline of either
side), so a session that takes minutes of protocol time runs in milliseconds, and every timer fires at
exactly its deadline. `tick(now)` is called at each step for models that move with time (the vehicle, the
EVSE). When one side finishes, the other sees the connection close after the last bytes are delivered.
The code is plain enough to run on MicroPython as well (the firmware session tests use it there).
"""

from evpilot.compat import ticks_add, ticks_diff


def _earliest(times):
    best = None
    for t in times:
        if t is not None and (best is None or ticks_diff(t, best) < 0):
            best = t
    return best


def run(ev, secc, now=0, latency_ms=10, limit_ms=3600000, tick=None, max_steps=10000000):
    """Run until both sides are finished; returns the virtual time at the end (ms)."""
    end = ticks_add(now, limit_ms)
    in_flight = []  # [(due, to_ev, data)]
    ev.connection_made(now)
    secc.connection_made(now)
    ev_closed = secc_closed = False
    for _ in range(max_steps):
        for data in ev.output():
            in_flight.append((ticks_add(now, latency_ms), False, data))
        for data in secc.output():
            in_flight.append((ticks_add(now, latency_ms), True, data))
        if not in_flight:
            if ev.finished and not secc_closed:
                secc_closed = True
                secc.connection_lost(now)
            if secc.finished and not ev_closed:
                ev_closed = True
                ev.connection_lost(now)
            if ev.finished and secc.finished:
                return now
        nxt = _earliest([t for t, _, _ in in_flight] + [ev.next_deadline(), secc.next_deadline()])
        if nxt is None or ticks_diff(nxt, end) > 0:
            return now
        if ticks_diff(nxt, now) > 0:
            now = nxt
        if tick is not None:
            tick(now)
        due = [m for m in in_flight if ticks_diff(now, m[0]) >= 0]
        in_flight = [m for m in in_flight if ticks_diff(now, m[0]) < 0]
        for _, to_ev, data in due:
            if to_ev:
                ev.data_received(data, now)
            else:
                secc.data_received(data, now)
        ev.on_timer(now)
        secc.on_timer(now)
    raise RuntimeError("pipe.run: more than %d steps" % max_steps)
