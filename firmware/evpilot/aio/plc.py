# The PLC link of one plug-in: SLAC (ISO 15118-3), then the board's own IPv6/UDP/TCP, over one frame device -
# the QCA7000 driver on a board (evpilot.hal.qca7000_spi), a raw Ethernet socket on a laptop's HomePlug
# adapter or a veth (evpilot.aio.ether, opened for every EtherType), or the unix port's simulated QCA7000.
#
# How this works
# --------------
# One device carries two EtherTypes: 0x88E1 (HomePlug AV management: SLAC, and the Qualcomm messages to the
# local modem) and 0x86DD (IPv6). They are used one after the other, so the demultiplexer is a filter per
# phase, with no queue and no copy: TypeFilter(dev, ethertype) has the device's frame interface (send,
# recv_into, recv_nowait_into, receive, mac, close) and drops every frame of another EtherType (counted in
# `dropped`). Before the match nothing but SLAC is expected; once matched the EV ignores SLAC frames anyway
# (a neighbouring connector's cross-talk), so IPv6 owns the device until the plug-in ends.
#   PlcLink(dev, ...).up()    waits for the modem (a QCA7000's SPI sync), runs evpilot.slac.ev.SlacEv through
#                             evpilot.aio.slac_link.drive on TypeFilter(dev, 0x88E1), then starts a NetStack
#                             on TypeFilter(dev, 0x86DD) and returns it (discover / open_tcp for the session).
#                             SLAC failing, or the modem never syncing, raises LinkError naming why.
#   (while up)                on a QCA7000 the driver's events are watched: the modem restarting by itself,
#                             or being reset after a lost SPI sync, loses the key SET_KEY gave it (it comes
#                             back with the one in its flash), so the matched network's NID and NMK are set
#                             in it again at once (`rekeys` counts them); the session survives when that
#                             is quicker than the V2G timeouts.
#   PlcLink.down()            stops the stack (connections closed or after a short linger) and leaves the
#                             EVSE's logical network: a CM_SET_KEY.REQ with a fresh random NMK and NID to the
#                             local modem, so the modem does not stay joined to the last charger's network
#                             (ISO 15118-3 D-LINK_TERMINATE; also what makes the next plug-in start clean).
#                             The device stays open for the next plug-in.
# `nodes` are sans-I/O stand-ins for a local modem that is not there (evpilot_sim.slac_evse.SimModem on a
# veth): they see every SLAC frame sent and answer it, as slac_link.drive does for them.
# probe_modem(link) asks the local modem for its version (VS_SW_VER): a HomePlug adapter answers, a veth does
# not.

try:
    import asyncio
except ImportError:  # pragma: no cover - older MicroPython
    import uasyncio as asyncio

from evpilot.aio import slac_link
from evpilot.aio.stream import sleep_ms as _sleep_ms
from evpilot.compat import ticks_add, ticks_diff
from evpilot.errors import EvpilotError, PeerError
from evpilot.slac import mme, qca
from evpilot.slac import timers as T
from evpilot.slac.ev import SlacEv

ETHERTYPE_IPV6 = 0x86DD
MODEM_READY_MS = 5000  # a QCA7000 boots and syncs in well under a second; give it five
# SLAC ends by itself within its timers (restarts within TT_matching_repetition, then the join within
# TT_match_join after MODEM_SETTLE); this is only a backstop
SLAC_LIMIT_MS = T.TT_MATCHING_REPETITION + T.MODEM_SETTLE + T.TT_MATCH_JOIN + 5000
PROBE_MS = 300
WATCH_MS = 50  # how often the modem's events are looked at while the link is up

class LinkError(EvpilotError):
    """The PLC link did not come up (SLAC failed, the modem is not there)."""


def _ethertype(buf):
    return (buf[12] << 8) | buf[13]


class TypeFilter:
    """The frames of one EtherType on `dev`, with the device's frame interface; close() leaves `dev` open."""

    def __init__(self, dev, ethertype):
        self.dev = dev
        self.ethertype = ethertype
        self.dropped = 0
        self.virtual = getattr(dev, "virtual", False)

    @property
    def mac(self):
        return self.dev.mac

    def send(self, frame):
        return self.dev.send(frame)

    def recv_nowait_into(self, buf):
        dev = self.dev
        while True:
            n = dev.recv_nowait_into(buf)
            if not n or (n >= 14 and _ethertype(buf) == self.ethertype):
                return n
            self.dropped += 1

    async def recv_into(self, buf, timeout_ms=None):
        dev = self.dev
        end = None if timeout_ms is None else ticks_add(slac_link.now_ms(), timeout_ms)
        while True:
            left = None
            if end is not None:
                left = ticks_diff(end, slac_link.now_ms())
                if left <= 0:
                    return self.recv_nowait_into(buf)
            if getattr(dev, "error", None) is not None:
                # The device failed (an SPI error ended the driver's task; its owner sees why): a dead
                # link, no frames, but the wait still takes its time so no caller spins on it.
                await _sleep_ms(left if left is not None else 1000)
                return 0
            n = await dev.recv_into(buf, left)
            if not n:
                continue
            if n >= 14 and _ethertype(buf) == self.ethertype:
                return n
            self.dropped += 1

    async def receive(self, timeout_ms=None):
        buf = bytearray(slac_link.MAX_FRAME)
        n = await self.recv_into(buf, timeout_ms)
        return bytes(memoryview(buf)[:n]) if n else None

    def close(self):
        pass


async def probe_modem(link, timeout_ms=PROBE_MS):
    """The local modem's MAC and version ({"mac", "version"}) if one answers VS_SW_VER within `timeout_ms`,
    else None. `link`: a frame device (a TypeFilter for 0x88E1 on a device that carries more)."""
    link.send(qca.sw_ver_req(link.mac))
    end = ticks_add(slac_link.now_ms(), timeout_ms)
    while True:
        left = ticks_diff(end, slac_link.now_ms())
        if left <= 0:
            return None
        frame = await link.receive(left)
        if frame is None:
            return None
        if mme.mmtype(frame) == mme.VS_SW_VER | mme.CNF:
            try:
                d = qca.parse_sw_ver_cnf(frame)
            except PeerError:
                continue
            return {"mac": mme.source(frame), "version": d["version"]}


def _urandom(n):
    import os

    return os.urandom(n)


class PlcLink:
    def __init__(self, dev, log=None, slac=None, stack=None, nodes=(), frame_size=1518, random=None):
        """dev: the frame device; log: an evpilot.log.Log (or None); slac: SlacEv options
        (attenuation_limit, validate, settle, reset_after, ...); stack: evpilot.net.stack.Stack options
        (address, partial_checksums, mss, rx_size, tx_size); nodes: stand-ins for a missing local modem;
        frame_size: the largest frame the stack receives whole."""
        self.dev = dev
        self.log = log
        self.slac_options = dict(slac or {})
        self.stack_options = dict(stack or {})
        self.nodes = nodes
        self.frame_size = frame_size
        self._random = random or _urandom
        self.result = None  # the SlacEv result of the last up() once matched (the SlacEv is not kept)
        self.net = None
        self.mme = TypeFilter(dev, mme.ETHERTYPE)
        self.ip = None
        self.rekeys = 0
        self._watcher = None

    def _info(self, text):
        if self.log is not None:
            self.log.info(text)

    async def _modem_ready(self, timeout_ms):
        dev = self.dev
        if not hasattr(dev, "ready"):
            return
        start = slac_link.now_ms()
        while not dev.ready:
            if getattr(dev, "error", None) is not None:
                raise LinkError("modem: the SPI bus failed (%s)" % (dev.error,))
            if ticks_diff(slac_link.now_ms(), start) >= timeout_ms:
                raise LinkError("modem: no SPI sync with the QCA7000 within %d ms" % timeout_ms)
            await _sleep_ms(10)

    async def up(self, modem_timeout_ms=MODEM_READY_MS, limit_ms=SLAC_LIMIT_MS):
        """SLAC, then the stack; returns the started NetStack. LinkError when the link did not come up."""
        from evpilot.aio import netstack

        await self._modem_ready(modem_timeout_ms)
        ev = SlacEv(self.dev.mac, **self.slac_options)
        self.result = None
        self._info("slac: matching")
        first = ev.start(slac_link.now_ms())
        await slac_link.drive(ev, self.mme, ev.done, first, self.nodes, limit_ms)
        if ev.result is None:
            raise LinkError("SLAC: %s" % (ev.reason or "did not finish within %d ms" % limit_ms,))
        r = ev.result
        self.result = r
        self._info("slac: matched EVSE %s, attenuation %d dB, attempt %d" % (
            ":".join("%02x" % b for b in r["evse_mac"]), r["attenuation"], r["attempts"]))
        self.ip = TypeFilter(self.dev, ETHERTYPE_IPV6)
        self.net = netstack.NetStack(self.ip, frame_size=self.frame_size, **self.stack_options).start()
        if hasattr(self.dev, "pop_event"):
            while self.dev.pop_event() is not None:  # what happened before the match is history
                pass
            self._watcher = asyncio.create_task(self._watch())
        return self.net

    def _set_key(self, nid, nmk):
        return self.mme.send(mme.set_key_req(self.dev.mac, nid, nmk, bytes(self._random(4))))

    async def _watch(self):
        from evpilot.hal.qca7000 import EV_DOWN, EV_MODEM_RESET, EV_READY

        pop = self.dev.pop_event
        while True:
            await _sleep_ms(WATCH_MS)
            ev = pop()
            while ev is not None:
                if ev[0] == EV_DOWN:
                    self._info("link: modem sync lost (%s)" % (ev[1],))
                elif (ev[0] == EV_MODEM_RESET or ev[0] == EV_READY) and self.result is not None:
                    self.rekeys += 1
                    self._set_key(self.result["nid"], self.result["nmk"])
                    self._info("link: modem restarted: the EVSE's network key set again")
                ev = pop()

    def leave_frame(self):
        """The CM_SET_KEY.REQ that takes the local modem out of the EVSE's network (a random NMK and NID)."""
        nmk = bytes(self._random(mme.NMK_LEN))
        return mme.set_key_req(self.dev.mac, mme.nid_from_nmk(nmk), nmk, bytes(self._random(4)))

    async def down(self, linger_ms=500):
        """Stop the stack and leave the EVSE's network; never raises (the plug-in is ending anyway)."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        net = self.net
        self.net = None
        if net is not None:
            try:
                await net.close(linger_ms)
            except Exception as e:  # noqa: BLE001 - closing must not stop the safe state
                self._info("link: closing the stack: %s" % (e,))
        if self.result is None:
            return
        self.result = None
        try:
            frame = self.leave_frame()
            self.mme.send(frame)
            now = slac_link.now_ms()
            for node in self.nodes:
                node.receive(frame, now)
            self._info("slac: left the EVSE's network")
        except Exception as e:  # noqa: BLE001
            self._info("link: leaving the EVSE's network: %s" % (e,))
