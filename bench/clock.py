# A microsecond clock for the benchmark scripts that run on MicroPython and CPython alike:
# now() is an opaque reading, us(a, b) the microseconds from reading a to reading b.

try:
    from time import ticks_diff, ticks_us  # MicroPython (the webassembly port counts whole milliseconds)

    def now():
        return ticks_us()

    def us(a, b):
        return ticks_diff(b, a)

except ImportError:
    from time import perf_counter

    def now():
        return perf_counter()

    def us(a, b):
        return (b - a) * 1e6
