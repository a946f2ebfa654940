# asyncio driver of the board's own IPv6 stack (evpilot.net.stack) over a raw Ethernet adapter
# (evpilot.aio.ether on Linux; anything with the same send/recv_into/recv_nowait_into/mac on a board).
#
# How this works: NetStack.start() runs one task that waits for a frame or the stack's next deadline,
# feeds the stack, runs its timers, sends what it outputs and wakes whoever waits for a change. Waiting is
# by "generation": every change replaces self._changed (an asyncio.Event) and sets the old one, so each
# waiter sees the change that happened after it looked, on both interpreters' asyncio.
# The application side has the shapes the EV already uses with OS sockets (evpilot.aio.sockets):
#   discover(iface, security, ...)   SDP over our UDP to ff02::1 port 15118, same result and SdpFailed
#   open_tcp(address, port, ...)     (reader, writer): one TcpStream for both, like MicroPython's Stream;
#                                    read(n), write(data), drain(), close(), wait_closed(); raises OSError
#                                    (refused, reset, unreachable) or asyncio.TimeoutError
# so evpilot.aio.stream.drive runs a V2G connection (plain or TLS) over it unchanged. open_stack() fits the
# stack to a Linux interface the kernel also uses (an address beside the kernel's; on a veth, the checksum
# offload placeholder accepted and segments above the MTU received whole). A reset or timeout
# during the session reads as the end of the stream (b""), which drive() reports as connection_lost.

try:
    import asyncio
except ImportError:  # pragma: no cover - older MicroPython
    import uasyncio as asyncio

from evpilot.compat import MICROPYTHON, ticks_diff
from evpilot.errors import UsageError
from evpilot.net import ipv6, stack as net_stack
from evpilot.net.tcp import SYN_SENT
from evpilot.v2g import sdp, timers

try:
    from time import ticks_ms as _ticks_ms  # MicroPython
except ImportError:
    import time as _time

    def _ticks_ms():
        return int(_time.monotonic() * 1000) & ((1 << 29) - 1)

MAX_PENDING = 16384  # bytes written and not yet taken by the send ring (a V2G message is at most a few KB)
_IDLE_MS = 1000  # the longest wait without a deadline (a frame wakes the task earlier)
_BATCH = 16  # frames taken per wake-up before timers and output run
_ECONNREFUSED = 111  # Linux errno numbers (MicroPython's errno module lacks some)
_ECONNRESET = 104
_ETIMEDOUT = 110
_EHOSTUNREACH = 113


def now_ms():
    return _ticks_ms() & ((1 << 29) - 1)


def _seed():
    try:
        import os

        return int.from_bytes(os.urandom(4), "big")
    except (ImportError, AttributeError, OSError):  # pragma: no cover - a board without urandom
        return now_ms() * 2654435761


async def _wait(event, timeout_ms):
    try:
        if MICROPYTHON:
            await asyncio.wait_for_ms(event.wait(), timeout_ms)
        else:
            await asyncio.wait_for(event.wait(), timeout_ms / 1000)
    except asyncio.TimeoutError:
        pass


class TcpStream:
    """One TCP connection of the stack as an asyncio stream (reader and writer in one)."""

    def __init__(self, net, conn):
        self.net = net
        self.conn = conn
        self._pending = []  # written but not yet taken by the connection's send ring
        self._pending_bytes = 0

    def _push(self):
        while self._pending:
            data = self._pending[0]
            if self.conn.writable() <= 0:
                return
            n = self.conn.write(data)
            self._pending_bytes -= n
            if n < len(data):
                self._pending[0] = memoryview(data)[n:]
                return
            self._pending.pop(0)

    async def _readable(self):
        """Wait until received bytes are there (True) or the stream has ended (False: FIN, reset, timeout)."""
        conn = self.conn
        while not conn.readable():
            if conn.at_eof or conn.error is not None:
                return False
            await self.net.changed().wait()
        return True

    async def read(self, n=4096):
        """Up to n bytes; b"" at the end of the stream (FIN, reset, timeout)."""
        if not await self._readable():
            return b""
        data = self.conn.read(n)
        self.net.flush()  # a window update may be due
        return data

    async def readinto(self, buf):
        """read() into `buf` (as MicroPython's asyncio.Stream.readinto): the count, 0 at the end."""
        if not await self._readable():
            return 0
        n = self.conn.read_into(buf)
        self.net.flush()
        return n

    def write(self, data):
        if self.conn.error is not None or self.conn.finished:
            return  # like a socket stream after a reset: the failure shows on read
        if self._pending_bytes + len(data) > MAX_PENDING:
            raise UsageError("TCP: more than %d bytes written without drain()" % MAX_PENDING)
        self._pending.append(bytes(data))
        self._pending_bytes += len(data)
        self._push()
        self.net.flush()

    async def drain(self):
        while self._pending and self.conn.error is None and not self.conn.finished:
            await self.net.changed().wait()
            self._push()
            self.net.flush()

    def close(self):
        self._push()
        self.conn.close()
        self.net.flush()

    async def wait_closed(self):
        return None  # the stack finishes the close (FIN, its ACK) in the background

    def get_extra_info(self, name, default=None):
        if name == "peername":
            return (self.conn.address, self.conn.port)
        return default


class NetStack:
    def __init__(self, link, seed=None, frame_size=1518, **options):
        """link: an open raw Ethernet endpoint (evpilot.aio.ether.open(ifname, 0x86DD)); frame_size: the
        largest frame received whole; options go to evpilot.net.stack.Stack (mss, rx_size, tx_size)."""
        self.link = link
        self.stack = net_stack.Stack(link.mac, now_ms(), _seed() if seed is None else seed, **options)
        self._changed = asyncio.Event()
        self._task = None
        self._buf = bytearray(frame_size)
        self.events = []  # the stack's events, the latest MAX_EVENTS

    @property
    def address(self):
        return self.stack.address

    def changed(self):
        return self._changed

    def _notify(self):
        old = self._changed
        self._changed = asyncio.Event()
        old.set()

    def flush(self):
        for frame in self.stack.output(now_ms()):
            self.link.send(frame)

    def start(self):
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        return self

    async def close(self, linger_ms=1000):
        """Stop once every connection has closed (its FIN exchanged) or after `linger_ms`; close the link."""
        end = now_ms() + linger_ms
        while ticks_diff(end, now_ms()) > 0:
            if all(c.finished or c.state == 8 for c in self.stack.connections):  # 8: TIME_WAIT
                break
            await _wait(self._changed, max(1, ticks_diff(end, now_ms())))
        await self.stop()
        self.link.close()

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except BaseException:
                pass
            self._task = None

    async def _run(self):
        st = self.stack
        buf = self._buf
        mv = memoryview(buf)
        while True:
            self.flush()
            deadline = st.next_deadline()
            wait = _IDLE_MS
            if deadline is not None:
                wait = max(0, min(wait, ticks_diff(deadline, now_ms())))
            n = await self.link.recv_into(buf, wait) if wait else self.link.recv_nowait_into(buf)
            now = now_ms()
            count = 0
            while n:
                st.receive(mv[:n], now)
                count += 1
                if count >= _BATCH:
                    break
                n = self.link.recv_nowait_into(buf)
            st.on_timer(now)
            self.flush()
            for e in st.events():
                if len(self.events) >= net_stack.MAX_EVENTS:
                    self.events.pop(0)
                self.events.append(e)
            self._notify()
            if not wait and not count:
                await asyncio.sleep_ms(0) if MICROPYTHON else await asyncio.sleep(0)

    async def open_tcp(self, address, port, iface=None, timeout_ms=5000):
        """(reader, writer), one TcpStream, connected to [address]:port. `iface` is accepted for the shape
        of evpilot.aio.sockets.open_tcp and ignored (the stack has one link)."""
        conn = self.stack.tcp_connect(ipv6.from_text(address), port, now_ms())
        self.flush()
        end = now_ms() + timeout_ms
        while conn.state == SYN_SENT:
            left = ticks_diff(end, now_ms())
            if left <= 0:
                conn.abort("timeout")
                raise asyncio.TimeoutError()
            for e in self.events:
                if e[0] == "unreachable" and e[1] == conn.address:
                    conn.abort("unreachable")
                    raise OSError(_EHOSTUNREACH, "no neighbour answers for that address")
            await _wait(self._changed, left)
        if conn.error is not None:
            code = {"refused": _ECONNREFUSED, "timeout": _ETIMEDOUT}.get(conn.error, _ECONNRESET)
            raise OSError(code, "TCP: connection " + conn.error)
        s = TcpStream(self, conn)
        return s, s

    async def discover(self, iface, security, accept_other_security=False, destination=sdp.MULTICAST_ADDRESS,
                       port=sdp.PORT, interval=timers.SDP_RESPONSE_TIMEOUT,
                       max_requests=timers.SDP_MAX_REQUESTS):
        """SDP as evpilot.aio.sockets.discover does it (the same arguments; `iface` is ignored: the stack
        has one link), over the stack's UDP."""
        destination = ipv6.from_text(destination)
        ep = self.stack.udp_open(0)
        try:
            client = sdp.SdpClient(security, now_ms(), accept_other_security, interval, max_requests)
            while True:
                for data in client.poll(now_ms()):
                    ep.sendto(data, destination, port, now_ms())
                self.flush()
                if client.result is not None:
                    return client.result
                if client.failed:
                    raise sdp.SdpFailed(client.failure, client.tries)
                got = ep.receive()
                if got is not None:
                    client.receive(got[2], now_ms())
                    continue
                await _wait(self._changed, max(1, ticks_diff(client.next_deadline(), now_ms())))
        finally:
            ep.close()


def beside_kernel(mac):
    """Our link-local address when the kernel has its own (EUI-64) one on the same interface: the EUI-64
    address with ff:fe changed to ff:fd in the middle, so the two differ (the kernel drops, without a
    reset, what is sent to ours) while the solicited-node group, and so the multicast MAC the interface
    already accepts, is the same (RFC 4291 2.7.1: the low 24 bits)."""
    a = bytearray(ipv6.link_local(mac))
    a[12] = 0xFD
    return bytes(a)


def fit_to_interface(ifname, link, options):
    """(options, frame_size) for a stack on the Linux interface `ifname` through `link` (a raw socket on
    it, or a filter over one): if the kernel runs IPv6 there too, the address beside_kernel() gives; on a
    virtual interface the checksum offload placeholder accepted in frames from its peer, and frames as big
    as the receive window (a veth peer with segmentation offload hands over TCP segments bigger than the
    MTU, up to our window: received whole)."""
    from evpilot.aio import ether

    options = dict(options)
    if "address" not in options and ether.kernel_ipv6(ifname):
        options["address"] = beside_kernel(link.mac)
    if "partial_checksums" not in options:
        options["partial_checksums"] = link.virtual
    frame_size = 1518
    if link.virtual:
        frame_size = options.get("rx_size", 4096) + 128
    return options, frame_size


async def open_stack(ifname, **options):
    """A started NetStack on the Linux interface `ifname` (raw IPv6 frames through evpilot.aio.ether),
    fitted to it by fit_to_interface()."""
    from evpilot.aio import ether

    link = ether.open(ifname, ether.ETHERTYPE_IPV6)
    options, frame_size = fit_to_interface(ifname, link, options)
    return NetStack(link, frame_size=frame_size, **options).start()
