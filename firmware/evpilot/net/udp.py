# UDP (RFC 768; over IPv6 the checksum is mandatory, RFC 8200 section 8.1): the header codec and a bounded
# datagram endpoint the stack delivers to (SDP to ff02::1 port 15118 and its answers).

from evpilot.compat import const
from evpilot.errors import PeerError

HEADER = const(8)
MAX_QUEUE = const(4)  # datagrams held for an endpoint that has not read them; more are dropped


def parse(seg):
    """(source port, destination port, payload) of a UDP datagram (checksum checked by the stack)."""
    n = len(seg)
    if n < HEADER:
        raise PeerError("UDP: datagram of %d bytes" % n)
    length = (seg[4] << 8) | seg[5]
    if length < HEADER or length > n:
        raise PeerError("UDP: length %d, datagram has %d" % (length, n))
    return (seg[0] << 8) | seg[1], (seg[2] << 8) | seg[3], seg[HEADER:length]


def build(sport, dport, payload):
    n = HEADER + len(payload)
    m = bytearray(n)
    m[0] = sport >> 8
    m[1] = sport & 0xFF
    m[2] = dport >> 8
    m[3] = dport & 0xFF
    m[4] = n >> 8
    m[5] = n & 0xFF
    m[HEADER:] = payload
    return m


class UdpEndpoint:
    """A bound UDP port: sendto() queues a datagram with the stack, receive() takes one that came."""

    def __init__(self, stack, port):
        self.stack = stack
        self.port = port
        self.queue = []  # (source address, source port, payload bytes), at most MAX_QUEUE
        self.dropped = 0

    def deliver(self, src, sport, payload):
        if len(self.queue) >= MAX_QUEUE:
            self.dropped += 1
            return
        self.queue.append((src, sport, bytes(payload)))

    def receive(self):
        """(address, port, data) of the oldest datagram, or None."""
        return self.queue.pop(0) if self.queue else None

    def sendto(self, data, address, port, now):
        self.stack.send_udp(self.port, address, port, data, now)

    def close(self):
        self.stack.udp_close(self.port)
