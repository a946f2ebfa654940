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


def best_us(fn, rounds=1):
    """Microseconds per call of fn: the best of 5 batches, each long enough (>= 100 ms, starting from `rounds`
    calls and doubling) that a millisecond clock is exact enough."""
    n = rounds
    while True:
        t0 = now()
        for _ in range(n):
            fn()
        if us(t0, now()) >= 100000:
            break
        n *= 2
    best = None
    for _ in range(5):
        t0 = now()
        for _ in range(n):
            fn()
        dt = us(t0, now()) / n
        best = dt if best is None or dt < best else best
    return best
