# Drives one sans-I/O V2G connection (the EV's EvClient or the station's SeccConnection) over an asyncio
# stream pair: the thin adapter between the protocol cores and a real TCP connection.
#
# drive() writes what the connection outputs, waits for data or for the connection's next deadline
# (whichever comes first, and at most `tick_ms` so models that move with time can be advanced by `tick`),
# feeds what arrives, and closes the stream once the connection is finished. No busy polling: until the
# peer has sent its first bytes there is no session whose models move, so the wait is for data or the
# deadline alone (a station holding thousands of idle connections wakes for none of them). Time is the millisecond tick
# counter (time.ticks_ms on MicroPython); the cores only ever see it as `now`.
#
# The same code runs on CPython's asyncio streams and on MicroPython's asyncio.Stream (one object for both
# directions, as evpilot.aio.sockets.open_tcp returns it there). Two differences matter: MicroPython waits
# in whole milliseconds (wait_for_ms, no float seconds on boards with single-precision floats), and its
# Stream.close() does nothing: the socket is closed by wait_closed(), which drive() therefore awaits there.

try:
    import asyncio
except ImportError:  # pragma: no cover - older MicroPython
    import uasyncio as asyncio

from evpilot.compat import MICROPYTHON, const, ticks_diff

try:
    from time import ticks_ms as _ticks_ms  # MicroPython
except ImportError:
    import time as _time

    def _ticks_ms():
        return int(_time.monotonic() * 1000) & ((1 << 29) - 1)


def now_ms():
    return _ticks_ms() & ((1 << 29) - 1)


def sleep_ms(ms):
    """asyncio's sleep in whole milliseconds on both interpreters (MicroPython's sleep_ms, else sleep)."""
    if MICROPYTHON or hasattr(asyncio, "sleep_ms"):
        return asyncio.sleep_ms(ms)
    return asyncio.sleep(ms / 1000)


# On MicroPython every read goes into one buffer of this size per connection (Stream.readinto): a read(n)
# makes a fresh n + 1 byte block each time, and on a board's small heap that contiguous block was where a
# session ran out (bench/board_heap_bench.py). What the connection is handed is a view of that buffer, valid
# until the next read; every data_received copies what it keeps.
RX_CHUNK = const(2048)


async def _read(reader, timeout_ms, buf):
    if buf is not None:
        op = reader.readinto(buf)
    else:
        op = reader.read(4096)
    try:
        if timeout_ms is None:
            got = await op
        elif MICROPYTHON:
            got = await asyncio.wait_for_ms(op, timeout_ms)
        else:
            got = await asyncio.wait_for(op, timeout_ms / 1000)
    except asyncio.TimeoutError:
        return None
    if buf is None or got is None:  # None: woken without data (a socket's EAGAIN), handled as a timer tick
        return got
    return memoryview(buf)[:got] if got else b""


async def drive(conn, reader, writer, tick=None, tick_ms=100, clock=now_ms):
    """Run `conn` over (reader, writer) until it is finished or the peer closes; returns conn."""
    conn.connection_made(clock())
    heard = False  # has the peer sent anything yet
    buf = bytearray(RX_CHUNK) if MICROPYTHON and hasattr(reader, "readinto") else None
    try:
        while True:
            out = conn.output()
            if out:
                for data in out:
                    writer.write(data)
                await writer.drain()
            if conn.finished:
                break
            now = clock()
            deadline = conn.next_deadline()
            wait = tick_ms if tick is not None and heard else None
            if deadline is not None:
                left = max(0, ticks_diff(deadline, now))
                wait = left if wait is None else min(wait, left)
            data = await _read(reader, wait, buf)
            now = clock()
            if tick is not None:
                tick(now)
            if data is None:
                conn.on_timer(now)
                continue
            if not data:
                conn.connection_lost(now)
                break
            heard = True
            conn.data_received(data, now)
            conn.on_timer(now)
        for data in conn.output():
            writer.write(data)
    finally:
        try:
            await writer.drain()
        except Exception:  # the peer may be gone already
            pass
        writer.close()
        if MICROPYTHON:
            try:
                await writer.wait_closed()  # closes the socket (Stream.close() does not)
            except Exception:
                pass
    return conn
