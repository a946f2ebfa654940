# The board's own TCP/IPv6 (evpilot.net), on whichever interpreter runs it (MicroPython or CPython).
#
#   python bench/net_bench.py
#   MICROPYPATH=firmware:.frozen micropython bench/net_bench.py
#
# In memory, no link: our stack connected to a scripted peer whose frames are built before the clock
# starts, so only our side is timed. Prints one JSON object:
#   receive_us_per_segment   one full-size (1440-byte) in-order segment: frame parsed, checksum checked,
#                            data stored, read by the application, the ACK built (frame out)
#   send_us_per_segment      write 1440 bytes, output() builds the segment's frame, the peer's ACK taken
#   receive_mbit_s / send_mbit_s   payload throughput those times allow on this interpreter
#   heap_bytes               what one Stack with one established connection holds (4 KB rings each way),
#                            measured after a collection (MicroPython gc.mem_alloc, CPython tracemalloc)
#   import_bytes             MicroPython: the heap the net modules' code takes when imported from .py
#                            (frozen into the firmware it stays in flash); null on CPython

import gc
import json
import sys

for path in ("firmware", "bench"):
    if path not in sys.path:
        sys.path.append(path)

import clock  # noqa: E402

gc.collect()
_BEFORE_IMPORT = gc.mem_alloc() if hasattr(gc, "mem_alloc") else None
from evpilot.net import ipv6, stack, tcp  # noqa: E402

gc.collect()
IMPORT_BYTES = gc.mem_alloc() - _BEFORE_IMPORT if _BEFORE_IMPORT is not None else None

EV_MAC = bytes.fromhex("020000000001")
PEER_MAC = bytes.fromhex("020000000002")
PEER = ipv6.link_local(PEER_MAC)
PORT = 15000
MSS = 1440
SEGMENTS = 400


def _frame(st, seg):
    seg = bytearray(seg)
    c = ipv6.checksum(PEER, st.address, 6, seg)
    seg[16] = c >> 8
    seg[17] = c & 0xFF
    f = bytearray(54 + len(seg))
    ipv6.header(f, EV_MAC, PEER_MAC, PEER, st.address, 6, len(seg), 64)
    f[54:] = seg
    return bytes(f)


def _tcp(st, conn, seq, ack, flags, payload=b"", window=65535, mss=0):
    return _frame(st, stack.build_tcp(PORT, conn.local_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, window,
                                      mss, payload))


def connect(rx_size=4096, tx_size=4096):
    st = stack.Stack(EV_MAC, 0, seed=11, rx_size=rx_size, tx_size=tx_size)
    st._neighbours[PEER] = PEER_MAC  # no NDP in the timed part
    conn = st.tcp_connect(PEER, PORT, 0)
    syn = st.output(0)[0]
    iss = stack.parse_tcp(memoryview(syn)[54:])[2]
    st.receive(_tcp(st, conn, 1000, iss + 1, tcp.SYN | tcp.ACK, mss=MSS), 1)
    st.output(1)
    assert conn.state == tcp.ESTABLISHED
    return st, conn, iss + 1, 1001


def bench_receive():
    st, conn, snd, rcv = connect()
    payload = bytes(range(256)) * 5 + bytes(160)
    frames = [_tcp(st, conn, rcv + i * MSS, snd, tcp.ACK | tcp.PSH, payload) for i in range(SEGMENTS)]
    gc.collect()
    t0 = clock.now()
    now = 2
    got = 0
    for f in frames:
        st.receive(f, now)
        got += len(conn.read(4096))
        st.output(now)
    dt = clock.us(t0, clock.now())
    assert got == SEGMENTS * MSS
    return dt / SEGMENTS


def bench_send():
    st, conn, snd, rcv = connect()
    chunk = bytes(range(256)) * 5 + bytes(160)
    acks = [_tcp(st, conn, rcv, snd + (i + 1) * MSS, tcp.ACK) for i in range(SEGMENTS)]
    gc.collect()
    t0 = clock.now()
    now = 2
    for i in range(SEGMENTS):
        conn.write(chunk)
        out = st.output(now)
        assert len(out) == 1
        st.receive(acks[i], now)
    dt = clock.us(t0, clock.now())
    assert conn.unacked() == 0
    return dt / SEGMENTS


def heap():
    gc.collect()
    if hasattr(gc, "mem_alloc"):
        before = gc.mem_alloc()
        kept = connect()
        gc.collect()
        used = gc.mem_alloc() - before
    else:
        import tracemalloc

        tracemalloc.start()
        kept = connect()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    assert kept[1].established
    return used


def main():
    rx = bench_receive()
    tx = bench_send()
    result = {
        "interpreter": sys.implementation.name,
        "receive_us_per_segment": round(rx, 1),
        "send_us_per_segment": round(tx, 1),
        "receive_mbit_s": round(MSS * 8 / rx, 1),
        "send_mbit_s": round(MSS * 8 / tx, 1),
        "heap_bytes": heap(),
        "import_bytes": IMPORT_BYTES,
    }
    print(json.dumps(result))


main()
