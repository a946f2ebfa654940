# V2GTP framing (ISO 15118-2 clause 7.8.3, DIN SPEC 70121 clause 8.6.2): an 8-byte header, then the
# payload. Header: protocol version 0x01, its inverse 0xFE, payload type (2 bytes, big-endian), payload
# length (4 bytes, big-endian).
#
# parse() reads one message from a buffer and returns (payload_type, payload, bytes used), or None when the
# buffer holds less than one whole message; a bad header or a length over the limit raises PeerError
# before anything is allocated (ISO 15118-2 [V2G2-065]..[V2G2-068]).

from evpilot.compat import const
from evpilot.errors import PeerError

HEADER_LEN = const(8)
VERSION = const(0x01)

# Payload types (ISO 15118-2 Table 10; ISO 15118-20 Table 13).
EXI = const(0x8001)  # SupportedAppProtocol, DIN SPEC 70121 and ISO 15118-2 messages; ISO 15118-20 common
EXI_20_AC = const(0x8002)
EXI_20_DC = const(0x8003)
EXI_20_WPT = const(0x8004)
EXI_20_ACDP = const(0x8005)
SDP_REQUEST = const(0x9000)
SDP_RESPONSE = const(0x9001)

# Largest payload accepted by default: CertificateInstallationRes is about 4.1 KB in practice; the
# standards allow more, so 8 KB with room to spare ([V2G2-066] leaves the limit to the implementation).
DEFAULT_MAX_PAYLOAD = const(16384)


def header(payload_type, n):
    """The 8-byte header of a message with an n-byte payload."""
    return bytes((VERSION, VERSION ^ 0xFF, payload_type >> 8, payload_type & 0xFF,
                  (n >> 24) & 0xFF, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF))


def build(payload_type, payload):
    return header(payload_type, len(payload)) + bytes(payload)


def parse_header(buf, max_payload=DEFAULT_MAX_PAYLOAD):
    """(payload_type, payload_length) from the first 8 bytes of buf; raises PeerError on a bad header."""
    if len(buf) < HEADER_LEN:
        raise PeerError("V2GTP header needs 8 bytes, got %d" % len(buf))
    if buf[0] != VERSION or buf[1] != VERSION ^ 0xFF:
        raise PeerError("V2GTP header: protocol version 0x%02x/0x%02x, expected 0x01/0xfe" % (buf[0], buf[1]))
    ptype = (buf[2] << 8) | buf[3]
    n = (buf[4] << 24) | (buf[5] << 16) | (buf[6] << 8) | buf[7]
    if n > max_payload:
        raise PeerError("V2GTP payload length %d exceeds the limit of %d bytes" % (n, max_payload))
    return ptype, n


def parse(buf, max_payload=DEFAULT_MAX_PAYLOAD):
    """One message from the start of buf: (payload_type, payload, used) or None if incomplete."""
    if len(buf) < HEADER_LEN:
        return None
    ptype, n = parse_header(buf, max_payload)
    if len(buf) < HEADER_LEN + n:
        return None
    return ptype, bytes(buf[HEADER_LEN:HEADER_LEN + n]), HEADER_LEN + n


# Room after a payload in the receive buffer, so that the EXI decoder reads it in place (exi.decode(...,
# padded=True) needs 3 bytes past the stream's end; their values do not matter).
PAD = const(3)


class Reassembler:
    """Cuts a TCP byte stream into V2GTP messages, copying each byte once: from the chunk it arrives in into
    the one buffer that holds the message.

    feed(data) yields (payload_type, payload) for each whole message now available. payload is a memoryview
    of the receive buffer with PAD spare bytes after the payload (for exi.decode(..., padded=True)): it is
    valid until the generator is resumed, so use it (decode it) in the loop body, or copy it. The buffer is
    kept for the next message when that fits, and made for a larger one once its header says how large: no
    buffer grows chunk by chunk, and nothing beyond one message's header and payload (max_payload + 8 bytes)
    is ever held. A header that announces more than max_payload raises PeerError before anything is
    allocated. `reserve` bytes are allocated up front (a board's session makes its largest buffer while the
    heap is still in one piece)."""

    def __init__(self, max_payload=DEFAULT_MAX_PAYLOAD, reserve=256):
        self.max_payload = max_payload
        self.head = bytearray(HEADER_LEN)
        self.have = 0  # bytes of the current message taken (header first)
        self.ptype = 0
        self.need = -1  # payload length, once the header is complete
        self.buf = bytearray(min(reserve, max_payload) + PAD)

    def busy(self):
        """True while buf holds part of a message's payload."""
        return self.have > HEADER_LEN

    def feed(self, data):
        data = memoryview(data)
        at = 0
        end = len(data)
        while at < end:
            if self.need < 0:  # header
                take = min(HEADER_LEN - self.have, end - at)
                self.head[self.have:self.have + take] = data[at:at + take]
                self.have += take
                at += take
                if self.have < HEADER_LEN:
                    return
                self.ptype, self.need = parse_header(self.head, self.max_payload)
                if len(self.buf) < self.need + PAD:
                    self.buf = None  # the old buffer can go before the new one is made
                    self.buf = bytearray(self.need + PAD)
            got = self.have - HEADER_LEN
            take = min(self.need - got, end - at)
            if take:
                self.buf[got:got + take] = data[at:at + take]
                self.have += take
                at += take
            if self.have - HEADER_LEN == self.need:
                n = self.need
                self.have = 0
                self.need = -1
                yield self.ptype, memoryview(self.buf)[:n + PAD]
