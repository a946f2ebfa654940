# asyncio adapter on the platform's own sockets (STYLE rule 1: the cores never open sockets; this does).
#
# How this works: discover() drives v2g.sdp.SdpClient over a UDP socket, sending its requests to ff02::1
# port 15118 on the named interface and feeding every datagram that comes back into the client until it has
# a result or has spent its retry budget. serve_sdp() answers requests with v2g.sdp.SdpResponder. open_tcp()
# connects to the SECC's (link-local) address with the interface as scope id and returns asyncio streams.
# Every wait is bounded by the core's next deadline or an explicit timeout.
#
# The two interpreters' socket modules differ, and this module is where that is absorbed:
#   addresses   CPython takes (host, port, flowinfo, scope_id) tuples. MicroPython's unix port takes and
#               returns struct sockaddr_in6 as raw bytes (from socket.getaddrinfo; socket.sockaddr decodes
#               one); _sockaddr() builds one and writes the scope id into it. Bare-metal ports take their
#               own tuples and have a single interface, so no scope id (untested: no board at hand).
#   interfaces  CPython has socket.if_nametoindex; MicroPython has not, and on Linux the index is read from
#               /sys/class/net/IF/ifindex. A board names no interfaces: iface "" there.
#   options     IPV6_MULTICAST_IF and IPV6_JOIN_GROUP are set by number where the module lacks the constant
#               (MicroPython's unix port names no IPv6 option), with Linux's numbers and only on Linux.
#   waiting     CPython: the event loop's sock_recvfrom / sock_connect (3.11+; receiving polls every 10 ms on
#               3.10). MicroPython's asyncio can only wait on a stream object inside its own Stream class, so
#               _SocketEvents is a small stream over the socket that Stream waits on: readinto() is a
#               recvfrom() that keeps the sender, write() reports when a non-blocking connect has finished.
#               The loop's poller then wakes on the socket itself; nothing polls on a timer.
#   port 0      MicroPython's sockets have no getsockname(), so serve_sdp(sdp_port=0) picks a free port of
#               the dynamic range itself.
# The TCP streams are the platform's own: asyncio's on CPython, asyncio.Stream over the socket on
# MicroPython; evpilot.aio.stream.drive runs a connection over either.

import asyncio
import socket
import time

from evpilot.compat import MICROPYTHON, TICKS_PERIOD, ticks_add, ticks_diff
from evpilot.errors import UsageError
from evpilot.v2g import sdp, timers

MAX_DATAGRAM = 1500  # more than any SDP datagram; a bigger one is cut and then counted as malformed
_POLL_MS = 10
_ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")

try:
    import sys as _sys

    _NATIVE = _sys.byteorder  # struct ipv6_mreq's interface index is a native unsigned int
    _LINUX = _sys.platform == "linux"
except (ImportError, AttributeError):  # pragma: no cover
    _NATIVE = "little"
    _LINUX = False

# <netinet/in.h> on Linux (BSD numbers these differently); only used where `socket` lacks the names.
_IPPROTO_IPV6 = getattr(socket, "IPPROTO_IPV6", 41)
_IPV6_MULTICAST_IF = getattr(socket, "IPV6_MULTICAST_IF", 17 if _LINUX else None)
_IPV6_JOIN_GROUP = getattr(socket, "IPV6_JOIN_GROUP", 20 if _LINUX else None)

# errno values a non-blocking connect reports (MicroPython's errno module lacks EISCONN; Linux's number).
try:
    import errno as _errno
except ImportError:  # pragma: no cover
    _errno = None
_EINPROGRESS = getattr(_errno, "EINPROGRESS", 115)
_EALREADY = getattr(_errno, "EALREADY", 114)
_EISCONN = getattr(_errno, "EISCONN", 106)
_EADDRINUSE = getattr(_errno, "EADDRINUSE", 98)

# stream ioctl requests MicroPython's poller sends to a Python stream object (py/stream.h)
_MP_STREAM_POLL = 3
_MP_STREAM_GET_FILENO = 10

try:
    _ticks_ms = time.ticks_ms  # MicroPython
except AttributeError:

    def _ticks_ms():
        return int(time.monotonic() * 1000)


def _now():
    return _ticks_ms() & (TICKS_PERIOD - 1)


def scope_id(iface):
    """Interface index for an IPv6 link-local scope; 0 for no interface ("" or None)."""
    if not iface:
        return 0
    if hasattr(socket, "if_nametoindex"):  # CPython
        try:
            return socket.if_nametoindex(iface)
        except OSError:
            raise UsageError("no network interface named %r" % (iface,))
    if "/" in iface or iface in (".", ".."):
        raise UsageError("no network interface named %r" % (iface,))
    try:
        with open("/sys/class/net/%s/ifindex" % iface) as f:  # Linux (MicroPython's unix port)
            return int(f.read())
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/class/net/lo/ifindex") as f:  # sysfs is there: the interface is not
            f.read()
    except OSError:
        raise UsageError("this platform's socket module cannot name interfaces; pass iface=''")
    raise UsageError("no network interface named %r" % (iface,))


def address_text(address):
    """IPv6 address as text: 16 bytes formatted (uncompressed), a str passed through."""
    if isinstance(address, str):
        return address
    if len(address) != 16:
        raise UsageError("an IPv6 address has 16 bytes, got %d" % len(address))
    return ":".join("%x" % ((address[i] << 8) | address[i + 1]) for i in range(0, 16, 2))


def address_bytes(address):
    """IPv6 address as 16 bytes, from bytes or text."""
    if isinstance(address, str):
        try:
            return socket.inet_pton(socket.AF_INET6, address.split("%")[0])
        except (AttributeError, OSError, ValueError):
            raise UsageError("not an IPv6 address: %r" % (address,))
    if len(address) != 16:
        raise UsageError("an IPv6 address has 16 bytes, got %d" % len(address))
    return bytes(address)


def _is_link_local(address):
    b = address_bytes(address)
    return b[0] == 0xFE and (b[1] & 0xC0) == 0x80


def _is_link_local_or_multicast(address):
    b = address_bytes(address)
    return b[0] == 0xFF or (b[0] == 0xFE and (b[1] & 0xC0) == 0x80)


def _sockaddr(address, port, scope, kind):
    """The socket address of `address` (16 bytes or text), `port` and `scope` in the form this platform's
    sockets take."""
    host = address_text(address)
    if not MICROPYTHON:
        return (host, port, 0, scope)
    found = socket.getaddrinfo(host, port, socket.AF_INET6, kind)  # a numeric address: no name lookup
    if not found:
        raise UsageError("not an IPv6 address: %r" % (host,))
    raw = found[0][-1]
    if isinstance(raw, (bytes, bytearray)) and len(raw) == 28:
        # The unix port: struct sockaddr_in6 as bytes; sin6_scope_id is its last field (offset 24, host order,
        # the same on Linux and BSD).
        raw = bytearray(raw)
        raw[24:28] = scope.to_bytes(4, _NATIVE)
        return bytes(raw)
    return raw  # a bare-metal port's own form: one interface, no scope id


def _udp_socket():
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock


try:
    from io import IOBase as _IOBase
except ImportError:  # pragma: no cover - a port without io.IOBase cannot poll Python streams
    _IOBase = object


class _SocketEvents(_IOBase):
    """MicroPython: a socket as a stream that asyncio.Stream waits on. Stream calls readinto() once the
    poller saw the socket readable and write() once it saw it writable; None means "not yet, wait again"."""

    def __init__(self, sock, address=None):
        self.sock = sock
        self.address = address  # where a non-blocking connect() is going
        self.peer = None  # the sender of the datagram readinto() returned
        self.error = None  # the OSError a connect() ended with
        self.stream = asyncio.StreamReader(self)
        self._poller = None

    def readinto(self, buf):
        try:
            data, self.peer = self.sock.recvfrom(len(buf))
        except OSError:  # EAGAIN (woken for nothing) or an error report: nothing to read
            return None
        n = len(data)
        buf[:n] = data
        return n

    def write(self, buf):
        # A second connect() tells how the first ended: no error or EISCONN once connected, EALREADY or
        # EINPROGRESS while it runs, else the error it failed with (ECONNREFUSED, EHOSTUNREACH, ...).
        try:
            self.sock.connect(self.address)
        except OSError as e:
            code = e.args[0] if e.args else None
            if code in (_EALREADY, _EINPROGRESS):
                return None
            if code != _EISCONN:
                self.error = e
        return len(buf)

    def ioctl(self, request, arg):
        if request == _MP_STREAM_GET_FILENO:  # the unix port polls the socket's file descriptor
            return self.sock.fileno()
        if request == _MP_STREAM_POLL:  # bare-metal ports ask every stream in turn: ask the socket at once
            if self._poller is None:
                import select

                self._poller = select.poll()
                self._poller.register(self.sock, arg)
            else:
                self._poller.modify(self.sock, arg)
            for _, events in self._poller.ipoll(0):
                return events & arg
            return 0
        return -1

    def close(self):
        pass  # the socket belongs to the caller


async def _recvfrom(sock, timeout_ms, events=None):
    """(data, peer) or None when nothing came within timeout_ms. `events`: the socket's _SocketEvents on
    MicroPython."""
    if timeout_ms < 0:
        timeout_ms = 0
    if events is not None:  # MicroPython: the loop's poller waits on the socket
        buf = bytearray(MAX_DATAGRAM)
        try:
            n = await asyncio.wait_for_ms(events.stream.readinto(buf), timeout_ms)
        except asyncio.TimeoutError:
            return None
        if n is None:
            return None  # woken without a datagram: the caller waits again with what is left of its time
        return bytes(memoryview(buf)[:n]), events.peer
    loop = None
    if hasattr(asyncio, "get_running_loop"):
        loop = asyncio.get_running_loop()
    if loop is not None and hasattr(loop, "sock_recvfrom"):  # CPython 3.11+
        try:
            return await asyncio.wait_for(loop.sock_recvfrom(sock, MAX_DATAGRAM), timeout_ms / 1000)
        except asyncio.TimeoutError:
            return None
        except OSError:
            # An ICMP error reported on the socket (port unreachable, ...): nothing to read; do not spin.
            await asyncio.sleep(_POLL_MS / 1000)
            return None
    end = ticks_add(_now(), timeout_ms)
    while True:
        try:
            return sock.recvfrom(MAX_DATAGRAM)
        except OSError:  # EAGAIN: nothing yet (or an ICMP error, which is the same for us)
            pass
        left = ticks_diff(end, _now())
        if left <= 0:
            return None
        await asyncio.sleep((left if left < _POLL_MS else _POLL_MS) / 1000)


async def discover(iface, security, accept_other_security=False, destination=sdp.MULTICAST_ADDRESS,
                   port=sdp.PORT, interval=timers.SDP_RESPONSE_TIMEOUT, max_requests=timers.SDP_MAX_REQUESTS):
    """Find the SECC on `iface`: {"address": 16 bytes, "port": int, "security": "tls"/"none"}.

    Raises sdp.SdpFailed after `max_requests` requests without an acceptable answer (at most
    interval * max_requests ms: 12.5 s with the defaults). `destination`/`port` are for tests and tools that
    talk to one known station by unicast.
    """
    scope = scope_id(iface)
    sock = _udp_socket()
    events = _SocketEvents(sock) if MICROPYTHON else None
    send_error = None
    try:
        if scope and _IPV6_MULTICAST_IF is not None:
            sock.setsockopt(_IPPROTO_IPV6, _IPV6_MULTICAST_IF, scope)
        sock.bind(_sockaddr(bytes(16), 0, 0, socket.SOCK_DGRAM))
        target = _sockaddr(destination, port, scope if _is_link_local_or_multicast(destination) else 0,
                           socket.SOCK_DGRAM)
        client = sdp.SdpClient(security, _now(), accept_other_security, interval, max_requests)
        while True:
            for frame in client.poll(_now()):
                try:
                    sock.sendto(frame, target)
                except OSError as e:  # the link may not be up yet: keep to the schedule, report at the end
                    send_error = e
            if client.result is not None:
                return client.result
            if client.failed:
                text = client.failure
                if send_error is not None:
                    text += "; sending failed: %s" % (send_error,)
                raise sdp.SdpFailed(text, client.tries)
            got = await _recvfrom(sock, ticks_diff(client.next_deadline(), _now()), events)
            if got is not None:
                client.receive(got[0], _now())
    finally:
        sock.close()


def _bind_sdp(sock, sdp_port):
    """Bind to "::" and `sdp_port`; the port bound. Port 0 on MicroPython, whose sockets cannot say which
    port the system picked (no getsockname): a free one of the dynamic range, tried at random."""
    if sdp_port or not MICROPYTHON:
        sock.bind(_sockaddr(bytes(16), sdp_port, 0, socket.SOCK_DGRAM))
        return sock.getsockname()[1] if not MICROPYTHON else sdp_port
    import random

    for _ in range(50):
        candidate = random.randint(49152, 65535)
        try:
            sock.bind(_sockaddr(bytes(16), candidate, 0, socket.SOCK_DGRAM))
            return candidate
        except OSError as e:
            if (e.args[0] if e.args else None) != _EADDRINUSE:
                raise
    raise OSError(_EADDRINUSE, "no free UDP port in 49152-65535")


async def serve_sdp(iface, address, port, tls, ready=None, sdp_port=sdp.PORT, tls_only=False):
    """Answer SDP requests on `iface` until cancelled: the SECC is at `address` (16 bytes or text), TCP
    `port`, and offers TLS when `tls` (to every request when `tls_only`). `ready(bound_port)` is called once
    the socket is bound (sdp_port 0 picks a free port, for tests). The socket is bound to "::", so requests
    from any interface are answered; the reply goes back to the requester's address and scope."""
    scope = scope_id(iface)
    responder = sdp.SdpResponder(address_bytes(address), port, tls, tls_only)
    sock = _udp_socket()
    events = _SocketEvents(sock) if MICROPYTHON else None
    try:
        if hasattr(socket, "SO_REUSEADDR"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bound = _bind_sdp(sock, sdp_port)
        if scope and _IPV6_JOIN_GROUP is not None:
            # ff02::1 is joined by every interface; joining on the socket makes delivery independent of the
            # system's IPV6_MULTICAST_ALL default.
            try:
                sock.setsockopt(_IPPROTO_IPV6, _IPV6_JOIN_GROUP, _ALL_NODES + scope.to_bytes(4, _NATIVE))
            except OSError:
                pass
        if ready is not None:
            ready(bound)
        while True:
            got = await _recvfrom(sock, 1000, events)
            if got is None:
                continue
            reply = responder.respond(got[0])
            if reply is not None:
                try:
                    sock.sendto(reply, got[1])
                except OSError:
                    pass  # the requester went away; it will ask again
    finally:
        sock.close()


async def open_tcp(address, port, iface, timeout_ms=5000):
    """(reader, writer) connected to the SECC at `address` (16 bytes or text) and `port`; a link-local
    address is reached through `iface`. Raises OSError (refused, unreachable) or asyncio.TimeoutError."""
    host = address_text(address)
    scope = scope_id(iface) if _is_link_local(address) else 0
    if MICROPYTHON:
        return await _open_tcp_mp(_sockaddr(host, port, scope, socket.SOCK_STREAM), timeout_ms)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (host, port, 0, scope)), timeout_ms / 1000)
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


async def _open_tcp_mp(sockaddr, timeout_ms):
    """MicroPython: a non-blocking connect, awaited through _SocketEvents; one asyncio.Stream is both the
    reader and the writer (MicroPython's StreamReader and StreamWriter are the same class)."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        try:
            sock.connect(sockaddr)
        except OSError as e:
            if (e.args[0] if e.args else None) != _EINPROGRESS:
                raise
            events = _SocketEvents(sock, sockaddr)
            events.stream.write(b"\x00")  # nothing is sent: write() is called when the socket is writable
            await asyncio.wait_for_ms(events.stream.drain(), timeout_ms)
            if events.error is not None:
                raise events.error
        stream = asyncio.StreamReader(sock)
        return stream, stream
    except BaseException:
        sock.close()
        raise
