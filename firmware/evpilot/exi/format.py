# EXI table format shared by the generator (host/evpilot_host/exigen.py) and the codec: production kinds
# and flags, value kinds, element-entry bits, and the event-code width of a grammar state. The table
# layout itself is described in codec.py.

from evpilot.compat import const

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
