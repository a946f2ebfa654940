# A QCA7000 on a simulated board: the QCA7000 model (qca7000_model.py) behind stand-ins for machine.SPI and
# machine.Pin, driven by the firmware's own driver (evpilot.hal.qca7000_spi.Qca7000Spi), with the modem's
# powerline side bridged to a frame device - a raw Ethernet socket on a veth or a laptop interface. The unix
# board "unix-qca7000" runs the application this way, so the board's whole link path (driver, SLAC, the own
# IPv6/TCP) runs on a laptop against a real station; the driver's tests use Pin and Spi directly.
#
# How this works
# --------------
# Spi collects what one chip-select window writes (Pin.value(0) opens the window, value(1) closes it) and
# hands it to the model's transfer(out, inp), checking the window discipline a real QCA7000 needs (command
# and data in one window, nothing written after the read). SimBoardModem.start() starts the driver and one
# task that plays the modem's hardware and firmware every millisecond or so:
#   - it moves the model's clock and raises the INT pin's handler on each rising edge of the INT line;
#   - frames the host wrote go to the line, except those for the modem itself (Qualcomm's local management
#     address, or the modem's MAC): a real modem's firmware answers those, here evpilot_sim.slac_evse.SimModem
#     does (CM_SET_KEY, VS_NW_INFO, VS_SW_VER, VS_RS_DEV) and its answers go into the read buffer;
#   - frames from the line go into the read buffer. A frame longer than an Ethernet frame (1518 bytes) is
#     dropped and counted in `oversize`, as a powerline link would never carry it: a veth peer with
#     segmentation offload sends such frames unless its gso_max_segs is 1;
#   - data frames (anything but HomePlug management) pass only while the modem holds a network key set by
#     CM_SET_KEY since it last booted: a modem that restarts comes back without the EVSE's network (its
#     flash key), so the data link is gone until its host sets the key again (`unkeyed` counts what was
#     dropped meanwhile). SLAC's own frames pass either way, as on an unassociated powerline modem.
# Faults for bench tests: crash_after_frames=N restarts the modem by itself once, after the N-th data frame
# from the line (mid-session).
# MicroPython-clean (the tests run it on the unix port).

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

from evpilot.aio.stream import now_ms, sleep_ms as _sleep_ms
from evpilot.hal.qca7000_spi import Qca7000Spi
from evpilot.slac import mme
from evpilot_sim import qca7000_model as M
from evpilot_sim.slac_evse import SimModem

MAX_LINE_FRAME = 1518
_TICK_MS = 1


class Pin:
    """machine.Pin's shape: value(), irq(); `on_change(level)` sees every write."""

    IN = 0
    OUT = 1
    IRQ_RISING = 4

    def __init__(self, num=None, mode=None, value=None, on_change=None):
        self.num = num
        self.mode = mode
        self.level = value
        self.on_change = on_change
        self.handler = None
        self.trigger = None

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = v
        if self.on_change is not None:
            self.on_change(v)

    def irq(self, handler=None, trigger=None):
        self.handler = handler
        self.trigger = trigger


class Spi:
    """machine.SPI's shape (write, readinto) over the model; `errors` lists window-discipline faults."""

    def __init__(self, model, *args, **kw):
        self.model = model
        self.args = args
        self.kw = kw
        self.window = None
        self.read_in_window = False
        self.windows = 0
        self.errors = []

    def select(self, level):
        if level == 0:
            if self.window is not None:
                self.errors.append("CS low twice")
            self.window = bytearray()
            self.read_in_window = False
        else:
            if self.window is not None and not self.read_in_window and len(self.window) >= 2:
                self.model.transfer(bytes(self.window), None)
            self.window = None
            self.windows += 1

    def write(self, data):
        if self.window is None:
            self.errors.append("write outside a window")
            return
        if self.read_in_window:
            self.errors.append("write after read")
        self.window.extend(data)

    def readinto(self, buf, write_byte=0):
        if self.window is None:
            self.errors.append("read outside a window")
            return
        if write_byte != 0:
            self.errors.append("clocks out %r while reading" % write_byte)
        self.read_in_window = True
        self.model.transfer(bytes(self.window), buf)


class SimBoardModem:
    def __init__(self, line, mac=None, boot_ms=50, irq=True, reset_pin=True, join_delay=300,
                 crash_after_frames=None):
        """line: the powerline side (a frame device: send, recv_nowait_into, mac); mac: the host's MAC
        (default the line's); join_delay: ms after CM_SET_KEY until the modem reports the network joined;
        crash_after_frames: restart the modem once after that many data frames from the line."""
        self.line = line
        self.model = M.Qca7000Model(boot_ms=boot_ms)
        self.spi = Spi(self.model)
        self.cs = Pin(on_change=self.spi.select)
        self.int_pin = Pin() if irq else None
        self.reset_pin = Pin(on_change=self.model.set_reset_pin) if reset_pin else None
        self.mac = bytes(mac or line.mac)
        self.firmware = SimModem(self.mac, join_delay=join_delay)
        self.dev = Qca7000Spi(self.spi, self.cs, self.int_pin, self.reset_pin, mac=self.mac)
        self.virtual = getattr(line, "virtual", False)
        self.oversize = 0
        self.to_line = 0
        self.from_line = 0
        self.local = 0  # frames the modem's own firmware answered
        self.unkeyed = 0  # data frames dropped while the modem held no key
        self.crash_after_frames = crash_after_frames
        self.crashes = 0
        self._data_in = 0
        self._boots = self.model.boots
        self._task = None

    def start(self):
        """Start the driver and the modem's task (inside the running event loop); returns the driver."""
        self.dev.start()
        self._task = asyncio.create_task(self._run())
        return self.dev

    def _from_host(self, now):
        model = self.model
        fw = self.firmware
        for frame in model.take_sent():
            dst = bytes(frame[0:6])
            if dst == mme.QCA_LOCAL or dst == fw.mac:
                self.local += 1
                for answer in fw.receive(frame, now):
                    model.inject(answer)
            elif not self._passes(frame):
                self.unkeyed += 1
            else:
                self.to_line += 1
                self.line.send(frame)

    def _passes(self, frame):
        """A HomePlug management frame always; a data frame only while the modem holds a key."""
        return (frame[12] << 8 | frame[13]) == mme.ETHERTYPE or self.firmware.nid is not None

    def _to_host(self, buf, n):
        if n > MAX_LINE_FRAME:
            self.oversize += 1
            return
        if not self._passes(buf):
            self.unkeyed += 1
            return
        self.from_line += 1
        self.model.inject(bytes(memoryview(buf)[:n]))
        if (buf[12] << 8 | buf[13]) != mme.ETHERTYPE:
            self._data_in += 1
            if self.crash_after_frames is not None and self._data_in == self.crash_after_frames:
                self.crashes += 1
                self.model.crash()

    def _check_boot(self):
        if self.model.boots != self._boots:  # the modem (re)booted: the key CM_SET_KEY gave it is gone
            self._boots = self.model.boots
            self.firmware.nid = None
            self.firmware.key_time = None

    async def _run(self):
        model = self.model
        line = self.line
        buf = bytearray(MAX_LINE_FRAME + 1)  # a longer frame shows as one that fills it
        edges = model.edges
        while True:
            now = now_ms()
            model.advance(now)
            self._check_boot()
            self._from_host(now)
            n = line.recv_nowait_into(buf)
            while n:
                self._to_host(buf, n)
                n = line.recv_nowait_into(buf)
            if model.edges != edges:
                edges = model.edges
                pin = self.int_pin
                if pin is not None and pin.handler is not None:
                    pin.handler(pin)
            await _sleep_ms(_TICK_MS)

    def close(self):
        self.dev.close()
        if self._task is not None:
            self._task.cancel()
            self._task = None


def open(iface, **options):
    """A SimBoardModem whose line is the Linux interface `iface` (every EtherType, raw); start() it inside
    the event loop."""
    from evpilot.aio import ether

    return SimBoardModem(ether.open(iface, None), **options)
