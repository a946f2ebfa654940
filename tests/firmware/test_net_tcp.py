# The board's TCP client (evpilot.net.tcp through evpilot.net.stack) on a virtual clock against a scripted
# peer: handshake with MSS, RTO backoff, out-of-order hold, fast retransmit, RST and FIN, the receive window,
# and whole transfers both ways with loss, reordering, duplication and delay injected in-process.

from evpilot.net import ipv6, stack, tcp

EV_MAC = bytes.fromhex("020000000001")
PEER_MAC = bytes.fromhex("020000000002")
PEER = ipv6.link_local(PEER_MAC)
PORT = 15000


class Peer:
    """The far end, one segment at a time: frames from the stack are decoded; frames to it are built
    with correct checksums (ours, checked against the kernel's in test_net_stack)."""

    def __init__(self, st):
        self.st = st
        self.addr = PEER
        self.got = []  # (sport, dport, seq, ack, flags, window, mss, payload) from the stack

    def take(self, now):
        for frame in self.st.output(now):
            src_mac, proto, hop, src, dst, plen = ipv6.parse(frame)
            seg = bytes(frame[54:54 + plen])
            assert ipv6.checksum(src, dst, proto, seg) == 0
            if proto == 58 and seg[0] == 135:  # a solicitation for us: answer it
                self.st.receive(self.frame(58, bytes((136, 0, 0, 0, 0x60, 0, 0, 0)) + PEER + b"\x02\x01" + PEER_MAC,
                                           255), now)
                continue
            if proto == 6:
                self.got.append(stack.parse_tcp(seg)[:7] + (bytes(stack.parse_tcp(seg)[7]),))
        out = self.got
        self.got = []
        return out

    def frame(self, proto, seg, hop=64):
        seg = bytearray(seg)
        at = 16 if proto == 6 else 2
        c = ipv6.checksum(self.addr, self.st.address, proto, seg)
        seg[at] = c >> 8
        seg[at + 1] = c & 0xFF
        f = bytearray(54 + len(seg))
        ipv6.header(f, EV_MAC, PEER_MAC, self.addr, self.st.address, proto, len(seg), hop)
        f[54:] = seg
        return bytes(f)

    def send(self, conn, seq, ack, flags, window=8192, payload=b"", mss=0, now=0):
        self.st.receive(self.frame(6, stack.build_tcp(PORT, conn.local_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                                                      flags, window, mss, payload)), now)


def connected(mss=1000, window=8192, rx_size=4096):
    st = stack.Stack(EV_MAC, 0, seed=11, rx_size=rx_size)
    peer = Peer(st)
    conn = st.tcp_connect(PEER, PORT, 0)
    segs = peer.take(0)
    segs += peer.take(0)  # the SYN went out once the solicitation was answered
    (syn,) = segs
    sport, dport, seq, ack, flags, win, mss_opt, payload = syn
    assert (dport, flags, mss_opt, win) == (PORT, tcp.SYN, 1440, rx_size)
    peer.send(conn, 5000, seq + 1, tcp.SYN | tcp.ACK, window, b"", mss, now=20)
    (ack_seg,) = peer.take(20)
    assert ack_seg[4] == tcp.ACK and ack_seg[3] == 5001 and ack_seg[2] == seq + 1
    assert conn.state == tcp.ESTABLISHED and conn.mss == min(mss, 1440)
    assert conn.srtt == 20  # the SYN's round trip
    return st, peer, conn, seq + 1, 5001


def test_handshake_takes_the_smaller_mss_and_a_reset_means_refused():
    connected(mss=536)
    st = stack.Stack(EV_MAC, 0, seed=5)
    peer = Peer(st)
    conn = st.tcp_connect(PEER, PORT, 0)
    syn = (peer.take(0) + peer.take(0))[0]
    peer.send(conn, 0, syn[2] + 2, tcp.RST | tcp.ACK)  # a wrong ACK: ignored
    assert conn.state == tcp.SYN_SENT
    peer.send(conn, 0, syn[2] + 1, tcp.RST | tcp.ACK)
    assert conn.finished and conn.error == "refused"


def test_syn_retransmitted_with_backoff_then_timeout():
    st = stack.Stack(EV_MAC, 0, seed=5)
    peer = Peer(st)
    conn = st.tcp_connect(PEER, PORT, 0)
    peer.take(0)
    times = [0] if peer.take(0) else []
    now = 0
    while not conn.finished:
        now = st.next_deadline()
        st.on_timer(now)
        if peer.take(now):
            times.append(now)
    assert times == [0, 1000, 3000, 7000, 15000]  # RFC 6298 5.5: doubled each time
    assert now == 31000 and conn.error == "timeout"


def test_out_of_order_is_held_and_delivered_when_the_gap_fills():
    st, peer, conn, snd, rcv = connected()
    peer.send(conn, rcv + 100, snd, tcp.ACK, payload=b"B" * 100, now=30)
    (a,) = peer.take(30)
    assert a[3] == rcv and conn.readable() == 0  # a duplicate ACK for the gap
    peer.send(conn, rcv + 100, snd, tcp.ACK, payload=b"B" * 100, now=31)  # a duplicate: held once
    peer.take(31)
    peer.send(conn, rcv, snd, tcp.ACK, payload=b"A" * 100, now=32)
    (a,) = peer.take(32)
    assert a[3] == rcv + 200
    assert conn.read(1000) == b"A" * 100 + b"B" * 100
    peer.send(conn, rcv + 50, snd, tcp.ACK, payload=b"A" * 150 + b"C" * 10, now=33)  # overlaps what we have
    peer.take(33)
    assert conn.read(1000) == b"C" * 10


def test_fast_retransmit_on_three_duplicate_acks():
    st, peer, conn, snd, rcv = connected(mss=1000, window=20000)
    conn.write(bytes(range(250)) * 16)  # 4000 bytes: four segments (initial window 4 * MSS)
    segs = peer.take(40)
    assert [s[2] - snd for s in segs] == [0, 1000, 2000, 3000] and all(len(s[7]) == 1000 for s in segs)
    peer.send(conn, rcv, snd + 1000, tcp.ACK, 20000, now=50)  # first arrived, second lost
    for i in range(3):
        peer.send(conn, rcv, snd + 1000, tcp.ACK, 20000, now=51 + i)
    again = peer.take(55)
    assert again and again[0][2] == snd + 1000 and again[0][7] == segs[1][7]
    assert conn.fast_retransmits == 1 and conn.retransmits == 0
    peer.send(conn, rcv, snd + 4000, tcp.ACK, 20000, now=60)
    assert conn.unacked() == 0 and st.next_deadline() is None


def test_rto_goes_back_and_resends_then_recovers():
    st, peer, conn, snd, rcv = connected(mss=1000)
    conn.write(b"x" * 2000)
    first = peer.take(40)
    assert len(first) == 2
    deadline = st.next_deadline()
    assert deadline == 40 + conn.rto
    st.on_timer(deadline)
    again = peer.take(deadline)
    assert again[0][2] == snd and conn.retransmits == 1  # one segment: cwnd fell to one MSS
    rto = conn.rto
    peer.send(conn, rcv, snd + 1000, tcp.ACK, now=deadline + 5)
    assert [s[2] for s in peer.take(deadline + 5)] == [snd + 1000]
    peer.send(conn, rcv, snd + 2000, tcp.ACK, now=deadline + 6)
    assert conn.unacked() == 0 and conn.rto <= rto


def test_reset_in_window_ends_and_out_of_window_gets_a_challenge_ack():
    st, peer, conn, snd, rcv = connected()
    peer.send(conn, rcv + 100, 0, tcp.RST, now=30)
    assert conn.state == tcp.ESTABLISHED
    (a,) = peer.take(30)
    assert a[4] == tcp.ACK and a[3] == rcv  # RFC 5961 challenge ACK
    peer.send(conn, rcv + 1000000, 0, tcp.RST, now=31)
    assert conn.state == tcp.ESTABLISHED and peer.take(31) == []
    peer.send(conn, rcv, 0, tcp.RST, now=32)
    assert conn.finished and conn.error == "reset" and conn.at_eof


def test_fin_both_ways():
    st, peer, conn, snd, rcv = connected()
    peer.send(conn, rcv, snd, tcp.ACK | tcp.FIN, payload=b"bye", now=30)
    (a,) = peer.take(30)
    assert a[3] == rcv + 4 and conn.state == tcp.CLOSE_WAIT
    assert not conn.at_eof and conn.read(10) == b"bye" and conn.at_eof
    conn.write(b"last")
    conn.close()
    segs = peer.take(31)
    assert segs[-1][4] & tcp.FIN and segs[-1][2] == snd + 4 and conn.state == tcp.LAST_ACK
    peer.send(conn, rcv + 4, snd + 5, tcp.ACK, now=40)
    assert conn.finished and conn.error is None
    st.on_timer(41)
    assert conn not in st.connections
    # a segment for the forgotten connection is answered with a reset
    peer.send(conn, rcv + 4, snd + 5, tcp.ACK, payload=b"?", now=42)
    (r,) = peer.take(42)
    assert r[4] == tcp.RST and r[2] == snd + 5


def test_our_close_first_ends_in_time_wait():
    st, peer, conn, snd, rcv = connected()
    conn.close()
    (f,) = peer.take(30)
    assert f[4] == tcp.FIN | tcp.ACK and conn.state == tcp.FIN_WAIT_1
    peer.send(conn, rcv, snd + 1, tcp.ACK, now=31)
    assert conn.state == tcp.FIN_WAIT_2
    peer.send(conn, rcv, snd + 1, tcp.ACK | tcp.FIN, now=32)
    (a,) = peer.take(32)
    assert a[3] == rcv + 1 and conn.state == tcp.TIME_WAIT
    st.on_timer(st.next_deadline())
    assert conn.finished


def test_receive_window_bounds_what_we_take():
    st, peer, conn, snd, rcv = connected(rx_size=2000)
    peer.send(conn, rcv, snd, tcp.ACK, payload=b"a" * 1000, now=30)
    peer.send(conn, rcv + 1000, snd, tcp.ACK, payload=b"b" * 1000, now=31)
    acks = peer.take(31)
    assert acks[-1][3] == rcv + 2000 and acks[-1][5] == 0  # the window is shut
    peer.send(conn, rcv + 2000, snd, tcp.ACK, payload=b"c" * 500, now=32)  # past the window: not taken
    assert peer.take(32)[-1][3] == rcv + 2000
    assert conn.read(5000) == b"a" * 1000 + b"b" * 1000
    update = peer.take(33)
    assert update and update[-1][5] == 2000  # the window update after reading


def test_read_into_copies_across_the_ring_end_and_opens_the_window_like_read():
    st, peer, conn, snd, rcv = connected(rx_size=2000)
    peer.send(conn, rcv, snd, tcp.ACK, payload=b"a" * 1500, now=30)
    buf = bytearray(1000)
    assert conn.read_into(buf) == 1000 and buf == b"a" * 1000
    peer.take(31)
    # 1000 more arrive: 500 fill the ring to its end, 500 wrap to its start
    peer.send(conn, rcv + 1500, snd, tcp.ACK, payload=b"b" * 1000, now=32)
    assert conn.readable() == 1500
    big = bytearray(2000)
    assert conn.read_into(big) == 1500 and big[:1500] == b"a" * 500 + b"b" * 1000
    assert conn.read_into(big) == 0 and conn.readable() == 0
    update = peer.take(33)
    assert update and update[-1][5] == 2000  # the whole window open again
    # and read() across the wrap returns the same bytes
    peer.send(conn, rcv + 2500, snd, tcp.ACK, payload=bytes(range(256)) * 6, now=34)
    assert bytes(conn.read(4096)) == bytes(range(256)) * 6


def test_write_is_bounded_by_the_send_ring():
    st, peer, conn, snd, rcv = connected()
    assert conn.write(b"z" * 10000) == 4096 and conn.writable() == 0
    assert conn.write(b"z") == 0


class Lossy:
    """A link that loses, duplicates, reorders and delays frames, from a fixed seed."""

    def __init__(self, seed, loss=10, dup=5, reorder=10):
        self.seed = seed
        self.loss, self.dup, self.reorder = loss, dup, reorder
        self.queue = []  # (deliver at, frame)

    def _rand(self):
        self.seed = (self.seed * 1103515245 + 12345) & 0x7FFFFFFF
        return self.seed >> 8

    def put(self, frame, now):
        r = self._rand() % 100
        if r < self.loss:
            return
        delay = 5 + self._rand() % 10
        if self._rand() % 100 < self.reorder:
            delay += 30
        self.queue.append((now + delay, frame))
        if self._rand() % 100 < self.dup:
            self.queue.append((now + delay + 3, frame))

    def due(self, now):
        ready = [q for q in self.queue if q[0] <= now]
        self.queue = [q for q in self.queue if q[0] > now]
        ready.sort(key=lambda q: q[0])
        return [f for _, f in ready]

    def next(self):
        return min([q[0] for q in self.queue]) if self.queue else None


class EchoServer:
    """A plain go-back-N TCP server that echoes what it receives, 500 bytes a segment, RTO 200 ms."""

    def __init__(self):
        self.peer = None
        self.rcv = None
        self.iss = 70000
        self.una = self.nxt = self.iss + 1
        self.out = b""  # bytes to echo, from una on
        self.timer = None
        self.window = 0

    def on_segment(self, sport, dport, seq, ack, flags, window, mss, payload, now, send):
        self.window = window
        if flags & tcp.SYN:
            self.rcv = seq + 1
            self.port = sport
            send(self.iss, self.rcv, tcp.SYN | tcp.ACK, b"", 500)
            return
        if flags & tcp.ACK and self.una < ack <= self.nxt:
            self.out = self.out[ack - self.una:]
            self.una = ack
            self.timer = now + 200 if self.una < self.nxt else None
        if payload and seq == self.rcv:
            self.rcv += len(payload)
            self.out += payload
        if payload or flags & tcp.FIN:
            send(self.nxt, self.rcv, tcp.ACK, b"", 0)

    def pump(self, now, send):
        if self.timer is not None and now >= self.timer:
            self.nxt = self.una
            self.timer = None
        while self.nxt - self.una < min(len(self.out), self.window):
            off = self.nxt - self.una
            n = min(500, len(self.out) - off, self.window - off)
            send(self.nxt, self.rcv, tcp.ACK, self.out[off:off + n], 0)
            self.nxt += n
            if self.timer is None:
                self.timer = now + 200


def _transfer(seed, size):
    st = stack.Stack(EV_MAC, 0, seed=seed)
    peer = Peer(st)
    server = EchoServer()
    to_ev, to_peer = Lossy(seed + 1), Lossy(seed + 2)
    conn = st.tcp_connect(PEER, PORT, 0)
    data = bytes((i * 7 + seed) & 0xFF for i in range(size))
    written = 0
    got = bytearray()
    now = 0

    def send(seq, ack, flags, payload, mss):
        to_ev.put(peer.frame(6, stack.build_tcp(PORT, conn.local_port, seq, ack, flags, 65535, mss, payload)), now)

    while len(got) < size and now < 120000:
        if conn.established and written < size:
            written += conn.write(data[written:written + 700])
        for s in peer.take(now):
            to_peer.put(s, now)
        for s in to_peer.due(now):
            server.on_segment(*(s + (now, send)))
        server.pump(now, send)
        for f in to_ev.due(now):
            st.receive(f, now)
        got += conn.read(4096)
        st.on_timer(now)
        now += 1
    return conn, data, bytes(got), now


def test_echo_transfer_through_loss_reorder_duplication_and_delay():
    for seed in (1, 2, 3):
        conn, data, got, now = _transfer(seed, 12000)
        assert got == data, (seed, len(got))
        assert conn.retransmits + conn.fast_retransmits > 0  # the losses were recovered, not avoided


def test_random_segments_keep_the_connection_within_its_bounds():
    # Segments with random flags, sequence and acknowledgement numbers (near the right ones and anywhere),
    # windows and lengths, fed straight to the connection: nothing raises, the rings stay within their
    # sizes, the state is a known one, and what is read is only what arrived in order.
    seed = 4242
    for trial in range(40):
        st, peer, conn, snd, rcv = connected(rx_size=2048)
        conn.write(b"q" * 3000)
        now = 30
        for step in range(60):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            r = seed >> 4
            flags = r & 0x1F
            seq = (rcv + (r >> 5) % 3000 - 1000) & 0xFFFFFFFF if r & 0x100000 else (r * 7919) & 0xFFFFFFFF
            ack = (snd + (r >> 7) % 4000 - 500) & 0xFFFFFFFF if r & 0x200000 else (r * 104729) & 0xFFFFFFFF
            payload = b"p" * ((r >> 9) % 1500)
            conn.segment(seq, ack, flags, (r >> 3) % 70000 & 0xFFFF, 0, payload, now)
            for s in conn.segments(now):
                assert len(s[5]) <= conn.mss
            if r & 1:
                st.on_timer(now + conn.rto)
                now += conn.rto
            got = conn.read(5000)
            assert set(got) <= {ord("p")}
            assert 0 <= conn.readable() <= 2048 and 0 <= conn.unacked() <= 4096
            assert 0 <= conn.state < len(tcp.STATE_NAMES)
            if conn.finished:
                break
