# NIST P-256 (secp256r1) point arithmetic and scalar multiplication on Python ints: the path every
# interpreter runs (CPython, MicroPython without a native emitter, and the fallback of p256_viper).
#
# How this works
# --------------
# Field elements and scalars are plain ints (arbitrary precision on both interpreters). Points are Jacobian
# triples (X, Y, Z) standing for the affine point (X/Z^2, Y/Z^3); Z == 0 is the point at infinity. Every
# product is reduced mod p at once; sums stay unreduced until the next reduction (Python's % is always
# non-negative), so each stored coordinate is in [0, p). (A P-256-specific reduction by shifts and adds
# is slower than % on both interpreters, and so is reducing less often: measured, see bench/p256_bench.py.)
#
# Three scalar multiplications (their secret paths are described in evpilot.pnc.p256):
#   mul_base(k)        k*G for secrets: a signed comb over a 16-point table of G, built on first use.
#   ladder(k, P)       k*P for secrets: a co-Z Montgomery ladder over exactly 256 bits; ladder_jacobian is
#                      its fallback (the plain Montgomery ladder on Jacobian points).
#   mul_vartime(k,P,kg) k*P + kg*G for public data: interleaved wNAF (Shamir's trick), branches allowed.
# The secret paths use formulas that are wrong only in exceptional cases; such a case is detected (Z == 0,
# or the ladder's H == 0) and the work redone on the next path (comb -> ladder -> Jacobian ladder ->
# vartime). p256_viper runs the same algorithms; comb_points() and g_points() let tests compare the tables.

# Curve parameters (SEC 2 v2, secp256r1; a = -3).
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5

_MASK256 = (1 << 256) - 1
_INFINITY = (1, 1, 0)


# -- field and point arithmetic ------------------------------------------------------------------------


def inv(x, m):
    """x^-1 mod m for prime m (Fermat; pow(x, -1, m) is missing on older MicroPython ports)."""
    return pow(x, m - 2, m)


def _dbl(pt):
    """2*pt, Jacobian, a = -3 (dbl-2001-b). Infinity stays infinity (Z = 0)."""
    p = P
    X, Y, Z = pt
    delta = Z * Z % p
    gamma = Y * Y % p
    beta = X * gamma % p
    alpha = 3 * (X - delta) * (X + delta) % p
    X3 = (alpha * alpha - 8 * beta) % p
    Y3 = (alpha * (4 * beta - X3) - 8 * gamma * gamma) % p
    return X3, Y3, 2 * Y * Z % p


def _add(p1, p2):
    """p1 + p2, Jacobian (add-1998-cmo-2). Wrong when p1 == p2 or either is infinity: the result then has
    Z = 0 (callers rely on that, see the top of the module). p1 == -p2 gives infinity correctly."""
    p = P
    X1, Y1, Z1 = p1
    X2, Y2, Z2 = p2
    Z1Z1 = Z1 * Z1 % p
    Z2Z2 = Z2 * Z2 % p
    U1 = X1 * Z2Z2 % p
    S1 = Y1 * Z2 * Z2Z2 % p
    H = (X2 * Z1Z1 - U1) % p
    r = (Y2 * Z1 * Z1Z1 - S1) % p
    HH = H * H % p
    HHH = H * HH % p
    V = U1 * HH % p
    X3 = (r * r - HHH - 2 * V) % p
    return X3, (r * (V - X3) - S1 * HHH) % p, Z1 * Z2 * H % p


def _madd(p1, x2, y2):
    """p1 + (x2, y2) with the second point affine (Z2 = 1); same exceptional cases as _add."""
    p = P
    X1, Y1, Z1 = p1
    Z1Z1 = Z1 * Z1 % p
    H = (x2 * Z1Z1 - X1) % p
    r = (y2 * Z1 * Z1Z1 - Y1) % p
    HH = H * H % p
    HHH = H * HH % p
    V = X1 * HH % p
    X3 = (r * r - HHH - 2 * V) % p
    return X3, (r * (V - X3) - Y1 * HHH) % p, Z1 * H % p


def _add_vartime(p1, p2):
    """p1 + p2 for public data: handles infinity, doubling and inverse points by branching."""
    if p1[2] == 0:
        return p2
    if p2[2] == 0:
        return p1
    p = P
    Z1Z1 = p1[2] * p1[2] % p
    Z2Z2 = p2[2] * p2[2] % p
    if (p1[0] * Z2Z2 - p2[0] * Z1Z1) % p == 0:
        if (p1[1] * p2[2] * Z2Z2 - p2[1] * p1[2] * Z1Z1) % p == 0:
            return _dbl(p1)
        return _INFINITY
    if p2[2] == 1:
        return _madd(p1, p2[0], p2[1])
    return _add(p1, p2)


def affine(pt):
    """(x, y) of a Jacobian point that is not infinity."""
    p = P
    zi = inv(pt[2], p)
    zi2 = zi * zi % p
    return pt[0] * zi2 % p, pt[1] * zi2 * zi % p


def on_curve(x, y):
    p = P
    return (y * y - (x * x * x - 3 * x + B)) % p == 0


# -- scalar multiplication -----------------------------------------------------------------------------

# Comb table for G: tooth j (0..7) stands for 2^(32 j) G. Half-table A (teeth 0-3) and B (teeth 4-7) each
# hold 8 affine points T[e] = top + sum over the 3 lower teeth of (+tooth if bit j of e else -tooth), where
# "top" is tooth 3 (A) or 7 (B); entry e is packed as one int x | y << 256 so one masked sum selects both.
_comb = None


def _comb_table():
    global _comb
    if _comb is None:
        teeth = []
        pt = (GX, GY, 1)
        for j in range(8):
            teeth.append(pt)
            if j < 7:
                for _ in range(32):
                    pt = _dbl(pt)
        table = []
        for half in (0, 4):
            for e in range(8):
                acc = teeth[half + 3]
                for j in range(3):
                    t = teeth[half + j]
                    if not (e >> j) & 1:
                        t = (t[0], (P - t[1]) % P, t[2])
                    acc = _add_vartime(acc, t)
                x, y = affine(acc)
                table.append(x | y << 256)
        _comb = tuple(table)
    return _comb


def _comb_column(table, first, c, r, shift):
    """The affine point of comb row r for one half-table, chosen by arithmetic, and its sign applied.
    `first` is 0 (A) or 8 (B); `shift` the bit position of the half's lowest tooth (0 or 128)."""
    top = (c >> (r + shift + 96)) & 1
    idx = 0
    for j in range(3):
        idx |= (((c >> (r + shift + 32 * j)) & 1) ^ top ^ 1) << j
    packed = 0
    for e in range(8):
        packed += table[first + e] * ((((idx ^ e) - 1) >> 3) & 1)
    x = packed & _MASK256
    y = packed >> 256
    return x, y + (P - 2 * y) * (top ^ 1)  # negate y when the top tooth's digit is -1


def mul_base(k):
    """k*G for a secret 0 < k < n (Jacobian)."""
    table = _comb_table()
    # Signed comb: an odd scalar k' = sum of b_i 2^i with every digit b_i = 2 c_i - 1 in {-1, +1}, where
    # c = (k' + 2^256 - 1) / 2. So no comb column is zero and no table entry is infinity. Even k is
    # replaced by n - k (odd, since n is odd) and the result negated, both by arithmetic.
    flip = (k & 1) ^ 1
    kk = k + (N - 2 * k) * flip
    c = (kk + _MASK256) >> 1
    x, y = _comb_column(table, 0, c, 31, 0)
    acc = _madd((x, y, 1), *_comb_column(table, 8, c, 31, 128))
    for r in range(30, -1, -1):
        acc = _dbl(acc)
        acc = _madd(acc, *_comb_column(table, 0, c, r, 0))
        acc = _madd(acc, *_comb_column(table, 8, c, r, 128))
    acc = (acc[0], acc[1] + (P - 2 * acc[1]) * flip, acc[2])
    if acc[2] == 0:  # exceptional scalar (see the top of the module)
        return ladder(k, (GX, GY, 1))
    return acc


def ladder(k, pt):
    """k*pt for a secret 0 < k < n and an affine pt (Z = 1): co-Z Montgomery ladder, 256 steps for every k.
    Registers A = R_b and B = R_(1-b) share one Z and only X, Y are kept. zaddc turns them into (A + B,
    A - B), zaddu into (A + B, A rescaled), which together is one ladder step (2 R_b, R_0 + R_1) in 9M + 5S
    (co-Z formulas of Meloni; the ladder of Goundar, Joye, Miyaji, Rivain and Venelli). The last A - B is
    +-pt at Z = lambda, so lambda = +-YD xP / (XD yP): the Jacobian result is scaled by XD yP instead of
    divided. Exceptional (some H = 0, or xP = 0 where lambda cannot be read) -> the Jacobian ladder."""
    p = P
    xp, yp = pt[0], pt[1]
    kk = k + N
    kk += N * ((kk >> 256) ^ 1)  # bit 256 set (see ladder_jacobian); (A, B) = (pt, 2 pt) at Z = 2 yP
    gamma = yp * yp % p
    xa = 4 * xp * gamma % p
    ya = 8 * gamma * gamma % p
    alpha = 3 * (xp * xp - 1) % p
    xb = (alpha * alpha - 2 * xa) % p
    yb = (alpha * (xa - xb) - ya) % p
    prev = 0
    bad = xp == 0
    xd = yd = h = 0
    for i in range(255, -1, -1):
        bit = (kk >> i) & 1
        s = bit ^ prev
        prev = bit
        dx = (xa - xb) * s
        dy = (ya - yb) * s
        xa -= dx
        xb += dx
        ya -= dy
        yb += dy
        h = (xb - xa) % p  # zaddc
        bad |= h == 0
        hh = h * h % p
        b1 = xa * hh % p
        c1 = xb * hh % p
        e = ya * (c1 - b1) % p
        r = yb - ya
        t = ya + yb
        xa = (r * r - b1 - c1) % p
        xb = (t * t - b1 - c1) % p
        ya = (r * (b1 - xa) - e) % p
        yb = (t * (xb - b1) - e) % p
        if i == 0:
            xd = xb
            yd = yb
        h = (xb - xa) % p  # zaddu
        bad |= h == 0
        hh = h * h % p
        c1 = xb * hh % p
        r = yb - ya
        xb = xa * hh % p
        yb = ya * (c1 - xb) % p
        xa = (r * r - xb - c1) % p
        ya = (r * (xb - xa) - yb) % p
    xa -= (xa - xb) * prev
    ya -= (ya - yb) * prev
    u = xd * yp % p
    z = (2 * prev - 1) * yd * xp * h % p  # the last A - B is +pt when the last bit is 1, else -pt
    if bad or z == 0:
        return ladder_jacobian(k, pt)
    return xa * u * u % p, ya * u * u * u % p, z


def ladder_jacobian(k, pt):
    """k*pt for a secret 0 < k < n: Montgomery ladder on Jacobian points, 256 iterations for every k."""
    # k' = k + n or k + 2n, whichever has bit 256 set (k + n < 2^256 only when k < 2^256 - n), chosen by
    # arithmetic. k' = k (mod n), and the ladder can start at (pt, 2 pt) with bit 256 already consumed.
    kk = k + N
    kk += N * ((kk >> 256) ^ 1)
    r0 = pt
    r1 = _dbl(pt)
    swapped = 0
    for i in range(255, -1, -1):
        bit = (kk >> i) & 1
        s = bit ^ swapped
        swapped = bit
        # Constant-time conditional swap of r0 and r1 when s == 1.
        dx = (r0[0] - r1[0]) * s
        dy = (r0[1] - r1[1]) * s
        dz = (r0[2] - r1[2]) * s
        r0, r1 = (r0[0] - dx, r0[1] - dy, r0[2] - dz), (r1[0] + dx, r1[1] + dy, r1[2] + dz)
        r1 = _add(r0, r1)
        r0 = _dbl(r0)
    dx = (r0[0] - r1[0]) * swapped
    dy = (r0[1] - r1[1]) * swapped
    dz = (r0[2] - r1[2]) * swapped
    r0 = (r0[0] - dx, r0[1] - dy, r0[2] - dz)
    if r0[2] == 0:  # k = 1 or n - 1 (see the top of the module)
        return mul_vartime(k, pt)
    return r0


def _wnaf(k, w):
    """Width-w NAF digits of k >= 0, least significant first: each 0 or odd in (-2^(w-1), 2^(w-1))."""
    digits = []
    full = 1 << w
    while k:
        d = 0
        if k & 1:
            d = k & (full - 1)
            if d > full >> 1:
                d -= full
            k -= d
        digits.append(d)
        k >>= 1
    return digits


def _odd_multiples(pt, count):
    """[pt, 3 pt, 5 pt, ...] (count points, Jacobian), for public pt."""
    odd = [pt]
    twice = _dbl(pt)
    for _ in range(count - 1):
        odd.append(_add_vartime(odd[-1], twice))
    return odd


def _add_digit(acc, d, odd):
    if d > 0:
        return _add_vartime(acc, odd[d >> 1])
    q = odd[(-d) >> 1]
    return _add_vartime(acc, (q[0], P - q[1], q[2]))


_g_odd = None


def mul_vartime(k, pt, k_g=0):
    """k*pt + k_g*G for public scalars >= 0 (Shamir's trick, interleaved: one doubling chain; width-4 wNAF
    for pt with 4 odd multiples made on the fly, width-6 wNAF for G with 16 affine odd multiples of G
    built on first use)."""
    global _g_odd
    digits = _wnaf(k, 4)
    odd = _odd_multiples(pt, 4)
    g_digits = _wnaf(k_g, 6) if k_g else []
    if k_g and _g_odd is None:
        _g_odd = [affine(q) + (1,) for q in _odd_multiples((GX, GY, 1), 16)]
    acc = _INFINITY
    for i in range(max(len(digits), len(g_digits)) - 1, -1, -1):
        acc = _dbl(acc)
        if i < len(digits) and digits[i]:
            acc = _add_digit(acc, digits[i], odd)
        if i < len(g_digits) and g_digits[i]:
            acc = _add_digit(acc, g_digits[i], _g_odd)
    return acc


def comb_points():
    """The comb table as 16 affine (x, y) pairs (half-table A, then B)."""
    return [(e & _MASK256, e >> 256) for e in _comb_table()]


def g_points():
    """The 16 odd multiples G, 3G, ..., 31G as affine (x, y) pairs."""
    if _g_odd is None:
        return [affine(q) for q in _odd_multiples((GX, GY, 1), 16)]
    return [q[:2] for q in _g_odd]

