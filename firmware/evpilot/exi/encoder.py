# The EXI encoder, which drives the grammar tables with a document (codec.py describes the tables).
#
# At each grammar state the first production that still has data in the element's dict is written, so the
# document's key order does not matter: a sequence is written in schema order. EE is written only when no
# production can take more of the dict, and then every key must have been written (a key the grammar does
# not allow there is reported by name).

from evpilot.errors import ExiError
from evpilot.exi.bitstream import BitWriter
from evpilot.exi.format import (
    P_AT,
    P_SE,
    P_EE,
    P_CH,
    P_CHU,
    F_LIST,
    F_ALT,
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
    WIDTH,
    bit_length,
    prepend,
)


class Encoder:
    def _code(self, entries, name):
        """The event code of element `name` among `entries` (DOC or FRAG, sorted by local name as EXI orders
        them: for a local name in several namespaces, the first), or None. A binary search over the tables
        themselves: no index to build and keep in RAM."""
        if not isinstance(name, str):
            return None
        names = self.names
        elems = self.elems
        lo = 0
        hi = len(entries)
        while lo < hi:
            mid = (lo + hi) >> 1
            if names[elems[entries[mid]] & 1023] < name:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(entries) and names[elems[entries[lo]] & 1023] == name:
            return lo
        return None

    def encode(self, doc, sink=None):
        if not isinstance(doc, dict) or len(doc) != 1:
            raise ExiError("a document is a dict with exactly one root element")
        for name in doc:
            if name == self._root_name:  # every message of a schema set has the same root element
                code = self._root_code
            else:
                code = self._code(self.doc, name)
                if code is not None:
                    self._root_name, self._root_code = name, code
            if code is None or self.elems[self.doc[code]] & ABSTRACT:
                raise ExiError("%s is not a root element of schema set %s" % (name, self.name))
            w = BitWriter(sink)  # with a sink, the bytes go to sink(view) piece by piece and b"" is returned
            w.bits(HEADER, 8)
            w.bits(code, bit_length(len(self.doc)))
            self._encode_element(w, self.doc[code], doc[name])
            return w.getvalue()

    def encode_fragment(self, doc, sink=None):
        """The fragment's bytes; with sink, they are handed to sink(view) piece by piece instead (b"" returned):
        a digest never needs the whole encoding in RAM."""
        if not isinstance(doc, dict) or not doc:
            raise ExiError("a fragment is a dict of one or more elements")
        n = len(self.frag)
        width = bit_length(n + 1)
        w = BitWriter(sink)
        w.bits(HEADER, 8)
        for name in doc:
            code = self._code(self.frag, name)
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
            raise prepend(err, self.names[e & 1023])

    def _encode_child(self, w, e, v, depth):
        if e & BARE:
            vt = (e >> 10) & 0x3FFF
            t = self.values[vt]
            k = t[0]
            if k == V_NBIT:
                if not isinstance(v, int) or not t[1] <= v <= t[3]:
                    raise _out_of_range(t, v)
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
        if depth > MAX_DEPTH:
            raise ExiError("elements nested deeper than %d" % MAX_DEPTH)
        if not isinstance(v, dict):
            raise ExiError("expected a dict of child elements, got " + type(v).__name__)
        self._encode_content(w, e >> 10, v, depth)

    def _encode_content(self, w, s, d, depth):
        """Write the attributes and content of the complex element whose value is the dict `d`, from grammar
        state s (the table layout is the decoder's, see decoder._content). The document does not say in which
        order its keys come, so at each state we pick the production the document still has data for: the
        grammar (Glushkov automaton of the particles) allows only one of them here, and the first that has
        data left wins. `taken` counts what was written of each key (list items one by one), so that a key
        the grammar never reached is reported instead of silently dropped (_check_all_taken)."""
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
            if prods[base] & F_COUNTED:  # a bounded repetition: see decoder._content
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
                    # F_ALT: in the relaxed element-fragment grammar several attributes share a name (ISO-2 has
                    # three `Id`); the encoder writes the one declared on the relaxed elements themselves and
                    # skips the others, so the code is the one other codecs write.
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
                w.bits(ee, WIDTH[n])
                if len(taken) != len(d) or lists:
                    self._check_all_taken(d, taken)
                return
            cw = WIDTH[n]
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
                        # and EE code in as few writes as possible (code, then 0, value, 0: the CH and EE
                        # codes are code 0 of two productions each, one bit apiece).
                        # Values that fail a check here take the slow path, which raises the right error.
                        # _encode_child does the rest.
                        t = values[(e >> 10) & 0x3FFF]
                        k = t[0]
                        if k == V_NBIT and isinstance(v, int) and t[1] <= v <= t[3]:
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
                    raise prepend(err, key)
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
                    raise prepend(err, "@" + key)
            elif kind == P_CH:
                self._encode_value(w, (x >> 6) & 1023, d[key])
            else:
                self._encode_string(w, d[key], 0, 0)
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
            if not isinstance(v, int) or not t[1] <= v <= t[3]:
                raise _out_of_range(t, v)
            w.bits(v - t[1], t[2])
        elif k == V_ENUM:
            w.bits(self._enum_index(t, v), t[2])
        elif k == V_BOOL:
            if v is True or v is False or v == 0 or v == 1:
                w.bits(1 if v else 0, 1)
            else:
                raise ExiError("expected a boolean, got %r" % (v,))
        elif k == V_UINT:
            if not isinstance(v, int) or v < t[2] or (t[1] and v > t[1]):
                if t[1]:
                    raise ExiError("expected an integer in [%d, %d], got %r" % (t[2], t[1], v))
                raise ExiError("expected an integer >= %d, got %r" % (t[2], v))
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
            if len(v) < t[2]:
                raise ExiError("%d bytes where at least %d are needed" % (len(v), t[2]))
            w.uint(len(v))
            w.octets(v)
        elif k == V_STRING:
            self._encode_string(w, v, t[1], t[2])
        else:
            raise ExiError("value type not supported: " + str(t[1]))

    def _encode_string(self, w, v, maxlen, minlen=0):
        if not isinstance(v, str):
            raise ExiError("expected a string, got " + type(v).__name__)
        if maxlen and len(v) > maxlen:
            raise ExiError("string of %d characters where at most %d fit" % (len(v), maxlen))
        if len(v) < minlen:
            raise ExiError("string of %d characters where at least %d are needed" % (len(v), minlen))
        w.uint(len(v) + 2)
        raw = v.encode()
        if len(raw) == len(v):
            w.octets(raw)
        else:
            for ch in v:
                w.uint(ord(ch))


def _out_of_range(t, v):
    return ExiError("expected an integer in [%d, %d], got %r" % (t[1], t[3], v))
