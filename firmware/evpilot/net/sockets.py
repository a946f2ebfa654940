# asyncio adapter on the platform's own sockets (STYLE rule 1: the cores never open sockets; this does).
#
# How this works: discover() drives v2g.sdp.SdpClient over a UDP socket, sending its requests to ff02::1
# port 15118 on the named interface (scope id from socket.if_nametoindex) and feeding every datagram that comes
# back into the client until it has a result or has spent its retry budget. serve_sdp() answers requests with
# v2g.sdp.SdpResponder. open_tcp() connects to the SECC's (link-local) address with the interface as scope id
# and returns asyncio streams. Every wait is bounded by the core's next deadline or an explicit timeout.
#
# Tested on CPython's asyncio (Linux), where receiving waits on the event loop. The module imports on
# MicroPython ports that have `socket` and `asyncio` (receiving then polls every 10 ms, iface must be "": no
# if_nametoindex), but it has not been run there: the webassembly port the tests use has no socket module.

import asyncio
import socket
import time

from evpilot.compat import TICKS_PERIOD, ticks_add, ticks_diff
from evpilot.errors import UsageError
from evpilot.v2g import sdp, timers

MAX_DATAGRAM = 1500  # more than any SDP datagram; a bigger one is cut and then counted as malformed
_POLL_MS = 10
_ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")

try:
    import sys as _sys

    _NATIVE = _sys.byteorder  # struct ipv6_mreq's interface index is a native unsigned int
except (ImportError, AttributeError):  # pragma: no cover
    _NATIVE = "little"

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
    try:
        return socket.if_nametoindex(iface)
    except AttributeError:
        raise UsageError("this platform's socket module cannot name interfaces; pass iface=''")
    except OSError:
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


def _udp_socket():
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock


async def _recvfrom(sock, timeout_ms):
    """(data, peer) or None when nothing came within timeout_ms."""
    if timeout_ms < 0:
        timeout_ms = 0
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
    send_error = None
    try:
        if scope and hasattr(socket, "IPV6_MULTICAST_IF"):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, scope)
        sock.bind(("::", 0))
        target = (address_text(destination), port, 0, scope if _is_link_local_or_multicast(destination) else 0)
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
            got = await _recvfrom(sock, ticks_diff(client.next_deadline(), _now()))
            if got is not None:
                client.receive(got[0], _now())
    finally:
        sock.close()


async def serve_sdp(iface, address, port, tls, ready=None, sdp_port=sdp.PORT, tls_only=False):
    """Answer SDP requests on `iface` until cancelled: the SECC is at `address` (16 bytes or text), TCP
    `port`, and offers TLS when `tls` (to every request when `tls_only`). `ready(bound_port)` is called once the socket is bound (sdp_port 0
    picks a free port, for tests). The socket is bound to "::", so requests from any interface are answered;
    the reply goes back to the requester's address and scope."""
    scope = scope_id(iface)
    responder = sdp.SdpResponder(address_bytes(address), port, tls, tls_only)
    sock = _udp_socket()
    try:
        if hasattr(socket, "SO_REUSEADDR"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::", sdp_port))
        if scope and hasattr(socket, "IPV6_JOIN_GROUP"):
            # ff02::1 is joined by every interface; joining on the socket makes delivery independent of the
            # system's IPV6_MULTICAST_ALL default.
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                                _ALL_NODES + scope.to_bytes(4, _NATIVE))
            except OSError:
                pass
        if ready is not None:
            ready(sock.getsockname()[1])
        while True:
            got = await _recvfrom(sock, 1000)
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
    if not hasattr(asyncio, "get_running_loop"):  # MicroPython: no scope ids, no sock_connect
        return await asyncio.wait_for_ms(asyncio.open_connection(host, port), timeout_ms)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (host, port, 0, scope)), timeout_ms / 1000)
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
