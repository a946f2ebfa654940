# The viper text of p256_viper that does not depend on the limb size: compiled by p256_viper.load() after the
# generated field multiplication, addition and subtraction, with W, L, M and the slot names (offsets into the
# buffer WS) defined as const() before each piece and PTR replaced by ptr16 or ptr32. Only strings here:
# load() drops this module again once compiled, so on a board the text does not stay in RAM.
#
# Conventions: f* work on field elements (slot offsets; a result may be an operand), p* on the Jacobian
# accumulator (X1, Y1, Z1) with the operand (X2, Y2[, Z2]), z* on the co-Z ladder registers A = (XA, YA)
# and B = (XB, YB). The T* slots are scratch for whichever function runs; I1..I5 belong to finv.

# Limb moves, byte conversion, the inversion mod p (p - 2 by a fixed chain: 255 squarings, 13 products)
# and npow, r^e mod n for a public exponent e (32 bytes) by 4-bit windows, for ninv.
BASIC = """
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

@micropython.viper
def npow(r: int, eo):
    e = ptr8(eo)
    fcopy(NT + L, r)
    i = 2
    while i < 16:
        nmul(NT + i * L, NT + (i - 1) * L, r)
        i += 1
    fcopy(r, NT + (e[0] >> 4) * L)
    j = 1
    while j < 64:
        nmul(r, r, r)
        nmul(r, r, r)
        nmul(r, r, r)
        nmul(r, r, r)
        d = (e[j >> 1] >> (4 - 4 * (j & 1))) & 15
        if d:
            nmul(r, r, NT + d * L)
        j += 1
"""

# Points. Jacobian: pdbl (a = -3), pmadd (+ affine), padd (+ Jacobian) on (X1, Y1, Z1) with (X2, Y2[, Z2]).
# pmadd(0) and the ladder return 1 for the formulas' exceptional case (H = 0); pmadd(1) and padd, for public
# data only, branch on it instead (doubling, or 1 for a result at infinity).
POINTS = """
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
def pout(base: int):
    fcopy(base, X1)
    fcopy(base + L, Y1)

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
LADDER = """
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

# k G by the signed comb of p256_curve (two half-tables of 8 affine points in CT; see mul_base there): csel
# picks a row's entry by scanning all 8 with a mask and negates y by a masked swap. The tables are built
# here from G in (XP, YP), as p256_curve builds its own: the comb's teeth 2^(32 j) G (kept in QT meanwhile),
# each entry the top tooth of its half plus or minus the three below, and the odd multiples of G for verify.
COMB = """
@micropython.viper
def build_tables():
    fcopy(X1, XP)
    fcopy(Y1, YP)
    fcopy(Z1, ONE)
    j = 0
    while j < 8:
        pput(QT + j * 3 * L)
        if j < 7:
            i = 0
            while i < 32:
                pdbl()
                i += 1
        j += 1
    h = 0
    while h < 8:
        e = 0
        while e < 8:
            pget(QT + (h + 3) * 3 * L, 3, 0)
            fcopy(X1, X2)
            fcopy(Y1, Y2)
            fcopy(Z1, Z2)
            t = 0
            while t < 3:
                pget(QT + (h + t) * 3 * L, 3, ((e >> t) & 1) ^ 1)
                padd()
                t += 1
            affine()
            pout(CT + ((h >> 2) * 8 + e) * 2 * L)
            e += 1
        h += 4
    fcopy(X1, XP)
    fcopy(Y1, YP)
    fcopy(Z1, ONE)
    pout(GT)
    pdbl()
    fcopy(X2, X1)
    fcopy(Y2, Y1)
    fcopy(Z2, Z1)
    fcopy(X1, XP)
    fcopy(Y1, YP)
    fcopy(Z1, ONE)
    j = 1
    while j < 16:
        padd()
        fcopy(X3, X1)
        fcopy(Y3, Y1)
        fcopy(Z3, Z1)
        affine()
        pout(GT + j * 2 * L)
        fcopy(X1, X3)
        fcopy(Y1, Y3)
        fcopy(Z1, Z3)
        j += 1

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
VERIFY = """
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
