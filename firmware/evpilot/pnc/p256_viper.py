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

try:
    import micropython  # noqa: F401 (the compiled text names it in its decorators)
except ImportError:  # CPython
    micropython = None

_TERMS = ((96, "+"), (192, "+"), (224, "-"), (256, "+"))  # m p = m (2^256 - 2^224 + 2^192 + 2^96) - m

# Slots of WS (each L limbs). Constants, ladder registers, the accumulator (X1, Y1, Z1) and operand
# (X2, Y2, Z2) of point additions, temporaries, the inversion's powers, then the tables: comb (16 affine
# points), verify's odd multiples of G (16 affine) and of the public key Q (8 Jacobian).
_SLOTS = ("ONE R2 ONEP ZERO XA YA XB YB XP YP XD YD X1 Y1 Z1 X2 Y2 Z2 X3 Y3 Z3 "
          "T0 T1 T2 T3 T4 T5 T6 T7 T8 T9 I1 I2 I3 I4 I5").split()
_ONE, _R2, _ONEP, _XA, _XP, _YP, _X1, _Y1 = [_SLOTS.index(s) for s in "ONE R2 ONEP XA XP YP X1 Y1".split()]
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
            e = " + ".join("a%d * b%d" % (i, k - i) for i in range(lo, hi + 1))
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


def _gen_small(w, n, p):
    """fadd, fsub (results in [0, 2p)), fcanon (to [0, p)) and fiszero, unrolled with the limbs of p inline."""
    pl = _limbs(p, w, n)
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
    src.append("@micropython.viper")
    src.append("def fiszero(a: int) -> int:")
    src.append("    w = PTR(WS)")
    src.append("    z = " + " | ".join("w[a + %d]" % i for i in range(n)))
    src.append("    q = " + " | ".join("(w[a + %d] ^ %d)" % (i, pl[i]) for i in range(n)))
    src.append("    return (((z - 1) >> W) & 1) | (((q - 1) >> W) & 1)")
    return "\n".join(src) + "\n"


# Limb moves, byte conversion and the inversion (p - 2 by a fixed chain: 255 squarings, 13 products).
_BASIC = """
@micropython.viper
def fcopy(r: int, a: int):
    w = PTR(WS)
    for i in range(L):
        w[r + i] = w[a + i]

@micropython.viper
def fcswap(a: int, b: int, bit: int):
    w = PTR(WS)
    k = 0 - bit
    for i in range(L):
        x = w[a + i]
        y = w[b + i]
        t = (x ^ y) & k
        w[a + i] = x ^ t
        w[b + i] = y ^ t

@micropython.viper
def load_be(s: int, bo, off: int):
    w = PTR(WS)
    b = ptr8(bo)
    acc = 0
    nb = 0
    li = 0
    j = off + 31
    while j >= off:
        acc |= b[j] << nb
        nb += 8
        if nb >= W:
            w[s + li] = acc & M
            acc >>= W
            nb -= W
            li += 1
        j -= 1
    while li < L:
        w[s + li] = acc
        acc = 0
        li += 1

@micropython.viper
def store_be(bo, off: int, s: int):
    w = PTR(WS)
    b = ptr8(bo)
    acc = 0
    nb = 0
    li = 0
    j = off + 31
    while j >= off:
        if nb < 8:
            acc |= w[s + li] << nb
            nb += W
            li += 1
        b[j] = acc & 255
        acc >>= 8
        nb -= 8
        j -= 1

@micropython.viper
def fsqrn(r: int, a: int, n: int):
    fsqr(r, a)
    while n > 1:
        fsqr(r, r)
        n -= 1

@micropython.viper
def finv(r: int, a: int):
    fsqr(I1, a)
    fmul(I1, I1, a)
    fsqrn(I2, I1, 2)
    fmul(I2, I2, I1)
    fsqrn(I3, I2, 4)
    fmul(I3, I3, I2)
    fsqrn(I4, I3, 8)
    fmul(I4, I4, I3)
    fsqrn(I5, I4, 16)
    fmul(I5, I5, I4)
    fsqrn(r, I5, 32)
    fmul(r, r, a)
    fsqrn(r, r, 96)
    fsqrn(r, r, 32)
    fmul(r, r, I5)
    fsqrn(r, r, 32)
    fmul(r, r, I5)
    fsqrn(r, r, 16)
    fmul(r, r, I4)
    fsqrn(r, r, 8)
    fmul(r, r, I3)
    fsqrn(r, r, 4)
    fmul(r, r, I2)
    fsqrn(r, r, 2)
    fmul(r, r, I1)
    fsqrn(r, r, 2)
    fmul(r, r, a)
"""

# Points. Jacobian: pdbl (a = -3), pmadd (+ affine), padd (+ Jacobian) on (X1, Y1, Z1) with (X2, Y2[, Z2]).
# pmadd(0) and the ladder return 1 for the formulas' exceptional case (H = 0); pmadd(1) and padd, for public
# data only, branch on it instead (doubling, or 1 for a result at infinity).
_POINTS = """
@micropython.viper
def pdbl():
    fsqr(T0, Z1)
    fsqr(T1, Y1)
    fmul(T2, X1, T1)
    fsub(T3, X1, T0)
    fadd(T4, X1, T0)
    fmul(T3, T3, T4)
    fadd(T4, T3, T3)
    fadd(T3, T4, T3)
    fmul(Z1, Y1, Z1)
    fadd(Z1, Z1, Z1)
    fadd(T2, T2, T2)
    fadd(T2, T2, T2)
    fsqr(X1, T3)
    fsub(X1, X1, T2)
    fsub(X1, X1, T2)
    fsub(T2, T2, X1)
    fmul(T2, T3, T2)
    fsqr(T1, T1)
    fadd(T1, T1, T1)
    fadd(T1, T1, T1)
    fadd(T1, T1, T1)
    fsub(Y1, T2, T1)

@micropython.viper
def pmadd(vt: int) -> int:
    fsqr(T0, Z1)
    fmul(T1, X2, T0)
    fmul(T2, Z1, T0)
    fmul(T2, Y2, T2)
    fsub(T3, T1, X1)
    fsub(T4, T2, Y1)
    h = int(fiszero(T3))
    if vt and h:
        if int(fiszero(T4)):
            pdbl()
            return 0
        return 1
    fsqr(T5, T3)
    fmul(T6, T3, T5)
    fmul(T7, X1, T5)
    fmul(Z1, Z1, T3)
    fsqr(T8, T4)
    fsub(T8, T8, T6)
    fsub(T8, T8, T7)
    fsub(X1, T8, T7)
    fsub(T7, T7, X1)
    fmul(T7, T4, T7)
    fmul(T6, Y1, T6)
    fsub(Y1, T7, T6)
    return h

@micropython.viper
def padd() -> int:
    fsqr(T0, Z1)
    fsqr(T1, Z2)
    fmul(T2, X1, T1)
    fmul(T3, X2, T0)
    fmul(T4, Z2, T1)
    fmul(T4, Y1, T4)
    fmul(T5, Z1, T0)
    fmul(T5, Y2, T5)
    fsub(T6, T3, T2)
    fsub(T7, T5, T4)
    if int(fiszero(T6)):
        if int(fiszero(T7)):
            pdbl()
            return 0
        return 1
    fsqr(T8, T6)
    fmul(T9, T6, T8)
    fmul(T2, T2, T8)
    fmul(Z1, Z1, Z2)
    fmul(Z1, Z1, T6)
    fsqr(T0, T7)
    fsub(T0, T0, T9)
    fsub(T0, T0, T2)
    fsub(X1, T0, T2)
    fsub(T2, T2, X1)
    fmul(T2, T7, T2)
    fmul(T4, T4, T9)
    fsub(Y1, T2, T4)
    return 0

@micropython.viper
def affine():
    finv(T0, Z1)
    fsqr(T1, T0)
    fmul(X1, X1, T1)
    fmul(T1, T1, T0)
    fmul(Y1, Y1, T1)
"""

# The co-Z Montgomery ladder (X and Y only; Z is recovered at the end). A and B share one Z. zaddc:
# (A, B) = (A + B, A - B); zaddu: (A, B) = (A + B, A rescaled to the new Z). With A = R_b, B = R_(1-b) the
# two give (2 R_b, R_0 + R_1): one ladder step, 9M + 5S. The last step's A - B is +-P at Z = lambda, which
# gives lambda = +-YD xP / (XD yP), and the result's Z is lambda times the last zaddu's H (left in T0).
_LADDER = """
@micropython.viper
def zaddc() -> int:
    fsub(T0, XB, XA)
    h = int(fiszero(T0))
    fsqr(T1, T0)
    fmul(T2, XA, T1)
    fmul(T3, XB, T1)
    fsub(T4, T3, T2)
    fmul(T5, YA, T4)
    fsub(T6, YB, YA)
    fadd(T7, YA, YB)
    fadd(T1, T2, T3)
    fsqr(XA, T6)
    fsub(XA, XA, T1)
    fsqr(XB, T7)
    fsub(XB, XB, T1)
    fsub(T8, T2, XA)
    fmul(T8, T6, T8)
    fsub(YA, T8, T5)
    fsub(T8, XB, T2)
    fmul(T8, T7, T8)
    fsub(YB, T8, T5)
    return h

@micropython.viper
def zaddu() -> int:
    fsub(T0, XB, XA)
    h = int(fiszero(T0))
    fsqr(T1, T0)
    fmul(T3, XB, T1)
    fsub(T6, YB, YA)
    fmul(XB, XA, T1)
    fsub(T4, T3, XB)
    fmul(YB, YA, T4)
    fsqr(T8, T6)
    fsub(T8, T8, XB)
    fsub(XA, T8, T3)
    fsub(T8, XB, XA)
    fmul(T8, T6, T8)
    fsub(YA, T8, YB)
    return h

@micropython.viper
def ladder(kbo) -> int:
    kb = ptr8(kbo)
    fsqr(T1, YP)
    fmul(T2, XP, T1)
    fadd(T2, T2, T2)
    fadd(XA, T2, T2)
    fsqr(T3, XP)
    fsub(T3, T3, ONE)
    fadd(T4, T3, T3)
    fadd(T3, T4, T3)
    fsqr(T1, T1)
    fadd(T1, T1, T1)
    fadd(T1, T1, T1)
    fadd(YA, T1, T1)
    fsqr(XB, T3)
    fsub(XB, XB, XA)
    fsub(XB, XB, XA)
    fsub(T4, XA, XB)
    fmul(T4, T3, T4)
    fsub(YB, T4, YA)
    flag = 0
    prev = 0
    i = 255
    while i >= 0:
        bit = (kb[32 - (i >> 3)] >> (i & 7)) & 1
        fcswap(XA, XB, bit ^ prev)
        fcswap(YA, YB, bit ^ prev)
        prev = bit
        flag |= int(zaddc())
        if i == 0:
            fcopy(XD, XB)
            fcopy(YD, YB)
        flag |= int(zaddu())
        i -= 1
    fcswap(XA, XB, prev)
    fcswap(YA, YB, prev)
    fmul(T1, YD, XP)
    fmul(T1, T1, T0)
    flag |= int(fiszero(T1))
    fmul(T2, XD, YP)
    fsqr(T2, T2)
    fmul(T2, T2, XA)
    finv(T3, T1)
    fsqr(T3, T3)
    fmul(XA, T2, T3)
    return flag
"""

# k G by the signed comb of p256 (two half-tables of 8 affine points in CT; see p256._mul_base): csel picks
# a row's entry by scanning all 8 with a mask and negates y by a masked swap.
_COMB = """
@micropython.viper
def csel(first: int, cbo, pos: int):
    cb = ptr8(cbo)
    w = PTR(WS)
    q = pos + 96
    top = (cb[31 - (q >> 3)] >> (q & 7)) & 1
    idx = 0
    j = 0
    while j < 3:
        q = pos + 32 * j
        idx |= (((cb[31 - (q >> 3)] >> (q & 7)) & 1) ^ top ^ 1) << j
        j += 1
    for i in range(L):
        w[X2 + i] = 0
        w[Y2 + i] = 0
    e = 0
    while e < 8:
        k = ((idx ^ e) - 1) >> 8
        base = CT + (first + e) * 2 * L
        for i in range(L):
            w[X2 + i] |= w[base + i] & k
            w[Y2 + i] |= w[base + L + i] & k
        e += 1
    fsub(T9, ZERO, Y2)
    fcswap(Y2, T9, top ^ 1)

@micropython.viper
def comb(cbo, flip: int) -> int:
    csel(0, cbo, 31)
    fcopy(X1, X2)
    fcopy(Y1, Y2)
    fcopy(Z1, ONE)
    csel(8, cbo, 159)
    flag = int(pmadd(0))
    r = 30
    while r >= 0:
        pdbl()
        csel(0, cbo, r)
        flag |= int(pmadd(0))
        csel(8, cbo, r + 128)
        flag |= int(pmadd(0))
        r -= 1
    fsub(T9, ZERO, Y1)
    fcswap(Y1, T9, flip)
    return flag
"""

# verify: width-w NAF digits (signed bytes, least significant first) and the interleaved sum of u2 Q (8 odd
# multiples in QT, Jacobian) and u1 G (16 odd multiples in GT, affine). Public data: branches allowed.
_VERIFY = """
@micropython.viper
def kbits(kb: ptr8, i: int, n: int) -> int:
    v = 0
    j = 0
    while j < n:
        q = i + j
        if q < 256:
            v |= ((kb[31 - (q >> 3)] >> (q & 7)) & 1) << j
        j += 1
    return v

@micropython.viper
def wnaf(dgo, kbo, w: int) -> int:
    dg = ptr8(dgo)
    kb = ptr8(kbo)
    full = 1 << w
    i = 0
    while i < 264:
        dg[i] = 0
        i += 1
    i = 0
    carry = 0
    top = 0
    while i < 262:
        b = int(kbits(kb, i, 1)) + carry
        if b == 1:
            v = int(kbits(kb, i, w)) + carry
            carry = 0
            if v >= full >> 1:
                v -= full
                carry = 1
            dg[i] = v & 255
            top = i + 1
            i += w
        else:
            carry = b >> 1
            i += 1
    return top

@micropython.viper
def pget(base: int, n: int, neg: int):
    fcopy(X2, base)
    fcopy(Y2, base + L)
    if n == 3:
        fcopy(Z2, base + 2 * L)
    if neg:
        fsub(Y2, ZERO, Y2)

@micropython.viper
def pput(base: int):
    fcopy(base, X1)
    fcopy(base + L, Y1)
    fcopy(base + 2 * L, Z1)

@micropython.viper
def qtable():
    fcopy(X1, XP)
    fcopy(Y1, YP)
    fcopy(Z1, ONE)
    pput(QT)
    pdbl()
    fcopy(X2, X1)
    fcopy(Y2, Y1)
    fcopy(Z2, Z1)
    fcopy(X1, XP)
    fcopy(Y1, YP)
    fcopy(Z1, ONE)
    j = 1
    while j < 8:
        padd()
        pput(QT + j * 3 * L)
        j += 1

@micropython.viper
def dsm(d1o, n1: int, d2o, n2: int) -> int:
    d1 = ptr8(d1o)
    d2 = ptr8(d2o)
    inf = 1
    i = n1
    if n2 > n1:
        i = n2
    i -= 1
    while i >= 0:
        if inf == 0:
            pdbl()
        d = d2[i]
        if d:
            if d > 127:
                pget(QT + ((256 - d) >> 1) * 3 * L, 3, 1)
            else:
                pget(QT + (d >> 1) * 3 * L, 3, 0)
            if inf:
                fcopy(X1, X2)
                fcopy(Y1, Y2)
                fcopy(Z1, Z2)
                inf = 0
            else:
                inf = int(padd())
        d = d1[i]
        if d:
            if d > 127:
                pget(GT + ((256 - d) >> 1) * 2 * L, 2, 1)
            else:
                pget(GT + (d >> 1) * 2 * L, 2, 0)
            if inf:
                fcopy(X1, X2)
                fcopy(Y1, Y2)
                fcopy(Z1, ONE)
                inf = 0
            else:
                inf = int(pmadd(1))
        i -= 1
    return inf

@micropython.viper
def xcheck(rbo) -> int:
    fsqr(T0, Z1)
    load_be(T1, rbo, 0)
    fmul(T1, T1, R2)
    fmul(T1, T1, T0)
    fsub(T1, T1, X1)
    return int(fiszero(T1))
"""


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

    def __init__(self, ns, w, n):
        self.w = w
        self.n = n
        self.ns = ns
        self.out = bytearray(64)
        self.dig1 = bytearray(264)
        self.dig2 = bytearray(264)
        self.comb_ready = False
        self.g_ready = False

    def _put(self, slot, value, mont=True):
        ns = self.ns
        ns["load_be"](slot, value.to_bytes(32, "big"), 0)
        if mont:
            ns["fmul"](slot, slot, _R2 * self.n)

    def _put_points(self, first, points):
        for i, (x, y) in enumerate(points):
            self._put(first + 2 * i * self.n, x)
            self._put(first + (2 * i + 1) * self.n, y)

    def _out(self, slot, off):
        ns = self.ns
        ns["fmul"](slot, slot, _ONEP * self.n)  # out of Montgomery form
        ns["fcanon"](slot)
        ns["store_be"](self.out, off, slot)

    def base_mul(self, k, comb_points):
        """k G (secret 0 < k < n) as x || y, 64 bytes; comb_points() gives the 16 affine table entries."""
        ns = self.ns
        if not self.comb_ready:
            self._put_points(_CT * self.n, comb_points())
            self.comb_ready = True
        flip = (k & 1) ^ 1
        kk = k + (_N - 2 * k) * flip
        if ns["comb"](((kk + _MASK256) >> 1).to_bytes(32, "big"), flip):
            return None
        ns["affine"]()
        self._out(_X1 * self.n, 0)
        self._out(_Y1 * self.n, 32)
        return bytes(self.out)

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

    def verify(self, u1, u2, pub, r, g_points):
        """Whether x(u1 G + u2 Q) = r (mod n) for public u1, u2 and Q = pub (validated)."""
        ns = self.ns
        if not self.g_ready:
            self._put_points(_GT * self.n, g_points())
            self.g_ready = True
        self._load_point(pub)
        ns["qtable"]()
        n1 = ns["wnaf"](self.dig1, u1.to_bytes(32, "big"), 6)
        n2 = ns["wnaf"](self.dig2, u2.to_bytes(32, "big"), 5)
        if ns["dsm"](self.dig1, n1, self.dig2, n2):
            return False
        if ns["xcheck"](r.to_bytes(32, "big")):
            return True
        return r + _N < _P and ns["xcheck"]((r + _N).to_bytes(32, "big")) == 1


_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_MASK256 = (1 << 256) - 1


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
        raise ValueError("p256_viper: %d-bit limbs overflow this machine word" % w)
    if unroll is None:
        unroll = n <= 10
    ptr = "ptr16" if w <= 16 else "ptr32"
    size = 2 if w <= 16 else 4
    ns["WS"] = bytearray(size * n * _NSLOTS)
    ns["MS"] = bytearray(size * n)
    head = _header(w, n)
    gen = _gen_mul_unrolled if unroll else _gen_mul_loop
    # One piece at a time, so that the compiler's parse tree is only ever as large as one piece's.
    for piece in (gen(w, n, False), gen(w, n, True), _gen_small(w, n, _P), _BASIC, _POINTS, _LADDER, _COMB,
                  _VERIFY):
        exec(head + piece.replace("PTR", ptr), ns)
    b = Backend(ns, w, n)
    r = 1 << (w * n)
    b._put(_ONE * n, r % _P, False)
    b._put(_R2 * n, r * r % _P, False)
    b._put(_ONEP * n, 1, False)
    return b
