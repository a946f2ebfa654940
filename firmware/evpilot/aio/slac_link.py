# asyncio driver for a sans-I/O SLAC core (evpilot.slac.ev.SlacEv, or the simulator's SlacEvse) over raw
# Ethernet (an evpilot.aio.ether.EtherSocket on a HomePlug adapter or a veth), on CPython and MicroPython.
#
# How this works: every frame the core returns is sent on the link; every frame received goes into the
# core's receive(); between frames the driver waits on the link no longer than the core's next deadline and
# then calls on_timer(). `nodes` are more sans-I/O parties on this host's side of the link, such as a
# simulated local modem where the link has none (a veth): they see every frame the core sends, and what
# they answer goes straight back to the core (a modem answers its own host, not the powerline).

from evpilot.compat import MICROPYTHON, ticks_add, ticks_diff

MAX_FRAME = 1518

if MICROPYTHON:
    from time import ticks_ms as _ticks_ms
else:
    import time as _time

    def _ticks_ms():
        return int(_time.monotonic() * 1000) & ((1 << 29) - 1)


def now_ms():
    return _ticks_ms()


def _earliest(core, nodes):
    best = core.next_deadline()
    for n in nodes:
        d = n.next_deadline()
        if d is not None and (best is None or ticks_diff(d, best) < 0):
            best = d
    return best


async def drive(core, link, until, first=(), nodes=(), limit_ms=60000, on_frame=None):
    """Run `core` over `link` until `until()` is true or `limit_ms` passed; `first` are frames to send at
    once (what core.start() returned). `on_frame(direction, frame)` ("tx"/"rx") sees every frame, for logs
    and pcaps. Returns the time (ms ticks) at the end."""
    buf = bytearray(MAX_FRAME)
    now = _ticks_ms()
    end = ticks_add(now, limit_ms)
    out = list(first)
    while True:
        while out:
            frame = out.pop(0)
            back = []
            for n in nodes:
                back.extend(n.receive(frame, now))
            if on_frame is not None:
                on_frame("tx", frame)
            link.send(frame)
            for f in back:
                if on_frame is not None:
                    on_frame("rx", f)
                out.extend(core.receive(f, now))
        if until():
            return now
        left = ticks_diff(end, now)
        if left <= 0:
            return now
        deadline = _earliest(core, nodes)
        wait = left
        if deadline is not None:
            wait = ticks_diff(deadline, now)
            if wait > left:
                wait = left
        if wait > 0:
            n = await link.recv_into(buf, wait)
        else:
            n = link.recv_nowait_into(buf)
        now = _ticks_ms()
        if n:
            frame = bytes(memoryview(buf)[:n])
            if on_frame is not None:
                on_frame("rx", frame)
            out.extend(core.receive(frame, now))
            for node in nodes:
                node.receive(frame, now)
        d = core.next_deadline()
        if d is not None and ticks_diff(now, d) >= 0:
            out.extend(core.on_timer(now))
        for node in nodes:
            d = node.next_deadline()
            if d is not None and ticks_diff(now, d) >= 0:
                for f in node.on_timer(now):
                    out.extend(core.receive(f, now))
