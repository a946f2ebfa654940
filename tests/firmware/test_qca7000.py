# The QCA7000 SPI driver core (evpilot.hal.qca7000) against the modem model (evpilot_sim.qca7000_model) on
# a manual clock, in polling and interrupt mode: start-up (reset, the stale first signature read, CPU_ON),
# frames both ways, several records in one buffer read, corrupt records, the write-space check, buffer
# errors, a modem that restarts in the middle of a session, a wedged modem that needs its RESET pin, and
# the record parser on garbage (only PeerError escapes).

from evpilot.errors import PeerError, UsageError
from evpilot.hal import qca7000 as Q
from evpilot_sim import qca7000_model as M


class Rig:
    """Driver + model on one clock; each rising edge of the INT line calls interrupt() in interrupt mode."""

    def __init__(self, irq=False, pin=True, **model_kw):
        self.model = M.Qca7000Model(**model_kw)
        self.drv = Q.Qca7000(self.model.transfer, self.model.set_reset_pin if pin else None, irq=irq)
        self.now = 1000
        self.model.advance(self.now)
        self._edges = 0
        self.events = []
        self.got = []
        self.buf = bytearray(Q.MAX_FRAME)

    def step(self, ms=1):
        self.now += ms
        m = self.model
        m.advance(self.now)
        self._edge()
        d = self.drv.next_deadline()
        if d is not None and Q.ticks_diff(self.now, d) >= 0:
            self.drv.poll(self.now)
            self._edge()  # an edge while the poll ran (re-enabling with a cause pending)
        while True:
            ev = self.drv.pop_event()
            if ev is None:
                break
            self.events.append(ev)
        while True:
            n = self.drv.recv_nowait_into(self.buf)
            if not n:
                break
            self.got.append(bytes(self.buf[:n]))

    def _edge(self):
        if self.model.edges != self._edges:
            self._edges = self.model.edges
            if self.drv.irq:
                self.drv.interrupt()

    def run_until(self, cond, limit_ms=10000, ms=1):
        end = self.now + limit_ms
        while not cond():
            assert self.now < end, "not reached in %d ms; state %s, events %r" % (
                limit_ms, Q.STATE_NAMES[self.drv.state], self.events)
            self.step(ms)

    def start(self):
        self.drv.start(self.now)
        self.run_until(lambda: self.drv.ready)
        return self


def frame(i, size=64, dst=b"\xff" * 6):
    body = bytes((i + k) & 0xFF for k in range(size - 14))
    return dst + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xe1" + body


def test_command_words_on_the_wire():
    seen = []

    def transfer(out, inp):
        seen.append((bytes(out), None if inp is None else len(inp)))
        if inp is not None:
            inp[0] = 0xAA
            inp[1] = 0x55

    d = Q.Qca7000(transfer)
    assert d.read_register(Q.SPI_REG_SIGNATURE) == 0xAA55
    d.write_register(Q.SPI_REG_SPI_CONFIG, 0x0040)
    d.write_register(Q.SPI_REG_INTR_ENABLE, Q.INTS)
    # read internal: 0xC000 | reg, 2 bytes back; write internal: 0x4000 | reg and the value (AN4 5)
    assert seen == [(b"\xda\x00", 2), (b"\x44\x00\x00\x40", None), (b"\x4d\x00\x00\x47", None)]


def test_record_parser_accepts_and_names_what_is_wrong():
    f = frame(1, 70)
    good = M.record(f)
    off, fl = Q.parse_record(good, 0, len(good))
    assert (off, fl) == (12, 70) and good[off:off + fl] == f
    two = good + M.record(frame(2, 60))
    off2, fl2 = Q.parse_record(two, off + fl + 2, len(two))
    assert fl2 == 60 and two[off2:off2 + fl2] == frame(2, 60)
    cases = [("sof", "start-of-frame"), ("eof", "end-of-frame"), ("length", "frame length"),
             ("prefix", "length prefix")]
    for kind, words in cases:
        bad = M.record(f, corrupt=kind)
        try:
            Q.parse_record(bad, 0, len(bad))
        except PeerError as e:
            assert words in str(e), (kind, str(e))
        else:
            assert False, kind
    for cut in (5, 20, len(good) - 1):
        try:
            Q.parse_record(good, 0, cut)
        except PeerError:
            pass
        else:
            assert False, cut


def test_record_parser_on_garbage_raises_only_peer_error():
    x = 12345
    buf = bytearray(200)
    for round_ in range(300):
        for i in range(len(buf)):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            buf[i] = (x >> 16) & 0xFF
        if round_ % 3 == 0:  # plausible headers with random lengths
            buf[4:8] = b"\xaa\xaa\xaa\xaa"
        end = (x >> 8) % len(buf)
        try:
            Q.parse_record(buf, 0, end)
        except PeerError:
            pass


def test_startup_resets_the_modem_and_reads_the_signature_twice():
    for irq in (False, True):
        r = Rig(irq=irq, pin=False, stale_signature=0x0000).start()
        m = r.model
        assert r.drv.ready and r.events == [(Q.EV_READY, None)]
        assert m.soft_resets == 1 and r.drv.soft_resets == 1 and m.pin_resets == 0
        # after the reset's CPU_ON the first signature read is stale: the driver read it twice
        assert m.signature_reads >= 3
        assert m.enable == Q.INTS and m.cause & Q.INT_CPU_ON == 0


def test_startup_with_reset_pin_pulses_it():
    r = Rig(pin=True).start()
    assert r.model.pin_resets == 1 and r.drv.pin_resets == 1 and r.model.soft_resets == 0
    assert r.drv.ready


def test_frames_both_ways():
    for irq in (False, True):
        r = Rig(irq=irq).start()
        m = r.model
        out = [frame(i, 60 + 37 * i) for i in range(8)] + [frame(99, 20), frame(98, Q.MAX_FRAME)]
        for f in out:
            assert r.drv.send(f)
        sent = m.take_sent()
        assert len(sent) == len(out) and m.bad_writes == 0
        for s, f in zip(sent, out):
            if len(f) < Q.MIN_FRAME:  # padded to 60 with zeros
                assert s == f + bytes(Q.MIN_FRAME - len(f))
            else:
                assert s == f
        inc = [frame(50 + i, 60 + 101 * i) for i in range(6)]
        for f in inc:
            assert m.inject(f)
            r.step(3)
        r.run_until(lambda: len(r.got) == len(inc), 200)
        assert r.got == inc and r.drv.rx_errors == 0 and r.drv.received == len(inc)
        assert r.drv.sent == len(out) and r.drv.send_full == 0


def test_several_records_in_one_buffer_read():
    r = Rig().start()
    m = r.model
    reads = m.buffer_reads
    inc = [frame(i, 60 + 15 * i) for i in range(12)]
    for f in inc:
        assert m.inject(f)
    r.run_until(lambda: len(r.got) == len(inc), 200)
    assert r.got == inc
    assert m.buffer_reads == reads + 1 and r.drv.rx_reads == 1


def test_more_frames_than_one_read_holds():
    r = Rig().start()
    m = r.model
    inc = [frame(i, 1000) for i in range(9)]
    k = 0
    for _ in range(500):
        while k < len(inc) and m.inject(inc[k]):
            k += 1
        r.step(2)
        if len(r.got) == len(inc):
            break
    assert r.got == inc and r.drv.rx_reads >= 3


def test_corrupt_record_is_dropped_and_the_rest_delivered():
    for kind in ("sof", "eof", "length", "prefix"):
        r = Rig().start()
        m = r.model
        a, b, c = frame(1, 80), frame(2, 90), frame(3, 100)
        m.inject(a)
        m.inject(b, corrupt=kind)
        m.inject(c)
        r.run_until(lambda: len(r.got) == 2, 200)
        r.step(20)
        assert r.got == [a, c], kind
        assert r.drv.rx_errors >= 1 and isinstance(r.drv.last_error, PeerError), kind
        assert r.drv.ready  # a bad record is not a reason to reset
        d = frame(4, 61)
        m.inject(d)
        r.run_until(lambda: len(r.got) == 3, 200)
        assert r.got[2] == d


def test_resynchronises_across_noise_between_records():
    r = Rig().start()
    m = r.model
    a, b, c = frame(1, 60), frame(2, 300), frame(3, 61)
    m.inject_raw(b"\x00\x13\xaa\xaa")
    m.inject(a)
    # noise holding start-of-frame markers with impossible lengths, and a cut-off record
    m.inject_raw(b"\xaa\xaa\xaa\xaa\xaa\xaa\xff\xff\x00\x00" + M.record(b)[:50])
    m.inject(b)
    m.inject_raw(b"\x55" * 7)
    m.inject(c)
    r.run_until(lambda: len(r.got) == 3, 200)
    r.step(20)
    assert r.got == [a, b, c] and r.drv.rx_errors >= 3 and r.drv.ready


def test_a_lost_interrupt_edge_is_caught_by_the_watchdog():
    r = Rig(irq=True).start()
    m = r.model
    r._edge = lambda: None  # from now on no edge reaches the driver
    m.inject(frame(4))
    r.run_until(lambda: r.got == [frame(4)], Q.IRQ_WATCHDOG_MS + 50)


def test_write_space_is_checked_before_writing():
    r = Rig(auto_drain=False).start()
    m = r.model
    f = frame(7, 1000)
    n = 0
    while r.drv.send(f):
        n += 1
        assert n < 10
    assert n == Q.HW_BUF_LEN // (1000 + 10) and r.drv.send_full == 1
    assert m.cause & Q.INT_WRBUF_ERR == 0 and m.bad_writes == 0
    assert len(m.take_sent()) == n
    assert r.drv.send(f) and len(m.take_sent()) == 1
    r.step(20)
    assert r.drv.ready and r.events == [(Q.EV_READY, None)]


def test_buffer_errors_reset_the_modem_and_sync_comes_back():
    for cause, words in ((Q.INT_WRBUF_ERR, "write buffer"), (Q.INT_RDBUF_ERR, "read buffer")):
        for irq in (False, True):
            r = Rig(irq=irq, pin=False).start()
            m = r.model
            m.fail(cause)
            r.run_until(lambda: not r.drv.ready, 2000)
            assert r.events[-1][0] == Q.EV_DOWN and words in r.events[-1][1]
            assert not r.drv.send(frame(1))
            r.run_until(lambda: r.drv.ready, 3000)
            assert m.soft_resets == 2 and r.events[-1] == (Q.EV_READY, None)
            assert r.drv.send(frame(2)) and m.take_sent() == [frame(2)]


def test_impossible_byte_count_is_rejected():
    r = Rig(pin=False).start()
    m = r.model
    m.report_bytes(5000)
    m.inject(frame(1))
    r.run_until(lambda: not r.drv.ready, 200)
    assert "5000" in r.events[-1][1] and r.drv.buffer_errors == 1
    r.run_until(lambda: r.drv.ready, 3000)
    m.inject(frame(2))
    r.run_until(lambda: r.got == [frame(2)], 200)


def test_modem_reset_in_the_middle_of_a_session():
    for irq in (False, True):
        r = Rig(irq=irq, boot_ms=150).start()
        m = r.model
        sent = []
        crashed = False
        i = 0
        # an echo peer on the line: every frame the driver sends comes back; the modem restarts midway
        while r.now < 20000 and (not crashed or len(r.got) < 40):
            if r.drv.ready and r.drv.send(frame(i, 60 + i % 200)):
                sent.append(frame(i, 60 + i % 200))
            i += 1
            for f in m.take_sent():
                m.inject(f)
            r.step(5)
            if len(r.got) == 20 and not crashed:
                m.crash()
                crashed = True
        assert crashed and len(r.got) >= 40
        assert (Q.EV_MODEM_RESET, None) in r.events, r.events
        assert r.drv.modem_resets == 1 and r.drv.ready
        # what came back is what was sent, in order, minus what the restart lost
        pos = 0
        for f in r.got:
            while sent[pos] != f:
                pos += 1
            pos += 1
        assert r.got[-1] == sent[pos - 1]


def test_signature_failure_while_ready_resyncs():
    r = Rig(pin=False).start()
    m = r.model
    m.wedge()
    r.run_until(lambda: not r.drv.ready, 3000)
    assert r.drv.bad_signatures >= 1 and "signature" in r.events[-1][1]
    # without a RESET pin the driver keeps trying and stays down
    for _ in range(300):
        r.step(10)
    assert not r.drv.ready and r.drv.pin_resets == 0 and r.drv.state == Q.ST_UNKNOWN


def test_wedged_modem_gets_its_reset_pin():
    r = Rig(pin=True).start()
    m = r.model
    m.wedge()
    r.run_until(lambda: not r.drv.ready, 3000)
    r.run_until(lambda: r.drv.ready, 5000)
    assert m.pin_resets == 2 and r.drv.pin_resets == 2
    assert r.drv.send(frame(5)) and m.take_sent() == [frame(5)]


def test_soft_reset_without_cpu_on_times_out():
    for pin in (False, True):
        r = Rig(pin=pin)
        r.model.ignore_soft_reset = True
        if pin:
            r.start()  # the start-up pulse works; the soft reset below does not
            r.drv.reset(r.now)
        else:
            r.model.cause = 0  # a modem up for long, its power-on CPU_ON cleared by an earlier host run
            r.drv.start(r.now)
        r.run_until(lambda: r.drv.reset_timeouts == 1, Q.RESET_TIMEOUT_MS + 200)
        if pin:
            r.run_until(lambda: r.drv.ready, 3000)
            assert r.model.pin_resets == 2 and r.drv.reset_timeouts == 1
        else:
            # no pin: soft resets again, and keeps trying
            r.run_until(lambda: r.drv.reset_timeouts == 2, 2 * Q.RESET_TIMEOUT_MS + 400)
            assert not r.drv.ready and r.model.soft_resets >= 2
            r.model.ignore_soft_reset = False
            r.run_until(lambda: r.drv.ready, 3000)


def test_reset_on_request():
    r = Rig(pin=True).start()
    r.drv.reset(r.now)
    assert not r.drv.ready
    r.run_until(lambda: r.drv.ready, 3000)
    assert r.model.soft_resets == 1
    r.drv.reset(r.now, pin=True)
    r.run_until(lambda: r.drv.ready, 3000)
    assert r.model.pin_resets == 2
    kinds = [e[0] for e in r.events]
    assert kinds == [Q.EV_READY, Q.EV_DOWN, Q.EV_READY, Q.EV_DOWN, Q.EV_READY]


def test_usage_errors():
    r = Rig(pin=False)
    try:
        r.drv.reset(r.now)
    except UsageError:
        pass
    else:
        assert False
    r.start()
    for n in (13, Q.MAX_FRAME + 1):
        try:
            r.drv.send(bytes(n))
        except UsageError:
            pass
        else:
            assert False, n
    try:
        r.drv.reset(r.now, pin=True)
    except UsageError:
        pass
    else:
        assert False
    try:
        r.drv.start(r.now)
    except UsageError:
        pass
    else:
        assert False
    r.model.inject(frame(1, 100))
    r.step(20)
    try:
        r.drv.recv_nowait_into(bytearray(10))
    except UsageError:
        pass
    else:
        assert r.got == [frame(1, 100)]


def test_idle_polling_costs_one_register_read():
    r = Rig(pin=False).start()
    m = r.model
    r.step(Q.SIGNATURE_CHECK_MS)  # the signature check falls due
    del m.log[:]
    for _ in range(5):
        r.step(Q.POLL_MS)
    assert m.log == [(True, True, Q.SPI_REG_INTR_CAUSE)] * 5


def test_interrupt_mode_waits_for_the_pin():
    r = Rig(irq=True, pin=False).start()
    m = r.model
    r.step(Q.SIGNATURE_CHECK_MS)
    del m.log[:]
    for _ in range(50):
        r.step(Q.POLL_MS)
    assert m.log == []  # nothing happened: no SPI traffic at all
    m.inject(frame(9))
    r.step(1)
    assert r.got == [frame(9)]
