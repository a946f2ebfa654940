# Table-driven schema-informed EXI (bit-packed, non-strict, first-level productions only).
#
# How this works: the generator (host/evpilot_host/exigen.py) turns each schema set into a tables module:
#   NAMES   local names of elements and attributes (the dict keys of a document)
#   VALUES  value types: (V_STRING, maxlen) (V_BINARY, maxlen) (V_BOOL,) (V_UINT, max) (V_INT, min, max)
#           (V_NBIT, min, bits, max) (V_ENUM, values) (V_UNSUPPORTED, why)
#   ELEMS   4 bytes per element entry: name index, start state (bit 15 set: simple type, the value is bare)
#   ATTRS   4 bytes per attribute entry: name index, value type
#   STATES  2 bytes per state: index of its first production (one extra entry closes the last state)
#   PRODS   5 bytes per production: kind | flags, argument (2 bytes), next state (2 bytes)
#   COUNTED state -> (min, max) for states that repeat one element a bounded number of times
#   DOC     element entries of the document grammar (global elements, sorted); SE(*) follows them
#   FRAG    element entries of the fragment grammar (all element names, sorted); SE(*) and ED follow
# A state's event code is the index of the production among those available, written in
# ceil(log2(n + 1)) bits: non-strict grammars always keep one more code for second-level events, which
# ISO 15118 never uses (an escape code is rejected). A counted state offers only its loop production while
# fewer than min occurrences were read and drops it once max were read, exactly like the unrolled grammar of
# the EXI specification.
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
F_LIST = 0x10
F_ALT = 0x20
F_COUNTED = 0x80

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


def _prepend(err, name):
    err.path = name if not err.path else name + "/" + err.path
    err.args = (err.message + " at " + err.path + ("" if err.bit is None else " (bit %d)" % err.bit),)
    return err


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
        self._frag_index = None
        self._doc_index = None

    # ---- decoding -------------------------------------------------------------------------------------

    def decode(self, data):
        r = BitReader(data)
        self._header(r)
        n = len(self.doc)
        code = r.bits(n.bit_length())
        if code >= n:
            raise ExiError("document starts with an undeclared element (code %d)" % code, None, 0)
        name, value = self._element(r, self.doc[code], 0)
        return {name: value}

    def decode_fragment(self, data):
        r = BitReader(data)
        self._header(r)
        n = len(self.frag)
        width = (n + 1).bit_length()
        out = {}
        for _ in range(64):
            code = r.bits(width)
            if code == n + 1:
                return out
            if code >= n:
                raise ExiError("fragment holds an undeclared element (code %d)" % code, None, r.pos)
            name, value = self._element(r, self.frag[code], 0)
            if name in out:
                raise ExiError("fragment repeats element " + name, None, r.pos)
            out[name] = value
        raise ExiError("fragment holds more than 64 elements", None, r.pos)

    def _header(self, r):
        if r.end < 8:
            raise ExiError("stream too short for an EXI header", None, 0)
        h = r.bits(8)
        if h != _HEADER:
            raise ExiError("unsupported EXI header 0x%02x (ISO 15118 uses 0x80)" % h, None, 0)

    def _element(self, r, entry, depth):
        e = self.elems
        o = entry * 4
        name = self.names[(e[o] << 8) | e[o + 1]]
        start = (e[o + 2] << 8) | e[o + 3]
        try:
            if start & 0x8000:
                # Simple type: CH (1-bit code 0), value, EE (1-bit code 0).
                p = self.prods
                po = ((self.states[(start & 0x7FFF) * 2] << 8) | self.states[(start & 0x7FFF) * 2 + 1]) * 5
                if r.bits(1):
                    raise ExiError("unexpected second-level event", None, r.pos - 1)
                value = self._value(r, (p[po + 1] << 8) | p[po + 2])
                if r.bits(1):
                    raise ExiError("unexpected second-level event", None, r.pos - 1)
                return name, value
            if depth > _MAX_DEPTH:
                raise ExiError("elements nested deeper than %d" % _MAX_DEPTH, None, r.pos)
            return name, self._content(r, start, depth)
        except ExiError as err:
            raise _prepend(err, name)

    def _content(self, r, s, depth):
        names = self.names
        states = self.states
        p = self.prods
        d = {}
        count = 0
        while True:
            first = (states[s * 2] << 8) | states[s * 2 + 1]
            n = ((states[s * 2 + 2] << 8) | states[s * 2 + 3]) - first
            if p[first * 5] & F_COUNTED:
                lo, hi = self.counted[s]
                if count < lo:
                    n = 1
                elif count >= hi:
                    first += 1
                    n -= 1
            code = r.bits(n.bit_length())
            if code >= n:
                raise ExiError("unsupported second-level event (code %d of %d)" % (code, n), None, r.pos)
            o = (first + code) * 5
            b0 = p[o]
            kind = b0 & 0x0F
            arg = (p[o + 1] << 8) | p[o + 2]
            if kind == P_SE:
                name, value = self._element(r, arg, depth + 1)
                if b0 & F_LIST:
                    lst = d.get(name)
                    if lst is None:
                        d[name] = [value]
                    else:
                        lst.append(value)
                else:
                    d[name] = value
            elif kind == P_EE:
                return d
            elif kind == P_AT:
                a = self.attrs
                ao = arg * 4
                name = names[(a[ao] << 8) | a[ao + 1]]
                try:
                    d[name] = self._value(r, (a[ao + 2] << 8) | a[ao + 3])
                except ExiError as err:
                    raise _prepend(err, "@" + name)
            elif kind == P_CH:
                d[CONTENT] = self._value(r, arg)
            elif kind == P_CHU:
                if CONTENT in d:
                    raise ExiError("mixed content is not supported", None, r.pos)
                d[CONTENT] = self._string(r, 0)
            else:
                raise ExiError("wildcard events (SE(*), AT(*)) are not supported", None, r.pos)
            nxt = (p[o + 3] << 8) | p[o + 4]
            count = count + 1 if nxt == s else 1
            s = nxt

    def _value(self, r, vt):
        t = self.values[vt]
        k = t[0]
        if k == V_NBIT:
            # Deployed codecs accept any value the n bits can carry, beyond the schema's maximum (real
            # cars send ChargingProfileEntryMaxNumberOfPhasesInUse 4 in a 1..3 field); so do we.
            return t[1] + r.bits(t[2])
        if k == V_ENUM:
            vals = t[1]
            i = r.bits((len(vals) - 1).bit_length())
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
        # Some code point above 127: decode one unsigned integer per character.
        r.pos = start
        chars = []
        for _ in range(n):
            c = r.uint()
            if c > 0x10FFFF or 0xD800 <= c <= 0xDFFF:
                raise ExiError("invalid code point %d" % c, None, r.pos)
            chars.append(chr(c))
        return "".join(chars)

    # ---- encoding -------------------------------------------------------------------------------------

    def _entry_index(self, entries, cache_attr):
        idx = getattr(self, cache_attr)
        if idx is None:
            idx = {}
            e = self.elems
            for code, entry in enumerate(entries):
                name = self.names[(e[entry * 4] << 8) | e[entry * 4 + 1]]
                if name not in idx:
                    idx[name] = code
            setattr(self, cache_attr, idx)
        return idx

    def encode(self, doc):
        if not isinstance(doc, dict) or len(doc) != 1:
            raise ExiError("a document is a dict with exactly one root element")
        for name in doc:
            code = self._entry_index(self.doc, "_doc_index").get(name)
            if code is None:
                raise ExiError("%s is not a root element of schema set %s" % (name, self.name))
            w = BitWriter()
            w.bits(_HEADER, 8)
            w.bits(code, len(self.doc).bit_length())
            self._encode_element(w, self.doc[code], doc[name], 0)
            return w.getvalue()

    def encode_fragment(self, doc):
        if not isinstance(doc, dict) or not doc:
            raise ExiError("a fragment is a dict of one or more elements")
        idx = self._entry_index(self.frag, "_frag_index")
        n = len(self.frag)
        width = (n + 1).bit_length()
        w = BitWriter()
        w.bits(_HEADER, 8)
        for name in doc:
            code = idx.get(name)
            if code is None:
                raise ExiError("%s is not an element of schema set %s" % (name, self.name))
            w.bits(code, width)
            self._encode_element(w, self.frag[code], doc[name], 0)
        w.bits(n + 1, width)
        return w.getvalue()

    def _encode_element(self, w, entry, value, depth):
        e = self.elems
        o = entry * 4
        start = (e[o + 2] << 8) | e[o + 3]
        try:
            if start & 0x8000:
                p = self.prods
                s = start & 0x7FFF
                po = ((self.states[s * 2] << 8) | self.states[s * 2 + 1]) * 5
                w.bits(0, 1)
                self._encode_value(w, (p[po + 1] << 8) | p[po + 2], value)
                w.bits(0, 1)
                return
            if depth > _MAX_DEPTH:
                raise ExiError("elements nested deeper than %d" % _MAX_DEPTH)
            if not isinstance(value, dict):
                raise ExiError("expected a dict of child elements, got " + type(value).__name__)
            self._encode_content(w, start, value, depth)
        except ExiError as err:
            raise _prepend(err, self.names[(e[o] << 8) | e[o + 1]])

    def _encode_content(self, w, s, d, depth):
        names = self.names
        states = self.states
        p = self.prods
        elems = self.elems
        taken = {}
        count = 0
        while True:
            first = (states[s * 2] << 8) | states[s * 2 + 1]
            n = ((states[s * 2 + 2] << 8) | states[s * 2 + 3]) - first
            if p[first * 5] & F_COUNTED:
                lo, hi = self.counted[s]
                if count < lo:
                    n = 1
                elif count >= hi:
                    first += 1
                    n -= 1
            ee = -1
            code = 0
            o = first * 5
            key = None
            while code < n:
                b0 = p[o]
                kind = b0 & 0x0F
                if kind == P_SE:
                    arg = (p[o + 1] << 8) | p[o + 2]
                    key = names[(elems[arg * 4] << 8) | elems[arg * 4 + 1]]
                    v = d.get(key)
                    if v is not None:
                        if b0 & F_LIST:
                            if not isinstance(v, list):
                                raise ExiError("%s repeats: expected a list" % key)
                            if taken.get(key, 0) < len(v):
                                break
                        elif key not in taken:
                            break
                elif kind == P_EE:
                    ee = code
                elif kind == P_AT:
                    arg = (p[o + 1] << 8) | p[o + 2]
                    a = self.attrs
                    key = names[(a[arg * 4] << 8) | a[arg * 4 + 1]]
                    if key in d and key not in taken and not b0 & F_ALT:
                        break
                elif kind == P_CH or kind == P_CHU:
                    key = CONTENT
                    if key in d and key not in taken:
                        break
                code += 1
                o += 5
            if code == n:
                if ee < 0:
                    raise ExiError("missing " + self._expected(first, n))
                w.bits(ee, n.bit_length())
                self._check_all_taken(d, taken)
                return
            w.bits(code, n.bit_length())
            arg = (p[o + 1] << 8) | p[o + 2]
            if kind == P_SE:
                if b0 & F_LIST:
                    i = taken.get(key, 0)
                    taken[key] = i + 1
                    self._encode_element(w, arg, d[key][i], depth + 1)
                else:
                    taken[key] = 1
                    self._encode_element(w, arg, d[key], depth + 1)
            elif kind == P_AT:
                taken[key] = 1
                try:
                    a = self.attrs
                    self._encode_value(w, (a[arg * 4 + 2] << 8) | a[arg * 4 + 3], d[key])
                except ExiError as err:
                    raise _prepend(err, "@" + key)
            elif kind == P_CH:
                taken[key] = 1
                self._encode_value(w, arg, d[key])
            else:
                taken[key] = 1
                self._encode_string(w, d[key], 0)
            nxt = (p[o + 3] << 8) | p[o + 4]
            count = count + 1 if nxt == s else 1
            s = nxt

    def _expected(self, first, n):
        p = self.prods
        for i in range(first, first + n):
            o = i * 5
            arg = (p[o + 1] << 8) | p[o + 2]
            if p[o] & 0x0F == P_SE:
                return self.names[(self.elems[arg * 4] << 8) | self.elems[arg * 4 + 1]]
            if p[o] & 0x0F == P_AT:
                return "@" + self.names[(self.attrs[arg * 4] << 8) | self.attrs[arg * 4 + 1]]
            if p[o] & 0x0F == P_CH:
                return CONTENT
        return "content"

    def _check_all_taken(self, d, taken):
        if len(taken) == len(d):
            for key in taken:
                v = d[key]
                if isinstance(v, list) and taken[key] != len(v):
                    raise ExiError("%s: %d items where at most %d fit here" % (key, len(v), taken[key]))
            return
        for key in d:
            if key not in taken:
                v = d[key]
                if v is None or v == []:
                    continue
                raise ExiError("unexpected or misplaced element " + str(key))

    def _encode_value(self, w, vt, v):
        t = self.values[vt]
        k = t[0]
        if k == V_NBIT:
            if not isinstance(v, int) or not 0 <= v - t[1] < (1 << t[2]):
                raise ExiError("expected an integer in [%d, %d], got %r" % (t[1], t[3], v))
            w.bits(v - t[1], t[2])
        elif k == V_ENUM:
            try:
                i = t[1].index(v)
            except ValueError:
                raise ExiError("%r is not one of %s" % (v, ", ".join(str(x) for x in t[1])))
            w.bits(i, (len(t[1]) - 1).bit_length())
        elif k == V_BOOL:
            if v is True or v == 1:
                w.bits(1, 1)
            elif v is False or v == 0:
                w.bits(0, 1)
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
