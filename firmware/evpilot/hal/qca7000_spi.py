# The QCA7000 on a board: the thin asyncio adapter between the driver core (qca7000.py) and machine.SPI /
# machine.Pin, with the frame interface of evpilot.aio.ether's EtherSocket (send, recv_nowait_into,
# recv_into, receive, close, mac, sent, received), so SLAC and the board's IPv6 stack run on either.
#
# How this works: one task (started by start()) calls the core's poll(now) at its next_deadline(), or at
# once when the INT pin's interrupt handler (rising edge, if the pin is routed) or a reader that emptied the
# receive table wakes it; it then wakes the readers if frames wait. One SPI transaction is: CS low,
# spi.write(out), spi.readinto(inp, 0) when there is something to read, CS high. The SPI bus must be in mode
# 3 (polarity 1, phase 1), 1-16 MHz (8 MHz typical; 2 MHz works on long wires). open() builds the bus and
# pins from a board's numbers, open_board() from a board file's "modem" section (both import machine only
# there), so the class itself can be given any objects with the same methods (the tests give it fakes
# driving the QCA7000 model).

try:
    import asyncio
except ImportError:  # pragma: no cover - older MicroPython
    import uasyncio as asyncio

from evpilot.aio.stream import now_ms  # the millisecond ticks every adapter passes in as `now`
from evpilot.compat import MICROPYTHON, ticks_add, ticks_diff
from evpilot.hal.qca7000 import MAX_FRAME, POLL_MS, Qca7000


if hasattr(asyncio, "ThreadSafeFlag"):  # MicroPython: set() is safe in an interrupt handler
    _Flag = asyncio.ThreadSafeFlag
else:

    class _Flag:
        def __init__(self):
            self._ev = asyncio.Event()

        def set(self):
            self._ev.set()

        async def wait(self):
            await self._ev.wait()
            self._ev.clear()


async def _wait(flag, timeout_ms):
    """Wait for `flag` at most `timeout_ms` (None: for ever); True if it was set."""
    try:
        if timeout_ms is None:
            await flag.wait()
        elif MICROPYTHON:
            await asyncio.wait_for_ms(flag.wait(), timeout_ms)
        else:
            await asyncio.wait_for(flag.wait(), timeout_ms / 1000)
        return True
    except asyncio.TimeoutError:
        return False


class Qca7000Spi:
    """The modem on `spi` with chip select `cs` (machine.Pin objects or alike); `int_pin` and `reset_pin`
    when the board routes them. `mac` is the address this host uses as source (the modem does not own one)."""

    def __init__(self, spi, cs, int_pin=None, reset_pin=None, mac=None, poll_ms=POLL_MS, clock=now_ms):
        self.spi = spi
        self.cs = cs
        self.mac = mac
        self.clock = clock
        cs.value(1)
        if reset_pin is not None:
            reset_pin.value(1)
        self.core = Qca7000(self._transfer, None if reset_pin is None else reset_pin.value,
                            irq=int_pin is not None, poll_ms=poll_ms)
        self._wake = _Flag()
        self._rx = _Flag()
        self._task = None
        self.error = None  # what ended the task (an SPI OSError), if anything did
        if int_pin is not None:
            int_pin.irq(handler=self._on_int, trigger=int_pin.IRQ_RISING)

    def _transfer(self, out, inp):
        cs = self.cs
        cs.value(0)
        try:
            self.spi.write(out)
            if inp is not None:
                self.spi.readinto(inp, 0)
        finally:
            cs.value(1)

    def _on_int(self, pin):
        self.core.interrupt()
        self._wake.set()

    @property
    def ready(self):
        return self.core.ready

    @property
    def sent(self):
        return self.core.sent

    @property
    def received(self):
        return self.core.received

    def pop_event(self):
        return self.core.pop_event()

    def start(self):
        """Reset the modem and start the task that serves it (call inside the running event loop)."""
        self.core.start(self.clock())
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self):
        core = self.core
        try:
            while True:
                core.poll(self.clock())
                if core.pending():
                    self._rx.set()
                deadline = core.next_deadline()
                left = ticks_diff(deadline, self.clock())
                if left > 0:
                    await _wait(self._wake, left)
                else:
                    await asyncio.sleep(0)
        except OSError as e:  # the SPI bus failed: readers see it through `error`
            self.error = e
            self._rx.set()

    def send(self, frame):
        """Write one frame into the modem; True once written, False when it has no room or no sync."""
        return self.core.send(frame)

    def recv_nowait_into(self, buf):
        n = self.core.recv_nowait_into(buf)
        if n and not self.core.pending():
            self._wake.set()  # the modem may hold more: read it now
        return n

    async def recv_into(self, buf, timeout_ms=None):
        """Wait for one frame and copy it into `buf`; its length, or 0 when `timeout_ms` passed first."""
        if timeout_ms is not None:
            end = ticks_add(self.clock(), timeout_ms)
        while True:
            n = self.recv_nowait_into(buf)
            if n or self.error is not None:
                return n
            left = None
            if timeout_ms is not None:
                left = ticks_diff(end, self.clock())
                if left <= 0:
                    return 0
            await _wait(self._rx, left)

    async def receive(self, timeout_ms=None):
        """One frame as bytes, or None when `timeout_ms` passed first."""
        buf = bytearray(MAX_FRAME)
        n = await self.recv_into(buf, timeout_ms)
        return bytes(memoryview(buf)[:n]) if n else None

    def close(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open(spi_id, sck, mosi, miso, cs, int_pin=None, reset=None, baudrate=8000000, mac=None, poll_ms=POLL_MS,
         machine=None):
    """The modem on SPI bus `spi_id` with the board's pin numbers (a board file's), mode 3; started.
    `machine`: the machine module (None: import it)."""
    if machine is None:
        import machine

    spi = machine.SPI(spi_id, baudrate=baudrate, polarity=1, phase=1, sck=machine.Pin(sck),
                      mosi=machine.Pin(mosi), miso=machine.Pin(miso))
    pin = machine.Pin
    return Qca7000Spi(spi, pin(cs, pin.OUT, value=1),
                      None if int_pin is None else pin(int_pin, pin.IN),
                      None if reset is None else pin(reset, pin.OUT, value=1),
                      mac=mac, poll_ms=poll_ms).start()


def open_board(board, mac=None, poll_ms=POLL_MS, machine=None):
    """The modem of a board file (evpilot.hal.board.load): its "modem"."spi" bus, pins and baudrate; INT
    and RESET may be null (then it polls, and resets by SPI only). Started."""
    spi = board["modem"]["spi"]
    return open(spi["bus"], spi["sck"], spi["mosi"], spi["miso"], spi["cs"], spi.get("int"), spi.get("reset"),
                spi["baudrate"], mac=mac, poll_ms=poll_ms, machine=machine)
