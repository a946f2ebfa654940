# The viper source text of p256_viper: the field and scalar products generated for the limb layout (W-bit
# limbs, L of them), the fixed text of everything else, and the point formulas as field-operation programs.
# p256_viper.load() compiles pieces(...) one at a time with W, L, M and the slot names (offsets into the
# buffer WS) defined as const() before each, and PTR replaced by ptr16 or ptr32, and keeps programs(...)'s
# bytes; then it drops this module again, so on a board neither the text nor the generator stays in RAM.
#
# Why programs: in viper every call to a field operation is a runtime call of a few dozen bytes of machine
# code, and the native code of a board stays in its RAM. So the straight-line formulas (doubling, additions,
# the ladder step, the inversion chain) are data, 4 bytes per operation, run by one small loop (run); only
# control flow (scalar loops, table scans, the public-data branches) is viper text.
#
# Conventions: f* work on field elements (slot offsets; a result may be an operand), n* on scalars mod n,
# p* on the Jacobian accumulator (X1, Y1, Z1) with the operand (X2, Y2[, Z2]), z* on the co-Z ladder
# registers A = (XA, YA) and B = (XB, YB). T* slots are scratch for whichever function runs; I0..I6 belong
# to the inversion (input I0, result I6).

_TERMS = ((96, "+"), (192, "+"), (224, "-"), (256, "+"))  # m p = m (2^256 - 2^224 + 2^192 + 2^96) - m
_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def pieces(w, n, unroll):
    """The source pieces, in the order they must be compiled (a piece calls only what came before)."""
    if unroll:
        out = [_gen_mul_unrolled(w, n, False), _gen_mul_unrolled(w, n, True)]
    else:
        out = [_gen_mul_loop(w, n, False), _gen_mul_loop(w, n, True)]
    small = _gen_small_unrolled(w, n) if unroll else SMALL
    return out + [_gen_nmul(w, n, unroll), small, BASIC, POINTS, LADDER, COMB, VERIFY]


def _limbs(v, w, n):
    return [(v >> (w * i)) & ((1 << w) - 1) for i in range(n)]


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


def _gen_nmul(w, n, unroll):
    """nmul: the Montgomery product mod the group order (R = 2^(W L) again). No special form here: the
    quotient limb is (low limb * -n^-1) mod 2^W and m n is a full product. A column then holds up to 2L
    products, too many for a 32-bit word, so the a b and the m n sums are kept apart and split into low and
    high parts before they meet."""
    nl = _limbs(_N, w, n)
    nprime = _neg_inverse(_N, w)
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


def _gen_small_unrolled(w, n):
    """SMALL (below) unrolled, with the limbs of 2p and p inline: a few percent faster on 64-bit ports."""
    pl = _limbs(_P, w, n)
    tp = _limbs(2 * _P, w, n)
    src = []

    def two_pass(name, first):
        src.append("@micropython.viper")
        src.append("def %s(r: int, a: int, b: int):" % name)
        src.append("    w = PTR(WS)")
        for i in range(n):
            src.append("    t = %s%s" % (first(i), " + (t >> W)" if i else ""))
            src.append("    w[r + %d] = t & M" % i)
        src.append("    k = t >> W")
        for i in range(n):
            src.append("    t = w[r + %d] + (%d & k)%s" % (i, tp[i], " + (t >> W)" if i else ""))
            src.append("    w[r + %d] = t & M" % i)

    two_pass("fadd", lambda i: "w[a + %d] + w[b + %d] - %d" % (i, i, tp[i]))
    two_pass("fsub", lambda i: "w[a + %d] - w[b + %d]" % (i, i))
    src.append("@micropython.viper")
    src.append("def fiszero(a: int) -> int:")
    src.append("    w = PTR(WS)")
    src.append("    z = " + " | ".join("w[a + %d]" % i for i in range(n)))
    src.append("    q = " + " | ".join("(w[a + %d] ^ %d)" % (i, pl[i]) for i in range(n)))
    src.append("    return (((z - 1) >> W) & 1) | (((q - 1) >> W) & 1)")
    canon = SMALL[SMALL.index("@micropython.viper\ndef canon("):SMALL.index("@micropython.viper\ndef fiszero(")]
    return "\n".join(src) + "\n" + canon


# fadd, fsub (results in [0, 2p)), fcanon (to [0, p)), ncanon (to [0, n)): a first pass with carries, whose
# sign k (0 or -1) says whether the second pass adds the modulus (2p, p or n, from the slots TP, PP, NN) back.
# fiszero: 1 when a (in [0, 2p)) is 0 or p.
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

# Limb moves, byte conversion, run (the program loop; op 6 is repeated squaring, its b a count), and npow,
# r^e mod n for a public exponent e (32 bytes) by 4-bit windows, for ninv.
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

# The formulas, one field operation a line: "R = A * B" (a square when A is B), "R = A + B", "R = A - B",
# "R = A" (copy), "? A" (the program's result |= A is 0), "R = A ^ k" (A squared k times). Results of
# additions and subtractions stay in [0, 2p) (fadd/fsub), products of those in [0, 2p) too (see p256_viper).
_FINV = """I1 = I0 * I0; I1 = I1 * I0; I2 = I1 ^ 2; I2 = I2 * I1; I3 = I2 ^ 4; I3 = I3 * I2; I4 = I3 ^ 8
I4 = I4 * I3; I5 = I4 ^ 16; I5 = I5 * I4; I6 = I5 ^ 32; I6 = I6 * I0; I6 = I6 ^ 128; I6 = I6 * I5
I6 = I6 ^ 32; I6 = I6 * I5; I6 = I6 ^ 16; I6 = I6 * I4; I6 = I6 ^ 8; I6 = I6 * I3; I6 = I6 ^ 4; I6 = I6 * I2
I6 = I6 ^ 2; I6 = I6 * I1; I6 = I6 ^ 2; I6 = I6 * I0"""  # I0^(p - 2): 255 squarings, 13 products
_ZADDC = """T0 = XB - XA; ? T0; T1 = T0 * T0; T2 = XA * T1; T3 = XB * T1; T4 = T3 - T2; T5 = YA * T4
T6 = YB - YA; T7 = YA + YB; T1 = T2 + T3; XA = T6 * T6; XA = XA - T1; XB = T7 * T7; XB = XB - T1
T8 = T2 - XA; T8 = T6 * T8; YA = T8 - T5; T8 = XB - T2; T8 = T7 * T8; YB = T8 - T5"""  # (A + B, A - B)
_ZADDU = """T0 = XB - XA; ? T0; T1 = T0 * T0; T3 = XB * T1; T6 = YB - YA; XB = XA * T1; T4 = T3 - XB
YB = YA * T4; T8 = T6 * T6; T8 = T8 - XB; XA = T8 - T3; T8 = XB - XA; T8 = T6 * T8; YA = T8 - YB"""
_SOURCE = {
    # 2 (X1, Y1, Z1), a = -3 (dbl-2001-b)
    "P_DBL": """T0 = Z1 * Z1; T1 = Y1 * Y1; T2 = X1 * T1; T3 = X1 - T0; T4 = X1 + T0; T3 = T3 * T4
        T4 = T3 + T3; T3 = T4 + T3; Z1 = Y1 * Z1; Z1 = Z1 + Z1; T2 = T2 + T2; T2 = T2 + T2; X1 = T3 * T3
        X1 = X1 - T2; X1 = X1 - T2; T2 = T2 - X1; T2 = T3 * T2; T1 = T1 * T1; T1 = T1 + T1; T1 = T1 + T1
        T1 = T1 + T1; Y1 = T2 - T1""",
    # + (X2, Y2) affine: H in T3, r in T4; then the sum
    "P_MADD_A": "T0 = Z1 * Z1; T1 = X2 * T0; T2 = Z1 * T0; T2 = Y2 * T2; T3 = T1 - X1; T4 = T2 - Y1; ? T3",
    "P_MADD_B": """T5 = T3 * T3; T6 = T3 * T5; T7 = X1 * T5; Z1 = Z1 * T3; T8 = T4 * T4; T8 = T8 - T6
        T8 = T8 - T7; X1 = T8 - T7; T7 = T7 - X1; T7 = T4 * T7; T6 = Y1 * T6; Y1 = T7 - T6""",
    # + (X2, Y2, Z2) Jacobian (add-1998-cmo-2): H in T6, r in T7; then the sum
    "P_PADD_A": """T0 = Z1 * Z1; T1 = Z2 * Z2; T2 = X1 * T1; T3 = X2 * T0; T4 = Z2 * T1; T4 = Y1 * T4
        T5 = Z1 * T0; T5 = Y2 * T5; T6 = T3 - T2; T7 = T5 - T4""",
    "P_PADD_B": """T8 = T6 * T6; T9 = T6 * T8; T2 = T2 * T8; Z1 = Z1 * Z2; Z1 = Z1 * T6; T0 = T7 * T7
        T0 = T0 - T9; T0 = T0 - T2; X1 = T0 - T2; T2 = T2 - X1; T2 = T7 * T2; T4 = T4 * T9; Y1 = T2 - T4""",
    "P_AFFINE": "I0 = Z1; " + _FINV + "; T1 = I6 * I6; X1 = X1 * T1; T1 = T1 * I6; Y1 = Y1 * T1",
    # ladder start: A = P, B = 2 P at Z = 2 yP, from P = (XP, YP) affine
    "P_LINIT": """T1 = YP * YP; T2 = XP * T1; T2 = T2 + T2; XA = T2 + T2; T3 = XP * XP; T3 = T3 - ONE
        T4 = T3 + T3; T3 = T4 + T3; T1 = T1 * T1; T1 = T1 + T1; T1 = T1 + T1; YA = T1 + T1; XB = T3 * T3
        XB = XB - XA; XB = XB - XA; T4 = XA - XB; T4 = T3 * T4; YB = T4 - YA""",
    "P_ZSTEP": _ZADDC + "; " + _ZADDU,
    "P_ZLAST": _ZADDC + "; XD = XB; YD = YB; " + _ZADDU,
    # x = XA / (lambda H)^2 = XA (XD yP)^2 / (YD xP H)^2, H (the last zaddu's) in T0; flag when that is 0
    "P_LEND": """T1 = YD * XP; T1 = T1 * T0; ? T1; T2 = XD * YP; T2 = T2 * T2; T2 = T2 * XA; I0 = T1; """
        + _FINV + "; T3 = I6 * I6; XA = T2 * T3",
    # r (plain, in T1) to Montgomery form, times Z1^2, against X1
    "P_XCHECK": "T0 = Z1 * Z1; T1 = T1 * R2; T1 = T1 * T0; T1 = T1 - X1; ? T1",
}


def programs(slots):
    """The programs as bytes (op, result slot, operand slot, operand slot or count), by name."""
    out = {}
    for name, text in _SOURCE.items():
        code = bytearray()
        for stmt in text.replace("\n", ";").split(";"):
            t = stmt.split()
            if not t:
                continue
            if t[0] == "?":
                code += bytes((5, 0, slots.index(t[1]), 0))
            elif len(t) == 3:
                code += bytes((4, slots.index(t[0]), slots.index(t[2]), 0))
            elif t[3] == "^":
                code += bytes((6, slots.index(t[0]), slots.index(t[2]), int(t[4])))
            else:
                op = {"*": 0, "+": 2, "-": 3}[t[3]]
                if op == 0 and t[2] == t[4]:
                    op = 1
                code += bytes((op, slots.index(t[0]), slots.index(t[2]), slots.index(t[4])))
        out[name] = bytes(code)
    return out
