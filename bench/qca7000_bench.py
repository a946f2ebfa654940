# The QCA7000 SPI driver's cost, on whichever interpreter runs it (MicroPython or CPython).
#
#   python bench/qca7000_bench.py
#   micropython -X heapsize=256k bench/qca7000_bench.py
#
# Frames per second and microseconds per frame (best of 3 runs), transmit and receive, for 64- and
# 1518-byte frames:
#   "driver": the core (evpilot.hal.qca7000) alone over a null SPI that answers every register at once
#             (what the host CPU spends on a board, without the SPI clocking itself);
#   "model":  driver + the QCA7000 model (evpilot_sim.qca7000_model) as the other end, several frames per
#             buffer read on receive.
# Heap: bytes the driver object holds (its read and write buffers and tables) and the garbage it leaves
# per frame sent and per frame received on the null SPI (MicroPython: gc.mem_alloc deltas; CPython:
# tracemalloc). Prints one JSON object.

import gc
import json
import sys

for path in ("firmware", "sim", "bench"):
    if path not in sys.path:
        sys.path.append(path)

import clock  # noqa: E402

from evpilot.hal import qca7000 as Q  # noqa: E402
from evpilot_sim import qca7000_model as M  # noqa: E402

MICROPYTHON = sys.implementation.name == "micropython"


def frame(size):
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xe1" + bytes(k & 0xFF for k in range(size - 14))


class NullSpi:
    """Answers register reads from a small table; buffer reads come from a prepared read-buffer image."""

    def __init__(self):
        self.regs = {Q.SPI_REG_SIGNATURE: Q.SIGNATURE, Q.SPI_REG_WRBUF_SPC_AVA: Q.HW_BUF_LEN,
                     Q.SPI_REG_INTR_CAUSE: 0, Q.SPI_REG_RDBUF_BYTE_AVA: 0}
        self.image = memoryview(b"")

    def transfer(self, out, inp):
        if inp is None:
            return
        if out[0] & 0x40:
            v = self.regs.get(((out[0] & 0x3F) << 8) | out[1], 0)
            inp[0] = v >> 8
            inp[1] = v & 0xFF
        else:
            inp[:] = self.image[:len(inp)]  # a view: the copy is the SPI's, not garbage


def ready_null():
    spi = NullSpi()
    d = Q.Qca7000(spi.transfer)
    d.state = Q.ST_READY  # skip the start-up handshake: this measures the frame path only
    d._sig_due = Q.ticks_add(0, 1 << 27)
    return d, spi


def ready_model():
    m = M.Qca7000Model(boot_ms=1)
    d = Q.Qca7000(m.transfer)
    now = 0
    d.start(now)
    while not d.ready:
        now += 1
        m.advance(now)
        d.poll(now)
    d._sig_due = Q.ticks_add(now, 1 << 27)
    return d, m


def tx_null(size, n):
    d, spi = ready_null()
    f = frame(size)
    t0 = clock.now()
    for _ in range(n):
        d.send(f)
    return clock.us(t0, clock.now()) / n


def rx_null(size, n):
    d, spi = ready_null()
    per = Q.RX_MAX // (size + 14)
    image = M.record(frame(size)) * per
    spi.image = memoryview(image)
    buf = bytearray(Q.MAX_FRAME)
    got = 0
    t0 = clock.now()
    while got < n:
        spi.regs[Q.SPI_REG_INTR_CAUSE] = Q.INT_PKT_AVLBL
        spi.regs[Q.SPI_REG_RDBUF_BYTE_AVA] = len(image)
        d.poll(0)
        while d.recv_nowait_into(buf):
            got += 1
    return clock.us(t0, clock.now()) / got


def tx_model(size, n):
    d, m = ready_model()
    f = frame(size)
    t0 = clock.now()
    for i in range(n):
        d.send(f)
        if i % 16 == 15:
            m.wire = []
    return clock.us(t0, clock.now()) / n


def rx_model(size, n):
    d, m = ready_model()
    f = frame(size)
    per = Q.HW_BUF_LEN // (size + 14)
    buf = bytearray(Q.MAX_FRAME)
    got = 0
    now = 1000
    t0 = clock.now()
    while got < n:
        for _ in range(per):
            m.inject(f)
        now += 10
        d.poll(now)
        while d.recv_nowait_into(buf):
            got += 1
    return clock.us(t0, clock.now()) / got


def alloc():
    if MICROPYTHON:
        return gc.mem_alloc()
    import tracemalloc

    return tracemalloc.get_traced_memory()[0]


def heap():
    if not MICROPYTHON:
        import tracemalloc

        tracemalloc.start()
    gc.collect()
    a = alloc()
    d, spi = ready_null()
    gc.collect()
    held = alloc() - a  # the NullSpi and its dict are a few hundred bytes of this
    f = frame(64)
    for _ in range(10):
        d.send(f)
    gc.collect()
    if MICROPYTHON:
        gc.disable()
    a = alloc()
    for _ in range(100):
        d.send(f)
    tx_garbage = (alloc() - a) / 100
    image = M.record(frame(64)) * 20
    spi.image = memoryview(image)
    buf = bytearray(Q.MAX_FRAME)
    got = 0
    gc.collect()
    a = alloc()
    for _ in range(5):
        spi.regs[Q.SPI_REG_INTR_CAUSE] = Q.INT_PKT_AVLBL
        spi.regs[Q.SPI_REG_RDBUF_BYTE_AVA] = len(image)
        d.poll(0)
        while d.recv_nowait_into(buf):
            got += 1
    rx_garbage = (alloc() - a) / got
    if MICROPYTHON:
        gc.enable()
    else:
        import tracemalloc

        tracemalloc.stop()
    return {"driver_bytes": held, "tx_garbage_per_frame": round(tx_garbage, 1),
            "rx_garbage_per_frame": round(rx_garbage, 1)}


def main():
    n = 2000 if MICROPYTHON else 20000
    out = {"interpreter": sys.implementation.name, "heap": heap(), "frames": {}}
    for size in (64, 1518):
        row = {}
        for name, fn in (("tx_driver", tx_null), ("rx_driver", rx_null), ("tx_model", tx_model),
                         ("rx_model", rx_model)):
            us = min(fn(size, n) for _ in range(3))  # the best of 3: the machine is shared
            row[name + "_us"] = round(us, 2)
            row[name + "_fps"] = int(1e6 / us) if us else None
        out["frames"][str(size)] = row
    print(json.dumps(out))


main()
