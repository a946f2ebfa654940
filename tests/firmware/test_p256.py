# evpilot.pnc.p256 on both interpreters: RFC 6979 A.2.5 (P-256, SHA-256), the shared key-transport vector
# (public keys, ECDH Z), the RISE-V2G CertificateInstallationRes SignedInfo signature, the three scalar
# multiplications agreeing on edge scalars, and rejection of every kind of bad key, signature and argument.

import gc
import hashlib
import json
import sys

from vectorlib import vector

from evpilot.errors import PeerError, UsageError
from evpilot.pnc import p256, p256_curve

N = p256.N
P = p256.P

# RFC 6979 appendix A.2.5: key pair, then (message, k, r, s) for SHA-256.
RFC_X = bytes.fromhex("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721")
RFC_PUB = bytes.fromhex(
    "04" "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6"
    "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299"
)
RFC_SHA256 = [
    (
        b"sample",
        "A6E3C57DD01ABE90086538398355DD4C3B17AA873382B0F24D6129493D8AAD60",
        "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716",
        "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8",
    ),
    (
        b"test",
        "D16B6AE827F17175E040871A1C7EC3500192C4C92677336EC2537ACAEE0008E0",
        "F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367",
        "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083",
    ),
]

G = bytes.fromhex(
    "04" "6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296"
    "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5"
)


def _raises(cls, fn, *args):
    try:
        fn(*args)
    except cls as e:
        return str(e)
    assert False, "expected " + cls.__name__


def _hexjson(path):
    with open(vector(path)) as f:
        return json.load(f)


def _negate(pub):
    y = int.from_bytes(pub[33:], "big")
    return pub[:33] + (P - y).to_bytes(32, "big")


def _signed_info():
    """The 559-byte SignedInfo of the RISE-V2G test data, MsgBody namespace (the README's section
    "SIGNATURE GENERATION WITH CORRECT XML NAMESPACE"; the later block with the empty namespace differs)."""
    with open(vector("pnc/rise-v2g-signature-testdata/README.md")) as f:
        text = f.read()
    at = text.find("EXI:\n", text.find("## SIGNATURE GENERATION WITH CORRECT XML NAMESPACE")) + 5
    correct = bytes.fromhex(text[at:text.find("\n", at)])
    at = text.find("EXI:\n", text.find('## SIGNATURE GENERATION WITH INCORRECT XML NAMESPACE ""')) + 5
    empty_ns = bytes.fromhex(text[at:text.find("\n", at)])
    return correct, empty_ns


def test_rfc6979_a25_sha256():
    assert p256.public_key(RFC_X) == RFC_PUB
    assert p256.public_key(int.from_bytes(RFC_X, "big")) == RFC_PUB
    for message, k, r, s in RFC_SHA256:
        h = hashlib.sha256(message).digest()
        nonce = next(p256._nonces(RFC_X, (int.from_bytes(h, "big") % N).to_bytes(32, "big")))
        assert nonce == int(k, 16), message
        sig = p256.sign(RFC_X, message)
        assert sig == bytes.fromhex(r + s), message
        assert p256.sign_digest(RFC_X, h) == sig
        assert p256.verify(RFC_PUB, message, sig)
        assert p256.verify_digest(RFC_PUB, h, sig)
        assert p256.raw_to_der(sig)[0] == 0x30 and p256.der_to_raw(p256.raw_to_der(sig)) == sig
    # Each signature belongs to its own message only.
    assert not p256.verify(RFC_PUB, b"test", p256.sign(RFC_X, b"sample"))


def test_key_transport_vector_public_keys_and_ecdh():
    v = _hexjson("pnc/iso2_key_transport_vector.json")
    oem_d = bytes.fromhex(v["oem_prov_private_key_d"])
    eph_d = bytes.fromhex(v["ephemeral_private_key_d"])
    oem_pub = bytes.fromhex(v["oem_prov_public_key"])
    dh_pub = bytes.fromhex(v["DHpublickey"])
    z = bytes.fromhex(v["shared_secret_Z"])
    assert p256.public_key(oem_d) == oem_pub
    assert p256.public_key(eph_d) == dh_pub
    assert p256.public_key(bytes.fromhex(v["contract_private_key_d"])) == bytes.fromhex(v["contract_public_key"])
    # The EV's side (OEM key with the station's DHpublickey) and the station's side agree on Z.
    assert p256.ecdh(oem_d, dh_pub) == z
    assert p256.ecdh(eph_d, oem_pub) == z


def test_rise_v2g_certificate_installation_signature():
    v = _hexjson("pnc/iso2_certinstallres_signature_vector.json")
    d = bytes.fromhex(v["private_key_d"])
    pub = bytes.fromhex(v["public_key"])
    expected = bytes.fromhex(v["signature_value_raw_rs_rfc6979"])
    signed_info, empty_ns = _signed_info()
    assert len(signed_info) == v["signed_info_exi_len"] == 559
    assert p256.public_key(d) == pub
    assert p256.sign(d, signed_info) == expected
    assert p256.verify(pub, signed_info, expected)
    # Signing the digest instead of the bytes (the README's warning) or the empty-namespace variant fails.
    assert not p256.verify(pub, hashlib.sha256(signed_info).digest(), expected)
    assert len(empty_ns) == 559 and empty_ns != signed_info
    assert not p256.verify(pub, empty_ns, expected)


def test_tampered_signatures_are_rejected():
    sig = p256.sign(RFC_X, b"sample")
    for i in (0, 17, 31, 32, 50, 63):
        for bit in (0x01, 0x80):
            bad = bytearray(sig)
            bad[i] ^= bit
            assert not p256.verify(RFC_PUB, b"sample", bytes(bad)), (i, bit)
    assert not p256.verify(RFC_PUB, b"samplf", sig)
    assert not p256.verify(RFC_PUB, b"sample\x00", sig)
    assert not p256.verify(p256.public_key(2), b"sample", sig)
    assert not p256.verify(_negate(RFC_PUB), b"sample", sig)
    # ECDSA itself accepts (r, n - s); it is the same signature mirrored, not a forgery of another message.
    s = int.from_bytes(sig[32:], "big")
    assert p256.verify(RFC_PUB, b"sample", sig[:32] + (N - s).to_bytes(32, "big"))


def test_r_or_s_zero_or_not_below_n_is_rejected():
    sig = p256.sign(RFC_X, b"sample")
    r, s = sig[:32], sig[32:]
    zero = bytes(32)
    big = [N.to_bytes(32, "big"), (N + 1).to_bytes(32, "big"), b"\xff" * 32]
    assert not p256.verify(RFC_PUB, b"sample", zero + s)
    assert not p256.verify(RFC_PUB, b"sample", r + zero)
    assert not p256.verify(RFC_PUB, b"sample", zero + zero)
    for value in big:
        assert not p256.verify(RFC_PUB, b"sample", value + s)
        assert not p256.verify(RFC_PUB, b"sample", r + value)
    # r + n is not accepted in place of r even where x(R) could be read as either.
    rn = int.from_bytes(r, "big") + N
    if rn < 1 << 256:
        assert not p256.verify(RFC_PUB, b"sample", rn.to_bytes(32, "big") + s)


def test_bad_public_keys():
    off_curve = RFC_PUB[:64] + bytes((RFC_PUB[64] ^ 1,))
    x_not_below_p = b"\x04" + P.to_bytes(32, "big") + RFC_PUB[33:]
    y_plus_p = b"\x04" + RFC_PUB[1:33] + (int.from_bytes(RFC_PUB[33:], "big") + P).to_bytes(33, "big")[1:]
    bad = [
        b"",
        RFC_PUB[:64],
        RFC_PUB + b"\x00",
        b"\x02" + RFC_PUB[1:],  # compressed prefix with 64 bytes behind it
        b"\x03" + RFC_PUB[1:33],  # a real compressed point: not accepted here
        b"\x00" * 65,
        b"\x04" + bytes(64),  # (0, 0) is not on the curve (and is no encoding of infinity)
        off_curve,
        x_not_below_p,
        b"\x04" + b"\xff" * 64,
    ]
    if y_plus_p[1:] != RFC_PUB[1:] and len(y_plus_p) == 65:
        bad.append(y_plus_p)
    sig = p256.sign(RFC_X, b"sample")
    for pub in bad:
        assert "public key" in _raises(PeerError, p256.check_public_key, pub), pub
        assert p256.verify(pub, b"sample", sig) is False
        _raises(PeerError, p256.ecdh, RFC_X, pub)
    assert p256.check_public_key(RFC_PUB) is None
    assert p256.check_public_key(bytearray(G)) is None


def test_wrong_arguments():
    sig = p256.sign(RFC_X, b"sample")
    for d in (0, N, N + 1, -1, bytes(32), N.to_bytes(32, "big"), b"\xff" * 32, RFC_X[1:], RFC_X + b"\x00"):
        _raises(UsageError, p256.public_key, d)
        _raises(UsageError, p256.sign, d, b"sample")
        _raises(UsageError, p256.ecdh, d, RFC_PUB)
    for d in ("c9af", None, 1.0, True):
        _raises(UsageError, p256.public_key, d)
    _raises(UsageError, p256.sign, RFC_X, "sample")
    _raises(UsageError, p256.sign_digest, RFC_X, bytes(31))
    _raises(UsageError, p256.verify, RFC_PUB, "sample", sig)
    _raises(UsageError, p256.verify, RFC_PUB, b"sample", None)
    _raises(UsageError, p256.verify, None, b"sample", sig)
    _raises(UsageError, p256.verify_digest, RFC_PUB, bytes(33), sig)
    _raises(UsageError, p256.check_public_key, "04")
    _raises(UsageError, p256.raw_to_der, sig[:63])
    # Wrong signature lengths are the peer's problem: False, not an exception.
    for bad in (b"", sig[:63], sig + b"\x00", p256.raw_to_der(sig)):
        assert p256.verify(RFC_PUB, b"sample", bad) is False
    # bytes-like inputs are accepted everywhere.
    assert p256.verify(bytearray(RFC_PUB), memoryview(b"sample"), bytearray(sig))
    assert p256.sign(bytearray(RFC_X), bytearray(b"sample")) == sig
    assert p256.sign(memoryview(RFC_X), b"sample") == sig


def test_scalar_multiplications_agree_on_edge_scalars():
    # The comb (k*G), the ladder (ECDH) and the wNAF (verify) must give the same point for scalars near
    # their exceptional cases: 1, n - 1, small values, powers of two at the comb's tooth spacing, and the
    # scalars where the ladder switches between k + n and k + 2n.
    g = (p256.GX, p256.GY, 1)
    edge = [1, 2, 3, 4, 7, 8, N - 1, N - 2, N - 3, (N - 1) // 2, (N + 1) // 2, 1 << 255, (1 << 256) - N,
            (1 << 256) - N - 1, 1 << 32, (1 << 64) + 1, (1 << 96) - 1, 1 << 224, N - (1 << 128)]
    for k in edge:
        a = p256._encode_point(p256_curve.mul_base(k))
        assert a == p256._encode_point(p256_curve.ladder(k, g)), k
        assert a == p256._encode_point(p256_curve.mul_vartime(k, g)), k
        assert a == p256.public_key(k)
    assert p256.public_key(1) == G
    assert p256.public_key(N - 1) == _negate(G)
    for k in (2, 5, 1 << 200, N - 12345):
        assert p256.public_key(N - k) == _negate(p256.public_key(k)), k


def test_verify_double_multiplication_special_cases():
    # u1*G + u2*Q with Q = G: the interleaved sum meets doubling (u2 = u1) and infinity (u2 = n - u1).
    g = (p256.GX, p256.GY, 1)
    for k in (1, 2, 77, (N - 1) // 2, N - 1):
        assert p256._encode_point(p256_curve.mul_vartime(k, g, k)) == p256.public_key(2 * k % N), k
        assert p256_curve.mul_vartime(k, g, N - k)[2] == 0, k
        assert p256._encode_point(p256_curve.mul_vartime(k, g, 3)) == p256.public_key((k + 3) % N), k
    # A signature whose verification sum is infinity is rejected, not an error: with Q = G, u1 + u2 = 0
    # when r = -e (mod n).
    e = hashlib.sha256(b"x").digest()
    r = (N - int.from_bytes(e, "big") % N).to_bytes(32, "big")
    assert p256.verify_digest(G, e, r + (5).to_bytes(32, "big")) is False


def test_ecdh_is_symmetric_and_validates():
    a = 0x1234567890ABCDEF
    b = N - 987654321
    za = p256.ecdh(a, p256.public_key(b))
    assert za == p256.ecdh(b.to_bytes(32, "big"), p256.public_key(a))
    assert len(za) == 32
    # d = 1 gives the peer's own x; d = n - 1 the same x (the negated point).
    assert p256.ecdh(1, RFC_PUB) == RFC_PUB[1:33]
    assert p256.ecdh(N - 1, RFC_PUB) == RFC_PUB[1:33]


def test_generate_rejection_sampling():
    draws = [bytes(32), N.to_bytes(32, "big"), b"\xff" * 32, RFC_X]

    def randbytes(n):
        assert n == 32
        return draws.pop(0)

    d, pub = p256.generate(randbytes)
    assert (d, pub) == (RFC_X, RFC_PUB) and draws == []
    _raises(UsageError, p256.generate, lambda n: bytes(n))
    _raises(UsageError, p256.generate, lambda n: bytes(n - 1))
    _raises(UsageError, p256.generate, lambda n: None)


def test_der_conversion():
    sig = bytes.fromhex(RFC_SHA256[1][2] + RFC_SHA256[1][3])
    der = p256.raw_to_der(sig)
    # r has its top bit set (a 0x00 byte in front), s starts with 0x01 0x9F (no padding).
    assert der == bytes.fromhex("3045" "022100" + RFC_SHA256[1][2] + "0220" + RFC_SHA256[1][3])
    assert p256.der_to_raw(der) == sig
    small = bytes(31) + b"\x01" + bytes(31) + b"\x7f"
    assert p256.raw_to_der(small) == bytes.fromhex("300602010102017f")
    assert p256.der_to_raw(bytes.fromhex("300602010102017f")) == small
    assert p256.raw_to_der(bytes(64)) == bytes.fromhex("3006020100020100")
    bad = [
        "",
        "3006020101",
        "3106020101020101",  # not a SEQUENCE
        "3007020101020101",  # length says 7
        "300602010102010100",  # trailing byte
        "3008020101020101" "0000",  # trailing inside the sequence
        "3006030101020101",  # r not an INTEGER
        "3006020181020101",  # r negative
        "300702020001020101",  # r with a needless leading zero
        "300702000201010000",  # r of length 0
        "308106020101020101",  # long-form length
        "3026" "0221" + "01" + "00" * 32 + "020101",  # r of 257 bits
    ]
    for text in bad:
        _raises(PeerError, p256.der_to_raw, bytes.fromhex(text))
    _raises(UsageError, p256.der_to_raw, "3006020101020101")


# -- the viper path (p256_viper) against the pure path (p256_curve) -------------------------------------
# Where viper code cannot run (CPython, the webassembly port) p256_viper.load() gives None and the pure
# path does everything: these tests then check only that. On the unix port they compare every limb layout
# the machine word allows (29-bit limbs on 64 bits, 13-bit limbs, each with unrolled and looped products)
# with p256_curve on many scalars (k G, ECDH, verify, k^-1 mod n), and check the exceptional cases that
# send work back to the pure path.


def _scalars(count, seed):
    out = []
    h = seed
    while len(out) < count:
        h = hashlib.sha256(h).digest()
        k = int.from_bytes(h, "big")
        if 0 < k < N:
            out.append(k)
    return out


def _backends():
    from evpilot.pnc import p256_viper

    first = p256_viper.load()
    if first is None:
        return []
    out = [first]
    layouts = [(13, True), (13, False)]
    if sys.maxsize > 1 << 32:
        layouts += [(29, True), (29, False)]
    for w, unroll in layouts:
        if (w, unroll) != (first.w, first.unrolled):
            out.append(p256_viper.load(w, unroll))
    return out


def _affine_bytes(pt):
    x, y = p256_curve.affine(pt)
    return x.to_bytes(32, "big") + y.to_bytes(32, "big")


def _with_viper(on, fn):
    was = p256._use_backend
    p256.use_viper(on)
    try:
        fn()
    finally:
        p256.use_viper(was)


def test_viper_path_is_used_where_it_can_run():
    from evpilot.pnc import p256_viper

    available = p256_viper.load() is not None
    if sys.implementation.name != "micropython":
        assert not available
    assert p256.use_viper(True) == available
    assert p256.use_viper(False) is False
    assert p256.use_viper(True) == available


def test_both_paths_give_the_vectors():
    for on in (False, True):
        _with_viper(on, test_rfc6979_a25_sha256)
        _with_viper(on, test_key_transport_vector_public_keys_and_ecdh)
        _with_viper(on, test_ecdh_is_symmetric_and_validates)


def test_viper_matches_pure_on_random_scalars():
    backends = _backends()
    if not backends:
        return
    g = (p256.GX, p256.GY, 1)
    ks = _scalars(10, b"viper k")
    us = _scalars(20, b"viper u")
    q = p256_curve.mul_base(0x0123456789ABCDEF * 977)
    qx, qy = p256_curve.affine(q)
    q_pub = b"\x04" + qx.to_bytes(32, "big") + qy.to_bytes(32, "big")
    base = [_affine_bytes(p256_curve.mul_base(k)) for k in ks]
    shared = [_affine_bytes(p256_curve.ladder(k, (qx, qy, 1)))[:32] for k in ks]
    sums = []
    for i in range(0, len(us), 2):
        u1, u2 = us[i], us[i + 1]
        r = p256_curve.affine(p256_curve.mul_vartime(u2, (qx, qy, 1), u1))[0] % N
        sums.append((u1, u2, r))
    tables = p256_curve.comb_points() + p256_curve.g_points()
    for b in backends:
        name = "w=%d unrolled=%s" % (b.w, b.unrolled)
        assert b.table_points() == tables, name
        for k, want in zip(ks, base):
            assert b.base_mul(k) == want, (name, k)
        for k, want in zip(ks, shared):
            assert b.ecdh(k, q_pub) == want, (name, k)
        for k in ks + [1, 2, 3, N - 2, N - 1, (N - 1) // 2, (1 << 256) - N]:
            assert b.ninv(k) == pow(k, N - 2, N), (name, k)
        for u1, u2, r in sums:
            assert b.verify(u1, u2, q_pub, r), (name, u1)
            assert not b.verify(u1, u2, q_pub, (r + 1) % N), (name, u1)
        # Edge scalars of the comb (near 1, n - 1, powers of two at the tooth spacing): the same point, or
        # None (exceptional: p256 takes the pure path), never a wrong point.
        for k in (1, 2, 3, N - 1, N - 2, (N - 1) // 2, (N + 1) // 2, 1 << 255, (1 << 256) - N, 1 << 32,
                  (1 << 96) - 1, N - (1 << 128)):
            got = b.base_mul(k)
            assert got is None or got == _affine_bytes(p256_curve.mul_vartime(k, g)), (name, k)


def _x0_point():
    """(0, y) is on P-256 (b is a square mod p; p = 3 mod 4 gives the root): a peer may send it."""
    y = pow(p256.B, (P + 1) // 4, P)
    assert y * y % P == p256.B
    return b"\x04" + bytes(32) + y.to_bytes(32, "big")


def test_ladders_exceptional_cases():
    # The co-Z ladder's exceptional scalars are exactly 1, n - 2 and n - 1 (only for those does a ladder step
    # add R to -R or double infinity), and a point with x = 0 (its Z recovery divides by x): the pure co-Z
    # ladder hands them to the Jacobian ladder, the viper one reports None; either way the result is right.
    g = (p256.GX, p256.GY, 1)
    x0 = _x0_point()
    p256.check_public_key(x0)
    x0_pt = (0, int.from_bytes(x0[33:], "big"), 1)
    backends = _backends()
    try:
        _check_ladders(g, x0, x0_pt, backends)
    finally:
        p256.use_viper(True)


def _check_ladders(g, x0, x0_pt, backends):
    for k in (1, 2, 3, N - 3, N - 2, N - 1, (N - 1) // 2, (N + 1) // 2, 0x1234567890ABCDEF):
        on_g = _affine_bytes(p256_curve.mul_vartime(k, g))
        assert _affine_bytes(p256_curve.ladder(k, g)) == on_g, k
        assert _affine_bytes(p256_curve.ladder_jacobian(k, g)) == on_g, k
        on_x0 = _affine_bytes(p256_curve.mul_vartime(k, x0_pt))
        assert _affine_bytes(p256_curve.ladder(k, x0_pt)) == on_x0, k
        for on in (False, True):
            p256.use_viper(on)
            assert p256.ecdh(k, G) == on_g[:32], k
            assert p256.ecdh(k, x0) == on_x0[:32], k
        for b in backends:
            assert b.ecdh(k, x0) is None, (b.w, k)
            if k in (1, N - 2, N - 1):
                assert b.ecdh(k, G) is None, (b.w, k)
            else:
                assert b.ecdh(k, G) == on_g[:32], (b.w, k)


def test_viper_verify_special_cases():
    # u1 G + u2 Q with Q = G: the interleaved sum meets doubling (u2 = u1) and infinity (u2 = n - u1) in the
    # public-data additions, which branch instead of failing.
    for b in _backends():
        for k in (1, 2, 77, (N - 1) // 2, N - 1):
            r = int.from_bytes(p256.public_key(2 * k % N)[1:33], "big") % N
            assert b.verify(k, k, G, r), (b.w, k)
            r3 = int.from_bytes(p256.public_key((k + 3) % N)[1:33], "big") % N
            assert b.verify(3, k, G, r3), (b.w, k)
            assert b.verify(k, N - k, G, 1) is False, (b.w, k)
    # Through the API, on both paths: a signature whose verification sum is infinity is rejected.
    e = hashlib.sha256(b"x").digest()
    r = (N - int.from_bytes(e, "big") % N).to_bytes(32, "big")
    for on in (False, True):
        _with_viper(on, lambda: _assert_false(p256.verify_digest(G, e, r + (5).to_bytes(32, "big"))))


def _assert_false(value):
    assert value is False


def _allocated(fn):
    gc.collect()
    before = gc.mem_alloc()
    gc.disable()
    try:
        fn()
        return gc.mem_alloc() - before
    finally:
        gc.enable()


def test_viper_path_allocates_little():
    # The point of the viper path: the arithmetic allocates nothing, a whole operation a few KB (hashing,
    # the scalars mod n, the bytes in and out). Counted with the collector off, as bench/p256_bench.py does.
    backend = p256._viper()
    if not backend or not hasattr(gc, "mem_alloc"):
        return
    ns = backend.ns
    pub = p256.public_key(RFC_X)
    sig = p256.sign(RFC_X, b"sample")
    kb = (N - 12345).to_bytes(33, "big")
    backend.ecdh(5, pub)
    assert _allocated(lambda: ns["ladder"](kb)) == 0
    u = kb[1:]
    assert _allocated(lambda: ns["comb"](u, 1)) == 0
    assert _allocated(lambda: ns["qtable"]()) == 0
    assert _allocated(lambda: ns["wnaf"](backend.dig1, u, 6)) == 0
    assert _allocated(lambda: ns["dsm"](backend.dig1, 250, backend.dig2, 0)) == 0
    ops = (
        ("public_key", lambda: p256.public_key(RFC_X)),
        ("sign", lambda: p256.sign(RFC_X, b"sample")),
        ("verify", lambda: p256.verify(pub, b"sample", sig)),
        ("ecdh", lambda: p256.ecdh(RFC_X, pub)),
    )
    for name, fn in ops:
        assert _allocated(fn) < 8192, name
