# Ethernet II and IPv6 headers, link-local addresses and the Internet checksum.
#
# How this works: a frame is destination MAC (6), source MAC (6), EtherType (2), payload (IEEE 802.3
# clause 3.2; Ethernet II). An IPv6 header (RFC 8200 section 3) follows at offset 14: version/class/flow (4),
# payload length (2), next header (1), hop limit (1), source (16), destination (16); the upper layer starts
# at offset 54. parse() checks every length against the frame before anything is read and returns the
# fields as a tuple; header() writes one into a preallocated buffer with struct.pack_into.
# The checksum (RFC 1071) is the ones' complement sum of 16-bit words. Because 2**16 = 1 (mod 0xFFFF),
# that sum is the big-endian integer of the data reduced mod 0xFFFF, so one int.from_bytes and one `%`
# (both in C on MicroPython and CPython) replace a per-word loop.

import struct

from evpilot.compat import const
from evpilot.errors import PeerError

ETHERTYPE_IPV6 = const(0x86DD)
ETH_HEADER = const(14)
IP_HEADER = const(40)
L4 = const(54)  # where the upper-layer header starts in a frame
PROTO_TCP = const(6)
PROTO_UDP = const(17)
PROTO_ICMPV6 = const(58)
MTU = const(1500)  # Ethernet's IPv6 MTU; also the most we ever accept (RFC 8200 section 5: at least 1280)

ALL_NODES = b"\xff\x02" + bytes(13) + b"\x01"  # ff02::1
UNSPECIFIED = bytes(16)
_SOLICITED = b"\xff\x02" + bytes(9) + b"\x01\xff"  # ff02::1:ffXX:XXXX, RFC 4291 section 2.7.1


def link_local(mac):
    """fe80::/64 with the modified EUI-64 interface identifier of `mac` (RFC 4291 appendix A: the
    universal/local bit flipped, ff:fe in the middle)."""
    if len(mac) != 6:
        raise PeerError("a MAC address has 6 bytes, got %d" % len(mac))
    return b"\xfe\x80" + bytes(6) + bytes((mac[0] ^ 0x02, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]))


def solicited_node(address):
    return _SOLICITED + bytes(address[13:16])


def multicast_mac(address):
    """The Ethernet destination for an IPv6 multicast address (RFC 2464 section 7: 33:33 + last 4 bytes)."""
    return b"\x33\x33" + bytes(address[12:16])


def is_multicast(address):
    return address[0] == 0xFF


def text(address):
    """Uncompressed text of a 16-byte address, for messages."""
    return ":".join("%x" % ((address[i] << 8) | address[i + 1]) for i in range(0, 16, 2))


def _fold(data):
    n = len(data)
    if not n:
        return 0
    v = int.from_bytes(data, "big")
    if n & 1:
        v <<= 8  # an odd length is padded with one zero byte (RFC 1071)
    return v % 0xFFFF


def checksum(src, dst, proto, segment):
    """The upper-layer checksum of `segment` (its checksum field as it is) with the IPv6 pseudo-header
    (RFC 8200 section 8.1: source, destination, upper-layer length, next header). Written into a segment
    whose field was zero, the result makes checksum() of it return 0."""
    n = len(segment)
    s = _fold(src) + _fold(dst) + (n >> 16) + (n & 0xFFFF) + proto + _fold(segment)
    s %= 0xFFFF
    # ones' complement: a non-zero sum that reduced to 0 is 0xFFFF ("negative zero"); every segment has
    # a non-zero next-header in its sum, so the sum is never really 0
    if s == 0:
        s = 0xFFFF
    return (~s) & 0xFFFF


def partial(src, dst, proto, segment, at):
    """True when the checksum field at `at` holds only the pseudo-header's sum: what Linux leaves in a
    frame whose checksum the interface was to fill in (CHECKSUM_PARTIAL, tcp_v6_send_check), as a packet
    socket sees frames a local or veth peer sends with transmit checksum offload on."""
    n = len(segment)
    s = (_fold(src) + _fold(dst) + (n >> 16) + (n & 0xFFFF) + proto) % 0xFFFF
    return ((segment[at] << 8) | segment[at + 1]) == (s or 0xFFFF)


def header(buf, dst_mac, src_mac, src, dst, proto, payload_len, hop_limit=64):
    """Ethernet II and IPv6 headers into buf[0:54]."""
    buf[0:6] = dst_mac
    buf[6:12] = src_mac
    struct.pack_into(">HIHBB", buf, 12, ETHERTYPE_IPV6, 0x60000000, payload_len, proto, hop_limit)
    buf[22:38] = src
    buf[38:54] = dst


def parse(frame):
    """(src_mac, proto, hop_limit, src, dst, payload_len) of an IPv6 frame, or None when the frame is not
    IPv6. Raises PeerError for a frame that claims to be IPv6 and is malformed. The upper layer is
    frame[54:54 + payload_len]; padding after it (short frames) is ignored."""
    n = len(frame)
    if n < ETH_HEADER:
        raise PeerError("Ethernet: frame of %d bytes" % n)
    if frame[12] != 0x86 or frame[13] != 0xDD:
        return None
    if n < L4:
        raise PeerError("IPv6: header cut at %d bytes" % (n - ETH_HEADER))
    if frame[14] >> 4 != 6:
        raise PeerError("IPv6: version %d" % (frame[14] >> 4))
    plen = (frame[18] << 8) | frame[19]
    if plen > n - L4:
        raise PeerError("IPv6: payload length %d, frame holds %d" % (plen, n - L4))
    return bytes(frame[6:12]), frame[20], frame[21], bytes(frame[22:38]), bytes(frame[38:54]), plen


def from_text(value):
    """16 bytes from an address as text ("fe80::1", "ff02::1", a "%scope" suffix ignored) or bytes."""
    if not isinstance(value, str):
        if len(value) != 16:
            raise PeerError("an IPv6 address has 16 bytes, got %d" % len(value))
        return bytes(value)
    s = value.split("%")[0]
    try:
        if s.count("::") > 1:
            raise ValueError(s)
        if "::" in s:
            left, right = s.split("::")
            head = left.split(":") if left else []
            tail = right.split(":") if right else []
            if len(head) + len(tail) > 7:
                raise ValueError(s)
            parts = head + ["0"] * (8 - len(head) - len(tail)) + tail
        else:
            parts = s.split(":")
        if len(parts) != 8:
            raise ValueError(s)
        out = bytearray(16)
        for i in range(8):
            p = parts[i]
            if not 1 <= len(p) <= 4:
                raise ValueError(p)
            v = int(p, 16)
            out[2 * i] = v >> 8
            out[2 * i + 1] = v & 0xFF
        return bytes(out)
    except ValueError:
        raise PeerError("not an IPv6 address: %r" % (value,))
