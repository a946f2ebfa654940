# NIST P-256 (secp256r1) ECDSA-SHA256 and ECDH in Python, for boards whose MicroPython has neither.
#
# How this works
# --------------
# Two implementations of the same algorithms give bit-identical results:
#   p256_viper   MicroPython with a native emitter (unix port, ESP32, RP2040, STM32): fixed-size limbs in one
#                preallocated buffer, @micropython.viper code compiled on first use; no heap allocation in
#                the arithmetic, so a call leaves only a few KB of garbage (hashing, the scalar arithmetic
#                mod n, the result bytes).
#   p256_curve   every interpreter (CPython, the webassembly port): Python ints. It is also the fallback of
#                the viper path for the rare exceptional inputs below.
# _viper() picks the first on first use; use_viper(False) forces the second (tests, benchmarks, or a board
# that cannot spare the RAM the first costs: see p256_viper).
#
# Three scalar multiplications:
#   k*G for secrets (public_key, sign): a signed comb over a 16-point table of G built on first use (public
#                data). Every row touches all 8 entries of each half-table and keeps one by a mask: no table
#                index depends on the secret.
#   k*P for secrets (ecdh): a co-Z Montgomery ladder over exactly 256 bits, registers swapped by arithmetic
#                (a mask or (a - b) * bit), never by an if.
#   k*P + kg*G for public data (verify): interleaved wNAF (Shamir's trick), branches allowed.
# Both secret paths recode the scalar first (without branches) so that the loop is the same for every k,
# and both use formulas that are wrong only in exceptional cases (adding a point to itself or to infinity).
# Such a case is detected (a difference H == 0, or Z == 0 in the result; no valid scalar gives infinity)
# and the work is redone on the next path (viper -> comb -> ladder -> Jacobian ladder -> vartime). For the
# co-Z ladder exactly k = 1, n - 2 and n - 1 are exceptional, and a peer point with x = 0 (public); for the
# Jacobian ladder k = 1 and n - 1; for the comb the exceptional scalars are a set too sparse to meet by
# chance. Taking the fallback reveals that k was such a scalar, nothing more.
#
# What Python can and cannot promise about timing: this code runs the same sequence of operations for every
# secret scalar and never uses a secret to choose a branch or an index. It cannot make the interpreter
# constant-time. On the pure path, big-int multiplication, % and allocation take time that depends on
# operand sizes (a value with leading zero digits is shorter) and the garbage collector runs when it likes.
# The viper path works on a fixed number of limbs with machine arithmetic and allocates nothing, which
# removes those two, but the CPU's multiplier, caches and the interpreter around the calls still do what they
# do, and sign's few products mod n (e + r d, times k^-1) stay on big ints (k^-1 itself is computed on limbs
# there; on the pure path by pow() on big ints), as do the scalar recodings before a multiplication. Treat
# both as "no gross leaks (no secret-dependent control flow or table lookups)", not as a side-channel-hardened
# implementation; a board that must resist local timing or power analysis needs a hardware or C
# implementation.
#
# ECDSA nonces follow RFC 6979 (HMAC-SHA256, written here with hashlib because not every MicroPython port
# has hmac). Signatures are raw r||s (64 bytes) as ISO 15118 XMLDSig wants; der_to_raw / raw_to_der convert
# for X.509 and TLS.

import hashlib
import sys

from evpilot.errors import PeerError, UsageError
from evpilot.pnc import p256_curve as curve
from evpilot.pnc.p256_curve import B, GX, GY, N, P  # noqa: F401 (the curve's parameters, for callers)

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
    x, y = curve.affine(pt)
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
    if not curve.on_curve(x, y):
        raise PeerError("public key: point not on the curve")
    return x, y


def _digest(digest):
    digest = _bytes(digest, "digest")
    if len(digest) != 32:
        raise UsageError("digest must be 32 bytes (SHA-256)")
    return digest


# -- RFC 6979 nonces -----------------------------------------------------------------------------------


_IPAD = b"\x36" * 64
_OPAD = b"\x5c" * 64


def _hmac_sha256(key, parts, pads):
    """HMAC-SHA256 (RFC 2104) under a 32-byte key of the concatenated parts; pads is a pair of 64-byte
    buffers that start as _IPAD and _OPAD (the padded keys are written there, not allocated)."""
    ipad, opad = pads
    for i in range(32):
        b = key[i]
        ipad[i] = b ^ 0x36
        opad[i] = b ^ 0x5C
    inner = hashlib.sha256(ipad)
    for part in parts:
        inner.update(part)
    outer = hashlib.sha256(opad)
    outer.update(inner.digest())
    return outer.digest()


def _nonces(x, h1):
    """RFC 6979 section 3.2 candidates k for private key bytes x and h1 = bits2octets(H(m)) (qlen = hlen =
    256, so bits2int is plain int.from_bytes); yields every k in [1, n - 1], in order."""
    pads = (bytearray(_IPAD), bytearray(_OPAD))
    v = b"\x01" * 32
    k = bytes(32)
    k = _hmac_sha256(k, (v, b"\x00", x, h1), pads)
    v = _hmac_sha256(k, (v,), pads)
    k = _hmac_sha256(k, (v, b"\x01", x, h1), pads)
    v = _hmac_sha256(k, (v,), pads)
    while True:
        v = _hmac_sha256(k, (v,), pads)
        t = int.from_bytes(v, "big")
        if 0 < t < N:
            yield t
        k = _hmac_sha256(k, (v, b"\x00"), pads)
        v = _hmac_sha256(k, (v,), pads)


# -- the viper path ------------------------------------------------------------------------------------

# The compiled p256_viper.Backend; False where it cannot run (CPython, the webassembly port, or a heap too
# small to compile it: the pure path then does everything); None before the first use.
_backend = None
_use_backend = True


def _viper():
    global _backend
    if not _use_backend:
        return None
    if _backend is None:
        _backend = False
        if sys.implementation.name == "micropython":
            from evpilot.pnc import p256_viper

            try:
                _backend = p256_viper.load() or False
            except MemoryError:
                pass
    return _backend


def use_viper(on):
    """Use the viper path where it can run (on = True, the default) or the pure path for everything (False:
    tests and benchmarks compare the two). True when the viper path is in use afterwards."""
    global _use_backend
    _use_backend = bool(on)
    return bool(_viper())


def _inv_n(k):
    """k^-1 mod n for 0 < k < n (k may be secret)."""
    fast = _viper()
    if fast:
        return fast.ninv(k)
    return curve.inv(k, N)


def _base_xy(k):
    """x || y (64 bytes) of k G for a secret 0 < k < n."""
    fast = _viper()
    if fast:
        xy = fast.base_mul(k)
        if xy is not None:
            return xy
    x, y = curve.affine(curve.mul_base(k))
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
        s = _inv_n(k) * (e + r * k_priv) % n
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
    w = _inv_n(s)
    u1 = int.from_bytes(digest, "big") * w % n
    u2 = r * w % n
    fast = _viper()
    if fast:
        return fast.verify(u1, u2, pub, r)
    acc = curve.mul_vartime(u2, (x, y, 1), u1)
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
    return curve.affine(curve.ladder(k, (x, y, 1)))[0].to_bytes(32, "big")


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
