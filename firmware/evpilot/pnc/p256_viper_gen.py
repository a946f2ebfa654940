# What p256_viper.load() generates for a limb layout (W-bit limbs, L of them): the viper text of the field
# and scalar products (unrolled, or loops), and the point formulas as programs of field operations.
# load() drops this module once it has compiled and kept what it needs.
#
# Why programs: in viper every call to a field operation is a runtime call of a few dozen bytes of machine
# code, and a board keeps its native code in RAM. So the straight-line formulas (doubling, additions, the
# ladder step, the inversion chain) are data, 4 bytes per operation, run by one small loop
# (p256_viper_src's run); only control flow (scalar loops, table scans, the public-data branches) is viper
# text. On the unix port this costs 3-13% of the time of direct calls and halves the native code.

from evpilot.pnc.p256_curve import N as _N
from evpilot.pnc.p256_curve import P as _P


def piece(w, n, unroll, i):
    """Generated source piece i, in compiling order: fmul, fsqr, nmul, (unrolled only) fadd/fsub/fiszero."""
    if i < 2:
        return (_gen_mul_unrolled if unroll else _gen_mul_loop)(w, n, i == 1)
    if i == 2:
        return _gen_nmul(w, n, unroll)
    return _gen_small_unrolled(w, n)


_TERMS = ((96, "+"), (192, "+"), (224, "-"), (256, "+"))  # m p = m (2^256 - 2^224 + 2^192 + 2^96) - m


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
    """p256_viper_src.SMALL unrolled, with the limbs of 2p and p inline (a few percent faster on 64 bits)."""
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
    return "\n".join(src) + "\n"


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
