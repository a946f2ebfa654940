# Bit-packed EXI streams: a bounded reader and a writer that grows its buffer or streams it to a sink.
#
# EXI's bit-packed alignment writes every value MSB first with no padding between events. The reader works
# on a copy of the input with three zero bytes appended (or, padded=True, on the caller's buffer when it
# ends with 3 spare bytes), so reading up to 17 bits at any position is three byte loads and a shift, with a
# single bounds check against the real end. Every length read from the
# stream is checked against the bits that remain before anything is allocated.

from evpilot.errors import ExiError

_PAD = b"\x00\x00\x00"
_FIRST = 128  # a writer's first buffer: the charge loop's messages fit
_CHUNK = 256  # what a writer with a sink hands over at a time
_SLACK = 8  # bytes a writer keeps free beyond `limit`: one bits() call writes at most this many
# Unsigned integers: 7 bits per octet. 32 octets (224 bits) cover every xs:integer ISO 15118 carries
# (X509SerialNumber is at most 20 octets, RFC 5280).
_MAX_UINT_OCTETS = 32


class BitReader:
    def __init__(self, data, padded=False):
        """padded: the caller's `data` ends with 3 bytes that are not part of the stream (any values); it is
        then read in place instead of copied (a large message's receive buffer can leave that room)."""
        if padded:
            if len(data) < len(_PAD):
                raise ExiError("a padded stream needs its 3 bytes of padding", None, 0)
            self.buf = data if isinstance(data, bytes) else memoryview(data)
            self.end = (len(data) - len(_PAD)) * 8
        else:
            self.buf = bytes(data) + _PAD
            self.end = len(data) * 8
        self.pos = 0

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
            return bytes(b[i:i + n])  # a view's slice (padded input) becomes bytes; bytes' slice is bytes
        if not n:
            return b""
        # Shift the n + 1 bytes that hold the value into place; the top byte then holds only the r bits
        # that came before the value, and is dropped.
        return (int.from_bytes(b[i:i + n + 1], "big") >> (8 - r)).to_bytes(n + 1, "big")[1:]


class BitWriter:
    """Bits MSB first into a bytearray that doubles when full (a handful of reallocations per message, where
    appending byte by byte re-allocates every 8 bytes on MicroPython and leaves holes in a small heap). With
    `sink`, a full buffer of _CHUNK bytes is handed to sink(view) instead and reused: the output is never
    held whole (XMLDSig hashes an element this way); getvalue() then passes on the rest and returns b""."""

    def __init__(self, sink=None):
        self.buf = bytearray(_CHUNK if sink is not None else _FIRST)
        self.limit = len(self.buf) - _SLACK  # bits() writes without a check while len <= limit
        self.len = 0  # bytes of buf in use
        self.acc = 0  # pending bits, fewer than 8
        self.n = 0
        self.sink = sink

    def _room(self, need):
        """The buffer, with room for `need` more bytes after len (and the slack bits() relies on)."""
        buf = self.buf
        if self.sink is not None:
            self.sink(memoryview(buf)[:self.len])
            self.len = 0
            if need + _SLACK <= len(buf):
                return buf
        size = len(buf) * 2
        while size < self.len + need + _SLACK:
            size *= 2
        new = bytearray(size)
        new[:self.len] = memoryview(buf)[:self.len]
        self.buf = new
        self.limit = size - _SLACK
        return new

    def bits(self, v, n):
        """Write the n low bits of v (n + 7 <= 8 * _SLACK: the encoder's merged writes are at most 40 bits)."""
        acc = (self.acc << n) | v
        k = self.n + n
        if k >= 8:
            i = self.len
            if i > self.limit:
                self._room(_SLACK)
                i = self.len
            buf = self.buf
            while k >= 8:
                k -= 8
                buf[i] = (acc >> k) & 0xFF
                i += 1
            self.len = i
        self.acc = acc & ((1 << k) - 1)
        self.n = k

    def uint(self, v):
        while v > 0x7F:
            self.bits((v & 0x7F) | 0x80, 8)
            v >>= 7
        self.bits(v, 8)

    def octets(self, data):
        k = self.n
        n = len(data)
        if not n:
            return
        if k:
            # Shift the whole block by the k pending bits in one big-integer operation.
            v = (self.acc << (8 * n)) | int.from_bytes(data, "big")
            self.acc = v & ((1 << k) - 1)
            data = (v >> k).to_bytes(n, "big")
        if self.sink is not None and n > len(self.buf):
            self._room(0)  # hand over what is buffered, then the block itself
            self.sink(data)
            return
        i = self.len
        if i + n > len(self.buf):
            self._room(n)
            i = self.len
        self.buf[i:i + n] = data
        self.len = i + n

    def getvalue(self):
        """The bytes written, the last one padded with zero bits (b"" with a sink: the rest goes to it)."""
        i = self.len
        buf = self.buf
        if self.n:
            if i == len(buf):
                buf = self._room(1)
                i = self.len
            buf[i] = (self.acc << (8 - self.n)) & 0xFF
            i += 1
        if self.sink is not None:
            self.sink(memoryview(buf)[:i])
            self.len = self.n = self.acc = 0
            return b""
        return bytes(memoryview(buf)[:i])
