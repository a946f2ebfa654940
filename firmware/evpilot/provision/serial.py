# The provisioning service on a byte stream: the asyncio task the application starts on the USB serial
# console (sys.stdin/sys.stdout on the unix port, USB-CDC on boards), shared with the REPL and the log.
#
# How this works: serve() reads what arrives, hands it to the sans-I/O provisioning Service with the time,
# writes the reply frames, and wakes at the service's deadline (a truncated frame expiring) when nothing
# arrives. It ends when the input stream ends. serve_stdio() opens the console as asyncio streams;
# main(store_dir, board) is the whole device side for a unix-port process (tests, `evpilot deploy` checks).

try:
    import asyncio
except ImportError:  # pragma: no cover - older MicroPython
    import uasyncio as asyncio

import os
import sys

from evpilot.aio.stream import now_ms
from evpilot.compat import MICROPYTHON, ticks_diff
from evpilot.provision.service import Service

READ_SIZE = 512


def _rng():
    urandom = getattr(os, "urandom", None)
    if urandom is None:  # a port without a hardware RNG binding: keys must not come from a PRNG
        return None
    return urandom


class _Drain:
    """Reads what a blocking console has ready. MicroPython's read(n) on a blocking file (the unix port's
    stdin, USB-CDC) waits for all n bytes, so after asyncio says the first byte is there, the rest is taken
    one byte at a time while select.poll says more is ready (up to READ_SIZE)."""

    def __init__(self, raw):
        import select

        self.raw = raw
        self.poll = select.poll()
        self.poll.register(raw, select.POLLIN)

    def more(self, data):
        while len(data) < READ_SIZE and self.poll.poll(0):
            b = self.raw.read(1)
            if not b:
                break
            data += b
        return data


async def _read(stream_in, timeout_ms, n):
    if timeout_ms is None:
        return await stream_in.read(n)
    if MICROPYTHON:
        return await asyncio.wait_for_ms(stream_in.read(n), timeout_ms)
    return await asyncio.wait_for(stream_in.read(n), timeout_ms / 1000)


async def serve(stream_in, stream_out, store, info=None, log=None, rng=None, raw=None):
    """Serve provisioning requests from stream_in (asyncio reader) to stream_out (asyncio writer) until
    stream_in ends. store: the device's keystore.Store; info: dict for `info` replies (board, ...); log: an
    object with add(line) and lines() (the application's log), else the service keeps its own; rng(n):
    random bytes, default os.urandom; raw: the blocking file under stream_in on MicroPython (sys.stdin.buffer,
    the USB-CDC object), read as _Drain says. Returns the Service (for the caller's inspection)."""
    svc = Service(store, info=info, rng=rng or _rng(), log=log)
    drain = _Drain(raw) if raw is not None else None
    while True:
        deadline = svc.next_deadline()
        wait = None if deadline is None else max(0, ticks_diff(deadline, now_ms()))
        try:
            data = await _read(stream_in, wait, 1 if drain else READ_SIZE)
            if data and drain:
                data = drain.more(data)
        except asyncio.TimeoutError:
            out = svc.on_timer(now_ms())
        else:
            if not data:
                return svc
            out = svc.receive(data, now_ms())
        if out:
            stream_out.write(out)
            await stream_out.drain()


def _console():
    fin = getattr(sys.stdin, "buffer", sys.stdin)
    fout = getattr(sys.stdout, "buffer", sys.stdout)
    if MICROPYTHON:
        return asyncio.StreamReader(fin), asyncio.StreamWriter(fout, {}), fin
    return None, None, None


async def serve_stdio(store, info=None, log=None):
    """serve() on the console (MicroPython: sys.stdin / sys.stdout)."""
    stream_in, stream_out, raw = _console()
    if stream_in is None:
        from evpilot.errors import UsageError

        raise UsageError("serve_stdio runs on MicroPython; on CPython call serve() with asyncio streams")
    return await serve(stream_in, stream_out, store, info, log, raw=raw)


def main(store_dir, board="unix"):
    """The device side alone on the console: open (or create) the store and serve until the input ends."""
    from evpilot.store.keystore import Store

    try:
        os.mkdir(store_dir)
    except OSError:  # there already
        pass
    asyncio.run(serve_stdio(Store(store_dir), {"board": board}))


if __name__ == "__main__":  # micropython -m evpilot.provision.serial STORE_DIR [BOARD]
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "unix")
