# EXI table format shared by the generator (host/evpilot_host/exigen.py) and the codec: production kinds
# and flags, value kinds, element-entry bits, the event-code width of a grammar state, and table(), which
# the generated modules use to read their packed entries in place. The table layout itself is described in
# codec.py.

import sys

from evpilot.compat import const

try:
    import uctypes as _uctypes  # MicroPython
except ImportError:
    _uctypes = None

P_AT = const(0)
P_SE = const(1)
P_EE = const(2)
P_CH = const(3)
P_CHU = const(4)
P_SEANY = const(5)
P_ATANY = const(6)
F_LIST = const(8)
F_ALT = const(16)
F_COUNTED = const(32)
BARE = const(1 << 24)
ABSTRACT = const(1 << 25)

V_STRING = const(0)
V_BINARY = const(1)
V_BOOL = const(2)
V_UINT = const(3)
V_INT = const(4)
V_NBIT = const(5)
V_ENUM = const(6)
V_UNSUPPORTED = const(7)

CONTENT = "CONTENT"
HEADER = const(0x80)  # distinguishing bits 10, no options, version 1 ([V2G2-099])
MAX_DEPTH = const(24)
MAX_FRAGMENT_ELEMENTS = const(64)


def prepend(err, name):
    """Put name in front of an error's element path (errors gather their path on the way out)."""
    err.path = name if not err.path else name + "/" + err.path
    return err


def bit_length(n):
    """int.bit_length(), which MicroPython lacks."""
    b = 0
    while n:
        n >>= 1
        b += 1
    return b


# Event-code widths: WIDTH[n] = ceil(log2(n + 1)) bits for a state with n productions (n < 512).
WIDTH = bytes(bit_length(i) for i in range(512))


_LITTLE = sys.byteorder == "little"


def table(raw, size):
    """The little-endian uint16 (size 2) or uint32 (size 4) entries packed in `raw`, indexable like an array.

    Read in place where the interpreter can (uctypes on MicroPython, a cast memoryview on CPython; both as
    fast to index as an array): a frozen tables module's bytes literals stay in flash and its tables take no
    RAM. Elsewhere (no uctypes, a big-endian machine) a copy in an array. The view holds only the address:
    the caller keeps `raw` referenced (the tables modules keep each literal in a module global)."""
    n = len(raw) // size
    if not n:
        return ()
    if _LITTLE:
        if _uctypes is not None:
            kind = _uctypes.UINT32 if size == 4 else _uctypes.UINT16
            return _uctypes.struct(_uctypes.addressof(raw), (_uctypes.ARRAY | 0, kind | n), _uctypes.NATIVE)
        try:
            return memoryview(raw).cast("I" if size == 4 else "H")
        except (AttributeError, TypeError, ValueError):  # MicroPython's memoryview has no cast()
            pass
    from array import array

    entries = [int.from_bytes(raw[i:i + size], "little") for i in range(0, len(raw), size)]
    return array("I" if size == 4 else "H", entries)
