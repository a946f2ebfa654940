# The EXI decoder, which interprets the grammar tables over a bit stream (codec.py describes the tables).
#
# The hot path is Decoder._content, one loop iteration per event: event codes and the values of the simple
# elements a charge loop is made of are read inline from the reader's buffer. Every length read from the
# stream is checked against what remains before anything is allocated, and every failure raises ExiError
# with the element path (built on the way out) and the bit position.

from evpilot.errors import ExiError
from evpilot.exi.bitstream import BitReader
from evpilot.exi.format import (
    P_AT,
    P_SE,
    P_EE,
    P_CH,
    P_CHU,
    F_LIST,
    F_COUNTED,
    BARE,
    ABSTRACT,
    V_STRING,
    V_BINARY,
    V_BOOL,
    V_UINT,
    V_INT,
    V_NBIT,
    V_ENUM,
    CONTENT,
    HEADER,
    MAX_DEPTH,
    MAX_FRAGMENT_ELEMENTS,
    WIDTH,
    bit_length,
    prepend,
)


class Decoder:
    def decode(self, data, padded=False):
        r = BitReader(data, padded)
        self._header(r)
        n = len(self.doc)
        code = r.bits(bit_length(n))
        if code >= n:
            raise ExiError("document starts with an undeclared element (code %d)" % code, None, 0)
        name, value = self._element(r, self.doc[code])
        return {name: value}

    def decode_fragment(self, data):
        r = BitReader(data)
        self._header(r)
        n = len(self.frag)
        width = bit_length(n + 1)
        out = {}
        for _ in range(MAX_FRAGMENT_ELEMENTS):
            code = r.bits(width)
            if code == n + 1:
                return out
            if code >= n:
                raise ExiError("fragment holds an undeclared element (code %d)" % code, None, r.pos)
            name, value = self._element(r, self.frag[code])
            if name in out:
                raise ExiError("fragment repeats element " + name, None, r.pos)
            out[name] = value
        raise ExiError("fragment holds more than %d elements" % MAX_FRAGMENT_ELEMENTS, None, r.pos)

    def _header(self, r):
        if r.end < 8:
            raise ExiError("stream too short for an EXI header", None, 0)
        h = r.bits(8)
        if h != HEADER:
            raise ExiError("unsupported EXI header 0x%02x (ISO 15118 uses 0x80)" % h, None, 0)

    def _element(self, r, entry):
        e = self.elems[entry]
        name = self.names[e & 1023]
        if e & ABSTRACT:
            raise ExiError("abstract element " + name, None, r.pos)
        try:
            if e & BARE:
                return name, self._bare(r, (e >> 10) & 0x3FFF)
            return name, self._content(r, e >> 10, 0)
        except ExiError as err:
            raise prepend(err, name)

    def _bare(self, r, vt):
        """A simple-typed element: CH (1-bit code 0), the value, EE (1-bit code 0)."""
        t = self.values[vt]
        k = t[0]
        if k == V_NBIT or k == V_ENUM or k == V_BOOL:
            # Fixed width: both event codes and the value in one read.
            w = t[2]
            v = r.bits(w + 2)
            if v >> (w + 1) or v & 1:
                raise ExiError("unexpected second-level event", None, r.pos)
            return self._fixed(t, v >> 1, r)
        if r.bits(1):
            # Escape to the second level. The one such event seen in practice: EXIficient (Josev) writes an
            # empty string or binary value as EE, second-level code 0 of the 7 a non-strict simple-typed
            # element has (EE, xsi:type, xsi:nil, AT(*), AT(*) untyped, SE(*), CH untyped: 3 bits).
            if r.bits(3) == 0 and (k == V_STRING or k == V_BINARY):
                if t[2]:
                    raise ExiError("empty value below its minimum length %d" % t[2], None, r.pos)
                return "" if k == V_STRING else b""
            raise ExiError("unsupported second-level event", None, r.pos)
        v = self._value(r, vt)
        if r.bits(1):
            raise ExiError("unexpected second-level event", None, r.pos)
        return v

    def _fixed(self, t, v, r):
        k = t[0]
        if k == V_NBIT:
            v += t[1]
            if v > t[3]:
                raise _above(v, t[3], r)
            return v
        if k == V_BOOL:
            return v == 1
        if v >= len(t[1]):
            raise ExiError("enumeration index %d out of range" % v, None, r.pos)
        return t[1][v]

    def _content(self, r, s, depth):
        """Decode a complex element's attributes and content from grammar state s; returns its dict.

        The tables (see format.py): states[s] is the index in prods of state s's first production and
        states[s + 1] that of the next state's, so the state has n productions and its event code is
        WIDTH[n] bits wide (EXI 6.2: the code of the i-th of n productions is i in ceil(log2(n)) bits). A
        production x packs its kind (low 3 bits: SE, EE, AT, CH, ...), flags (F_LIST: the element may repeat,
        so its values collect in a list), the element, attribute or value-type index (bits 6-15) and the
        next state (x >> 16)."""
        if depth > MAX_DEPTH:
            raise ExiError("elements nested deeper than %d" % MAX_DEPTH, None, r.pos)
        names = self.names
        states = self.states
        prods = self.prods
        elems = self.elems
        values = self.values
        buf = r.buf
        d = {}
        count = 0
        child = None
        try:
            while True:
                base = states[s]
                n = states[s + 1] - base
                # A counted state stands for a bounded repetition (maxOccurs 20, 1024, ...) without
                # unrolling it: `count` is how many times we have looped into this same state. Below minOccurs
                # only the first production (the repeated element) is allowed; at maxOccurs it no longer is.
                # The generator puts the repeat first, so both cases just narrow [base, base + n).
                if prods[base] & F_COUNTED:
                    lo, hi = self.counted[s]
                    if count < lo:
                        n = 1
                    elif count >= hi:
                        base += 1
                        n -= 1
                # The event code, read inline: this loop is the codec's hot path. Three bytes from the current
                # byte hold up to 17 bits from any bit position, more than any code (at most 9 bits); the
                # reader keeps three spare bytes after the stream (bitstream.Reader), so buf[i + 2] exists.
                w = WIDTH[n]
                pos = r.pos
                if pos + w > r.end:
                    raise ExiError("unexpected end of stream", None, pos)
                i = pos >> 3
                code = (((buf[i] << 16) | (buf[i + 1] << 8) | buf[i + 2]) >> (24 - (pos & 7) - w)) & ((1 << w) - 1)
                r.pos = pos + w
                if code >= n:
                    raise ExiError("unsupported second-level event (code %d of %d)" % (code, n), None, r.pos)
                x = prods[base + code]
                kind = x & 7
                if kind == P_SE:
                    e = elems[(x >> 6) & 1023]
                    child = names[e & 1023]
                    if e & ABSTRACT:
                        raise ExiError("abstract element " + child, None, r.pos)
                    if e & BARE:
                        # Simple-typed elements, inline for the kinds of the charge loop: CH code (1 bit),
                        # value, EE code (1 bit). _bare does the rest (and the same, slower). For an n-bit
                        # integer, an enumeration or a boolean the three parts are one read of bits + 2: the
                        # top bit is the CH code and the bottom bit the EE code, both must be 0 (1 would be a
                        # second-level event, which ISO 15118 streams never use).
                        t = values[(e >> 10) & 0x3FFF]
                        k = t[0]
                        if k == V_NBIT or k == V_ENUM or k == V_BOOL:
                            w = t[2] + 2
                            pos = r.pos
                            if pos + w > r.end:
                                raise ExiError("unexpected end of stream", None, pos)
                            i = pos >> 3
                            v = (((buf[i] << 16) | (buf[i + 1] << 8) | buf[i + 2]) >> (24 - (pos & 7) - w)) & (
                                (1 << w) - 1)
                            r.pos = pos + w
                            if v >> (w - 1) or v & 1:
                                raise ExiError("unexpected second-level event", None, r.pos)
                            if k == V_NBIT:
                                # The n bits carry up to min + 2**n - 1; the XSD's maxInclusive may be lower
                                # (SoC 0..100 in 7 bits, Multiplier -3..3 in 3): a value above it is not
                                # schema-valid, one compare.
                                value = t[1] + (v >> 1)
                                if value > t[3]:
                                    raise _above(value, t[3], r)
                            else:
                                value = self._fixed(t, v >> 1, r)
                        elif k == V_INT:
                            pos = r.pos
                            if pos + 2 > r.end:
                                raise ExiError("unexpected end of stream", None, pos)
                            i = pos >> 3
                            v = (((buf[i] << 8) | buf[i + 1]) >> (14 - (pos & 7))) & 3  # CH code, sign
                            r.pos = pos + 2
                            if v & 2:
                                raise ExiError("unexpected second-level event", None, r.pos)
                            value = r.uint()
                            if v:
                                value = -value - 1
                            if (t[1] is not None and value < t[1]) or (t[2] is not None and value > t[2]):
                                raise ExiError("integer %d out of range" % value, None, r.pos)
                            pos = r.pos
                            if pos >= r.end:
                                raise ExiError("unexpected end of stream", None, pos)
                            if (buf[pos >> 3] << (pos & 7)) & 0x80:
                                raise ExiError("unexpected second-level event", None, pos)
                            r.pos = pos + 1
                        else:
                            value = self._bare(r, (e >> 10) & 0x3FFF)
                    else:
                        value = self._content(r, e >> 10, depth + 1)
                    if x & F_LIST:
                        lst = d.get(child)
                        if lst is None:
                            d[child] = [value]
                        else:
                            lst.append(value)
                    else:
                        d[child] = value
                    child = None
                elif kind == P_EE:
                    return d
                elif kind == P_AT:
                    a = self.attrs[(x >> 6) & 1023]
                    child = "@" + names[a & 1023]
                    d[child[1:]] = self._value(r, a >> 10)
                    child = None
                elif kind == P_CH:
                    d[CONTENT] = self._value(r, (x >> 6) & 1023)
                elif kind == P_CHU:
                    if CONTENT in d:
                        raise ExiError("mixed content is not supported", None, r.pos)
                    d[CONTENT] = self._string(r, 0, 0)
                else:
                    raise ExiError("wildcard events (SE(*), AT(*)) are not supported", None, r.pos)
                # A production that loops back into the same state counts one more repetition; moving to
                # another state starts that state's count at 1 (we arrive there having taken one element).
                nxt = x >> 16
                count = count + 1 if nxt == s else 1
                s = nxt
        except ExiError as err:
            if child is not None:
                prepend(err, child)
            raise

    def _value(self, r, vt):
        t = self.values[vt]
        k = t[0]
        if k == V_NBIT:
            v = t[1] + r.bits(t[2])
            if v > t[3]:
                raise _above(v, t[3], r)
            return v
        if k == V_ENUM:
            vals = t[1]
            i = r.bits(t[2])
            if i >= len(vals):
                raise ExiError("enumeration index %d out of range" % i, None, r.pos)
            return vals[i]
        if k == V_BOOL:
            return r.bits(1) == 1
        if k == V_UINT:
            v = r.uint()
            if t[1] and v > t[1]:
                raise _above(v, t[1], r)
            if v < t[2]:
                raise ExiError("integer %d below its minimum %d" % (v, t[2]), None, r.pos)
            return v
        if k == V_INT:
            neg = r.bits(1)
            v = r.uint()
            if neg:
                v = -v - 1
            if (t[1] is not None and v < t[1]) or (t[2] is not None and v > t[2]):
                raise ExiError("integer %d out of range" % v, None, r.pos)
            return v
        if k == V_BINARY:
            n = r.uint()
            if t[1] and n > t[1]:
                raise ExiError("binary length %d above its maximum %d" % (n, t[1]), None, r.pos)
            if n < t[2]:
                raise ExiError("binary length %d below its minimum %d" % (n, t[2]), None, r.pos)
            return r.octets(n)
        if k == V_STRING:
            return self._string(r, t[1], t[2])
        raise ExiError("value type not supported: " + str(t[1]), None, r.pos)

    def _string(self, r, maxlen, minlen=0):
        n = r.uint()
        if n < 2:
            raise ExiError("string table reference (ISO 15118 uses literal strings only)", None, r.pos)
        n -= 2
        if maxlen and n > maxlen:
            raise ExiError("string length %d above its maximum %d" % (n, maxlen), None, r.pos)
        if n < minlen:
            raise ExiError("string length %d below its minimum %d" % (n, minlen), None, r.pos)
        if n * 8 > r.remaining():
            raise ExiError("string length %d exceeds the stream" % n, None, r.pos)
        start = r.pos
        raw = r.octets(n)
        for c in raw:
            if c & 0x80:
                break
        else:
            return raw.decode()
        # Some code point above 127: one unsigned integer per character.
        r.pos = start
        chars = []
        for _ in range(n):
            c = r.uint()
            if c > 0x10FFFF or 0xD800 <= c <= 0xDFFF:
                raise ExiError("invalid code point %d" % c, None, r.pos)
            chars.append(chr(c))
        return "".join(chars)


def _above(v, hi, r):
    return ExiError("integer %d above its maximum %d" % (v, hi), None, r.pos)
