# A TCP client connection (RFC 9293), sans-I/O: segments and `now` in, segments and a deadline out.
#
# How this works
# --------------
# The stack hands each segment for this connection to segment(seq, ack, flags, window, mss, payload, now)
# and asks segments() for what to send (tuples (seq, ack, flags, window, mss_option, payload)); the stack
# wraps them in IPv6 and Ethernet. The application side is write(data) -> bytes taken, read(n) -> bytes,
# close() (FIN after what was written), abort() (RST). Buffers are fixed rings allocated once:
#   send ring   bytes from snd_una on: sent-but-unacknowledged, then not yet sent; write() takes what fits
#   receive     in-order bytes not yet read; the window we advertise is its free space (no window scaling,
#               so at most 65535), and a segment past the window is cut to it
#   held        up to MAX_HELD out-of-order segments inside the window, merged when the gap fills
# Timers: one retransmission timer (RFC 6298: SRTT/RTTVAR from one timed segment at a time, Karn's rule,
# RTO doubled per expiry up to RTO_MAX, retries counted), which also probes a zero window; TIME_WAIT.
# Loss recovery: on an RTO everything unacknowledged is sent again from snd_una (go-back-N) with cwnd one
# segment; three duplicate ACKs resend the first unacknowledged segment at once (RFC 5681 section 3.2 fast
# retransmit; cwnd halved, no full fast recovery). Congestion window: slow start and congestion avoidance
# (RFC 5681 section 3.1) with the initial window of RFC 3390. ACKs go out at once (no delayed ACK: a V2G
# exchange is one request, one response). Keep-alive is off (RFC 9293 3.8.4 makes it optional).
# Deviation: RTO_MIN is 200 ms (Linux's TCP_RTO_MIN) instead of RFC 6298 (2.4)'s 1 s, because ISO 15118-2
# gives some requests 250 ms (V2G_EVCC_Msg_Timeout, table 109): a 1 s floor would end a session on one loss.
# Sequence numbers compare modulo 2**32 with _lt/_le.

from evpilot.compat import const, ticks_add, ticks_diff
from evpilot.errors import UsageError

FIN = const(0x01)
SYN = const(0x02)
RST = const(0x04)
PSH = const(0x08)
ACK = const(0x10)

CLOSED = const(0)
SYN_SENT = const(1)
ESTABLISHED = const(2)
FIN_WAIT_1 = const(3)
FIN_WAIT_2 = const(4)
CLOSE_WAIT = const(5)
CLOSING = const(6)
LAST_ACK = const(7)
TIME_WAIT = const(8)
STATE_NAMES = ("CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSE_WAIT", "CLOSING",
               "LAST_ACK", "TIME_WAIT")

RTO_INITIAL = const(1000)  # RFC 6298 (2.1)
RTO_MIN = const(200)  # see the deviation above
RTO_MAX = const(60000)  # RFC 6298 (2.5)
MAX_RETRIES = const(8)  # expiries in a row before the connection is given up (about 1+2+...+60 s)
MAX_SYN_RETRIES = const(4)  # 1+2+4+8+16 s: the SYN is given up after 31 s
TIME_WAIT_MS = const(1000)  # shorter than 2*MSL: a client with a fresh random port and ISS each time
MAX_HELD = const(4)
DEFAULT_MSS = const(536)  # RFC 9293 3.7.1: what a peer that sends no MSS option accepts
_M32 = 0xFFFFFFFF


def _lt(a, b):
    return a != b and ((b - a) & _M32) < 0x80000000


def _le(a, b):
    return ((b - a) & _M32) < 0x80000000


class TcpConnection:
    def __init__(self, local_port, address, port, iss, now, mss=1440, rx_size=4096, tx_size=4096):
        if rx_size > 65535 or rx_size < mss:
            raise UsageError("TCP receive buffer must hold one segment and at most 65535 bytes")
        self.local_port = local_port
        self.address = address
        self.port = port
        self.state = SYN_SENT
        self.error = None  # why the connection failed: "refused", "reset", "timeout", "aborted"
        self.mss_local = mss
        self.mss = DEFAULT_MSS
        self.iss = iss & _M32
        self.snd_una = self.iss
        self.snd_nxt = self.iss  # next sequence number to send (SYN not yet sent)
        self.snd_max = self.iss  # highest sequence number sent + 1
        self.snd_wnd = 1
        self.irs = 0
        self.rcv_nxt = 0
        self._tx = bytearray(tx_size)
        self._tx_head = 0  # ring index of snd_una's byte (after the SYN)
        self._tx_len = 0  # bytes held from snd_una
        self._rx = bytearray(rx_size)
        self._rx_head = 0
        self._rx_len = 0
        self._held = []  # (seq, bytes) out of order, inside the window
        self._fin_wanted = False
        self._fin_sent = False
        self._fin_seq = None
        self.peer_fin = False
        self._ack_due = False
        self._syn_due = True
        self._rst_due = None  # (seq, ack, flags) of a reset to send
        self._wnd_sent = rx_size
        self.srtt = None
        self.rttvar = 0
        self.rto = RTO_INITIAL
        self._timer = None  # retransmission (or zero-window probe) deadline
        self._retries = 0
        self._timed = None  # (seq, sent at) of the segment being timed
        self._dupacks = 0
        self._fast = False  # a fast retransmission is due
        self._probe = False  # a zero-window probe is due
        self.cwnd = 0
        self.ssthresh = 65535
        self._tw_deadline = None
        self._now = now
        self.retransmits = 0  # counters for tests and benchmarks
        self.fast_retransmits = 0
        self.segments_in = 0
        self.segments_out = 0

    # -- the application side --

    @property
    def established(self):
        return self.state in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, FIN_WAIT_2)

    @property
    def finished(self):
        return self.state == CLOSED

    @property
    def at_eof(self):
        """The peer sent FIN (or the connection ended) and every byte before it has been read."""
        return self._rx_len == 0 and (self.peer_fin or self.state == CLOSED)

    def readable(self):
        return self._rx_len

    def writable(self):
        """Bytes write() would take now (0 once closing)."""
        if self._fin_wanted or self.state not in (SYN_SENT, ESTABLISHED, CLOSE_WAIT):
            return 0
        return len(self._tx) - self._tx_len

    def unacked(self):
        return self._tx_len

    def write(self, data):
        """Queue bytes to send; returns how many were taken (the free space of the send ring)."""
        if self._fin_wanted or self.state not in (SYN_SENT, ESTABLISHED, CLOSE_WAIT):
            raise UsageError("TCP: write in state %s" % STATE_NAMES[self.state])
        size = len(self._tx)
        n = min(len(data), size - self._tx_len)
        tail = (self._tx_head + self._tx_len) % size
        first = min(n, size - tail)
        mv = memoryview(data)
        self._tx[tail:tail + first] = mv[:first]
        if n > first:
            self._tx[0:n - first] = mv[first:n]
        self._tx_len += n
        return n

    def read(self, limit):
        """Up to `limit` received bytes, copied once (see _ring_bytes; b"" when none)."""
        n = min(limit, self._rx_len)
        if not n:
            return b""
        out = _ring_bytes(self._rx, self._rx_head, n)
        self._consumed(n)
        return out

    def read_into(self, buf):
        """Copy up to len(buf) received bytes into `buf` (no allocation); returns how many (0 when none)."""
        n = min(len(buf), self._rx_len)
        if not n:
            return 0
        _ring_into(self._rx, self._rx_head, buf, n)
        self._consumed(n)
        return n

    def _consumed(self, n):
        self._rx_head = (self._rx_head + n) % len(self._rx)
        self._rx_len -= n
        # a window update once the window opened by a segment or more since we last advertised it
        if self.established and self._window() - self._wnd_sent >= self.mss:
            self._ack_due = True

    def close(self):
        """Send FIN after what was written (a half close: reading goes on until the peer's FIN)."""
        if self.state == SYN_SENT:
            self._enter(CLOSED)
            return
        self._fin_wanted = True

    def abort(self, reason="aborted"):
        if self.state in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, FIN_WAIT_2, CLOSING, LAST_ACK):
            self._rst_due = (self.snd_nxt, 0, RST)
        if self.error is None:
            self.error = reason
        self._enter(CLOSED)

    # -- the stack side --

    def _window(self):
        w = len(self._rx) - self._rx_len
        return w if w < 65535 else 65535

    def _enter(self, state):
        self.state = state
        if state == CLOSED:
            self._timer = None
            self._tw_deadline = None
            self._held = []
        elif state == TIME_WAIT:
            self._timer = None
            self._tw_deadline = ticks_add(self._now, TIME_WAIT_MS)

    def _fail(self, reason):
        if self.error is None:
            self.error = reason
        self._enter(CLOSED)

    def next_deadline(self):
        if self._tw_deadline is not None:
            return self._tw_deadline
        return self._timer

    def on_timer(self, now):
        self._now = now
        if self._tw_deadline is not None and ticks_diff(now, self._tw_deadline) >= 0:
            self._enter(CLOSED)
            return
        if self._timer is None or ticks_diff(now, self._timer) < 0:
            return
        probing = self.state != SYN_SENT and self.snd_wnd == 0 and ((self.snd_max - self.snd_una) & _M32) <= 1
        if not probing:  # a window probe the peer answers is no loss: the persist timer never gives up
            self._retries += 1
        if self._retries > (MAX_SYN_RETRIES if self.state == SYN_SENT else MAX_RETRIES):
            self._fail("timeout")
            return
        self.rto = min(self.rto * 2, RTO_MAX)  # RFC 6298 (5.5)
        self._timed = None  # Karn: no sample from a retransmitted segment
        self.retransmits += 1
        if self.state == SYN_SENT:
            self._syn_due = True
        else:
            flight = (self.snd_max - self.snd_una) & _M32
            self.ssthresh = max(flight // 2, 2 * self.mss)  # RFC 5681 (4)
            self.cwnd = self.mss
            self.snd_nxt = self.snd_una  # go back: send everything unacknowledged again
            if self._fin_sent and _le(self.snd_una, self._fin_seq):
                self._fin_sent = False
            self._probe = self.snd_wnd == 0
            if probing:
                self.retransmits -= 1
        self._timer = ticks_add(now, self.rto)

    def _arm(self, now):
        if self._timer is None:
            self._timer = ticks_add(now, self.rto)

    def _sample(self, r):
        # RFC 6298 (2.2), (2.3) with alpha 1/8, beta 1/4, clock granularity 1 ms
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r // 2
        else:
            d = self.srtt - r
            self.rttvar = (3 * self.rttvar + (d if d >= 0 else -d)) // 4
            self.srtt = (7 * self.srtt + r) // 8
        rto = self.srtt + max(1, 4 * self.rttvar)
        self.rto = min(max(rto, RTO_MIN), RTO_MAX)

    def segment(self, seq, ack, flags, window, mss, payload, now):
        """One segment for this connection (checksum and ports already checked)."""
        self._now = now
        self.segments_in += 1
        state = self.state
        if state == CLOSED:
            return
        if state == SYN_SENT:
            if flags & ACK and ack != ((self.iss + 1) & _M32):
                if not flags & RST:
                    self._rst_due = (ack, 0, RST)  # RFC 9293 3.10.7.3: an old duplicate
                return
            if flags & RST:
                if flags & ACK:
                    self._fail("refused")
                return
            if flags & SYN and flags & ACK:
                self.irs = seq
                self.rcv_nxt = (seq + 1) & _M32
                self.snd_una = ack
                self.snd_wnd = window
                self.mss = min(mss or DEFAULT_MSS, self.mss_local)
                self.cwnd = min(4 * self.mss, max(2 * self.mss, 4380))  # RFC 3390
                if self._timed is not None and self._retries == 0:
                    self._sample(ticks_diff(now, self._timed[1]))
                self._timed = None
                self._timer = None
                self._retries = 0
                self._enter(ESTABLISHED)
                self._ack_due = True
            return  # a bare SYN (simultaneous open) is not supported by a client: ignored
        # synchronised states: RFC 9293 3.10.7.4's acceptability test
        n = len(payload)
        wnd = self._window()
        d = (seq - self.rcv_nxt) & _M32
        if d >= 0x80000000:
            d -= 0x100000000
        if n == 0:
            acceptable = d == 0 or 0 <= d < wnd
        else:
            acceptable = d + n > 0 and d < max(wnd, 1)
        if flags & RST:
            if seq == self.rcv_nxt:
                self._fail("reset")
            elif acceptable:
                self._ack_due = True  # RFC 5961 challenge ACK
            return
        if flags & SYN:
            self._ack_due = True  # a retransmitted SYN-ACK (our ACK was lost), or a challenge ACK
            return
        if not flags & ACK:
            return
        if not acceptable:
            self._ack_due = True  # a duplicate or a segment past the window: tell the peer where we are
            return
        self._on_ack(ack, window, n, flags, now)
        if self.state == CLOSED:
            return
        if n or flags & FIN:
            self._on_data(seq, payload, flags & FIN)
        self._after_fin()

    def _on_ack(self, ack, window, n, flags, now):
        if _lt(self.snd_max, ack):
            self._ack_due = True  # acknowledges what we never sent
            return
        if _lt(self.snd_una, ack):
            acked = (ack - self.snd_una) & _M32
            data_acked = acked
            if self._fin_sent and _lt(self._fin_seq, ack):
                data_acked -= 1
            data_acked = min(data_acked, self._tx_len)
            self._tx_head = (self._tx_head + data_acked) % len(self._tx)
            self._tx_len -= data_acked
            self.snd_una = ack
            if _lt(self.snd_nxt, ack):
                self.snd_nxt = ack
            if self._timed is not None and _lt(self._timed[0], ack):
                self._sample(ticks_diff(now, self._timed[1]))
                self._timed = None
            if self._retries:
                self._retries = 0
                if self.srtt is not None:
                    self._sample(self.srtt)  # recompute the RTO from SRTT (RFC 6298 5.7's spirit)
            self._dupacks = 0
            if self.cwnd < self.ssthresh:
                self.cwnd += min(acked, self.mss)  # slow start
            else:
                self.cwnd += max(1, self.mss * self.mss // self.cwnd)  # congestion avoidance
            self._timer = None if ack == self.snd_max else ticks_add(now, self.rto)
        elif ack == self.snd_una and not n and not flags & FIN and self.snd_una != self.snd_max \
                and window == self.snd_wnd:
            self._dupacks += 1  # RFC 5681 section 2's duplicate ACK
            if self._dupacks == 3:
                flight = (self.snd_max - self.snd_una) & _M32
                self.ssthresh = max(flight // 2, 2 * self.mss)
                self.cwnd = self.ssthresh
                self._fast = True
                self.fast_retransmits += 1
                self._timed = None
        if window and not self.snd_wnd and ack == self.snd_una:
            self.snd_nxt = ack  # the window opened and the probe's byte was not taken: send it again
        self.snd_wnd = window
        if self._timer is None and (self.snd_una != self.snd_max or (not window and self._tx_len)):
            self._arm(now)  # outstanding data, or the persist timer of a zero window

    def _store(self, data):
        """Append in-order bytes to the receive ring; how many fitted."""
        size = len(self._rx)
        n = min(len(data), size - self._rx_len)
        tail = (self._rx_head + self._rx_len) % size
        first = min(n, size - tail)
        self._rx[tail:tail + first] = data[:first]
        if n > first:
            self._rx[0:n - first] = data[first:n]
        self._rx_len += n
        return n

    def _on_data(self, seq, payload, fin):
        self._ack_due = True
        n = len(payload)
        off = (self.rcv_nxt - seq) & _M32
        if off < 0x80000000:  # starts at or before rcv_nxt: take the new part
            if off < n:
                taken = self._store(memoryview(payload)[off:])
                self.rcv_nxt = (self.rcv_nxt + taken) & _M32
                if taken < n - off:
                    fin = False  # cut at the window: the FIN comes again
            elif off > n or (off == n and not fin):
                return  # all old
            if fin and ((seq + n) & _M32) == self.rcv_nxt:
                self._got_fin()
            self._merge()
            return
        # out of order: hold it if it fits the window and a slot is free (else the peer sends it again)
        ahead = (seq - self.rcv_nxt) & _M32
        if ahead + n <= self._window() and len(self._held) < MAX_HELD and n:
            for s, _d, _f in self._held:
                if s == seq:
                    return
            self._held.append((seq, bytes(payload), fin))

    def _merge(self):
        progress = True
        while progress and self._held:
            progress = False
            for item in self._held:
                s, d, f = item
                off = (self.rcv_nxt - s) & _M32
                if off < 0x80000000:
                    self._held.remove(item)
                    progress = True
                    if off < len(d):
                        taken = self._store(memoryview(d)[off:])
                        self.rcv_nxt = (self.rcv_nxt + taken) & _M32
                        if taken < len(d) - off:
                            f = False
                    if f and ((s + len(d)) & _M32) == self.rcv_nxt and not self.peer_fin:
                        self._got_fin()
                    break

    def _got_fin(self):
        self.rcv_nxt = (self.rcv_nxt + 1) & _M32
        self.peer_fin = True
        self._held = []
        if self.state == ESTABLISHED:
            self._enter(CLOSE_WAIT)
        elif self.state == FIN_WAIT_1:
            self._enter(CLOSING)
        elif self.state == FIN_WAIT_2:
            self._enter(TIME_WAIT)

    def _after_fin(self):
        fin_acked = self._fin_sent and _lt(self._fin_seq, self.snd_una)
        if not fin_acked:
            return
        if self.state == FIN_WAIT_1:
            self._enter(FIN_WAIT_2)
        elif self.state == CLOSING:
            self._enter(TIME_WAIT)
        elif self.state == LAST_ACK:
            self._enter(CLOSED)

    def segments(self, now):
        """What to send now: a list of (seq, ack, flags, window, mss_option, payload)."""
        self._now = now
        out = []
        if self._rst_due is not None:
            seq, ack, flags = self._rst_due
            self._rst_due = None
            out.append((seq, ack, flags, 0, 0, b""))
        state = self.state
        if state == CLOSED:
            return out
        if state == SYN_SENT:
            if self._syn_due:
                self._syn_due = False
                self.snd_nxt = (self.iss + 1) & _M32
                self.snd_max = self.snd_nxt
                if self._retries == 0:
                    self._timed = (self.iss, now)
                self._arm(now)
                self.segments_out += 1
                out.append((self.iss, 0, SYN, self._window(), self.mss_local, b""))
            return out
        if self._fast:
            self._fast = False
            seg = self._data_segment(self.snd_una, min(self.mss, self._tx_len))
            if seg is not None:
                out.append(seg)
                self._timer = ticks_add(now, self.rto)
        if self._probe and self.snd_wnd == 0 and self._tx_len:
            self._probe = False  # a zero window: one byte past it, answered with the window (RFC 9293 3.8.6.1)
            out.append(self._data_segment(self.snd_una, 1))
            self.snd_nxt = (self.snd_una + 1) & _M32
            if _lt(self.snd_max, self.snd_nxt):
                self.snd_max = self.snd_nxt
        if state in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK):
            limit = min(self.snd_wnd, self.cwnd)
            while True:
                sent = (self.snd_nxt - self.snd_una) & _M32
                if self._fin_sent and _lt(self._fin_seq, self.snd_nxt):
                    sent -= 1
                unsent = self._tx_len - sent
                room = limit - ((self.snd_nxt - self.snd_una) & _M32)
                if unsent <= 0 or room <= 0:
                    break
                n = min(unsent, room, self.mss)
                if n < self.mss and n < unsent:
                    break  # wait for a full segment's room (RFC 9293 3.8.6.2.1's sender side, simply)
                out.append(self._data_segment(self.snd_nxt, n, unsent == n))
                if self._timed is None and not self._retries:
                    self._timed = (self.snd_nxt, now)
                self.snd_nxt = (self.snd_nxt + n) & _M32
                if _lt(self.snd_max, self.snd_nxt):
                    self.snd_max = self.snd_nxt
                self._arm(now)
            sent = (self.snd_nxt - self.snd_una) & _M32
            if self._fin_wanted and not self._fin_sent and sent >= self._tx_len:
                self._fin_sent = True
                self._fin_seq = self.snd_nxt
                self.snd_nxt = (self.snd_nxt + 1) & _M32
                if _lt(self.snd_max, self.snd_nxt):
                    self.snd_max = self.snd_nxt
                if state == ESTABLISHED:
                    self._enter(FIN_WAIT_1)
                elif state == CLOSE_WAIT:
                    self._enter(LAST_ACK)
                self._arm(now)
                out.append((self._fin_seq, self.rcv_nxt, FIN | ACK, self._advertise(), 0, b""))
        if self._ack_due:
            self._ack_due = False
            carried = False
            for seg in out:
                if seg[2] & ACK:
                    carried = True
            if not carried:
                out.append((self.snd_nxt, self.rcv_nxt, ACK, self._advertise(), 0, b""))
        self.segments_out += len(out)
        return out

    def _advertise(self):
        w = self._window()
        self._wnd_sent = w
        return w

    def _data_segment(self, seq, n, push=True):
        off = (seq - self.snd_una) & _M32
        data = _ring_bytes(self._tx, (self._tx_head + off) % len(self._tx), n)
        return (seq, self.rcv_nxt, ACK | (PSH if push else 0), self._advertise(), 0, data)


def _ring_into(ring, start, out, n):
    """Copy `n` bytes of the ring buffer `ring` from `start`, wrapping at its end, into out[:n]."""
    mv = memoryview(ring)
    first = min(n, len(ring) - start)
    out[:first] = mv[start:start + first]
    if first < n:
        out[first:n] = mv[:n - first]


def _ring_bytes(ring, start, n):
    """`n` bytes of `ring` from `start`, copied once: bytes, or a bytearray when they wrap its end."""
    if start + n <= len(ring):
        return bytes(memoryview(ring)[start:start + n])
    out = bytearray(n)
    _ring_into(ring, start, out, n)
    return out
