# Table-driven schema-informed EXI (bit-packed, non-strict, first-level productions only).
#
# How this works: the generator (host/evpilot_host/exigen.py) turns each schema set into a tables module:
#   NAMES   local names of elements and attributes (the dict keys of a document)
#   VALUES  value types: (V_STRING, maxlen) (V_BINARY, maxlen) (V_BOOL, 0, 1) (V_UINT, max) (V_INT, min, max)
#           (V_NBIT, min, bits, max) (V_ENUM, values, bits) (V_UNSUPPORTED, why)
#   ELEMS   element entries, one int each: name | start state << 10, or name | value type << 10 | BARE;
#           ABSTRACT marks an abstract substitution-group head: it has an event code, never a document
#   ATTRS   attribute entries: name | value type << 10
#   PRODS   one int per production: kind (bits 0-2) | F_LIST | F_ALT | F_COUNTED | argument << 6 (10 bits)
#           | next state << 16; a state's productions are PRODS[STATES[s]:STATES[s + 1]]
#   (ELEMS, ATTRS, PRODS and STATES are arrays: 4 or 2 bytes an entry, no object per state on a board)
#   COUNTED state -> (min, max) for states that repeat one element a bounded number of times
#   DOC     element entries of the document grammar (global elements, sorted); SE(*) follows them
#   FRAG    element entries of the fragment grammar (all element names, sorted); SE(*) and ED follow
# An event code is the index of the production among those available in the state, written in
# ceil(log2(n + 1)) bits: non-strict grammars keep one more code for second-level events, which ISO 15118
# never uses (an escape code is rejected). A counted state offers only its loop production while fewer
# than min occurrences were read and drops it once max were read, exactly like the unrolled grammar of the
# EXI specification. A simple-typed element is always CH [value] then EE: 1-bit codes around the value.
#
# Documents are plain data: dicts keyed by local names; a repeatable element is a list; a simple-typed
# element is its bare value; attributes and simple content ("CONTENT") of a complex element are keys of its
# dict. Binary values are bytes (a hex string is accepted when encoding: the JSON view).

from evpilot.errors import ExiError
from evpilot.exi.bitstream import BitReader, BitWriter

P_AT = 0
P_SE = 1
P_EE = 2
P_CH = 3
P_CHU = 4
P_SEANY = 5
P_ATANY = 6
F_LIST = 8
F_ALT = 16
F_COUNTED = 32
BARE = 1 << 24
ABSTRACT = 1 << 25

V_STRING = 0
V_BINARY = 1
V_BOOL = 2
V_UINT = 3
V_INT = 4
V_NBIT = 5
V_ENUM = 6
V_UNSUPPORTED = 7

CONTENT = "CONTENT"
_HEADER = 0x80  # distinguishing bits 10, no options, version 1 ([V2G2-099])
_MAX_DEPTH = 24
_MAX_FRAGMENT_ELEMENTS = 64


def _prepend(err, name):
    err.path = name if not err.path else name + "/" + err.path
    return err


def bit_length(n):
    """int.bit_length(), which MicroPython lacks."""
    b = 0
    while n:
        n >>= 1
        b += 1
    return b


# Event-code widths: _WIDTH[n] = ceil(log2(n + 1)) bits for a state with n productions (n < 512).
_WIDTH = bytes(bit_length(i) for i in range(512))


class Grammar:
    """One schema set's tables, with the decoder and encoder that interpret them."""

    def __init__(self, name, tables):
        self.name = name
        self.names = tables.NAMES
        self.values = tables.VALUES
        self.elems = tables.ELEMS
        self.attrs = tables.ATTRS
        self.states = tables.STATES
        self.prods = tables.PRODS
        self.counted = tables.COUNTED
        self.doc = tables.DOC
        self.frag = tables.FRAG
        self._doc_index = None
        self._frag_index = None

    # ---- decoding -------------------------------------------------------------------------------------

    def decode(self, data):
        r = BitReader(data)
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
        for _ in range(_MAX_FRAGMENT_ELEMENTS):
            code = r.bits(width)
            if code == n + 1:
                return out
            if code >= n:
                raise ExiError("fragment holds an undeclared element (code %d)" % code, None, r.pos)
            name, value = self._element(r, self.frag[code])
            if name in out:
                raise ExiError("fragment repeats element " + name, None, r.pos)
            out[name] = value
        raise ExiError("fragment holds more than %d elements" % _MAX_FRAGMENT_ELEMENTS, None, r.pos)

    def _header(self, r):
        if r.end < 8:
            raise ExiError("stream too short for an EXI header", None, 0)
        h = r.bits(8)
        if h != _HEADER:
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
            raise _prepend(err, name)

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
                return "" if k == V_STRING else b""
            raise ExiError("unsupported second-level event", None, r.pos)
        v = self._value(r, vt)
        if r.bits(1):
            raise ExiError("unexpected second-level event", None, r.pos)
        return v

    def _fixed(self, t, v, r):
        k = t[0]
        if k == V_NBIT:
            # Deployed codecs accept any value the n bits carry, past the schema's maximum (real cars send
            # ChargingProfileEntryMaxNumberOfPhasesInUse 4 in a 1..3 field); so do we.
            return t[1] + v
        if k == V_BOOL:
            return v == 1
        if v >= len(t[1]):
            raise ExiError("enumeration index %d out of range" % v, None, r.pos)
        return t[1][v]

    def _content(self, r, s, depth):
        """Decode a complex element's attributes and content from grammar state s; returns its dict."""
        if depth > _MAX_DEPTH:
            raise ExiError("elements nested deeper than %d" % _MAX_DEPTH, None, r.pos)
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
                if prods[base] & F_COUNTED:
                    lo, hi = self.counted[s]
                    if count < lo:
                        n = 1
                    elif count >= hi:
                        base += 1
                        n -= 1
                # The event code, read inline: this loop is the codec's hot path.
                w = _WIDTH[n]
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
                        # value, EE code (1 bit). _bare does the rest (and the same, slower).
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
                            value = t[1] + (v >> 1) if k == V_NBIT else self._fixed(t, v >> 1, r)
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
                    d[CONTENT] = self._string(r, 0)
                else:
                    raise ExiError("wildcard events (SE(*), AT(*)) are not supported", None, r.pos)
                nxt = x >> 16
                count = count + 1 if nxt == s else 1
                s = nxt
        except ExiError as err:
            if child is not None:
                _prepend(err, child)
            raise

    def _value(self, r, vt):
        t = self.values[vt]
        k = t[0]
        if k == V_NBIT:
            return t[1] + r.bits(t[2])
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
                raise ExiError("value %d above its maximum %d" % (v, t[1]), None, r.pos)
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
            return r.octets(n)
        if k == V_STRING:
            return self._string(r, t[1])
        raise ExiError("value type not supported: " + str(t[1]), None, r.pos)

    def _string(self, r, maxlen):
        n = r.uint()
        if n < 2:
            raise ExiError("string table reference (ISO 15118 uses literal strings only)", None, r.pos)
        n -= 2
        if maxlen and n > maxlen:
            raise ExiError("string length %d above its maximum %d" % (n, maxlen), None, r.pos)
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

    # ---- encoding -------------------------------------------------------------------------------------

    def _index(self, entries):
        idx = {}
        for code, entry in enumerate(entries):
            name = self.names[self.elems[entry] & 1023]
            if name not in idx:  # a local name in several namespaces: the first in EXI order
                idx[name] = code
        return idx

    def encode(self, doc):
        if not isinstance(doc, dict) or len(doc) != 1:
            raise ExiError("a document is a dict with exactly one root element")
        if self._doc_index is None:
            self._doc_index = self._index(self.doc)
        for name in doc:
            code = self._doc_index.get(name)
            if code is None or self.elems[self.doc[code]] & ABSTRACT:
                raise ExiError("%s is not a root element of schema set %s" % (name, self.name))
            w = BitWriter()
            w.bits(_HEADER, 8)
            w.bits(code, bit_length(len(self.doc)))
            self._encode_element(w, self.doc[code], doc[name])
            return w.getvalue()

    def encode_fragment(self, doc):
        if not isinstance(doc, dict) or not doc:
            raise ExiError("a fragment is a dict of one or more elements")
        if self._frag_index is None:
            self._frag_index = self._index(self.frag)
        n = len(self.frag)
        width = bit_length(n + 1)
        w = BitWriter()
        w.bits(_HEADER, 8)
        for name in doc:
            code = self._frag_index.get(name)
            if code is None or self.elems[self.frag[code]] & ABSTRACT:
                raise ExiError("%s is not an element of schema set %s" % (name, self.name))
            w.bits(code, width)
            self._encode_element(w, self.frag[code], doc[name])
        w.bits(n + 1, width)
        return w.getvalue()

    def _encode_element(self, w, entry, value):
        e = self.elems[entry]
        try:
            self._encode_child(w, e, value, 0)
        except ExiError as err:
            raise _prepend(err, self.names[e & 1023])

    def _encode_child(self, w, e, v, depth):
        if e & BARE:
            vt = (e >> 10) & 0x3FFF
            t = self.values[vt]
            k = t[0]
            if k == V_NBIT:
                if not isinstance(v, int) or not 0 <= v - t[1] < (1 << t[2]):
                    raise ExiError("expected an integer in [%d, %d], got %r" % (t[1], t[3], v))
                w.bits((v - t[1]) << 1, t[2] + 2)
            elif k == V_ENUM:
                w.bits(self._enum_index(t, v) << 1, t[2] + 2)
            elif k == V_BOOL and (v is True or v is False):
                w.bits(2 if v else 0, 3)
            else:
                w.bits(0, 1)
                self._encode_value(w, vt, v)
                w.bits(0, 1)
            return
        if depth > _MAX_DEPTH:
            raise ExiError("elements nested deeper than %d" % _MAX_DEPTH)
        if not isinstance(v, dict):
            raise ExiError("expected a dict of child elements, got " + type(v).__name__)
        self._encode_content(w, e >> 10, v, depth)

    def _encode_content(self, w, s, d, depth):
        names = self.names
        states = self.states
        prods = self.prods
        elems = self.elems
        values = self.values
        taken = {}  # keys of d written -> items written
        lists = False
        count = 0
        while True:
            base = states[s]
            n = states[s + 1] - base
            if prods[base] & F_COUNTED:
                lo, hi = self.counted[s]
                if count < lo:
                    n = 1
                elif count >= hi:
                    base += 1
                    n -= 1
            # The first production that has data left in d wins; EE only when none has.
            ee = -1
            code = 0
            key = None
            while code < n:
                x = prods[base + code]
                kind = x & 7
                if kind == P_SE:
                    e = elems[(x >> 6) & 1023]
                    if e & ABSTRACT:  # has a code, but cannot stand in a document: skip it
                        code += 1
                        continue
                    key = names[e & 1023]
                    v = d.get(key)
                    if v is not None:
                        if x & F_LIST:
                            if not isinstance(v, list):
                                raise ExiError("%s repeats: expected a list" % key)
                            if taken.get(key, 0) < len(v):
                                break
                        else:
                            # A position that cannot repeat is never offered again once passed (it would be
                            # a list otherwise), so it needs no bookkeeping.
                            break
                elif kind == P_EE:
                    ee = code
                elif kind == P_AT:
                    key = names[self.attrs[(x >> 6) & 1023] & 1023]
                    if key in d and key not in taken and not x & F_ALT:
                        break
                elif kind == P_CH or kind == P_CHU:
                    key = CONTENT
                    if key in d and key not in taken:
                        break
                code += 1
            if code == n:
                if ee < 0:
                    raise ExiError("missing " + self._expected(base, n))
                w.bits(ee, _WIDTH[n])
                if len(taken) != len(d) or lists:
                    self._check_all_taken(d, taken)
                return
            cw = _WIDTH[n]
            if kind == P_SE:
                if x & F_LIST:
                    i = taken.get(key, 0)
                    taken[key] = i + 1
                    lists = True
                    v = v[i]
                else:
                    taken[key] = 1
                try:
                    if e & BARE:
                        # Simple-typed elements of the charge loop, inline: the event code, CH code, value
                        # and EE code in as few writes as possible. _encode_child does the rest.
                        t = values[(e >> 10) & 0x3FFF]
                        k = t[0]
                        if k == V_NBIT and isinstance(v, int) and 0 <= v - t[1] < (1 << t[2]):
                            w.bits((code << (t[2] + 2)) | ((v - t[1]) << 1), cw + t[2] + 2)
                        elif k == V_ENUM:
                            w.bits((code << (t[2] + 2)) | (self._enum_index(t, v) << 1), cw + t[2] + 2)
                        elif k == V_BOOL and (v is True or v is False):
                            w.bits((code << 3) | (2 if v else 0), cw + 3)
                        elif k == V_INT and isinstance(v, int) and (t[1] is None or v >= t[1]) and (
                                t[2] is None or v <= t[2]):
                            if v < 0:
                                w.bits((code << 2) | 1, cw + 2)
                                w.uint(-v - 1)
                            else:
                                w.bits(code << 2, cw + 2)
                                w.uint(v)
                            w.bits(0, 1)
                        else:
                            w.bits(code, cw)
                            self._encode_child(w, e, v, depth + 1)
                    else:
                        w.bits(code, cw)
                        self._encode_child(w, e, v, depth + 1)
                except ExiError as err:
                    raise _prepend(err, key)
                nxt = x >> 16
                count = count + 1 if nxt == s else 1
                s = nxt
                continue
            w.bits(code, cw)
            taken[key] = 1
            if kind == P_AT:
                try:
                    self._encode_value(w, self.attrs[(x >> 6) & 1023] >> 10, d[key])
                except ExiError as err:
                    raise _prepend(err, "@" + key)
            elif kind == P_CH:
                self._encode_value(w, (x >> 6) & 1023, d[key])
            else:
                self._encode_string(w, d[key], 0)
            nxt = x >> 16
            count = count + 1 if nxt == s else 1
            s = nxt

    def _expected(self, base, n):
        for i in range(base, base + n):
            x = self.prods[i]
            kind = x & 7
            if kind == P_SE:
                return self.names[self.elems[(x >> 6) & 1023] & 1023]
            if kind == P_AT:
                return "@" + self.names[self.attrs[(x >> 6) & 1023] & 1023]
            if kind == P_CH:
                return CONTENT
        return "content"

    def _check_all_taken(self, d, taken):
        """After EE: every key of d was written, and every item of its lists."""
        for key in taken:
            v = d[key]
            if isinstance(v, list) and taken[key] != len(v):
                raise ExiError("%s: %d items where at most %d fit here" % (key, len(v), taken[key]))
        for key in d:
            if key not in taken:
                v = d[key]
                if v is None or v == []:
                    continue
                raise ExiError("unexpected or misplaced element " + str(key))

    def _enum_index(self, t, v):
        try:
            return t[1].index(v)
        except ValueError:
            raise ExiError("%r is not one of %s" % (v, ", ".join(str(x) for x in t[1])))

    def _encode_value(self, w, vt, v):
        t = self.values[vt]
        k = t[0]
        if k == V_NBIT:
            if not isinstance(v, int) or not 0 <= v - t[1] < (1 << t[2]):
                raise ExiError("expected an integer in [%d, %d], got %r" % (t[1], t[3], v))
            w.bits(v - t[1], t[2])
        elif k == V_ENUM:
            w.bits(self._enum_index(t, v), t[2])
        elif k == V_BOOL:
            if v is True or v is False or v == 0 or v == 1:
                w.bits(1 if v else 0, 1)
            else:
                raise ExiError("expected a boolean, got %r" % (v,))
        elif k == V_UINT:
            if not isinstance(v, int) or v < 0 or (t[1] and v > t[1]):
                raise ExiError("expected an unsigned integer <= %d, got %r" % (t[1], v))
            w.uint(v)
        elif k == V_INT:
            if not isinstance(v, int) or (t[1] is not None and v < t[1]) or (t[2] is not None and v > t[2]):
                raise ExiError("expected an integer in range, got %r" % (v,))
            if v < 0:
                w.bits(1, 1)
                w.uint(-v - 1)
            else:
                w.bits(0, 1)
                w.uint(v)
        elif k == V_BINARY:
            if isinstance(v, str):
                try:
                    v = bytes.fromhex(v)
                except ValueError:
                    raise ExiError("expected bytes or a hex string")
            elif not isinstance(v, (bytes, bytearray)):
                raise ExiError("expected bytes, got " + type(v).__name__)
            if t[1] and len(v) > t[1]:
                raise ExiError("%d bytes where at most %d fit" % (len(v), t[1]))
            w.uint(len(v))
            w.octets(v)
        elif k == V_STRING:
            self._encode_string(w, v, t[1])
        else:
            raise ExiError("value type not supported: " + str(t[1]))

    def _encode_string(self, w, v, maxlen):
        if not isinstance(v, str):
            raise ExiError("expected a string, got " + type(v).__name__)
        if maxlen and len(v) > maxlen:
            raise ExiError("string of %d characters where at most %d fit" % (len(v), maxlen))
        w.uint(len(v) + 2)
        raw = v.encode()
        if len(raw) == len(v):
            w.octets(raw)
        else:
            for ch in v:
                w.uint(ord(ch))
