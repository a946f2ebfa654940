# Differences between MicroPython and CPython, in one place.
#
# Firmware modules import const and the ticks helpers from here, never from micropython or time directly,
# so the same code runs on both interpreters.

try:
    from micropython import const  # noqa: F401
except ImportError:  # CPython

    def const(x):
        return x


MICROPYTHON = False
try:
    import sys as _sys

    MICROPYTHON = _sys.implementation.name == "micropython"
except Exception:  # pragma: no cover
    pass

# Millisecond ticks wrap like MicroPython's ticks_ms (TICKS_PERIOD is a power of two). Protocol cores never
# read a clock: callers pass `now` in, and compare times only through ticks_diff / ticks_add.
TICKS_PERIOD = const(1 << 29)
_TICKS_MAX = const((1 << 29) - 1)
_TICKS_HALF = const(1 << 28)


def ticks_add(t, delta):
    return (t + delta) & _TICKS_MAX


def ticks_diff(a, b):
    """a - b in milliseconds, correct across one wrap-around (like time.ticks_diff)."""
    return ((a - b + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF
