# ICMPv6 messages the board needs: neighbour solicitation and advertisement (RFC 4861 sections 4.3, 4.4)
# and echo (RFC 4443 section 4). Parsers take the ICMPv6 message (after the IPv6 header, checksum already
# checked by the stack) and return plain tuples; builders return the message with a zero checksum, which
# the stack fills in.

from evpilot.compat import const
from evpilot.errors import PeerError

ECHO_REQUEST = const(128)
ECHO_REPLY = const(129)
NEIGHBOR_SOLICITATION = const(135)
NEIGHBOR_ADVERTISEMENT = const(136)
OPT_SOURCE_LLADDR = const(1)  # RFC 4861 section 4.6.1
OPT_TARGET_LLADDR = const(2)
NA_ROUTER = const(0x80)
NA_SOLICITED = const(0x40)
NA_OVERRIDE = const(0x20)
MAX_ECHO = const(1232)  # 1280 - IPv6 - ICMPv6 headers: an echo we answer always fits the minimum MTU


def lladdr_option(msg, start, kind):
    """The link-layer address in the first option of `kind` (a 6-byte MAC), or None. Options are checked
    whole: a zero length or one running past the message is malformed (RFC 4861 section 4.6)."""
    i = start
    n = len(msg)
    found = None
    while i < n:
        if n - i < 2:
            raise PeerError("NDP: option header cut at %d" % i)
        size = msg[i + 1] * 8
        if size == 0 or i + size > n:
            raise PeerError("NDP: option of %d bytes at %d, message has %d" % (size, i, n))
        if msg[i] == kind and found is None and size >= 8:
            found = bytes(msg[i + 2:i + 8])
        i += size
    return found


def parse_ns(msg):
    """(target, source MAC or None) of a neighbour solicitation."""
    if len(msg) < 24:
        raise PeerError("NDP: solicitation of %d bytes" % len(msg))
    if msg[1] != 0:
        raise PeerError("NDP: solicitation code %d" % msg[1])
    return bytes(msg[8:24]), lladdr_option(msg, 24, OPT_SOURCE_LLADDR)


def parse_na(msg):
    """(flags, target, target MAC or None) of a neighbour advertisement."""
    if len(msg) < 24:
        raise PeerError("NDP: advertisement of %d bytes" % len(msg))
    if msg[1] != 0:
        raise PeerError("NDP: advertisement code %d" % msg[1])
    return msg[4], bytes(msg[8:24]), lladdr_option(msg, 24, OPT_TARGET_LLADDR)


def ns(target, mac):
    """A solicitation for `target` with our source link-layer address (omit `mac` from ::)."""
    m = bytearray(24 + (8 if mac else 0))
    m[0] = NEIGHBOR_SOLICITATION
    m[8:24] = target
    if mac:
        m[24] = OPT_SOURCE_LLADDR
        m[25] = 1
        m[26:32] = mac
    return m


def na(target, mac, flags):
    m = bytearray(32)
    m[0] = NEIGHBOR_ADVERTISEMENT
    m[4] = flags
    m[8:24] = target
    m[24] = OPT_TARGET_LLADDR
    m[25] = 1
    m[26:32] = mac
    return m


def echo_reply(request):
    """The reply to an echo request: the same identifier, sequence and data (RFC 4443 section 4.2)."""
    if len(request) < 8:
        raise PeerError("ICMPv6: echo request of %d bytes" % len(request))
    m = bytearray(request)
    m[0] = ECHO_REPLY
    m[2] = 0
    m[3] = 0
    return m


def echo_request(ident, seq, data=b""):
    m = bytearray(8 + len(data))
    m[0] = ECHO_REQUEST
    m[4] = ident >> 8
    m[5] = ident & 0xFF
    m[6] = seq >> 8
    m[7] = seq & 0xFF
    m[8:] = data
    return m
