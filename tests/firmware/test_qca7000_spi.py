# The board adapter (evpilot.hal.qca7000_spi) on a fake machine module: a fake SPI bus and pins
# (evpilot_sim.qca7000_board's Spi and Pin) wired to the QCA7000 model, on the real event loop and clock.
# Checks the chip-select windows (command and data in one window, what is read after what is written), the
# INT pin's interrupt handler, the RESET pin, frames both ways through send / receive, and open() building a
# mode-3 bus from a board's pin numbers.

import sys

MICROPYTHON_PORTS = ("unix",)  # the webassembly port's asyncio has no run() (it runs on the browser's loop)

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

from evpilot.hal import qca7000 as Q
from evpilot.hal import qca7000_spi as A
from evpilot_sim import qca7000_board as B
from evpilot_sim import qca7000_model as M


FakePin = B.Pin  # stand-ins for machine.Pin and machine.SPI over the QCA7000 model
FakeSpi = B.Spi


def wire(irq, pin=True, boot_ms=5):
    model = M.Qca7000Model(boot_ms=boot_ms)
    spi = FakeSpi(model)
    cs = FakePin(on_change=spi.select)
    intp = FakePin() if irq else None
    rst = FakePin(on_change=model.set_reset_pin) if pin else None
    return model, spi, cs, intp, rst


async def _drive_model(model, dev, intp, stop):
    # the modem's time and its INT line, as a board's hardware would move them
    edges = model.edges
    while not stop:
        model.advance(A.now_ms())
        if model.edges != edges:
            edges = model.edges
            if intp is not None and intp.handler is not None:
                intp.handler(intp)
        await asyncio.sleep_ms(1) if hasattr(asyncio, "sleep_ms") else await asyncio.sleep(0.001)


async def _until(cond, limit_ms=5000):
    start = A.now_ms()
    while not cond():
        assert Q.ticks_diff(A.now_ms(), start) < limit_ms, "not reached"
        await asyncio.sleep(0.002)


def frame(i, size=64):
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01\x88\xe1" + bytes((i + k) & 0xFF for k in range(size - 14))


def _session(irq, pin):
    model, spi, cs, intp, rst = wire(irq, pin)
    result = {}

    async def main():
        stop = []
        dev = A.Qca7000Spi(spi, cs, intp, rst, mac=b"\x02\x00\x00\x00\x00\x01")
        driver = asyncio.create_task(_drive_model(model, dev, intp, stop))
        dev.start()
        await _until(lambda: dev.ready)
        out = [frame(i, 60 + 100 * i) for i in range(5)]
        for f in out:
            assert dev.send(f)
        result["sent"] = model.take_sent()
        inc = [frame(10 + i, 70 + 90 * i) for i in range(5)]
        for f in inc:
            model.inject(f)
        got = []
        for _ in inc:
            got.append(await dev.receive(2000))
        result["got"] = got
        result["none"] = await dev.receive(30)
        # a modem restart while the session runs
        model.crash()
        await _until(lambda: dev.core.modem_resets == 1 and dev.ready)
        model.inject(frame(77))
        result["after"] = await dev.receive(2000)
        result["events"] = [dev.pop_event(), dev.pop_event(), dev.pop_event()]
        stop.append(1)
        dev.close()
        await driver
        result["out"] = out
        result["inc"] = inc

    asyncio.run(main())
    assert spi.errors == [] and cs.level == 1
    assert result["sent"] == result["out"] and result["got"] == result["inc"]
    assert result["none"] is None and result["after"] == frame(77)
    assert result["events"] == [(Q.EV_READY, None), (Q.EV_MODEM_RESET, None), None]
    return model, intp, rst


def test_polling_board_without_int_or_reset():
    model, intp, rst = _session(irq=False, pin=False)
    assert model.soft_resets == 1 and model.pin_resets == 0


def test_interrupt_board_with_reset_pin():
    model, intp, rst = _session(irq=True, pin=True)
    assert intp.trigger == FakePin.IRQ_RISING and intp.handler is not None
    assert model.pin_resets == 1 and rst.level == 1


class _MadePin(FakePin):
    made = []

    def __init__(self, num=None, mode=None, value=None):
        FakePin.__init__(self, num, mode, value)
        _MadePin.made.append(self)


class _FakeMachine:
    Pin = _MadePin
    spis = []

    @staticmethod
    def SPI(spi_id, **kw):
        spi = FakeSpi(M.Qca7000Model(boot_ms=5), spi_id, **kw)
        _FakeMachine.spis.append(spi)
        return spi


def test_open_builds_a_mode_3_bus_from_board_pins():
    saved = sys.modules.get("machine")
    sys.modules["machine"] = _FakeMachine

    async def main():
        try:
            dev = A.open(2, sck=18, mosi=23, miso=19, cs=5, baudrate=2000000, mac=b"\x02" * 6, poll_ms=5)
        finally:
            if saved is None:
                del sys.modules["machine"]
            else:
                sys.modules["machine"] = saved
        dev.close()
        return dev

    dev = asyncio.run(main())
    spi = _FakeMachine.spis[0]
    assert spi.args == (2,) and spi.kw["polarity"] == 1 and spi.kw["phase"] == 1
    assert spi.kw["baudrate"] == 2000000
    nums = [p.num for p in _MadePin.made]
    assert 5 in nums and 18 in nums and 23 in nums and 19 in nums
    cs = [p for p in _MadePin.made if p.num == 5][0]
    assert cs.mode == FakePin.OUT and cs.level == 1 and dev.core.poll_ms == 5 and not dev.core.irq
    assert dev.mac == b"\x02" * 6


def test_open_board_reads_the_board_files_modem_section():
    board = {"modem": {"chip": "QCA7005", "link": "spi",
                       "spi": {"bus": 1, "sck": 10, "mosi": 11, "miso": 12, "cs": 13, "int": 14, "reset": None,
                               "baudrate": 8000000, "mode": 3}}}
    saved = sys.modules.get("machine")
    sys.modules["machine"] = _FakeMachine
    del _MadePin.made[:]
    del _FakeMachine.spis[:]

    async def main():
        try:
            dev = A.open_board(board)
        finally:
            if saved is None:
                del sys.modules["machine"]
            else:
                sys.modules["machine"] = saved
        dev.close()
        return dev

    dev = asyncio.run(main())
    spi = _FakeMachine.spis[0]
    assert spi.args == (1,) and spi.kw["baudrate"] == 8000000 and spi.kw["polarity"] == 1
    intp = [p for p in _MadePin.made if p.num == 14][0]
    assert intp.mode == FakePin.IN and intp.trigger == FakePin.IRQ_RISING and dev.core.irq
    assert sorted(p.num for p in _MadePin.made) == [10, 11, 12, 13, 14]  # no RESET pin made
