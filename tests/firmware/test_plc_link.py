# The PLC link of one plug-in (evpilot.aio.plc) on one frame device carrying both EtherTypes, on the real
# event loop and clock: the per-EtherType filter (frames of the other type dropped and counted, the device
# left open), SLAC against the simulator's EVSE with IPv6 cross-traffic on the same device, the own stack
# started on the IPv6 side once matched, leaving the EVSE's network afterwards (a new random key in the local
# modem), and the failures: a modem that never syncs, an EVSE that never answers.

MICROPYTHON_PORTS = ("unix",)  # the webassembly port's asyncio has no run() (it runs on the browser's loop)

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

from evpilot.aio import plc
from evpilot.aio.slac_link import now_ms
from evpilot.aio.stream import sleep_ms as _sleep_ms
from evpilot.compat import ticks_diff
from evpilot.errors import EvpilotError
from evpilot.net import ipv6
from evpilot.slac import mme
from evpilot_sim.slac_evse import SimModem, SlacEvse

EV_MAC = b"\x02\x00\x00\x00\x00\x01"
EVSE_MAC = b"\x02\x00\x00\x00\x00\xa0"


def _ipv6_frame(i):
    return b"\x33\x33\x00\x00\x00\x01" + EVSE_MAC + b"\x86\xdd" + bytes([i]) * 60


def _mme_frame():
    return b"\xff" * 6 + EVSE_MAC + b"\x88\xe1" + bytes(46)


class Line:
    """A frame device (send, recv_into, recv_nowait_into, mac) whose other end is `evse` (or nothing); every
    `noise` ms an IPv6 frame arrives too, as cross-traffic on the same device."""

    def __init__(self, evse=None, noise=0):
        self.mac = EV_MAC
        self.evse = evse
        self.rx = []
        self.sent = []
        self.noise = noise
        self._noise_at = now_ms()
        self.noise_sent = 0
        self.closed = False

    def send(self, frame):
        frame = bytes(frame)
        self.sent.append(frame)
        if self.evse is not None and frame[12:14] == b"\x88\xe1":
            self.rx.extend(self.evse.receive(frame, now_ms()))
        return True

    def _tick(self):
        now = now_ms()
        evse = self.evse
        if evse is not None:
            d = evse.next_deadline()
            if d is not None and ticks_diff(now, d) >= 0:
                self.rx.extend(evse.on_timer(now))
        if self.noise and ticks_diff(now, self._noise_at) >= self.noise:
            self._noise_at = now
            self.rx.append(_ipv6_frame(self.noise_sent & 0xFF))
            self.noise_sent += 1

    def recv_nowait_into(self, buf):
        self._tick()
        if not self.rx:
            return 0
        f = self.rx.pop(0)
        buf[:len(f)] = f
        return len(f)

    async def recv_into(self, buf, timeout_ms=None):
        start = now_ms()
        while True:
            n = self.recv_nowait_into(buf)
            if n:
                return n
            if timeout_ms is not None and ticks_diff(now_ms(), start) >= timeout_ms:
                return 0
            await _sleep_ms(1)

    def close(self):
        self.closed = True


def test_the_filter_hands_out_one_ethertype_and_counts_the_rest():
    line = Line()
    line.rx = [_ipv6_frame(1), _mme_frame(), b"\x00" * 10, _ipv6_frame(2)]
    slac = plc.TypeFilter(line, mme.ETHERTYPE)
    buf = bytearray(1518)
    n = slac.recv_nowait_into(buf)
    assert n == len(_mme_frame()) and bytes(buf[:n]) == _mme_frame()
    assert slac.dropped == 1
    assert slac.recv_nowait_into(buf) == 0 and slac.dropped == 3  # the runt and the second IPv6 frame
    assert slac.mac == EV_MAC
    slac.close()
    assert not line.closed  # the device stays open for the next phase

    ip = plc.TypeFilter(line, plc.ETHERTYPE_IPV6)
    line.rx = [_mme_frame(), _ipv6_frame(3)]

    async def main():
        n = await ip.recv_into(buf, 100)
        none = await ip.recv_into(buf, 20)
        return n, none

    n, none = asyncio.run(main())
    assert bytes(buf[:n]) == _ipv6_frame(3) and none == 0 and ip.dropped == 1


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(text)


def test_slac_then_the_own_stack_then_leaving_the_network():
    evse = SlacEvse(EVSE_MAC, nmk=b"\x11" * 16, attenuation=22)
    line = Line(evse, noise=25)
    modem = SimModem(EV_MAC, join_delay=50)
    log = _Log()
    link = plc.PlcLink(line, log=log, slac={"settle": 50}, nodes=(modem,))
    out = {}

    async def main():
        net = await link.up()
        out["address"] = net.address
        out["result"] = link.result
        out["running"] = net._task is not None
        out["ip_dropped_before"] = link.ip.dropped
        await _sleep_ms(60)  # SLAC cross-talk after the match goes past the stack, dropped
        line.rx.append(_mme_frame())
        await _sleep_ms(30)
        out["ip_dropped"] = link.ip.dropped
        out["nid_joined"] = modem.nid
        await link.down(linger_ms=50)
        out["stopped"] = net._task is None

    asyncio.run(main())
    r = out["result"]
    assert r["evse_mac"] == EVSE_MAC and r["nmk"] == b"\x11" * 16 and r["attenuation"] == 22
    assert out["nid_joined"] == mme.nid_from_nmk(b"\x11" * 16)  # the key SET_KEY gave the modem
    assert link.mme.dropped >= 1 and line.noise_sent >= 1  # IPv6 during SLAC: not SLAC's
    assert out["ip_dropped"] > out["ip_dropped_before"]  # the MME after the match: not the stack's
    assert out["address"] == ipv6.link_local(EV_MAC) and out["running"] and out["stopped"]
    # leaving: a CM_SET_KEY.REQ to the local modem with a fresh key, and the modem took it
    leave = line.sent[-1]
    assert leave[0:6] == mme.QCA_LOCAL and mme.mmtype(leave) == mme.CM_SET_KEY | mme.REQ
    d = mme.parse_set_key_req(leave)
    assert d["nmk"] != b"\x11" * 16 and modem.nid == d["nid"] == mme.nid_from_nmk(d["nmk"])
    assert log.lines[0] == "slac: matching" and log.lines[1].startswith("slac: matched EVSE 02:00:00:00:00:a0")
    assert log.lines[-1] == "slac: left the EVSE's network"
    assert link.result is None and link.net is None and not line.closed


class _Unsynced(Line):
    ready = False
    error = None


def test_a_modem_that_never_syncs_is_a_link_error():
    line = _Unsynced()
    link = plc.PlcLink(line)

    async def main():
        try:
            await link.up(modem_timeout_ms=30)
        except plc.LinkError as e:
            return str(e)

    assert asyncio.run(main()) == "modem: no SPI sync with the QCA7000 within 30 ms"
    assert line.sent == []  # nothing sent to a modem that is not there


def test_an_evse_that_never_answers_is_a_link_error_and_nothing_to_leave():
    line = Line(SlacEvse(EVSE_MAC, answer_parm=False))
    link = plc.PlcLink(line, slac={"attempts": 1})

    async def main():
        try:
            await link.up()
        except plc.LinkError as e:
            out = str(e)
        sent = len(line.sent)
        await link.down()
        return out, sent

    text, sent = asyncio.run(main())
    assert text == "SLAC: no CM_SLAC_PARM.CNF" and isinstance(plc.LinkError(text), EvpilotError)
    assert len(line.sent) == sent  # no SET_KEY: never joined
    parms = [f for f in line.sent if mme.mmtype(f) == mme.CM_SLAC_PARM | mme.REQ]
    assert len(parms) == 3  # the REQ and its C_EV_match_retry repetitions


class _Failed(Line):
    error = OSError(5, "SPI")

    async def recv_into(self, buf, timeout_ms=None):
        return 0  # what the driver does once its task has died: at once, no frame


def test_a_failed_device_is_a_dead_link_that_does_not_spin():
    ip = plc.TypeFilter(_Failed(), plc.ETHERTYPE_IPV6)
    ticks = []

    async def other():  # the rest of the application must keep running meanwhile
        for _ in range(100):
            ticks.append(1)
            await _sleep_ms(1)

    async def main():
        t = asyncio.create_task(other())
        start = now_ms()
        n = await ip.recv_into(bytearray(64), 40)
        took = ticks_diff(now_ms(), start)
        t.cancel()
        return n, took

    n, took = asyncio.run(main())
    assert n == 0 and took >= 40 and len(ticks) >= 1  # it waited, and let the loop run meanwhile


class _ModemLine(Line):
    """A Line with the QCA7000 driver's event queue (pop_event)."""

    def __init__(self, evse):
        Line.__init__(self, evse)
        self.events = [(1, None)]  # EV_READY from start-up: history by the time SLAC has matched

    def pop_event(self):
        return self.events.pop(0) if self.events else None


def test_a_modem_restart_while_up_gets_the_networks_key_again():
    from evpilot.hal.qca7000 import EV_DOWN, EV_MODEM_RESET, EV_READY

    line = _ModemLine(SlacEvse(EVSE_MAC, nmk=b"\x22" * 16, attenuation=10))
    log = _Log()
    link = plc.PlcLink(line, log=log, slac={"settle": 50}, nodes=(SimModem(EV_MAC, join_delay=50),))

    def set_keys():
        return [mme.parse_set_key_req(f) for f in line.sent
                if f[0:6] == mme.QCA_LOCAL and mme.mmtype(f) == mme.CM_SET_KEY | mme.REQ]

    async def main():
        await link.up()
        before = len(set_keys())
        await _sleep_ms(3 * plc.WATCH_MS)
        quiet = len(set_keys())  # the start-up event was not taken for a restart
        line.events.append((EV_MODEM_RESET, None))
        await _sleep_ms(3 * plc.WATCH_MS)
        line.events.extend([(EV_DOWN, "signature 0x0000"), (EV_READY, None)])  # lost sync, our reset
        await _sleep_ms(3 * plc.WATCH_MS)
        await link.down(linger_ms=20)
        return before, quiet

    before, quiet = asyncio.run(main())
    keys = set_keys()
    assert quiet == before and link.rekeys == 2
    assert [k["nmk"] for k in keys[before:before + 2]] == [b"\x22" * 16] * 2  # the matched network's key
    assert keys[before]["nid"] == mme.nid_from_nmk(b"\x22" * 16)
    assert keys[-1]["nmk"] != b"\x22" * 16 and len(keys) == before + 3  # and leaving, with a fresh one
    assert "link: modem sync lost (signature 0x0000)" in log.lines
    assert log.lines.count("link: modem restarted: the EVSE's network key set again") == 2
