# A bounded DER reader: the few ASN.1 types an X.509 certificate needs, read from a cursor over bytes.
#
# How this works
# --------------
# Reader(data) walks one level of TLVs between `pos` and `end`. Every length is checked against what is left
# at that level before anything is sliced, only definite lengths in their shortest form are accepted (DER),
# and enter() opens a constructed element as a child Reader one level deeper, up to MAX_DEPTH. Typed
# readers (integer, oid, bit_string, time, string, ...) check the tag, consume exactly one element and
# return a Python value. Whatever is wrong raises DerError (a PeerError) that names the field being read,
# e.g. "DER tbsCertificate.validity.notBefore: length 13 exceeds the 4 bytes left"; IndexError, ValueError
# and UnicodeError never escape (STYLE rule 5).
#
# Times are returned as seconds since 1970-01-01 UTC, computed from the civil date here (no time module).

from evpilot.compat import const
from evpilot.errors import PeerError

# Universal tags (single-byte identifiers, class universal).
BOOLEAN = const(0x01)
INTEGER = const(0x02)
BIT_STRING = const(0x03)
OCTET_STRING = const(0x04)
NULL = const(0x05)
OID = const(0x06)
UTF8_STRING = const(0x0C)
PRINTABLE_STRING = const(0x13)
TELETEX_STRING = const(0x14)
IA5_STRING = const(0x16)
UTC_TIME = const(0x17)
GENERALIZED_TIME = const(0x18)
VISIBLE_STRING = const(0x1A)
BMP_STRING = const(0x1E)
SEQUENCE = const(0x30)
SET = const(0x31)

MAX_DEPTH = const(12)  # a certificate needs 7 levels; extension contents add 3
# ISO 15118-2 allows 800 bytes per certificate; real-world certificates are larger, so the reader takes up
# to this much and chain validation rejects what the profile forbids with its own reason.
MAX_CERT_SIZE = const(2048)

_STRING_TAGS = (UTF8_STRING, PRINTABLE_STRING, TELETEX_STRING, IA5_STRING, VISIBLE_STRING, BMP_STRING)


class DerError(PeerError):
    """Malformed or unsupported DER; `field` names what was being read."""

    def __init__(self, field, problem):
        super().__init__("DER " + field + ": " + problem)
        self.field = field
        self.problem = problem


def context(n, constructed=True):
    """The identifier octet of context-specific tag [n] (n < 31)."""
    return (0xA0 if constructed else 0x80) | n


class Reader:
    """A cursor over data[pos:end]; `field` is the dotted name used in error messages."""

    def __init__(self, data, field="DER", pos=0, end=None, depth=0):
        if not isinstance(data, memoryview):
            data = memoryview(data)
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end
        self.depth = depth
        self.field = field

    def at_end(self):
        return self.pos >= self.end

    def peek(self):
        """The next tag, or None at the end of this level."""
        if self.pos >= self.end:
            return None
        return self.data[self.pos]

    def expect_end(self, field=None):
        if self.pos != self.end:
            raise DerError(field or self.field, "%d unexpected trailing bytes" % (self.end - self.pos))

    def tlv(self, field):
        """Read one element header; return (tag, content_start, content_end) and step over the element."""
        data = self.data
        pos = self.pos
        end = self.end
        if pos >= end:
            raise DerError(field, "missing (no bytes left)")
        tag = data[pos]
        if tag & 0x1F == 0x1F:
            raise DerError(field, "multi-byte tag 0x%02x not supported" % tag)
        pos += 1
        if pos >= end:
            raise DerError(field, "truncated before the length")
        first = data[pos]
        pos += 1
        if first < 0x80:
            length = first
        elif first == 0x80:
            raise DerError(field, "indefinite length (not DER)")
        else:
            count = first & 0x7F
            if count > 2:  # 65535 bytes is far above any certificate we accept
                raise DerError(field, "length of %d octets is too large" % count)
            if pos + count > end:
                raise DerError(field, "truncated inside the length")
            length = 0
            for i in range(count):
                length = (length << 8) | data[pos + i]
            pos += count
            if length < 0x80 or (count == 2 and length < 0x100):
                raise DerError(field, "length not in its shortest form (not DER)")
        if length > end - pos:
            raise DerError(field, "length %d exceeds the %d bytes left" % (length, end - pos))
        self.pos = pos + length
        return tag, pos, pos + length

    def element(self, tag, field):
        """Content (memoryview) of the next element, which must have `tag`."""
        t, start, stop = self.tlv(field)
        if t != tag:
            raise DerError(field, "expected tag 0x%02x, found 0x%02x" % (tag, t))
        return self.data[start:stop]

    def raw(self, field):
        """The whole next element (header and content) as bytes, e.g. tbsCertificate for signatures."""
        start = self.pos
        tag, _, stop = self.tlv(field)
        return tag, bytes(self.data[start:stop])

    def skip(self, field):
        self.tlv(field)

    def enter(self, tag, field):
        """A child Reader over the content of the next element, which must have the constructed `tag`."""
        if self.depth + 1 > MAX_DEPTH:
            raise DerError(field, "nested deeper than %d levels" % MAX_DEPTH)
        t, start, stop = self.tlv(field)
        if t != tag:
            raise DerError(field, "expected tag 0x%02x, found 0x%02x" % (tag, t))
        return Reader(self.data, field, start, stop, self.depth + 1)

    def optional(self, tag):
        return self.peek() == tag

    # --- typed readers -------------------------------------------------------------------------------------

    def integer(self, field, tag=INTEGER):
        """A signed INTEGER of any size."""
        v = self.element(tag, field)
        n = len(v)
        if n == 0:
            raise DerError(field, "empty INTEGER")
        value = int.from_bytes(bytes(v), "big")
        if v[0] & 0x80:
            value -= 1 << (8 * n)
        return value

    def small_int(self, field, limit):
        value = self.integer(field)
        if value < 0 or value > limit:
            raise DerError(field, "value %d outside 0..%d" % (value, limit))
        return value

    def boolean(self, field):
        v = self.element(BOOLEAN, field)
        if len(v) != 1 or v[0] not in (0x00, 0xFF):
            raise DerError(field, "BOOLEAN must be one octet 00 or FF")
        return v[0] == 0xFF

    def null(self, field):
        if len(self.element(NULL, field)):
            raise DerError(field, "NULL with content")

    def oid(self, field):
        """An OBJECT IDENTIFIER as a dotted string ("1.2.840.10045.4.3.2")."""
        return decode_oid(self.element(OID, field), field)

    def bit_string(self, field):
        """(bytes, unused_bits) of a BIT STRING; unused bits must be zero (DER)."""
        v = self.element(BIT_STRING, field)
        if len(v) == 0:
            raise DerError(field, "empty BIT STRING")
        unused = v[0]
        if unused > 7 or (unused and len(v) == 1):
            raise DerError(field, "bad unused-bits count %d" % unused)
        if unused and v[len(v) - 1] & ((1 << unused) - 1):
            raise DerError(field, "unused bits are not zero")
        return bytes(v[1:]), unused

    def octet_string(self, field):
        return bytes(self.element(OCTET_STRING, field))

    def time(self, field):
        """UTCTime or GeneralizedTime as seconds since 1970-01-01 UTC."""
        tag, start, stop = self.tlv(field)
        if tag == UTC_TIME:
            return parse_time(bytes(self.data[start:stop]), False, field)
        if tag == GENERALIZED_TIME:
            return parse_time(bytes(self.data[start:stop]), True, field)
        raise DerError(field, "expected UTCTime or GeneralizedTime, found tag 0x%02x" % tag)

    def string(self, field):
        """Any of the directory string types, as str."""
        tag, start, stop = self.tlv(field)
        if tag not in _STRING_TAGS:
            raise DerError(field, "expected a string, found tag 0x%02x" % tag)
        return decode_string(tag, bytes(self.data[start:stop]), field)


# The OIDs every ISO 15118 certificate carries, by their DER content: decode_oid returns these strings
# without building them (a constant tuple: in flash when the firmware is frozen).
_KNOWN_OIDS = (
    (b"\x2a\x86\x48\xce\x3d\x04\x03\x02", "1.2.840.10045.4.3.2"),
    (b"\x2a\x86\x48\xce\x3d\x02\x01", "1.2.840.10045.2.1"),
    (b"\x2a\x86\x48\xce\x3d\x03\x01\x07", "1.2.840.10045.3.1.7"),
    (b"\x55\x04\x03", "2.5.4.3"),
    (b"\x55\x04\x06", "2.5.4.6"),
    (b"\x55\x04\x0a", "2.5.4.10"),
    (b"\x55\x04\x0b", "2.5.4.11"),
    (b"\x09\x92\x26\x89\x93\xf2\x2c\x64\x01\x19", "0.9.2342.19200300.100.1.25"),
    (b"\x55\x1d\x13", "2.5.29.19"),
    (b"\x55\x1d\x0f", "2.5.29.15"),
    (b"\x55\x1d\x0e", "2.5.29.14"),
    (b"\x55\x1d\x23", "2.5.29.35"),
    (b"\x55\x1d\x25", "2.5.29.37"),
)


def decode_oid(v, field="OID"):
    n = len(v)
    if n == 0 or n > 64:
        raise DerError(field, "OID of %d octets" % n)
    for raw, text in _KNOWN_OIDS:
        if len(raw) == n and raw == v:
            return text
    arcs = []
    value = 0
    fresh = True
    for i in range(n):
        b = v[i]
        if fresh and b == 0x80:
            raise DerError(field, "OID arc with a leading 0x80 octet (not DER)")
        value = (value << 7) | (b & 0x7F)
        fresh = not (b & 0x80)
        if fresh:
            arcs.append(value)
            value = 0
    if not fresh:
        raise DerError(field, "OID ends inside an arc")
    first = arcs[0]
    if first < 40:
        head = "0." + str(first)
    elif first < 80:
        head = "1." + str(first - 40)
    else:
        head = "2." + str(first - 80)
    return head + "".join("." + str(a) for a in arcs[1:])


def decode_string(tag, b, field="string"):
    try:
        if tag == UTF8_STRING:
            return b.decode("utf-8")
        if tag == BMP_STRING:
            if len(b) & 1:
                raise DerError(field, "BMPString of odd length")
            return "".join(chr((b[i] << 8) | b[i + 1]) for i in range(0, len(b), 2))
        if tag == TELETEX_STRING:  # treated as Latin-1, as most libraries do
            return "".join(chr(c) for c in b)
        for c in b:  # PrintableString, IA5String, VisibleString: 7-bit (the PrintableString
            if c > 0x7F:  # alphabet is not enforced: real CAs put '@' or '*' in it)
                raise DerError(field, "non-ASCII octet in a 7-bit string")
        return b.decode()
    except DerError:
        raise
    except Exception:  # UnicodeError (a ValueError on CPython)
        raise DerError(field, "invalid UTF-8")


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of the proleptic Gregorian date y-m-d (H. Hinnant's algorithm)."""
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _digits(s, a, b, field):
    v = 0
    for i in range(a, b):
        c = s[i]
        if c < 0x30 or c > 0x39:
            raise DerError(field, "non-digit in a time")
        v = v * 10 + c - 0x30
    return v


def parse_time(s, generalized, field="time"):
    """YYMMDDHHMMSSZ (UTCTime) or YYYYMMDDHHMMSSZ (GeneralizedTime), as DER requires, to epoch seconds."""
    width = 4 if generalized else 2
    if len(s) != width + 11 or s[len(s) - 1] != 0x5A:  # 'Z'
        raise DerError(field, "time not in the DER form %sMMDDHHMMSSZ" % ("YYYY" if generalized else "YY"))
    year = _digits(s, 0, width, field)
    if not generalized:
        year += 1900 if year >= 50 else 2000  # RFC 5280 4.1.2.5.1
    month = _digits(s, width, width + 2, field)
    day = _digits(s, width + 2, width + 4, field)
    hour = _digits(s, width + 4, width + 6, field)
    minute = _digits(s, width + 6, width + 8, field)
    second = _digits(s, width + 8, width + 10, field)
    if not 1 <= month <= 12:
        raise DerError(field, "month %d" % month)
    mdays = _MONTH_DAYS[month - 1]
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        mdays = 29
    if not 1 <= day <= mdays or hour > 23 or minute > 59 or second > 59:
        raise DerError(field, "date or time out of range")
    return ((days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60 + second


def walk(data, field="DER", depth=0):
    """Check that data is a well-formed run of DER elements, descending into constructed ones; returns the
    number of elements. Used for extension values we do not interpret."""
    r = data if isinstance(data, Reader) else Reader(data, field, depth=depth)
    count = 0
    while not r.at_end():
        tag, start, stop = r.tlv(field)
        count += 1
        if tag & 0x20:
            if r.depth + 1 > MAX_DEPTH:
                raise DerError(field, "nested deeper than %d levels" % MAX_DEPTH)
            count += walk(Reader(r.data, field, start, stop, r.depth + 1), field)
    return count
