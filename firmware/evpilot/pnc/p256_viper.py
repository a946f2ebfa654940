# The fast path of evpilot.pnc.p256 on MicroPython: P-256 field and point arithmetic on fixed-size limbs in
# one preallocated buffer, as @micropython.viper code (machine-word integers, no heap allocation).
#
# How this works
# --------------
# Every firmware file must compile with plain mpy-cross (no -march), which rejects @micropython.viper. So
# this module holds the viper code as text and compiles it with exec() on first use (load()), on the board:
# where the interpreter has no native emitter (the webassembly port) or no compiler, or on CPython, load()
# returns None and p256 keeps its pure-Python path. The price on a board: the compiler's transient RAM while
# load() runs (the text is compiled in a few pieces to bound it), and the native code stays in RAM.
#
# Field elements are L limbs of W bits, least significant first, in Montgomery form (a R mod p, R = 2^(W L)),
# each in [0, 2p) (not fully reduced; fcanon reduces before output). W and L depend on the machine word: a
# product of two limbs plus a column of L of them must fit a signed word, so W = 29, L = 9 on a 64-bit
# interpreter (9 * 2^58 < 2^63) and W = 13, L = 20 on a 32-bit board (20 * 2^26 < 2^31). W L >= 258 makes
# R > 4p, so a Montgomery product of two values below 2p is below 2p again and needs no final subtraction.
#
# Montgomery reduction is cheap for this p: p = 2^256 - 2^224 + 2^192 + 2^96 - 1 = -1 (mod 2^96), so the
# quotient limb of each reduction step is the low limb itself (-p^-1 = 1 mod 2^W), and adding m p is adding m
# at bits 96, 192, 256 and subtracting it at 224 (shifted into two limbs each, since W does not divide those).
# fmul and fsqr scan by columns (product scanning) and fold those terms into the same column sums: there is
# no 2L-limb intermediate, only the L quotient limbs. On a 64-bit interpreter they are generated fully
# unrolled (limbs in local variables, constants inline); with 20 limbs they are loops, smaller code.
#
# Everything else works on slots of the buffer WS by offset: f* for field elements, p* for Jacobian points,
# z* for the co-Z ladder. Secret-dependent choices are masks (fcswap, csel, the ladder's bit ^ previous bit),
# never branches or indexes; branches depend only on loop counters and public data (verify, digit recoding).
# The scalar multiplications are the same algorithms as p256's pure path (comb, co-Z ladder, interleaved
# wNAF) and report their exceptional cases by a flag, on which p256 redoes the work on its pure path.

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

_TERMS = ((96, "+"), (192, "+"), (224, "-"), (256, "+"))  # m p = m (2^256 - 2^224 + 2^192 + 2^96) - m

# Slots of WS (each L limbs). Constants, ladder registers, the accumulator (X1, Y1, Z1) and operand
# (X2, Y2, Z2) of point additions, temporaries, the inversion's powers, mod-n things (n's limbs, R^2 mod n,
# the operand of ninv), then the tables: comb (16 affine points), verify's odd multiples of G (16 affine)
# and of the public key Q (8 Jacobian; npow's 16 powers use the same slots, never at the same time).
_SLOTS = ("ONE R2 ONEP ZERO XA YA XB YB XP YP XD YD X1 Y1 Z1 X2 Y2 Z2 X3 Y3 Z3 "
          "T0 T1 T2 T3 T4 T5 T6 T7 T8 T9 I1 I2 I3 I4 I5 NN RN2 NA").split()
_ONE, _R2, _ONEP, _XA, _XP, _YP, _X1, _Y1, _T9, _NN, _RN2, _NA = [
    _SLOTS.index(s) for s in "ONE R2 ONEP XA XP YP X1 Y1 T9 NN RN2 NA".split()]
_CT = len(_SLOTS)
_GT = _CT + 32
_QT = _GT + 32
_NSLOTS = _QT + 24


def _limbs(v, w, n):
    return [(v >> (w * i)) & ((1 << w) - 1) for i in range(n)]


def _header(w, n):
    lines = ["W = const(%d)" % w, "L = const(%d)" % n, "M = const(%d)" % ((1 << w) - 1)]
    for i, name in enumerate(_SLOTS):
        lines.append("%s = const(%d)" % (name, i * n))
    lines.append("CT = const(%d)" % (_CT * n))
    lines.append("GT = const(%d)" % (_GT * n))
    lines.append("QT = const(%d)" % (_QT * n))
    lines.append("NT = const(%d)" % (_QT * n))
    return "\n".join(lines) + "\n"


def _reduction(w, n, k, m):
    """The quotient-limb terms of column k: ' + (m3 << 9 & M)'-style text; m(j) names quotient limb j."""
    out = ""
    for bit, sign in _TERMS:
        q, s = divmod(bit, w)
        j = k - q
        if 0 <= j < n:
            out += " %s ((%s << %d) & M)" % (sign, m(j), s)
        if 0 <= j - 1 < n:
            out += " %s (%s >> %d)" % (sign, m(j - 1), w - s)
    return out


def _gen_mul_unrolled(w, n, sqr):
    src = ["@micropython.viper"]
    src.append("def fsqr(r: int, a: int):" if sqr else "def fmul(r: int, a: int, b: int):")
    src.append("    w = PTR(WS)")
    for i in range(n):
        src.append("    a%d = w[a + %d]" % (i, i))
        if not sqr:
            src.append("    b%d = w[b + %d]" % (i, i))
    src.append("    c = 0")
    for k in range(2 * n):
        lo = max(0, k - n + 1)
        hi = min(k, n - 1)
        if sqr:
            cross = ["a%d * a%d" % (i, k - i) for i in range(lo, hi + 1) if i < k - i]
            e = "((%s) << 1)" % " + ".join(cross) if cross else ""
            if k % 2 == 0 and k // 2 < n:
                e = (e + " + " if e else "") + "a%d * a%d" % (k // 2, k // 2)
            e = e or "0"
        else:
            e = " + ".join("a%d * b%d" % (i, k - i) for i in range(lo, hi + 1)) or "0"
        src.append("    acc = c + " + e + _reduction(w, n, k, lambda j: "m%d" % j))
        if k < n:
            src.append("    m%d = acc & M" % k)
        else:
            src.append("    w[r + %d] = acc & M" % (k - n))
        src.append("    c = acc >> W")
    return "\n".join(src) + "\n"


def _gen_mul_loop(w, n, sqr):
    src = ["@micropython.viper"]
    src.append("def fsqr(r: int, a: int):" if sqr else "def fmul(r: int, a: int, b: int):")
    src.append("    w = PTR(WS)")
    src.append("    m = PTR(MS)")
    src.append("    c = 0")
    src.append("    k = 0")
    src.append("    while k < %d:" % (2 * n))
    src.append("        i = 0")
    src.append("        if k >= L:")
    src.append("            i = k - L + 1")
    src.append("        acc = 0")
    if sqr:
        src.append("        e = (k - 1) >> 1")
        src.append("        while i <= e:")
        src.append("            acc += w[a + i] * w[a + k - i]")
        src.append("            i += 1")
        src.append("        acc = (acc << 1) + c")
        src.append("        if (k & 1) == 0 and k < 2 * L - 1:")
        src.append("            x = w[a + (k >> 1)]")
        src.append("            acc += x * x")
    else:
        src.append("        e = k")
        src.append("        if k >= L:")
        src.append("            e = L - 1")
        src.append("        acc = c")
        src.append("        while i <= e:")
        src.append("            acc += w[a + i] * w[b + k - i]")
        src.append("            i += 1")
    for bit, sign in _TERMS:
        q, s = divmod(bit, w)
        op = "+=" if sign == "+" else "-="
        src.append("        j = k - %d" % q)
        src.append("        if j >= 0 and j < L:")
        src.append("            acc %s (m[j] << %d) & M" % (op, s))
        src.append("        if j >= 1 and j <= L:")
        src.append("            acc %s m[j - 1] >> %d" % (op, w - s))
    src.append("        if k < L:")
    src.append("            m[k] = acc & M")
    src.append("        else:")
    src.append("            w[r + k - L] = acc & M")
    src.append("        c = acc >> W")
    src.append("        k += 1")
    return "\n".join(src) + "\n"


def _gen_nmul(w, n, order, unroll):
    """nmul: the Montgomery product mod the group order (R = 2^(W L) again). No special form here: the
    quotient limb is (low limb * -n^-1) mod 2^W and m n is a full product. A column then holds up to 2L
    products, too many for a 32-bit word, so the a b and the m n sums are kept apart and split into low and
    high parts before they meet."""
    nl = _limbs(order, w, n)
    nprime = _neg_inverse(order, w)
    src = ["@micropython.viper", "def nmul(r: int, a: int, b: int):", "    w = PTR(WS)"]
    if unroll:
        for i in range(n):
            src.append("    a%d = w[a + %d]" % (i, i))
            src.append("    b%d = w[b + %d]" % (i, i))
    else:
        src += ["    m = PTR(MS)", "    k = 0"]
    src.append("    c = 0")
    if unroll:
        for k in range(2 * n):
            lo, hi = max(0, k - n + 1), min(k, n - 1)
            src.append("    x = " + (" + ".join("a%d * b%d" % (i, k - i) for i in range(lo, hi + 1)) or "0"))
            terms = ["m%d * %d" % (j, nl[k - j]) for j in range(lo, min(k - 1, n - 1) + 1) if nl[k - j]]
            src.append("    y = " + (" + ".join(terms) if terms else "0"))
            _nmul_column(src, "    ", "m%d" % k if k < n else None, "w[r + %d]" % (k - n), nl[0], nprime)
    else:
        src += ["    while k < 2 * L:",
                "        i = 0",
                "        e = k",
                "        if k >= L:",
                "            i = k - L + 1",
                "            e = L - 1",
                "        x = 0",
                "        j = i",
                "        while j <= e:",
                "            x += w[a + j] * w[b + k - j]",
                "            j += 1",
                "        if k < L:",
                "            e = k - 1",
                "        y = 0",
                "        j = i",
                "        while j <= e:",
                "            y += m[j] * w[NN + k - j]",
                "            j += 1",
                "        if k < L:"]
        _nmul_column(src, "            ", "m[k]", None, nl[0], nprime)
        src.append("        else:")
        _nmul_column(src, "            ", None, "w[r + k - L]", nl[0], nprime)
        src.append("        k += 1")
    return "\n".join(src) + "\n"


def _nmul_column(src, ind, quotient, store, n0, nprime):
    src.append(ind + "lo = c + (x & M) + (y & M)")
    if quotient:
        src.append(ind + "q = ((lo & M) * %d) & M" % nprime)
        src.append(ind + "%s = q" % quotient)
        src.append(ind + "lo += q * %d" % n0)
    else:
        src.append(ind + "%s = lo & M" % store)
    src.append(ind + "c = (x >> W) + (y >> W) + (lo >> W)")


def _neg_inverse(v, w):
    """-v^-1 mod 2^w for odd v (Newton's iteration; pow(v, -1, m) is missing on older MicroPython)."""
    x = 1
    for _ in range(6):
        x = x * (2 - v * x) % (1 << w)
    return (-x) % (1 << w)


def _gen_small(w, n, p, order):
    """fadd, fsub (results in [0, 2p)), fcanon (to [0, p)), ncanon (to [0, n)) and fiszero, unrolled with
    the limbs of p and n inline."""
    pl = _limbs(p, w, n)
    nl = _limbs(order, w, n)
    tp = _limbs(2 * p, w, n)
    src = []

    def two_pass(name, args, first, mod):
        # first pass: r = first(i) (carries propagated); its sign k (0 or -1) decides whether mod is added back
        src.append("@micropython.viper")
        src.append("def %s(%s):" % (name, args))
        src.append("    w = PTR(WS)")
        for i in range(n):
            src.append("    t = %s%s" % (first(i), " + (t >> W)" if i else ""))
            src.append("    w[r + %d] = t & M" % i)
        src.append("    k = t >> W")
        for i in range(n):
            src.append("    t = w[r + %d] + (%d & k)%s" % (i, mod[i], " + (t >> W)" if i else ""))
            src.append("    w[r + %d] = t & M" % i)

    two_pass("fadd", "r: int, a: int, b: int", lambda i: "w[a + %d] + w[b + %d] - %d" % (i, i, tp[i]), tp)
    two_pass("fsub", "r: int, a: int, b: int", lambda i: "w[a + %d] - w[b + %d]" % (i, i), tp)
    two_pass("fcanon", "r: int", lambda i: "w[r + %d] - %d" % (i, pl[i]), pl)
    two_pass("ncanon", "r: int", lambda i: "w[r + %d] - %d" % (i, nl[i]), nl)
    src.append("@micropython.viper")
    src.append("def fiszero(a: int) -> int:")
    src.append("    w = PTR(WS)")
    src.append("    z = " + " | ".join("w[a + %d]" % i for i in range(n)))
    src.append("    q = " + " | ".join("(w[a + %d] ^ %d)" % (i, pl[i]) for i in range(n)))
    src.append("    return (((z - 1) >> W) & 1) | (((q - 1) >> W) & 1)")
    return "\n".join(src) + "\n"


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
        self.unrolled = unrolled
        self.ns = ns
        self.out = bytearray(64)
        self.dig1 = bytearray(264)
        self.dig2 = bytearray(264)
        self.tables = False

    def _put(self, slot, value, mont=True):
        ns = self.ns
        ns["load_be"](slot, value.to_bytes(32, "big"), 0)
        if mont:
            ns["fmul"](slot, slot, _R2 * self.n)

    def _tables(self):
        if not self.tables:
            self._put(_XP * self.n, _GX)
            self._put(_YP * self.n, _GY)
            self.ns["build_tables"]()
            self.tables = True

    def _out(self, slot, off):
        ns = self.ns
        ns["fmul"](slot, slot, _ONEP * self.n)  # out of Montgomery form
        ns["fcanon"](slot)
        ns["store_be"](self.out, off, slot)

    def base_mul(self, k):
        """k G (secret 0 < k < n) as x || y, 64 bytes."""
        ns = self.ns
        self._tables()
        flip = (k & 1) ^ 1
        kk = k + (_N - 2 * k) * flip
        if ns["comb"](((kk + _MASK256) >> 1).to_bytes(32, "big"), flip):
            return None
        ns["affine"]()
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
        ns["ncanon"](a)
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


def load(w=None, unroll=None):
    """A Backend, or None where viper code cannot run. w (limb bits) and unroll default to the machine word's
    choice (29 and unrolled on 64 bits, 13 and loops on 32); tests pass others to check every variant."""
    if micropython is None:
        return None
    ns = {"micropython": micropython}
    if not _viper_works(ns):
        return None
    if w is None:
        w = 29 if sys.maxsize > 1 << 32 else 13
    n = (258 + w - 1) // w
    if n * (1 << (2 * w)) + (1 << (w + 9)) > sys.maxsize:
        raise UsageError("p256_viper: %d-bit limbs overflow this machine word" % w)
    if unroll is None:
        unroll = n <= 10
    ptr = "ptr16" if w <= 16 else "ptr32"
    size = 2 if w <= 16 else 4
    ns["WS"] = bytearray(size * n * _NSLOTS)
    ns["MS"] = bytearray(size * n)
    head = _header(w, n)
    gen = _gen_mul_unrolled if unroll else _gen_mul_loop
    # One piece at a time, so that the compiler's parse tree is only ever as large as one piece's; the text
    # module is dropped afterwards, so its strings do not stay in RAM (a later load() imports it again).
    for piece in (gen(w, n, False), gen(w, n, True), _gen_nmul(w, n, _N, unroll), _gen_small(w, n, _P, _N)):
        exec(head + piece.replace("PTR", ptr), ns)
    from evpilot.pnc import p256_viper_code as code

    for name in ("BASIC", "POINTS", "LADDER", "COMB", "VERIFY"):
        exec(head + getattr(code, name).replace("PTR", ptr), ns)
    code = None
    sys.modules.pop("evpilot.pnc.p256_viper_code", None)
    import evpilot.pnc

    if hasattr(evpilot.pnc, "p256_viper_code"):
        delattr(evpilot.pnc, "p256_viper_code")
    b = Backend(ns, w, n, unroll)
    r = 1 << (w * n)
    b._put(_ONE * n, r % _P, False)
    b._put(_R2 * n, r * r % _P, False)
    b._put(_ONEP * n, 1, False)
    b._put(_NN * n, _N, False)
    b._put(_RN2 * n, r * r % _N, False)
    return b
