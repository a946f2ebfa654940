# NIST P-256 (secp256r1) ECDSA-SHA256 and ECDH in pure Python, for boards whose MicroPython has neither.
#
# How this works
# --------------
# Field elements and scalars are plain ints (arbitrary precision on both interpreters). Points are Jacobian
# triples (X, Y, Z) standing for the affine point (X/Z^2, Y/Z^3); Z == 0 is the point at infinity. Every
# product is reduced mod p at once; sums stay unreduced until the next reduction (Python's % is always
# non-negative), so each stored coordinate is in [0, p).
#
# Three scalar multiplications:
#   _mul_base(k)      k*G for secrets (public_key, sign): a signed comb over a 16-point table of G that is
#                     built on first use (public data). Every row touches all 8 entries of each half-table
#                     and keeps one by multiplying with a 0/1 mask: no table index depends on the secret.
#   _ladder(k, P)     k*P for secrets (ecdh): a Montgomery ladder over exactly 256 bits, registers swapped
#                     by arithmetic (d = (a - b) * bit), never by an if.
#   _mul_vartime(k,P,kg) k*P + kg*G for public data (verify): interleaved wNAF (Shamir's trick), branches
#                     allowed.
# Both secret paths recode the scalar first (without branches) so that the loop is the same for every k,
# and both use formulas that are wrong only in exceptional cases (adding a point to itself or to infinity).
# Such a case always leaves Z == 0 in the result, and no valid scalar can give infinity, so a result with
# Z == 0 means "exceptional" and the work is redone on the next path (comb -> ladder -> vartime). For the
# ladder only k = 1 and k = n - 1 are exceptional; for the comb the exceptional scalars are a set too sparse
# to meet by chance. Taking the fallback reveals that k was such a scalar, nothing more.
#
# What Python can and cannot promise about timing: this code runs the same sequence of Python operations for
# every secret scalar and never uses a secret to choose a branch or an index. It cannot make the interpreter
# constant-time: big-int multiplication, % and allocation take time that depends on operand sizes (a value
# with leading zero digits is shorter), the garbage collector runs when it likes, and caches do what they
# do. Treat it as "no gross leaks (no secret-dependent control flow or table lookups)", not as a
# side-channel-hardened implementation; a board that must resist local timing or power analysis needs a
# hardware or C implementation.
#
# ECDSA nonces follow RFC 6979 (HMAC-SHA256, written here with hashlib because not every MicroPython port
# has hmac). Signatures are raw r||s (64 bytes) as ISO 15118 XMLDSig wants; der_to_raw / raw_to_der convert
# for X.509 and TLS.

import hashlib
import sys

from evpilot.errors import PeerError, UsageError

# Curve parameters (SEC 2 v2, secp256r1; a = -3).
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5

_MASK256 = (1 << 256) - 1
_INFINITY = (1, 1, 0)


# -- field and point arithmetic ------------------------------------------------------------------------


def _inv(x, m):
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


def _affine(pt):
    """(x, y) of a Jacobian point that is not infinity."""
    p = P
    zi = _inv(pt[2], p)
    zi2 = zi * zi % p
    return pt[0] * zi2 % p, pt[1] * zi2 * zi % p


def _on_curve(x, y):
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
                x, y = _affine(acc)
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


def _mul_base(k):
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
        return _ladder(k, (GX, GY, 1))
    return acc


def _ladder(k, pt):
    """k*pt for a secret 0 < k < n: Montgomery ladder, 256 iterations for every k."""
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
        return _mul_vartime(k, pt)
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


def _mul_vartime(k, pt, k_g=0):
    """k*pt + k_g*G for public scalars >= 0 (Shamir's trick, interleaved: one doubling chain; width-4 wNAF
    for pt with 4 odd multiples made on the fly, width-6 wNAF for G with 16 affine odd multiples of G
    built on first use)."""
    global _g_odd
    digits = _wnaf(k, 4)
    odd = _odd_multiples(pt, 4)
    g_digits = _wnaf(k_g, 6) if k_g else []
    if k_g and _g_odd is None:
        _g_odd = [_affine(q) + (1,) for q in _odd_multiples((GX, GY, 1), 16)]
    acc = _INFINITY
    for i in range(max(len(digits), len(g_digits)) - 1, -1, -1):
        acc = _dbl(acc)
        if i < len(digits) and digits[i]:
            acc = _add_digit(acc, digits[i], odd)
        if i < len(g_digits) and g_digits[i]:
            acc = _add_digit(acc, g_digits[i], _g_odd)
    return acc


# -- encodings and argument checks ---------------------------------------------------------------------


def _bytes(value, name):
    if isinstance(value, (bytes, bytearray)):
        return value
    if isinstance(value, memoryview):
        return bytes(value)
    raise UsageError(name + " must be bytes")


def _scalar(d):
    """A private key as an int in [1, n - 1]; misuse raises UsageError."""
    if isinstance(d, int) and not isinstance(d, bool):
        k = d
    else:
        d = _bytes(d, "private key")
        if len(d) != 32:
            raise UsageError("private key must be 32 bytes")
        k = int.from_bytes(d, "big")
    if not 0 < k < N:
        raise UsageError("private key out of range (0 < d < n)")
    return k


def _encode_point(pt):
    x, y = _affine(pt)
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def _decode_point(pub):
    """(x, y) of a valid uncompressed public key, else PeerError naming the problem."""
    pub = _bytes(pub, "public key")
    if len(pub) != 65:
        raise PeerError("public key: length %d, expected 65" % len(pub))
    if pub[0] != 4:
        raise PeerError("public key: not an uncompressed point (first byte 0x%02x)" % pub[0])
    x = int.from_bytes(pub[1:33], "big")
    y = int.from_bytes(pub[33:65], "big")
    if x >= P or y >= P:
        raise PeerError("public key: coordinate not below p")
    if not _on_curve(x, y):
        raise PeerError("public key: point not on the curve")
    return x, y


def _digest(digest):
    digest = _bytes(digest, "digest")
    if len(digest) != 32:
        raise UsageError("digest must be 32 bytes (SHA-256)")
    return digest


# -- RFC 6979 nonces -----------------------------------------------------------------------------------


def _hmac_sha256(key, data):
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(data)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def _nonces(x, h1):
    """RFC 6979 section 3.2 candidates k for private key bytes x and h1 = bits2octets(H(m)) (qlen = hlen =
    256, so bits2int is plain int.from_bytes); yields every k in [1, n - 1], in order."""
    v = b"\x01" * 32
    k = bytes(32)
    k = _hmac_sha256(k, v + b"\x00" + x + h1)
    v = _hmac_sha256(k, v)
    k = _hmac_sha256(k, v + b"\x01" + x + h1)
    v = _hmac_sha256(k, v)
    while True:
        v = _hmac_sha256(k, v)
        t = int.from_bytes(v, "big")
        if 0 < t < N:
            yield t
        k = _hmac_sha256(k, v + b"\x00")
        v = _hmac_sha256(k, v)


# -- the viper path ------------------------------------------------------------------------------------

# None: not tried yet; False: not available (CPython, the webassembly port) or switched off.
_fast = None


def _viper():
    global _fast
    if _fast is None:
        _fast = False
        if sys.implementation.name == "micropython":
            from evpilot.pnc import p256_viper

            _fast = p256_viper.load() or False
    return _fast


def use_viper(on):
    """Switch the viper path on (where it can run; True is returned then) or off (the pure path for
    everything: tests and benchmarks compare the two)."""
    global _fast
    _fast = None if on else False
    return bool(on and _viper())


def _comb_points():
    return [(e & _MASK256, e >> 256) for e in _comb_table()]


def _g_points():
    if _g_odd is None:
        return [_affine(q) for q in _odd_multiples((GX, GY, 1), 16)]
    return [q[:2] for q in _g_odd]


def _base_xy(k):
    """x || y (64 bytes) of k G for a secret 0 < k < n."""
    fast = _viper()
    if fast:
        xy = fast.base_mul(k, _comb_points)
        if xy is not None:
            return xy
    x, y = _affine(_mul_base(k))
    return x.to_bytes(32, "big") + y.to_bytes(32, "big")


# -- public API ----------------------------------------------------------------------------------------


def public_key(d):
    """04 || X || Y (65 bytes) for the private key d (32 big-endian bytes or an int, 0 < d < n)."""
    return b"\x04" + _base_xy(_scalar(d))


def generate(randbytes):
    """A new key pair (d as 32 bytes, public key 65 bytes); randbytes(n) returns n random bytes. d is drawn
    by rejection sampling (a draw outside [1, n - 1] is thrown away)."""
    for _ in range(64):
        raw = _bytes(randbytes(32), "randbytes(32)")
        if len(raw) != 32:
            raise UsageError("randbytes(32) returned %d bytes" % len(raw))
        d = int.from_bytes(raw, "big")
        if 0 < d < N:
            return d.to_bytes(32, "big"), public_key(d)
    raise UsageError("randbytes keeps returning values outside [1, n - 1]: is it random?")


def sign_digest(d, digest):
    """ECDSA r || s (64 bytes) over a SHA-256 digest (32 bytes), nonce per RFC 6979."""
    k_priv = _scalar(d)
    digest = _digest(digest)
    e = int.from_bytes(digest, "big")
    h1 = (e % N).to_bytes(32, "big")
    n = N
    for k in _nonces(k_priv.to_bytes(32, "big"), h1):
        r = int.from_bytes(_base_xy(k)[:32], "big") % n
        if r == 0:
            continue
        s = _inv(k, n) * (e + r * k_priv) % n
        if s != 0:
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sign(d, message):
    """ECDSA-SHA256 r || s (64 bytes) over message (hashed here)."""
    return sign_digest(d, hashlib.sha256(_bytes(message, "message")).digest())


def verify_digest(pub, digest, sig):
    """True when sig (r || s, 64 bytes) is a valid ECDSA signature by pub (65 bytes) over the SHA-256
    digest. A bad key or signature gives False; only wrong argument types (or a digest that is not 32
    bytes) raise UsageError."""
    digest = _digest(digest)
    sig = _bytes(sig, "signature")
    try:
        x, y = _decode_point(pub)
    except PeerError:
        return False
    if len(sig) != 64:
        return False
    n = N
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    if not (0 < r < n and 0 < s < n):
        return False
    w = _inv(s, n)
    u1 = int.from_bytes(digest, "big") * w % n
    u2 = r * w % n
    fast = _viper()
    if fast:
        return fast.verify(u1, u2, pub, r, _g_points)
    acc = _mul_vartime(u2, (x, y, 1), u1)
    if acc[2] == 0:
        return False
    # x(R) mod n == r, checked without an inversion: X == r' Z^2 (mod p) for r' = r or r + n (< p).
    p = P
    zz = acc[2] * acc[2] % p
    if (acc[0] - r * zz) % p == 0:
        return True
    return r + n < p and (acc[0] - (r + n) * zz) % p == 0


def verify(pub, message, sig):
    """True when sig (r || s) is a valid ECDSA-SHA256 signature by pub over message."""
    return verify_digest(pub, hashlib.sha256(_bytes(message, "message")).digest(), sig)


def check_public_key(pub):
    """None for a valid uncompressed P-256 public key (65 bytes), else PeerError."""
    _decode_point(pub)


def ecdh(d, peer_pub):
    """The shared secret Z (x coordinate, 32 bytes) of d and the peer's public key; the peer's point is
    validated first (PeerError)."""
    k = _scalar(d)
    x, y = _decode_point(peer_pub)
    fast = _viper()
    if fast:
        z = fast.ecdh(k, peer_pub)
        if z is not None:
            return z
    return _affine(_ladder(k, (x, y, 1)))[0].to_bytes(32, "big")


# -- DER signatures (X.509, TLS) -----------------------------------------------------------------------


def _der_int(value):
    raw = value.to_bytes(33, "big")
    i = 0
    while i < 32 and raw[i] == 0 and raw[i + 1] < 0x80:
        i += 1
    return b"\x02" + bytes((33 - i,)) + raw[i:]


def raw_to_der(sig):
    """DER SEQUENCE { INTEGER r, INTEGER s } for a raw r || s signature (64 bytes)."""
    sig = _bytes(sig, "signature")
    if len(sig) != 64:
        raise UsageError("raw signature must be 64 bytes")
    body = _der_int(int.from_bytes(sig[:32], "big")) + _der_int(int.from_bytes(sig[32:], "big"))
    return b"\x30" + bytes((len(body),)) + body


def _der_read_int(der, pos, name):
    if pos + 2 > len(der) or der[pos] != 0x02:
        raise PeerError("DER signature: " + name + " is not an INTEGER")
    size = der[pos + 1]
    start = pos + 2
    end = start + size
    if size == 0 or size > 33 or end > len(der):
        raise PeerError("DER signature: " + name + " has a bad length")
    if der[start] & 0x80:
        raise PeerError("DER signature: " + name + " is negative")
    if size > 1 and der[start] == 0 and not der[start + 1] & 0x80:
        raise PeerError("DER signature: " + name + " is not minimally encoded")
    value = int.from_bytes(der[start:end], "big")
    if value >> 256:
        raise PeerError("DER signature: " + name + " is longer than 256 bits")
    return value, end


def der_to_raw(der):
    """r || s (64 bytes) from a strict DER ECDSA signature; PeerError on anything else."""
    der = _bytes(der, "DER signature")
    if len(der) < 8 or der[0] != 0x30 or der[1] != len(der) - 2:
        raise PeerError("DER signature: not a SEQUENCE of the given length (short form)")
    r, pos = _der_read_int(der, 2, "r")
    s, pos = _der_read_int(der, pos, "s")
    if pos != len(der):
        raise PeerError("DER signature: trailing bytes after s")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")
