# The fast path of evpilot.pnc.p256 on MicroPython: P-256 field and point arithmetic on fixed-size limbs in
# one preallocated buffer, as @micropython.viper code (machine-word integers, no heap allocation).
#
# How this works
# --------------
# Every firmware file must compile with plain mpy-cross (no -march), which rejects @micropython.viper. So the
# viper code is text (p256_viper_gen, p256_viper_src) that load() compiles with exec() on first use, on the
# board itself. Where the interpreter has no native emitter (the webassembly port), or on CPython, load()
# returns None and p256 keeps its pure-Python path. The price on a board: the compiler's transient RAM while
# load() runs (one function at a time, and both text modules are dropped afterwards) and the native code,
# which stays in RAM: about 19 KB on armv6m (RP2040), 20 KB on xtensawin (ESP32), 17 KB on armv7emsp
# (STM32F4) for the 32-bit layout (bench/p256_bench.py --code-size). Measured on the 32-bit unix port (which
# keeps native code outside its heap) with the firmware frozen: key generation, sign, verify and ECDH
# complete in a 38 KB heap on this path, 22 KB on the pure one; with the firmware as .mpy files, 65 KB and
# 34 KB. p256 falls back to the pure path when load() runs out of memory; use_viper(False) skips it.
#
# A board that can spare no compiler RAM (or whose heap the compiled functions would scatter) takes the same
# texts prebuilt: native_module() joins them into one module, evpilot/pnc/p256_viper_native.py, which a
# freeze manifest (firmware/manifest.py) or a deploy compiles with `mpy-cross -march=<the board's
# architecture>`. It is made at build time and never kept in firmware/ (plain mpy-cross rejects it). load()
# uses it when it is there and was made for this interpreter's layout: the native code then sits in flash
# with the rest of the frozen firmware and nothing is compiled on the board.

# Field elements are L limbs of W bits, least significant first, in Montgomery form (a R mod p, R = 2^(W L)),
# each in [0, 2p) (not fully reduced; canon reduces before output). W and L depend on the machine word: a
# product of two limbs plus a column of L of them must fit a signed word, so W = 29, L = 9 on a 64-bit
# interpreter (9 * 2^58 < 2^63) and W = 13, L = 20 on a 32-bit board (20 * 2^26 < 2^31). W L >= 258 makes
# R > 4p, so a Montgomery product of two values below 2p is below 2p again and needs no final subtraction.
#
# Montgomery reduction is cheap for this p: p = 2^256 - 2^224 + 2^192 + 2^96 - 1 = -1 (mod 2^96), so the
# quotient limb of each reduction step is the low limb itself (-p^-1 = 1 mod 2^W), and adding m p is adding m
# at bits 96, 192, 256 and subtracting it at 224 (shifted into two limbs each, since W does not divide those).
# fmul and fsqr scan by columns (product scanning) and fold those terms into the same column sums: there is
# no 2L-limb intermediate, only the L quotient limbs. On a 64-bit interpreter they are generated fully
# unrolled (limbs in local variables, constants inline), three times faster than loops; with 20 limbs they
# are loops (smaller code). nmul is the same product mod the group order n, for k^-1 in sign and verify.
#
# The point formulas are programs of field operations (bytes, run by one viper loop), the control flow
# around them viper text. Secret-dependent choices are masks (fcswap, csel, the ladder's bit ^ previous bit),
# never branches or indexes; branches depend only on loop counters and public data (verify, digit recoding).
# The scalar multiplications are p256_curve's algorithms (comb, co-Z ladder, interleaved wNAF) and report
# their exceptional cases by a flag, on which p256 redoes the work on the pure path.

import sys

from evpilot.errors import UsageError
from evpilot.pnc.p256_curve import _MASK256
from evpilot.pnc.p256_curve import GX as _GX
from evpilot.pnc.p256_curve import GY as _GY
from evpilot.pnc.p256_curve import N as _N
from evpilot.pnc.p256_curve import P as _P

try:
    import micropython  # noqa: F401 (the compiled text names it in its decorators)
except ImportError:  # CPython
    micropython = None

# Slots of WS (each L limbs). Constants (R, R^2 mod p, 1, 0, p, 2p, n, R^2 mod n), ladder registers, the
# accumulator (X1, Y1, Z1) and operand (X2, Y2, Z2) of point additions, temporaries, the inversion's powers,
# the operand of ninv, then the tables: comb (16 affine points), verify's odd multiples of G (16 affine)
# and of the public key Q (8 Jacobian; npow's 16 powers use the same slots, never at the same time).
_SLOTS = ("ONE R2 ONEP ZERO PP TP NN RN2 XA YA XB YB XP YP XD YD X1 Y1 Z1 X2 Y2 Z2 X3 Y3 Z3 "
          "T0 T1 T2 T3 T4 T5 T6 T7 T8 T9 I0 I1 I2 I3 I4 I5 I6 NA").split()
_ONE, _R2, _ONEP, _PP, _TP, _NN, _RN2, _XA, _XP, _YP, _X1, _Y1, _T9, _NA = [
    _SLOTS.index(s) for s in "ONE R2 ONEP PP TP NN RN2 XA XP YP X1 Y1 T9 NA".split()]
_CT = len(_SLOTS)
_GT = _CT + 32
_QT = _GT + 32
_NSLOTS = _QT + 24


def _consts(w, n):
    """(name, value) of the constants the texts use: limb layout, slot offsets, table offsets."""
    out = [("W", w), ("L", n), ("M", (1 << w) - 1)]
    out += [(name, i * n) for i, name in enumerate(_SLOTS)]
    return out + [("CT", _CT * n), ("GT", _GT * n), ("QT", _QT * n), ("NT", _QT * n)]


def _header(consts, text):
    """The const() lines text needs (a name found in it; a few more do no harm): each text is compiled on
    its own, and a shorter header is less to parse."""
    return "".join("%s = const(%d)\n" % (name, value) for name, value in consts
                   if len(name) == 1 or name in text)


def _viper_works(ns):
    """True when this interpreter compiles viper code (no native emitter: SyntaxError or ValueError)."""
    try:
        exec("@micropython.viper\ndef probe(x: int) -> int:\n    return x + 1\n", ns)
        return ns["probe"](1) == 2
    except Exception:
        return False


class Backend:
    """The compiled code and its buffers. base_mul, ecdh and verify take and give what p256 needs; None
    from base_mul or ecdh means an exceptional case (p256 then redoes the work on its pure path)."""

    def __init__(self, ns, w, n, unrolled):
        self.w = w  # limb bits
        self.n = n  # limbs per field element
        self.size = 2 if w <= 16 else 4  # bytes per limb
        self.unrolled = unrolled
        self.ns = ns
        self.out = bytearray(64)
        self.dig1 = bytearray(264)
        self.dig2 = bytearray(264)
        self.tables = False

    def _put(self, slot, value, mont=True):
        """Store value (0 <= value < 2^(W L)) at slot, in Montgomery form unless mont is False."""
        size = self.size
        ws = self.ns["WS"]
        for i in range(self.n):
            at = (slot + i) * size
            ws[at:at + size] = ((value >> (self.w * i)) & ((1 << self.w) - 1)).to_bytes(size, "little")
        if mont:
            self.ns["fmul"](slot, slot, _R2 * self.n)

    def _tables(self):
        if not self.tables:
            self._put(_XP * self.n, _GX)
            self._put(_YP * self.n, _GY)
            self.ns["build_tables"]()
            self.tables = True

    def _out(self, slot, off):
        ns = self.ns
        ns["fmul"](slot, slot, _ONEP * self.n)  # out of Montgomery form
        ns["canon"](slot, _PP * self.n)
        ns["store_be"](self.out, off, slot)

    def base_mul(self, k):
        """k G (secret 0 < k < n) as x || y, 64 bytes."""
        ns = self.ns
        self._tables()
        flip = (k & 1) ^ 1
        kk = k + (_N - 2 * k) * flip
        if ns["comb"](((kk + _MASK256) >> 1).to_bytes(32, "big"), flip):
            return None
        ns["run"](ns["P_AFFINE"])
        self._out(_X1 * self.n, 0)
        self._out(_Y1 * self.n, 32)
        return bytes(self.out)

    def table_points(self):
        """The comb table, then the odd multiples of G, as affine (x, y) ints (for tests)."""
        self._tables()
        out = []
        n = self.n
        t = _T9 * n
        for i in range(32):
            xy = []
            for c in range(2):
                self.ns["fcopy"](t, (_CT + 2 * i + c) * n)
                self._out(t, 0)
                xy.append(int.from_bytes(self.out[:32], "big"))
            out.append(tuple(xy))
        return out

    def _load_point(self, pub):
        ns = self.ns
        n = self.n
        for slot, off in ((_XP * n, 1), (_YP * n, 33)):
            ns["load_be"](slot, pub, off)
            ns["fmul"](slot, slot, _R2 * n)

    def ecdh(self, k, pub):
        """x of k P, 32 bytes, for a secret 0 < k < n and a validated public key pub (65 bytes)."""
        self._load_point(pub)
        kk = k + _N
        kk += _N * ((kk >> 256) ^ 1)  # k + n or k + 2n, whichever has bit 256 set (see p256._ladder)
        if self.ns["ladder"](kk.to_bytes(33, "big")):
            return None
        self._out(_XA * self.n, 0)
        return bytes(self.out[:32])

    def ninv(self, k):
        """k^-1 mod n for 0 < k < n (secret in sign): Fermat, k^(n - 2), on limbs."""
        ns = self.ns
        a = _NA * self.n
        ns["load_be"](a, k.to_bytes(32, "big"), 0)
        ns["nmul"](a, a, _RN2 * self.n)
        ns["npow"](a, _N_MINUS_2)
        ns["nmul"](a, a, _ONEP * self.n)
        ns["canon"](a, _NN * self.n)
        ns["store_be"](self.out, 0, a)
        return int.from_bytes(self.out[:32], "big")

    def verify(self, u1, u2, pub, r):
        """Whether x(u1 G + u2 Q) = r (mod n) for public u1, u2 and Q = pub (validated)."""
        ns = self.ns
        self._tables()
        self._load_point(pub)
        ns["qtable"]()
        n1 = ns["wnaf"](self.dig1, u1.to_bytes(32, "big"), 6)
        n2 = ns["wnaf"](self.dig2, u2.to_bytes(32, "big"), 5)
        if ns["dsm"](self.dig1, n1, self.dig2, n2):
            return False
        if ns["xcheck"](r.to_bytes(32, "big")):
            return True
        return r + _N < _P and ns["xcheck"]((r + _N).to_bytes(32, "big")) == 1


_N_MINUS_2 = (_N - 2).to_bytes(32, "big")


def layout(w=None, unroll=None):
    """(W, L, unrolled) for this machine word, or for the w and unroll asked (tests check every variant):
    by default 29-bit limbs with unrolled products on 64 bits, 13-bit limbs with loops on 32."""
    if w is None:
        w = 29 if sys.maxsize > 1 << 32 else 13
    n = (258 + w - 1) // w
    if n * (1 << (2 * w)) + (1 << (w + 9)) > sys.maxsize:
        raise UsageError("p256_viper: %d-bit limbs overflow this machine word" % w)
    return w, n, n <= 10 if unroll is None else bool(unroll)


def sources(w, n, unroll):
    """The viper texts load() compiles for a layout, in order, each ready for exec() (a generator: on a board
    only one text is in RAM at a time)."""
    from evpilot.pnc import p256_viper_gen, p256_viper_src

    consts = _consts(w, n)
    ptr = "ptr16" if w <= 16 else "ptr32"
    for i in range(4 if unroll else 3):
        text = p256_viper_gen.piece(w, n, unroll, i).replace("PTR", ptr)
        yield _header(consts, text) + text
    for name in ("BASIC", "POINTS", "LADDER", "COMB", "VERIFY") if unroll else (
            "SMALL", "BASIC", "POINTS", "LADDER", "COMB", "VERIFY"):
        whole = getattr(p256_viper_src, name)
        at = whole.find("@micropython.viper")
        while at >= 0:  # one function at a time
            end = whole.find("@micropython.viper", at + 1)
            text = whole[at:end if end > 0 else len(whole)].replace("PTR", ptr)
            yield _header(consts, text) + text
            at = end


def native_module(w, unroll=None):
    """The text of evpilot/pnc/p256_viper_native.py for a layout (host side, at build time; see the top):
    every viper function, the constants they use, and LAYOUT, which load() checks against its own."""
    w, n, unroll = layout(w, unroll)
    parts = ["# Generated by evpilot.pnc.p256_viper.native_module(%d, %s): compile with mpy-cross -march.\n"
             % (w, unroll), "import micropython\nfrom micropython import const\n",
             "LAYOUT = (%d, %d, %s)\n" % (w, n, unroll)]
    parts += ["%s = const(%d)\n" % c for c in _consts(w, n)]
    ws = 2 if w <= 16 else 4
    parts.append("WS = bytearray(%d)\nMS = bytearray(%d)\n" % (ws * n * _NSLOTS, ws * n))
    for text in sources(w, n, unroll):
        parts.append("\n" + text[text.find("@micropython.viper"):])
    return "".join(parts)


def _prebuilt(w, n, unroll):
    """The namespace of a prebuilt p256_viper_native made for this layout, or None."""
    try:
        from evpilot.pnc import p256_viper_native as mod
    except ImportError:
        return None
    if getattr(mod, "LAYOUT", None) != (w, n, unroll):
        return None
    return mod.__dict__


def load(w=None, unroll=None):
    """A Backend, or None where viper code cannot run; w and unroll as for layout()."""
    if micropython is None:
        return None
    w, n, unroll = layout(w, unroll)
    ns = _prebuilt(w, n, unroll)
    if ns is None:
        ns = {"micropython": micropython}
        if not _viper_works(ns):
            return None
        size = 2 if w <= 16 else 4
        ns["WS"] = bytearray(size * n * _NSLOTS)
        ns["MS"] = bytearray(size * n)  # the quotient limbs of the looped products
        # One piece at a time, so that the compiler's parse tree is only ever as large as one piece's; the
        # text modules are dropped afterwards (a later load() imports them again).
        for text in sources(w, n, unroll):
            exec(text, ns)
        text = None
    from evpilot.pnc import p256_viper_gen

    ns.update(p256_viper_gen.programs(_SLOTS))
    p256_viper_gen = None
    import evpilot.pnc

    for name in ("p256_viper_gen", "p256_viper_src"):
        sys.modules.pop("evpilot.pnc." + name, None)
        if hasattr(evpilot.pnc, name):
            delattr(evpilot.pnc, name)
    b = Backend(ns, w, n, unroll)
    r = 1 << (w * n)
    b._put(_ONE * n, r % _P, False)
    b._put(_R2 * n, r * r % _P, False)
    b._put(_ONEP * n, 1, False)
    b._put(_PP * n, _P, False)
    b._put(_TP * n, 2 * _P, False)
    b._put(_NN * n, _N, False)
    b._put(_RN2 * n, r * r % _N, False)
    return b
