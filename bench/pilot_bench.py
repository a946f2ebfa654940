# Control-pilot core cost per reading: PilotCore.feed_samples over one synthesised 1 kHz period (200 samples,
# 5 % PWM with 300 mV noise) and feed_levels (an ADC level + a measured duty), in microseconds per call (timed
# without tracing) and bytes of heap allocated per call (MicroPython: gc.mem_alloc; CPython: tracemalloc). Runs on both:
#   python3 bench/pilot_bench.py
#   MICROPYPATH=firmware:sim micropython bench/pilot_bench.py
# Prints one JSON object.

import gc
import json
import sys

from evpilot.ev.pilot import STATE_B
from evpilot.hal.pilot import PilotCore
from evpilot_sim.pilot_sim import Noise, waveform

try:
    from time import ticks_diff, ticks_us

    def _us():
        return ticks_us()

    def _since(t):
        return ticks_diff(ticks_us(), t)
except ImportError:
    from time import perf_counter

    def _us():
        return perf_counter()

    def _since(t):
        return (perf_counter() - t) * 1e6

N = 2000


def _alloc():
    if hasattr(gc, "mem_alloc"):
        return gc.mem_alloc()
    import tracemalloc

    return tracemalloc.get_traced_memory()[0]


def bench(feed):
    core = PilotCore()
    for i in range(50):  # settle: plugged, 5 % taken
        feed(core, i * 10)
    t = _us()
    for i in range(N):
        feed(core, 500 + i * 10)
    us = _since(t) / N
    gc.collect()
    if not hasattr(gc, "mem_alloc"):
        import tracemalloc

        tracemalloc.start()
    gc.disable()
    a0 = _alloc()
    for i in range(N):
        feed(core, 500 + (N + i) * 10)
    per = (_alloc() - a0) / N
    gc.enable()
    if not hasattr(gc, "mem_alloc"):
        import tracemalloc

        tracemalloc.stop()
    assert core.digital()
    return round(us, 2), round(per, 1)


def main():
    samples = waveform(STATE_B, 50, 200, 300, Noise(5))

    def by_samples(core, now):
        core.feed_samples(samples, now)

    def by_levels(core, now):
        core.feed_levels(9000, -12000, 50, now)

    s_us, s_b = bench(by_samples)
    l_us, l_b = bench(by_levels)
    print(json.dumps({"interpreter": sys.implementation.name, "readings": N,
                      "feed_samples_200_us": s_us, "feed_samples_alloc_bytes": s_b,
                      "feed_levels_us": l_us, "feed_levels_alloc_bytes": l_b}))


main()
