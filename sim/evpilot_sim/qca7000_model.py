# A QCA7000 / QCA7005 modem as its SPI host sees it: the register file, the read and write buffers, the
# interrupt causes and the INT line, resets, and the misbehaviours a driver must survive. The firmware's
# driver (evpilot.hal.qca7000) is tested against it on CPython and MicroPython, so this module stays
# MicroPython-clean.
#
# How this works
# --------------
# transfer(out, inp) is one SPI transaction in one chip-select window, the callable the driver is given:
# the command word in out[0:2] (bit 15 read, bit 14 internal register, 13-0 address; AN4 5), then a 16-bit
# value (register write), or the bytes of a buffer write, or, for reads, len(inp) bytes clocked back.
# Time moves only by advance(now) (milliseconds); a reset takes `boot_ms`, during which every read gives
# 0x0000 and writes are lost; then CPU_ON is raised. The powerline side: inject(frame) is a frame arriving
# from the line (it becomes a record in the read buffer and raises PKT_AVLBL); frames the host wrote wait in
# the write buffer (WRBUF_SPC_AVA goes down) until take_sent() takes them off to the line, or at once with
# auto_drain. `edges` counts the INT line's rising edges (a test calls the driver's interrupt() on each).
#
# Assumptions where the public sources say nothing: INTR_CAUSE bits latch whatever INTR_ENABLE says, and
# writing a bit back clears it; PKT_AVLBL comes back at once while the read buffer still holds bytes;
# CPU_ON drives INT even with INTR_ENABLE = 0 (the Linux driver relies on the CPU_ON interrupt after its
# reset, when nothing is enabled yet). A host reading more than RDBUF_BYTE_AVA gets zeros and RDBUF_ERR;
# writing more than WRBUF_SPC_AVA gets WRBUF_ERR and the bytes are dropped.
#
# Misbehaviours: the first SIGNATURE read after each boot returns `stale_signature` (as real modems do:
# read it twice); crash() restarts the modem by itself; fail(cause) raises RDBUF_ERR / WRBUF_ERR;
# inject(frame, corrupt=...) spoils one record ("sof", "eof", "length", "prefix"), inject_raw(data) puts
# bytes that are no record into the read buffer; report_bytes(n) makes
# RDBUF_BYTE_AVA lie once; ignore_soft_reset makes SPI_CONFIG's reset bit do nothing; wedge() leaves the SPI dead (reads 0, soft reset ignored) until the RESET pin.

SIGNATURE = 0xAA55
HW_BUF_LEN = 3163
REG_BFR_SIZE = 0x0100
REG_WRBUF_SPC_AVA = 0x0200
REG_RDBUF_BYTE_AVA = 0x0300
REG_SPI_CONFIG = 0x0400
REG_SPI_STATUS = 0x0500
REG_INTR_CAUSE = 0x0C00
REG_INTR_ENABLE = 0x0D00
REG_RDBUF_WATERMARK = 0x1200
REG_WRBUF_WATERMARK = 0x1300
REG_SIGNATURE = 0x1A00
REG_ACTION_CTRL = 0x1B00
_KNOWN = (REG_BFR_SIZE, REG_WRBUF_SPC_AVA, REG_RDBUF_BYTE_AVA, REG_SPI_CONFIG, REG_SPI_STATUS, REG_INTR_CAUSE,
          REG_INTR_ENABLE, REG_RDBUF_WATERMARK, REG_WRBUF_WATERMARK, REG_SIGNATURE, REG_ACTION_CTRL)

PKT_AVLBL = 0x0001
RDBUF_ERR = 0x0002
WRBUF_ERR = 0x0004
ADDR_ERR = 0x0008
CPU_ON = 0x0040
SLAVE_RESET = 0x0040
LOG_MAX = 64


def record(frame, corrupt=None):
    """The read-buffer record of one frame: BE32 length, AA x4, FL (LE16), 00 00, frame, 55 55."""
    fl = len(frame)
    plen = fl + 10
    head = bytearray(12)
    head[0] = (plen >> 24) & 0xFF
    head[1] = (plen >> 16) & 0xFF
    head[2] = (plen >> 8) & 0xFF
    head[3] = plen & 0xFF
    head[4] = head[5] = head[6] = head[7] = 0xAA
    head[8] = fl & 0xFF
    head[9] = fl >> 8
    tail = bytearray(b"\x55\x55")
    if corrupt == "sof":
        head[6] = 0xA5
    elif corrupt == "eof":
        tail[1] = 0x54
    elif corrupt == "length":
        head[8] = 0xFF
        head[9] = 0x7F
    elif corrupt == "prefix":
        head[3] = (head[3] + 1) & 0xFF
    elif corrupt is not None:
        raise ValueError("corrupt: sof, eof, length or prefix, not %r" % (corrupt,))
    return bytes(head) + bytes(frame) + bytes(tail)


class Qca7000Model:
    def __init__(self, boot_ms=100, stale_signature=0x0000, auto_drain=True, rx_capacity=HW_BUF_LEN + 4):
        self.boot_ms = boot_ms
        self.stale_signature = stale_signature
        self.auto_drain = auto_drain
        self.rx_capacity = rx_capacity
        self.now = 0
        self.wire = []  # frames the host sent, once off to the line (auto_drain)
        self.rx_dropped = 0  # injected frames with no room in the read buffer
        self.bad_writes = 0  # buffer writes that were not one well-formed QCAFRM frame
        self.lost_writes = 0  # transfers while booting, wedged or held in reset
        self.soft_resets = 0
        self.pin_resets = 0
        self.boots = 0
        self.signature_reads = 0
        self.buffer_reads = 0
        self.log = []  # (read?, internal?, address) of the last LOG_MAX transactions
        self._wedged = False
        self._pin_low = False
        self._lie = None
        self.ignore_soft_reset = False  # SPI_CONFIG's reset bit does nothing (the driver must time out)
        self.edges = 0  # rising edges of the INT line so far
        self._level = False
        self._power_on()

    # --- the modem's life ------------------------------------------------------------------------------

    def _power_on(self):
        self.regs = {}
        self.cause = 0
        self.enable = 0
        self.rdbuf = bytearray()
        self.wrbuf = []  # frames written, not yet on the line
        self.wr_used = 0
        self.bfr_size = 0
        self._stale = True
        self._booted_at = self.now + self.boot_ms
        self.booting = True

    def _restart(self):
        self._power_on()

    def advance(self, now):
        self.now = now
        if self.booting and not self._pin_low and not self._wedged and now - self._booted_at >= 0:
            self.booting = False
            self.boots += 1
            self.cause |= CPU_ON
        self._line()

    def crash(self):
        """The modem restarts by itself (a watchdog, a brown-out): buffers lost, CPU_ON after boot_ms."""
        self._restart()

    def set_reset_pin(self, level):
        """The RESET line: 0 holds the modem in reset; the rising edge boots it."""
        if not level:
            if not self._pin_low:
                self.pin_resets += 1
            self._pin_low = True
            self._wedged = False
            self._restart()
        elif self._pin_low:
            self._pin_low = False
            self._booted_at = self.now + self.boot_ms

    def wedge(self):
        """The SPI stops answering (reads 0, writes lost, soft reset ignored) until the RESET pin."""
        self._wedged = True
        self.booting = True

    def fail(self, cause):
        self.cause |= cause
        self._line()

    def report_bytes(self, n):
        """RDBUF_BYTE_AVA reads `n` once."""
        self._lie = n

    def int_level(self):
        if self.booting:
            return False
        return bool(self.cause & self.enable) or bool(self.cause & CPU_ON)

    def _line(self):
        level = self.int_level()
        if level and not self._level:
            self.edges += 1
        self._level = level

    # --- the powerline side ----------------------------------------------------------------------------

    def inject(self, frame, corrupt=None):
        """A frame arrives from the line; False if the read buffer has no room (dropped)."""
        if self.booting:
            self.rx_dropped += 1
            return False
        rec = record(frame, corrupt)
        if len(self.rdbuf) + len(rec) > self.rx_capacity:
            self.rx_dropped += 1
            return False
        self.rdbuf.extend(rec)
        self.cause |= PKT_AVLBL
        self._line()
        return True

    def inject_raw(self, data):
        """Bytes that are no record at all land in the read buffer (what a driver sees when it lost sync)."""
        self.rdbuf.extend(data)
        self.cause |= PKT_AVLBL
        self._line()

    def take_sent(self):
        """The frames the host wrote since the last call, now off to the line (the write buffer empties)."""
        out = self.wire + self.wrbuf
        self.wire = []
        self.wrbuf = []
        self.wr_used = 0
        return out

    # --- SPI -------------------------------------------------------------------------------------------

    def transfer(self, out, inp):
        self._transfer(out, inp)
        self._line()

    def _transfer(self, out, inp):
        cmd = (out[0] << 8) | out[1]
        read = bool(cmd & 0x8000)
        internal = bool(cmd & 0x4000)
        addr = cmd & 0x3FFF
        log = self.log
        if len(log) >= LOG_MAX:
            del log[0]
        log.append((read, internal, addr))
        if self.booting:
            self.lost_writes += 1
            if inp is not None:
                for i in range(len(inp)):
                    inp[i] = 0
            return
        if internal:
            if read:
                value = self._read_reg(addr)
                inp[0] = value >> 8
                inp[1] = value & 0xFF
                for i in range(2, len(inp)):
                    inp[i] = 0
            else:
                self._write_reg(addr, (out[2] << 8) | out[3])
        elif read:
            self._read_buf(inp)
        else:
            self._write_buf(bytes(out[2:]))

    def _read_reg(self, addr):
        if addr == REG_SIGNATURE:
            self.signature_reads += 1
            if self._stale:
                self._stale = False
                return self.stale_signature
            return SIGNATURE
        if addr == REG_WRBUF_SPC_AVA:
            return HW_BUF_LEN - self.wr_used
        if addr == REG_RDBUF_BYTE_AVA:
            if self._lie is not None:
                n = self._lie
                self._lie = None
                return n
            return len(self.rdbuf)
        if addr == REG_INTR_CAUSE:
            return self.cause
        if addr == REG_INTR_ENABLE:
            return self.enable
        if addr == REG_BFR_SIZE:
            return self.bfr_size
        if addr not in _KNOWN:
            self.cause |= ADDR_ERR
        return self.regs.get(addr, 0)

    def _write_reg(self, addr, value):
        if addr == REG_INTR_CAUSE:
            self.cause &= ~value
            if self.rdbuf:
                self.cause |= PKT_AVLBL
        elif addr == REG_INTR_ENABLE:
            self.enable = value
        elif addr == REG_BFR_SIZE:
            self.bfr_size = value
        elif addr == REG_SPI_CONFIG and value & SLAVE_RESET:
            self.soft_resets += 1
            if not self.ignore_soft_reset:
                self._restart()
        elif addr in _KNOWN:
            self.regs[addr] = value
        else:
            self.cause |= ADDR_ERR

    def _read_buf(self, inp):
        n = len(inp)
        self.buffer_reads += 1
        have = len(self.rdbuf)
        take = n if n <= have else have
        inp[:take] = self.rdbuf[:take]
        for i in range(take, n):
            inp[i] = 0
        self.rdbuf = self.rdbuf[take:]
        if n > have or n > self.bfr_size:
            self.cause |= RDBUF_ERR
        self.bfr_size = self.bfr_size - n if n <= self.bfr_size else 0

    def _write_buf(self, data):
        n = len(data)
        if n > HW_BUF_LEN - self.wr_used:
            self.cause |= WRBUF_ERR
            return
        fl = (data[4] | (data[5] << 8)) if n >= 10 else -1
        if (n != self.bfr_size or n < 10 or data[0:4] != b"\xaa\xaa\xaa\xaa" or fl + 10 != n
                or data[n - 2:] != b"\x55\x55"):
            self.bad_writes += 1
            return
        self.bfr_size = 0
        frame = data[8:8 + fl]
        if self.auto_drain:
            self.wire.append(frame)
        else:
            self.wrbuf.append(frame)
            self.wr_used += n
