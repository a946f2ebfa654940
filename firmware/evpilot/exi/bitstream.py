# Bit-packed EXI streams: a bounded reader and a growing writer.
#
# EXI's bit-packed alignment writes every value MSB first with no padding between events. The reader works
# on a copy of the input with three zero bytes appended, so reading up to 17 bits at any position is three
# byte loads and a shift, with a single bounds check against the real end. Every length read from the
# stream is checked against the bits that remain before anything is allocated.

from evpilot.errors import ExiError

_PAD = b"\x00\x00\x00"
# Unsigned integers: 7 bits per octet. 32 octets (224 bits) cover every xs:integer ISO 15118 carries
# (X509SerialNumber is at most 20 octets, RFC 5280).
_MAX_UINT_OCTETS = 32


class BitReader:
    def __init__(self, data):
        self.buf = bytes(data) + _PAD
        self.pos = 0
        self.end = len(data) * 8

    def remaining(self):
        return self.end - self.pos

    def bits(self, n):
        """Read n bits (0 <= n <= 17) as an unsigned integer."""
        p = self.pos
        e = p + n
        if e > self.end:
            raise ExiError("unexpected end of stream", None, p)
        self.pos = e
        b = self.buf
        i = p >> 3
        v = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2]
        return (v >> (24 - (p & 7) - n)) & ((1 << n) - 1)

    def uint(self):
        """EXI unsigned integer: 7-bit groups, least significant first, high bit = more follow."""
        v = 0
        shift = 0
        b = self.buf
        for _ in range(_MAX_UINT_OCTETS):
            p = self.pos
            if p + 8 > self.end:
                raise ExiError("unexpected end of stream in an unsigned integer", None, p)
            self.pos = p + 8
            i = p >> 3
            r = p & 7
            if r:
                g = (((b[i] << 8) | b[i + 1]) >> (8 - r)) & 0xFF
            else:
                g = b[i]
            v |= (g & 0x7F) << shift
            if g < 0x80:
                return v
            shift += 7
        raise ExiError("unsigned integer longer than %d octets" % _MAX_UINT_OCTETS, None, self.pos)

    def octets(self, n):
        """Read n whole octets (at any bit position) as bytes; n is checked against what remains."""
        p = self.pos
        if n * 8 > self.end - p:
            raise ExiError("length %d exceeds the %d bits left" % (n, self.end - p), None, p)
        self.pos = p + n * 8
        i = p >> 3
        r = p & 7
        b = self.buf
        if not r:
            return b[i:i + n]
        if not n:
            return b""
        # Shift the n + 1 bytes that hold the value into place; the top byte then holds only the r bits
        # that came before the value, and is dropped.
        return (int.from_bytes(b[i:i + n + 1], "big") >> (8 - r)).to_bytes(n + 1, "big")[1:]


class BitWriter:
    def __init__(self):
        self.buf = bytearray()
        self.acc = 0  # pending bits, fewer than 8
        self.n = 0

    def bits(self, v, n):
        acc = (self.acc << n) | v
        k = self.n + n
        buf = self.buf
        while k >= 8:
            k -= 8
            buf.append((acc >> k) & 0xFF)
        self.acc = acc & ((1 << k) - 1)
        self.n = k

    def uint(self, v):
        while v > 0x7F:
            self.bits((v & 0x7F) | 0x80, 8)
            v >>= 7
        self.bits(v, 8)

    def octets(self, data):
        k = self.n
        if not k:
            self.buf.extend(data)
            return
        n = len(data)
        if not n:
            return
        # Shift the whole block by the k pending bits in one big-integer operation.
        v = (self.acc << (8 * n)) | int.from_bytes(data, "big")
        total = k + 8 * n
        keep = total & 7  # == k
        self.buf.extend((v >> keep).to_bytes(n, "big"))
        self.acc = v & ((1 << keep) - 1)
        self.n = keep

    def getvalue(self):
        out = bytes(self.buf)
        if self.n:
            out += bytes(((self.acc << (8 - self.n)) & 0xFF,))
        return out
