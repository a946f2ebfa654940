# A small CBOR (RFC 8949) subset for the provisioning channel: what a board must read and write, no more.
#
# How this works
# --------------
# encode(value) writes unsigned and negative integers (major types 0 and 1, up to 64 bits), byte and text
# strings (2, 3), arrays (4, lists and tuples), maps (5, dicts) and the simple values false, true and null
# (major type 7, values 20 to 22), always with definite lengths in their shortest form and map keys in
# length-first order (RFC 8949 4.2.3), so the same value gives the same bytes on both interpreters and as
# PyPI cbor2's canonical encoding.
#
# decode(data) reads one whole data item with a cursor and explicit bounds, and the item must fill the
# buffer exactly. Every length is checked against what is left before anything is sliced, against
# MAX_LENGTH for strings and MAX_ITEMS for array and map counts, and nesting against MAX_DEPTH. Indefinite
# lengths, tags, floats, other simple values, reserved additional information (28 to 30), duplicate map
# keys and map keys that are not integers or strings are refused. Whatever is wrong raises PeerError naming
# the byte offset; IndexError, KeyError, ValueError and UnicodeError never escape (STYLE rule 5; the
# micropython-lib cbor2 leaks KeyError, which is why this module exists). Longer-than-needed length
# encodings are accepted on input (as RFC 8949 decoders do), never produced.

from evpilot.compat import const
from evpilot.errors import PeerError, UsageError

MAX_DEPTH = const(8)
MAX_LENGTH = const(8192)  # a byte or text string: a certificate chain element is at most 2 KB
MAX_ITEMS = const(64)  # entries of one array or map

_UINT = const(0)
_NINT = const(1)
_BYTES = const(2)
_TEXT = const(3)
_ARRAY = const(4)
_MAP = const(5)
_TAG = const(6)
_SIMPLE = const(7)
_U64 = const(0xFFFFFFFFFFFFFFFF)


def _head(out, major, n):
    mt = major << 5
    if n < 24:
        out.append(mt | n)
    elif n < 0x100:
        out.append(mt | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(mt | 25)
        out.extend(n.to_bytes(2, "big"))
    elif n < 0x100000000:
        out.append(mt | 26)
        out.extend(n.to_bytes(4, "big"))
    else:
        out.append(mt | 27)
        out.extend(n.to_bytes(8, "big"))


def _encode(out, v, depth):
    if depth > MAX_DEPTH:
        raise UsageError("CBOR: nesting deeper than %d" % MAX_DEPTH)
    if v is None:
        out.append(0xF6)
    elif v is True:
        out.append(0xF5)
    elif v is False:
        out.append(0xF4)
    elif isinstance(v, int):
        if v >= 0:
            if v > _U64:
                raise UsageError("CBOR: integer over 64 bits")
            _head(out, _UINT, v)
        else:
            if -1 - v > _U64:
                raise UsageError("CBOR: integer over 64 bits")
            _head(out, _NINT, -1 - v)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        _head(out, _BYTES, len(v))
        out.extend(v)
    elif isinstance(v, str):
        b = v.encode()
        _head(out, _TEXT, len(b))
        out.extend(b)
    elif isinstance(v, (list, tuple)):
        _head(out, _ARRAY, len(v))
        for x in v:
            _encode(out, x, depth + 1)
    elif isinstance(v, dict):
        # keys sorted shorter encoding first, then bytewise (RFC 8949 4.2.3 length-first, RFC 7049's
        # canonical order, as cbor2's canonical=True); MicroPython's dicts keep no insertion order, so this
        # is also what makes both interpreters agree
        pairs = []
        for k in v:
            if not isinstance(k, (int, str)) or isinstance(k, bool):
                raise UsageError("CBOR: map keys must be integers or strings")
            kb = bytearray()
            _encode(kb, k, depth + 1)
            pairs.append((len(kb), bytes(kb), k))
        pairs.sort()
        _head(out, _MAP, len(pairs))
        for _, kb, k in pairs:
            out.extend(kb)
            _encode(out, v[k], depth + 1)
    else:
        raise UsageError("CBOR: cannot encode %s" % type(v).__name__)


def encode(value):
    """The CBOR bytes of value (int, bytes, str, list/tuple, dict, True, False, None)."""
    out = bytearray()
    _encode(out, value, 0)
    return bytes(out)


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def fail(self, problem, at=None):
        raise PeerError("CBOR at byte %d: %s" % (self.pos if at is None else at, problem))

    def take(self, n):
        start = self.pos
        if n > len(self.data) - start:
            self.fail("%d bytes needed, %d left (truncated)" % (n, len(self.data) - start))
        self.pos = start + n
        return self.data[start:start + n]

    def head(self):
        at = self.pos
        b = self.take(1)[0]
        major = b >> 5
        info = b & 0x1F
        if info < 24:
            return major, info, at
        if info < 28:
            return major, int.from_bytes(self.take(1 << (info - 24)), "big"), at
        if info == 31:
            self.fail("indefinite length is not supported", at)
        self.fail("reserved additional information %d" % info, at)

    def item(self, depth):
        if depth > MAX_DEPTH:
            self.fail("nesting deeper than %d" % MAX_DEPTH)
        major, n, at = self.head()
        if major == _UINT:
            return n
        if major == _NINT:
            return -1 - n
        if major == _BYTES or major == _TEXT:
            if n > MAX_LENGTH:
                self.fail("string of %d bytes is over the %d-byte limit" % (n, MAX_LENGTH), at)
            raw = bytes(self.take(n))
            if major == _BYTES:
                return raw
            try:
                return raw.decode()
            except UnicodeError:
                self.fail("text string is not UTF-8", at)
        if major == _ARRAY:
            if n > MAX_ITEMS:
                self.fail("array of %d items is over the %d-item limit" % (n, MAX_ITEMS), at)
            return [self.item(depth + 1) for _ in range(n)]
        if major == _MAP:
            if n > MAX_ITEMS:
                self.fail("map of %d entries is over the %d-entry limit" % (n, MAX_ITEMS), at)
            out = {}
            for _ in range(n):
                kat = self.pos
                k = self.item(depth + 1)
                if not isinstance(k, (int, str)) or isinstance(k, bool):
                    self.fail("map key must be an integer or a text string", kat)
                if k in out:
                    self.fail("duplicate map key", kat)
                out[k] = self.item(depth + 1)
            return out
        if major == _TAG:
            self.fail("tags are not supported", at)
        # major type 7: only false, true, null (floats and other simple values are outside the subset)
        if n == 20 and self.data[at] == 0xF4:
            return False
        if n == 21 and self.data[at] == 0xF5:
            return True
        if n == 22 and self.data[at] == 0xF6:
            return None
        self.fail("simple value or float (0x%02x) is not supported" % self.data[at], at)


def decode(data):
    """The one data item that fills data exactly; PeerError on anything malformed, unsupported or over a
    limit."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UsageError("CBOR: decode takes bytes")
    r = _Reader(data)
    try:
        value = r.item(0)
    except PeerError:
        raise
    except (IndexError, KeyError, ValueError, TypeError, RuntimeError):
        # RuntimeError: MicroPython's "maximum recursion depth exceeded" on a tiny stack
        r.fail("malformed")
    if r.pos != len(data):
        r.fail("%d trailing bytes after the item" % (len(data) - r.pos))
    return value
