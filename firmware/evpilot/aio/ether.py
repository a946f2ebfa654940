# Raw Ethernet on a Linux interface (AF_PACKET): the thin adapter under SLAC and the board's own IPv6/TCP
# when the modem is a HomePlug Green PHY adapter (or one end of a veth pair) on a laptop.
#
# How this works: open(ifname, ethertype) makes a SOCK_RAW packet socket that receives only frames of that
# EtherType (None: every frame), bound to the interface, non-blocking. Frames are whole Ethernet II frames,
# destination MAC first, without the FCS. send() writes one frame (padded to the 60-byte minimum);
# recv_into() / receive() wait for one with the event loop and an optional timeout in milliseconds;
# recv_nowait_into() takes one that is already there.
#
# The same code runs on CPython and on MicroPython's unix port, which has no AF_PACKET names and binds
# with the raw struct sockaddr_ll (<linux/if_packet.h>):
#     u16 sll_family (17, host order), be16 sll_protocol, i32 sll_ifindex, u16 sll_hatype, u8 sll_pkttype,
#     u8 sll_halen, u8 sll_addr[8]                                                          (20 bytes)
# CPython binds with (ifname, protocol) instead. The interface index and MAC are read from
# /sys/class/net/IF/{ifindex,address} on both. Waiting: CPython's loop.sock_recv_into; MicroPython's
# asyncio.Stream over the socket (the unix port's poller waits on the socket's file descriptor), one
# read() per frame. Frames with our own source MAC are dropped (a packet socket that listens to every
# EtherType also sees what we send).

try:
    import asyncio
except ImportError:  # pragma: no cover - older MicroPython
    import uasyncio as asyncio

import socket
import struct

from evpilot.compat import MICROPYTHON, ticks_add, ticks_diff
from evpilot.errors import UsageError

AF_PACKET = getattr(socket, "AF_PACKET", 17)  # <linux/socket.h>
SOCK_RAW = getattr(socket, "SOCK_RAW", 3)
ETH_P_ALL = 0x0003  # <linux/if_ether.h>: every EtherType
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_HOMEPLUG = 0x88E1  # HomePlug AV MMEs (SLAC)
MIN_FRAME = 60  # IEEE 802.3: 64 bytes with the FCS, which the interface adds
MAX_FRAME = 1518  # 1500-byte payload + 14-byte header, and room for one VLAN tag

try:
    import sys as _sys

    _LITTLE = _sys.byteorder == "little"
except (ImportError, AttributeError):  # pragma: no cover
    _LITTLE = True

_PAD = bytes(MIN_FRAME)
_open_file = open  # the builtin: this module's open() opens an interface

try:
    from time import ticks_ms as _ticks_ms  # MicroPython
except ImportError:
    import time as _time

    def _ticks_ms():
        return int(_time.monotonic() * 1000) & ((1 << 29) - 1)


def _htons(value):
    return ((value & 0xFF) << 8) | (value >> 8) if _LITTLE else value


def _sysfs(ifname, name):
    if not ifname or "/" in ifname or ifname in (".", ".."):
        raise UsageError("no network interface named %r" % (ifname,))
    try:
        with _open_file("/sys/class/net/%s/%s" % (ifname, name)) as f:
            return f.read().strip()
    except OSError:
        raise UsageError("no network interface named %r" % (ifname,))


def _exists(path):
    try:
        with _open_file(path) as f:
            f.read(1)
        return True
    except OSError:
        return False


def kernel_ipv6(ifname):
    """True when the kernel runs IPv6 on `ifname` (it would then answer, with RST, TCP segments sent to
    its own address: a stack beside it must use another address)."""
    try:
        return _sysfs_proc(ifname) == "0"
    except OSError:
        return False


def _sysfs_proc(ifname):
    with _open_file("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % ifname) as f:
        return f.read().strip()


def interface_index(ifname):
    try:
        return int(_sysfs(ifname, "ifindex"))
    except ValueError:
        raise UsageError("interface %r has no index" % (ifname,))


def interface_mac(ifname):
    text = _sysfs(ifname, "address")
    parts = text.split(":")
    try:
        mac = bytes(int(p, 16) for p in parts)
    except ValueError:
        mac = b""
    if len(mac) != 6:
        raise UsageError("interface %r has no Ethernet address (%r)" % (ifname, text))
    return mac


def sockaddr_ll(ifindex, ethertype):
    """struct sockaddr_ll for bind(): family, protocol (network order), ifindex; the rest zero."""
    return struct.pack("HHiHBB8s", AF_PACKET, _htons(ethertype), ifindex, 0, 0, 0, bytes(8))


class EtherSocket:
    """One raw Ethernet endpoint on `ifname` for `ethertype` (see open())."""

    def __init__(self, ifname, ethertype=None, drop_own=True):
        self.ifname = ifname
        self.ethertype = ethertype
        self.ifindex = interface_index(ifname)
        self.mac = interface_mac(ifname)
        self.drop_own = drop_own
        # a virtual interface (veth, bridge) has no device behind it; its peers' frames may carry the
        # checksum offload placeholder (evpilot.net.ipv6.partial)
        self.virtual = not _exists("/sys/class/net/%s/device/uevent" % ifname)
        self.sent = 0  # frames handed to the kernel
        self.send_errors = 0  # frames the kernel refused (queue full, link down)
        self.received = 0
        proto = ETH_P_ALL if ethertype is None else ethertype
        try:
            sock = socket.socket(AF_PACKET, SOCK_RAW, _htons(proto))
        except OSError as e:
            raise UsageError("cannot open a packet socket on %s (needs root or CAP_NET_RAW): %s" % (ifname, e))
        try:
            if MICROPYTHON:
                sock.bind(sockaddr_ll(self.ifindex, proto))
            else:
                sock.bind((ifname, proto))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._stream = asyncio.StreamReader(sock) if MICROPYTHON else None
        self._closed = False

    def fileno(self):
        return self.sock.fileno()

    def send(self, frame):
        """Send one frame (bytes, bytearray or memoryview: destination, source, EtherType, payload); True
        once the kernel took it. A full queue or a down link drops it (the protocols retransmit)."""
        n = len(frame)
        if n > MAX_FRAME or n < 14:
            raise UsageError("an Ethernet frame has 14-%d bytes, got %d" % (MAX_FRAME, n))
        if n < MIN_FRAME:
            frame = bytes(frame) + _PAD[: MIN_FRAME - n]
        try:
            self.sock.send(frame)
        except OSError:
            self.send_errors += 1
            return False
        self.sent += 1
        return True

    def _own(self, buf, n):
        if not self.drop_own or n < 12:
            return False
        mac = self.mac
        for i in range(6):
            if buf[6 + i] != mac[i]:
                return False
        return True

    def recv_nowait_into(self, buf):
        """The length of a frame already received, written into `buf` (cut to its length); 0 if none."""
        while True:
            try:
                n = self.sock.readinto(buf) if MICROPYTHON else self.sock.recv_into(buf)
            except OSError:  # EAGAIN, or a network error reported on the socket: no frame
                return 0
            if not n:
                return 0
            if not self._own(buf, n):
                self.received += 1
                return n

    async def recv_into(self, buf, timeout_ms=None):
        """Wait for one frame and write it into `buf`; its length, or 0 when `timeout_ms` passed first."""
        n = self.recv_nowait_into(buf)
        if n:
            return n
        if timeout_ms is not None:
            if timeout_ms <= 0:
                return 0
            end = ticks_add(_ticks_ms(), timeout_ms)
        while True:
            try:
                if MICROPYTHON:
                    if timeout_ms is None:
                        n = await self._stream.readinto(buf)
                    else:
                        n = await asyncio.wait_for_ms(self._stream.readinto(buf), timeout_ms)
                else:
                    loop = asyncio.get_running_loop()
                    if timeout_ms is None:
                        n = await loop.sock_recv_into(self.sock, buf)
                    else:
                        n = await asyncio.wait_for(loop.sock_recv_into(self.sock, buf), timeout_ms / 1000)
            except asyncio.TimeoutError:
                return 0
            except OSError:
                n = 0
            if n and not self._own(buf, n):
                self.received += 1
                return n
            # woken for nothing or for our own frame: another frame may be queued already
            n = self.recv_nowait_into(buf)
            if n:
                return n
            if timeout_ms is not None:
                timeout_ms = ticks_diff(end, _ticks_ms())
                if timeout_ms <= 0:
                    return 0

    async def receive(self, timeout_ms=None):
        """One frame as bytes, or None when `timeout_ms` passed first."""
        buf = bytearray(MAX_FRAME)
        n = await self.recv_into(buf, timeout_ms)
        return bytes(memoryview(buf)[:n]) if n else None

    def close(self):
        if not self._closed:
            self._closed = True
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open(ifname, ethertype=None, drop_own=True):
    """A non-blocking raw Ethernet socket on `ifname` that receives frames of `ethertype` (an int such as
    0x86DD or 0x88E1; None: all). Raises UsageError if the interface is missing or the socket cannot be
    opened (it needs root or CAP_NET_RAW)."""
    return EtherSocket(ifname, ethertype, drop_own)
