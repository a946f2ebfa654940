# The fixed viper text of p256_viper (what does not depend on the limb layout). p256_viper.load() compiles it
# after p256_viper_gen's products, piece by piece (each calls only what came before), with W, L, M and the
# slot names (offsets into the buffer WS) defined as const() before each and PTR replaced by ptr16 or
# ptr32; then it drops this module again, so on a board the text does not stay in RAM.
#
# Conventions: f* work on field elements (slot offsets; a result may be an operand), n* on scalars mod n,
# p* on the Jacobian accumulator (X1, Y1, Z1) with the operand (X2, Y2[, Z2]), the ladder on the co-Z
# registers A = (XA, YA) and B = (XB, YB). T* slots are scratch for whichever function runs; I0..I6 belong
# to the inversion program (input I0, result I6). The P_* names are p256_viper_gen's programs.

# fadd, fsub (results in [0, 2p)): a first pass with carries, whose sign k (0 or -1) says whether the second
# pass adds 2p (the slot TP) back; fiszero: 1 when a (in [0, 2p)) is 0 or p. p256_viper_gen unrolls them on
# 64-bit layouts.
SMALL = """
@micropython.viper
def fadd(r: int, a: int, b: int):
    w = PTR(WS)
    t = 0
    for i in range(L):
        t = w[a + i] + w[b + i] - w[TP + i] + (t >> W)
        w[r + i] = t & M
    k = t >> W
    t = 0
    for i in range(L):
        t = w[r + i] + (w[TP + i] & k) + (t >> W)
        w[r + i] = t & M

@micropython.viper
def fsub(r: int, a: int, b: int):
    w = PTR(WS)
    t = 0
    for i in range(L):
        t = w[a + i] - w[b + i] + (t >> W)
        w[r + i] = t & M
    k = t >> W
    t = 0
    for i in range(L):
        t = w[r + i] + (w[TP + i] & k) + (t >> W)
        w[r + i] = t & M

@micropython.viper
def fiszero(a: int) -> int:
    w = PTR(WS)
    z = 0
    q = 0
    for i in range(L):
        x = w[a + i]
        z |= x
        q |= x ^ w[PP + i]
    return (((z - 1) >> W) & 1) | (((q - 1) >> W) & 1)
"""

# canon reduces r (in [0, 2m)) to [0, m) for the modulus in slot m (PP or NN); limb moves, byte conversion,
# run (the program loop; op 6 is repeated squaring, its b a count), and npow, r^e mod n for a public
# exponent e (32 bytes) by 4-bit windows, for ninv.
BASIC = """
@micropython.viper
def canon(r: int, m: int):
    w = PTR(WS)
    t = 0
    for i in range(L):
        t = w[r + i] - w[m + i] + (t >> W)
        w[r + i] = t & M
    k = t >> W
    t = 0
    for i in range(L):
        t = w[r + i] + (w[m + i] & k) + (t >> W)
        w[r + i] = t & M

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
def run(po) -> int:
    p = ptr8(po)
    end = int(len(po))
    flag = 0
    i = 0
    while i < end:
        op = p[i]
        r = p[i + 1] * L
        a = p[i + 2] * L
        b = p[i + 3]
        if op == 0:
            fmul(r, a, b * L)
        elif op == 1:
            fsqr(r, a)
        elif op == 2:
            fadd(r, a, b * L)
        elif op == 3:
            fsub(r, a, b * L)
        elif op == 4:
            fcopy(r, a)
        elif op == 5:
            flag |= int(fiszero(a))
        else:
            fsqr(r, a)
            while b > 1:
                fsqr(r, r)
                b -= 1
        i += 4
    return flag

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


# Points: pmadd (+ affine (X2, Y2)) and padd (+ Jacobian) on (X1, Y1, Z1). pmadd(0) returns 1 for the
# formula's exceptional case (H = 0); pmadd(1) and padd, for public data only, branch on it instead (a
# doubling, or 1 for a result at infinity). pget/pput/pout move points between the accumulator or operand
# and table slots.
POINTS = """
@micropython.viper
def pmadd(vt: int) -> int:
    h = int(run(P_MADD_A))
    if vt and h:
        if int(fiszero(T4)):
            run(P_DBL)
            return 0
        return 1
    run(P_MADD_B)
    return h

@micropython.viper
def padd() -> int:
    run(P_PADD_A)
    if int(fiszero(T6)):
        if int(fiszero(T7)):
            run(P_DBL)
            return 0
        return 1
    run(P_PADD_B)
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
def pset(x: int, y: int, z: int):
    fcopy(X1, x)
    fcopy(Y1, y)
    fcopy(Z1, z)
"""

# The co-Z Montgomery ladder (see p256_curve.ladder), A = R_b and B = R_(1-b) swapped by mask before each
# step; the last step keeps A - B (+-P at Z = lambda) in (XD, YD) for the Z recovery.
LADDER = """
@micropython.viper
def ladder(kbo) -> int:
    kb = ptr8(kbo)
    run(P_LINIT)
    flag = 0
    prev = 0
    i = 255
    while i >= 0:
        bit = (kb[32 - (i >> 3)] >> (i & 7)) & 1
        fcswap(XA, XB, bit ^ prev)
        fcswap(YA, YB, bit ^ prev)
        prev = bit
        if i:
            flag |= int(run(P_ZSTEP))
        else:
            flag |= int(run(P_ZLAST))
        i -= 1
    fcswap(XA, XB, prev)
    fcswap(YA, YB, prev)
    flag |= int(run(P_LEND))
    return flag
"""

# k G by the signed comb of p256_curve (two half-tables of 8 affine points in CT; see mul_base there): csel
# picks a row's entry by scanning all 8 with a mask and negates y by a masked swap. build_tables makes the
# tables from G in (XP, YP) as p256_curve makes its own: the comb's teeth 2^(32 j) G (kept in QT meanwhile),
# each entry the top tooth of its half plus or minus the three below, and the odd multiples of G for verify.
COMB = """
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
    pset(X2, Y2, ONE)
    csel(8, cbo, 159)
    flag = int(pmadd(0))
    r = 30
    while r >= 0:
        run(P_DBL)
        csel(0, cbo, r)
        flag |= int(pmadd(0))
        csel(8, cbo, r + 128)
        flag |= int(pmadd(0))
        r -= 1
    fsub(T9, ZERO, Y1)
    fcswap(Y1, T9, flip)
    return flag

@micropython.viper
def build_tables():
    pset(XP, YP, ONE)
    j = 0
    while j < 8:
        pput(QT + j * 3 * L)
        if j < 7:
            i = 0
            while i < 32:
                run(P_DBL)
                i += 1
        j += 1
    h = 0
    while h < 8:
        e = 0
        while e < 8:
            pget(QT + (h + 3) * 3 * L, 3, 0)
            pset(X2, Y2, Z2)
            t = 0
            while t < 3:
                pget(QT + (h + t) * 3 * L, 3, ((e >> t) & 1) ^ 1)
                padd()
                t += 1
            run(P_AFFINE)
            pout(CT + ((h >> 2) * 8 + e) * 2 * L)
            e += 1
        h += 4
    pset(XP, YP, ONE)
    pout(GT)
    run(P_DBL)
    fcopy(X2, X1)
    fcopy(Y2, Y1)
    fcopy(Z2, Z1)
    pset(XP, YP, ONE)
    j = 1
    while j < 16:
        padd()
        fcopy(X3, X1)
        fcopy(Y3, Y1)
        fcopy(Z3, Z1)
        run(P_AFFINE)
        pout(GT + j * 2 * L)
        pset(X3, Y3, Z3)
        j += 1
"""

# verify: width-w NAF digits (signed bytes, least significant first) and the interleaved sum of u2 Q (8 odd
# multiples in QT, Jacobian) and u1 G (16 odd multiples in GT, affine). Public data: branches allowed.
# (Buffers go from one viper function to another as objects, never as ptr8: a pointer passed on is boxed
# as an int, which on a 32-bit board is a big int, allocated at every call.)
VERIFY = """
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
        b = carry
        if i < 256:
            b += (kb[31 - (i >> 3)] >> (i & 7)) & 1
        if b == 1:
            v = carry
            j = 0
            while j < w:
                q = i + j
                if q < 256:
                    v += ((kb[31 - (q >> 3)] >> (q & 7)) & 1) << j
                j += 1
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
    pset(XP, YP, ONE)
    pput(QT)
    run(P_DBL)
    fcopy(X2, X1)
    fcopy(Y2, Y1)
    fcopy(Z2, Z1)
    pset(XP, YP, ONE)
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
            run(P_DBL)
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
    load_be(T1, rbo, 0)
    return int(run(P_XCHECK))
"""
