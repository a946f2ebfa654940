# The QCA7000 / QCA7005 HomePlug Green PHY modem on SPI: the sans-I/O driver core.
#
# How this works
# --------------
# The modem is an Ethernet bridge behind an SPI slave port (I2SE AN4 "QCA7000 SPI / UART protocol"; the
# Linux driver drivers/net/ethernet/qualcomm/qca_spi.c and qca_7k*.c do the same). Every SPI transaction,
# inside one chip-select window, starts with a 16-bit command word, MSB first:
#     bit 15  1 read, 0 write;  bit 14  1 internal register, 0 external (the packet buffers);  13-0 address
# A register read clocks out the command and reads a 16-bit big-endian value; a register write clocks the
# command and the value. A buffer transfer writes BFR_SIZE first, then the command (0x0000 write, 0x8000
# read) and that many bytes.
#
# The core never touches SPI itself: it is given `transfer(out, inp)`, a callable that, in one chip-select
# window, clocks out all of `out` and then, when `inp` is not None, reads len(inp) bytes into it (the
# adapter, qca7000_spi.py, does that with machine.SPI; the tests pass the QCA7000 model's transfer). Time
# comes in as `now` (milliseconds, evpilot.compat ticks); `next_deadline()` says when to call `poll(now)`
# again, `interrupt()` tells it the INT pin rose (safe in an interrupt handler: it only sets a flag).
#
# Link synchronisation (as qca_spi.c's qcaspi_qca7k_sync):
#     UNKNOWN    read SIGNATURE (twice: the first read after a reset may be stale); when it is 0xAA55, set
#                SPI_CONFIG's slave-reset bit -> RESET. A modem that never answers gets a RESET-pin pulse
#                if the board has the pin (PIN_RESET), else we keep trying.
#     PIN_RESET  RESET held low for RESET_HOLD_MS, then released -> RESET
#     RESET      wait up to RESET_TIMEOUT_MS for CPU_ON in INTR_CAUSE; then SIGNATURE (twice) must be 0xAA55
#                and WRBUF_SPC_AVA the empty buffer's 3163, else UNKNOWN; INTR_ENABLE is set -> READY
#     READY      frames flow. RDBUF_ERR / WRBUF_ERR, an unreadable signature, a read buffer reporting more
#                than it can hold -> UNKNOWN (the modem gets reset). CPU_ON while READY: the modem restarted
#                by itself; the same checks bring us back to READY (event EV_MODEM_RESET).
# Interrupt service (AN4 7.2): INTR_ENABLE = 0 (interrupt mode only), read INTR_CAUSE, write it back (which
# clears it; done before handling so that a cause raised meanwhile is not lost), handle, re-enable. In
# polling mode (boards whose INT pin is not routed, e.g. Foccci) the same cause register is read on every
# poll: one 4-byte transaction when nothing happened.
#
# Transmit: send(frame) pads it to 60 bytes, checks that WRBUF_SPC_AVA holds FL + 10 (the value read last
# is kept and counted down, as the write buffer only grows by itself; it is read again when it looks too
# small), writes BFR_SIZE = FL + 10, then one window: 00 00, AA AA AA AA, FL (LE16), 00 00, frame, 55 55.
# No room: False, as a full send queue is on any network interface (the protocols above retransmit).
# Receive: n = RDBUF_BYTE_AVA (at most 3163 + 4), BFR_SIZE = n, one window: 80 00 and n bytes into the
# preallocated read buffer. It holds one or more records, each
#     [length of the rest, BE32 = FL + 10] AA AA AA AA [FL, LE16] 00 00 [frame] 55 55
# parse_record() checks one (only PeerError escapes it, naming the field); a bad record is dropped and the
# parser resynchronises on the next start-of-frame marker. The good frames' places are kept in a small
# offset table and handed out by recv_nowait_into(buf) (one copy, no allocation); the modem is read again
# once they have all been taken, so the modem's own buffer holds back what the application has no room for.

from array import array

from evpilot.compat import const, ticks_add, ticks_diff
from evpilot.errors import PeerError, UsageError

# Registers (AN4 5.1; qca_7k.h)
SPI_REG_BFR_SIZE = const(0x0100)
SPI_REG_WRBUF_SPC_AVA = const(0x0200)
SPI_REG_RDBUF_BYTE_AVA = const(0x0300)
SPI_REG_SPI_CONFIG = const(0x0400)
SPI_REG_SPI_STATUS = const(0x0500)
SPI_REG_INTR_CAUSE = const(0x0C00)
SPI_REG_INTR_ENABLE = const(0x0D00)
SPI_REG_RDBUF_WATERMARK = const(0x1200)
SPI_REG_WRBUF_WATERMARK = const(0x1300)
SPI_REG_SIGNATURE = const(0x1A00)
SPI_REG_ACTION_CTRL = const(0x1B00)

# Command word bits (AN4 5)
CMD_READ = const(0x8000)
CMD_INTERNAL = const(0x4000)

# INTR_CAUSE / INTR_ENABLE bits (AN4 5.1.5, 5.1.6)
INT_PKT_AVLBL = const(0x0001)
INT_RDBUF_ERR = const(0x0002)
INT_WRBUF_ERR = const(0x0004)
INT_ADDR_ERR = const(0x0008)
INT_CPU_ON = const(0x0040)
INT_WRBUF_BELOW_WM = const(0x0400)
# what the driver enables (the Linux driver's QCASPI_INTS)
INTS = const(0x0047)

SPI_CONFIG_SLAVE_RESET = const(0x0040)  # SPI_CONFIG bit 6: soft reset of the modem (AN4 5.1.4)
SIGNATURE = const(0xAA55)  # SPI_REG_SIGNATURE's value (AN4 5.1.7)
HW_BUF_LEN = const(3163)  # 0x0C5B: WRBUF_SPC_AVA of an empty write buffer, and the read buffer's size
HW_PKT_LEN = const(4)  # the length prefix of each record in the read buffer (SPI only)
RX_MAX = const(3167)  # HW_BUF_LEN + HW_PKT_LEN: the most RDBUF_BYTE_AVA can honestly report

# QCAFRM framing (AN4 6): SOF x4, FL (LE16), 2 reserved; frame; EOF x2
FRM_HEADER = const(8)
FRM_FOOTER = const(2)
FRM_OVERHEAD = const(10)
FRM_SOF = const(0xAA)
FRM_EOF = const(0x55)
MIN_FRAME = const(60)  # IEEE 802.3 minimum without FCS: shorter frames are padded before transmit
MAX_FRAME = const(1518)  # 1500-byte payload + 14-byte header + a VLAN tag (qca_7k_common.h QCAFRM_MAX_LEN)
RX_MIN_FRAME = const(14)  # a received frame must at least hold the Ethernet header
_RECORD_MIN = const(4 + 10 + 14)
MAX_RECORDS = const(113)  # RX_MAX // _RECORD_MIN: the most records one read can hold

# Sync states
ST_IDLE = const(0)
ST_UNKNOWN = const(1)
ST_PIN_RESET = const(2)
ST_RESET = const(3)
ST_READY = const(4)
STATE_NAMES = ("IDLE", "UNKNOWN", "PIN_RESET", "RESET", "READY")
# allowed transitions: row = from, bit n set = may go to state n
_NEXT = b"\x02\x0e\x08\x12\x02"

# Events (pop_event() returns (kind, detail))
EV_READY = const(1)  # in sync with the modem (start-up, or after a reset we made); detail None
EV_DOWN = const(2)  # sync lost; detail: the reason (str)
EV_MODEM_RESET = const(3)  # the modem restarted by itself and is back in sync; detail None
_MAX_EVENTS = const(8)

# Timers (ms)
POLL_MS = const(10)  # polling period: the reference asks for at least every 20 ms during SLAC
RESET_TIMEOUT_MS = const(1000)  # wait for CPU_ON after a reset (qca_spi.c waits about 1 s per round)
RESET_HOLD_MS = const(10)  # RESET pin held low
SYNC_RETRY_MS = const(100)  # UNKNOWN: how often the signature is tried again
PIN_RESET_AFTER_MS = const(1000)  # UNKNOWN this long (or a soft reset timed out): pulse the RESET pin
SIGNATURE_CHECK_MS = const(1000)  # READY: the signature is checked this often (qca_spi.c: every wake-up)
IRQ_WATCHDOG_MS = const(1000)  # interrupt mode: read INTR_CAUSE at least this often (a lost edge)

_CMD_WRITE_BUF = b"\x00\x00"
_CMD_READ_BUF = b"\x80\x00"
_ZEROS = bytes(MIN_FRAME)


def parse_record(buf, pos, end):
    """Check the read-buffer record at buf[pos:end]; return (offset, length) of its Ethernet frame (the next
    record starts at offset + length + 2). Raises PeerError naming what is wrong."""
    if end - pos < _RECORD_MIN:
        raise PeerError("QCA7000 record at %d: %d bytes left, less than a record" % (pos, end - pos))
    try:
        plen = (buf[pos] << 24) | (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]
        p = pos + 4
        if buf[p] != FRM_SOF or buf[p + 1] != FRM_SOF or buf[p + 2] != FRM_SOF or buf[p + 3] != FRM_SOF:
            raise PeerError("QCA7000 record at %d: bad start-of-frame marker" % pos)
        fl = buf[p + 4] | (buf[p + 5] << 8)
        if fl < RX_MIN_FRAME or fl > MAX_FRAME:
            raise PeerError("QCA7000 record at %d: frame length %d outside %d..%d" % (pos, fl, RX_MIN_FRAME,
                                                                                     MAX_FRAME))
        if plen != fl + FRM_OVERHEAD:
            raise PeerError("QCA7000 record at %d: length prefix %d disagrees with frame length %d" % (pos, plen,
                                                                                                        fl))
        e = p + FRM_HEADER + fl
        if e + FRM_FOOTER > end:
            raise PeerError("QCA7000 record at %d: frame length %d runs past the buffer" % (pos, fl))
        if buf[e] != FRM_EOF or buf[e + 1] != FRM_EOF:
            raise PeerError("QCA7000 record at %d: bad end-of-frame marker" % pos)
    except IndexError:
        raise PeerError("QCA7000 record at %d: runs past the buffer" % pos)
    return p + FRM_HEADER, fl


class Qca7000:
    """The driver core for one modem. `transfer(out, inp)` performs one SPI transaction (see the header);
    `reset_pin(level)`, when the board routes RESET, drives it (0 = in reset). `irq`: the INT pin is wired
    and interrupt() is called on its rising edge; else the modem is polled every `poll_ms`."""

    def __init__(self, transfer, reset_pin=None, irq=False, poll_ms=POLL_MS):
        self._xfer = transfer
        self._reset_pin = reset_pin
        self.irq = irq
        self.poll_ms = poll_ms
        self.state = ST_IDLE
        self._cmd = bytearray(2)
        self._cmd4 = bytearray(4)
        self._val = bytearray(2)
        self._rx = bytearray(RX_MAX)
        self._rx_mv = memoryview(self._rx)
        self._tx = bytearray(2 + FRM_OVERHEAD + MAX_FRAME)
        self._tx_mv = memoryview(self._tx)
        tx = self._tx
        tx[2] = tx[3] = tx[4] = tx[5] = FRM_SOF
        self._frames = array("H", [0] * (2 * MAX_RECORDS))  # (offset, length) of the frames not yet taken
        self._nframes = 0
        self._next = 0
        self._user = None
        self._user_mv = None
        self._rx_hw = False  # the modem has data we have not read yet (the offset table was busy)
        self._irq_flag = False
        self._wr_space = 0
        self._deadline = 0  # the current state's timer
        self._since = 0  # when UNKNOWN began (pin reset after PIN_RESET_AFTER_MS)
        self._last_poll = 0
        self._sig_due = 0
        self._irq_due = 0
        self._ours = False  # the reset under way is one we made
        self._events = []
        self.last_error = None  # the last PeerError: why sync was lost or a record dropped
        # counters
        self.sent = 0
        self.received = 0
        self.send_full = 0  # send() found no room in the modem's write buffer
        self.send_down = 0  # send() while not in sync
        self.rx_errors = 0  # records dropped
        self.rx_reads = 0  # buffer reads
        self.buffer_errors = 0  # RDBUF_ERR / WRBUF_ERR / impossible byte counts
        self.bad_signatures = 0
        self.soft_resets = 0
        self.pin_resets = 0
        self.reset_timeouts = 0
        self.modem_resets = 0  # CPU_ON while in sync

    # --- registers -------------------------------------------------------------------------------------

    def read_register(self, reg):
        c = self._cmd
        v = CMD_READ | CMD_INTERNAL | reg
        c[0] = v >> 8
        c[1] = v & 0xFF
        val = self._val
        self._xfer(c, val)
        return (val[0] << 8) | val[1]

    def write_register(self, reg, value):
        c = self._cmd4
        v = CMD_INTERNAL | reg
        c[0] = v >> 8
        c[1] = v & 0xFF
        c[2] = (value >> 8) & 0xFF
        c[3] = value & 0xFF
        self._xfer(c, None)

    def _signature(self):
        sig = self.read_register(SPI_REG_SIGNATURE)
        if sig != SIGNATURE:  # the first read after a reset may return a stale value
            sig = self.read_register(SPI_REG_SIGNATURE)
        return sig

    # --- state -----------------------------------------------------------------------------------------

    @property
    def ready(self):
        return self.state == ST_READY

    def _goto(self, state):
        if not (_NEXT[self.state] >> state) & 1:
            raise UsageError("QCA7000 sync: %s -> %s not allowed" % (STATE_NAMES[self.state], STATE_NAMES[state]))
        self.state = state

    def _event(self, kind, detail=None):
        ev = self._events
        if len(ev) >= _MAX_EVENTS:
            ev.pop(0)
        ev.append((kind, detail))

    def pop_event(self):
        """The oldest link event (kind, detail), or None."""
        return self._events.pop(0) if self._events else None

    def _lost(self, now, reason):
        self.last_error = PeerError(reason)
        self._event(EV_DOWN, reason)
        self._unknown(now)

    def _unknown(self, now):
        self._goto(ST_UNKNOWN)
        self._since = now
        self._deadline = now  # try at once
        self._wr_space = 0

    def start(self, now):
        """Begin: reset the modem (by its pin when there is one) and synchronise."""
        if self.state != ST_IDLE:
            raise UsageError("QCA7000 driver started twice")
        if self._reset_pin is not None:
            self._goto(ST_UNKNOWN)
            self._pin_reset(now)
        else:
            self._unknown(now)

    def reset(self, now, pin=False):
        """Reset the modem now (after SET_KEY some modems need one): by SPI_CONFIG, or by the pin."""
        if self.state == ST_IDLE:
            raise UsageError("QCA7000 driver not started")
        if pin and self._reset_pin is None:
            raise UsageError("this board has no QCA7000 RESET pin")
        if self.state == ST_READY:
            self._event(EV_DOWN, "reset requested")
            self._unknown(now)
        if pin:
            if self.state != ST_PIN_RESET:
                self._pin_reset(now)
        else:
            self._soft_reset(now)

    def _soft_reset(self, now):
        if self.state == ST_PIN_RESET:
            return
        if self.state == ST_RESET:
            self._goto(ST_UNKNOWN)
        cfg = self.read_register(SPI_REG_SPI_CONFIG)
        self.write_register(SPI_REG_SPI_CONFIG, cfg | SPI_CONFIG_SLAVE_RESET)
        self.soft_resets += 1
        self._goto(ST_RESET)
        self._ours = True
        self._deadline = ticks_add(now, RESET_TIMEOUT_MS)

    def _pin_reset(self, now):
        if self.state == ST_RESET:
            self._goto(ST_UNKNOWN)
        self._reset_pin(0)
        self.pin_resets += 1
        self._goto(ST_PIN_RESET)
        self._ours = True
        self._deadline = ticks_add(now, RESET_HOLD_MS)

    def _cpu_on(self, now):
        # CPU_ON: the modem (re)started. Signature twice, and an empty write buffer (qca_spi.c).
        was_ready = self.state == ST_READY
        sig = self.read_register(SPI_REG_SIGNATURE)
        sig = self.read_register(SPI_REG_SIGNATURE)
        if sig != SIGNATURE:
            self.bad_signatures += 1
            self._lost(now, "QCA7000 signature 0x%04x after CPU_ON" % sig)
            return
        space = self.read_register(SPI_REG_WRBUF_SPC_AVA)
        if space != HW_BUF_LEN:
            self._lost(now, "QCA7000 write buffer holds %d bytes free after CPU_ON, not %d" % (space, HW_BUF_LEN))
            return
        self.write_register(SPI_REG_INTR_ENABLE, INTS)
        self._wr_space = space
        if self.state != ST_READY:
            self._goto(ST_READY)
        self._sig_due = ticks_add(now, SIGNATURE_CHECK_MS)
        self._irq_due = ticks_add(now, IRQ_WATCHDOG_MS)
        if was_ready and not self._ours:
            self.modem_resets += 1
            self._event(EV_MODEM_RESET)
        else:
            self._event(EV_READY)
        self._ours = False

    # --- time ------------------------------------------------------------------------------------------

    def interrupt(self):
        """The INT pin rose (callable from an interrupt handler)."""
        self._irq_flag = True

    def next_deadline(self):
        """When poll() must run next (ms ticks); None before start()."""
        st = self.state
        if st == ST_IDLE:
            return None
        if st == ST_PIN_RESET:
            return self._deadline
        if st == ST_UNKNOWN:
            return self._deadline
        poll = ticks_add(self._last_poll, self.poll_ms)
        if st == ST_RESET:
            return poll if ticks_diff(poll, self._deadline) < 0 else self._deadline
        if self._irq_flag or (self._rx_hw and self._next >= self._nframes):
            return self._last_poll
        due = self._irq_due if self.irq else poll
        return due if ticks_diff(due, self._sig_due) < 0 else self._sig_due

    def poll(self, now):
        """Do the SPI work that is due at `now`: sync steps, interrupt service, reading the modem."""
        st = self.state
        self._last_poll = now
        if st == ST_IDLE:
            return
        if st == ST_PIN_RESET:
            if ticks_diff(now, self._deadline) >= 0:
                self._reset_pin(1)
                self._goto(ST_RESET)
                self._deadline = ticks_add(now, RESET_TIMEOUT_MS)
            return
        if st == ST_UNKNOWN:
            if ticks_diff(now, self._deadline) < 0:
                return
            sig = self._signature()
            if sig == SIGNATURE:
                self._soft_reset(now)
            elif self._reset_pin is not None and ticks_diff(now, self._since) >= PIN_RESET_AFTER_MS:
                self._pin_reset(now)
            else:
                self._deadline = ticks_add(now, SYNC_RETRY_MS)
            return
        if st == ST_RESET:
            self._irq_flag = False
            cause = self.read_register(SPI_REG_INTR_CAUSE)
            if cause & INT_CPU_ON:
                self.write_register(SPI_REG_INTR_CAUSE, cause)
                self._cpu_on(now)
            elif ticks_diff(now, self._deadline) >= 0:
                self.reset_timeouts += 1
                self._goto(ST_UNKNOWN)
                self._since = now
                if self._reset_pin is not None:
                    self._pin_reset(now)
                else:
                    self._deadline = now
            return
        # READY
        if ticks_diff(now, self._sig_due) >= 0:
            self._sig_due = ticks_add(now, SIGNATURE_CHECK_MS)
            sig = self._signature()
            if sig != SIGNATURE:
                self.bad_signatures += 1
                self._lost(now, "QCA7000 signature 0x%04x" % sig)
                return
        if self.irq and not self._irq_flag and ticks_diff(now, self._irq_due) < 0:
            if self._rx_hw and self._next >= self._nframes:
                self._receive(now)
            return
        self._service(now)

    def _service(self, now):
        self._irq_flag = False
        irq = self.irq
        if irq:
            self._irq_due = ticks_add(now, IRQ_WATCHDOG_MS)
            self.write_register(SPI_REG_INTR_ENABLE, 0)
        cause = self.read_register(SPI_REG_INTR_CAUSE)
        if cause:
            self.write_register(SPI_REG_INTR_CAUSE, cause)
        if cause & INT_CPU_ON:
            self._cpu_on(now)  # re-enables the interrupts when back in sync
            if self.state != ST_READY:
                return
        if cause & (INT_RDBUF_ERR | INT_WRBUF_ERR):
            self.buffer_errors += 1
            self._lost(now, "QCA7000 %s buffer error" % ("read" if cause & INT_RDBUF_ERR else "write"))
            return
        if cause & INT_PKT_AVLBL:
            self._rx_hw = True
        if self._rx_hw and self._next >= self._nframes:
            self._receive(now)
        if irq and self.state == ST_READY:
            self.write_register(SPI_REG_INTR_ENABLE, INTS)

    # --- receive ---------------------------------------------------------------------------------------

    def _receive(self, now):
        self._rx_hw = False
        self._nframes = self._next = 0
        n = self.read_register(SPI_REG_RDBUF_BYTE_AVA)
        if n == 0:
            return
        if n > RX_MAX:
            self.buffer_errors += 1
            self._lost(now, "QCA7000 read buffer reports %d bytes, more than %d" % (n, RX_MAX))
            return
        self.write_register(SPI_REG_BFR_SIZE, n)
        self._xfer(_CMD_READ_BUF, self._rx_mv[:n])
        self.rx_reads += 1
        self._index(n)

    def _index(self, end):
        buf = self._rx
        frames = self._frames
        pos = 0
        k = 0
        while pos < end and k < MAX_RECORDS:
            try:
                off, fl = parse_record(buf, pos, end)
            except PeerError as e:
                self.rx_errors += 1
                self.last_error = e
                # resynchronise: the next start-of-frame marker, with its length prefix before it
                sof = buf.find(b"\xaa\xaa\xaa\xaa", pos + 5, end)
                if sof < 0:
                    break
                pos = sof - HW_PKT_LEN
                continue
            frames[2 * k] = off
            frames[2 * k + 1] = fl
            k += 1
            pos = off + fl + FRM_FOOTER
        self._nframes = k

    def pending(self):
        """How many received frames wait for recv_nowait_into()."""
        return self._nframes - self._next

    def recv_nowait_into(self, buf):
        """Copy the next received frame into `buf`; its length, or 0 if none waits."""
        i = self._next
        if i >= self._nframes:
            return 0
        off = self._frames[2 * i]
        fl = self._frames[2 * i + 1]
        if len(buf) < fl:
            raise UsageError("receive buffer of %d bytes for a %d-byte frame" % (len(buf), fl))
        self._next = i + 1
        if buf is not self._user:  # a caller passes the same buffer every time: one view of it, kept
            self._user = buf
            self._user_mv = memoryview(buf)
        self._user_mv[:fl] = self._rx_mv[off:off + fl]
        self.received += 1
        return fl

    # --- transmit --------------------------------------------------------------------------------------

    def send(self, frame):
        """Write one Ethernet frame (destination MAC first, no FCS; padded to 60 bytes) into the modem's
        write buffer. True once written; False when not in sync or the buffer has no room (dropped)."""
        n = len(frame)
        if n < RX_MIN_FRAME or n > MAX_FRAME:
            raise UsageError("an Ethernet frame has %d-%d bytes, got %d" % (RX_MIN_FRAME, MAX_FRAME, n))
        if self.state != ST_READY:
            self.send_down += 1
            return False
        fl = n if n > MIN_FRAME else MIN_FRAME
        need = fl + FRM_OVERHEAD
        if self._wr_space < need:
            self._wr_space = self.read_register(SPI_REG_WRBUF_SPC_AVA)
            if self._wr_space < need:
                self.send_full += 1
                return False
        tx = self._tx
        mv = self._tx_mv
        tx[6] = fl & 0xFF
        tx[7] = fl >> 8
        mv[10:10 + n] = frame
        if n < MIN_FRAME:
            mv[10 + n:10 + MIN_FRAME] = _ZEROS[:MIN_FRAME - n]
        tx[10 + fl] = FRM_EOF
        tx[11 + fl] = FRM_EOF
        self.write_register(SPI_REG_BFR_SIZE, need)
        self._xfer(mv[:2 + need], None)
        self._wr_space -= need
        self.sent += 1
        return True
