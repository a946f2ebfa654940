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


def build(payload_type, payload):
    n = len(payload)
    return bytes((VERSION, VERSION ^ 0xFF, payload_type >> 8, payload_type & 0xFF,
                  (n >> 24) & 0xFF, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF)) + bytes(payload)


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


class Reassembler:
    """Cuts a TCP byte stream into V2GTP messages.

    feed(data) returns the whole messages now available as [(payload_type, payload)] and keeps the rest. The
    buffer never holds more than one message's header and payload (max_payload + 8 bytes): a header that
    announces more raises PeerError before its payload is buffered."""

    def __init__(self, max_payload=DEFAULT_MAX_PAYLOAD):
        self.max_payload = max_payload
        self.buf = bytearray()

    def feed(self, data):
        self.buf.extend(data)
        out = []
        while True:
            if len(self.buf) >= HEADER_LEN:
                parse_header(self.buf, self.max_payload)  # raises before the payload is collected
            msg = parse(self.buf, self.max_payload)
            if msg is None:
                return out
            ptype, payload, used = msg
            self.buf = self.buf[used:]
            out.append((ptype, payload))
