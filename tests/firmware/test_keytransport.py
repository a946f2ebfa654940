# Contract private-key transport (ISO 15118-2) and the AES-128-CBC under it: the shared vector, every AES back
# end available on this interpreter (the pure-Python one always), length and range errors.
# Most tests take the ECDH result Z from the vector and check key pairs against the vector's public keys;
# the last one runs the whole step with evpilot.pnc.p256 (and one checks against `cryptography` on CPython).

import json

from vectorlib import vector

from evpilot.errors import PeerError, UsageError
from evpilot.pnc import aes, keytransport

MICROPYTHON_SKIP = ["test_key_pair_with_cryptography"]

# FIPS-197 Appendix C.1 (AES-128).
C1_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
C1_PLAIN = bytes.fromhex("00112233445566778899aabbccddeeff")
C1_CIPHER = bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")
# NIST SP 800-38A F.2.1 / F.2.2 (CBC-AES128 encrypt / decrypt).
F2_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
F2_IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
F2_PLAIN = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172a" "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef" "f69f2445df4f9b17ad2b417be66c3710"
)
F2_CIPHER = bytes.fromhex(
    "7649abac8119b246cee98e9b12e9197d" "5086cb9b507219ee95db113a917678b2"
    "73bed6b8e3c1743b7116e69e22229516" "3ff1caa1681fac09120eca307586e1a7"
)


def _vector():
    with open(vector("pnc/iso2_key_transport_vector.json")) as f:
        v = json.load(f)
    return dict((k, bytes.fromhex(v[k])) for k in v if k != "curve")


def _raises(cls, fn, *args):
    try:
        fn(*args)
    except cls as e:
        return str(e)
    assert False, "expected " + cls.__name__


def test_fips197_block_python():
    rk = aes._expand(C1_KEY)
    assert aes._encrypt_block(rk, C1_PLAIN) == C1_CIPHER
    assert aes._decrypt_block(rk, C1_CIPHER) == C1_PLAIN
    # One block of CBC with a zero IV is the block cipher itself.
    assert aes.encrypt_cbc(C1_KEY, bytes(16), C1_PLAIN, "python") == C1_CIPHER


def test_sp800_38a_cbc_every_backend():
    names = aes.backends()
    assert names[-1] == "python" and aes.BACKEND == names[0]
    for name in names:
        assert aes.encrypt_cbc(F2_KEY, F2_IV, F2_PLAIN, name) == F2_CIPHER, name
        assert aes.decrypt_cbc(F2_KEY, F2_IV, F2_CIPHER, name) == F2_PLAIN, name
        # bytearray and memoryview inputs work alike; an empty message is zero blocks.
        assert aes.decrypt_cbc(bytearray(F2_KEY), memoryview(F2_IV), bytearray(F2_CIPHER), name) == F2_PLAIN
        assert aes.encrypt_cbc(F2_KEY, F2_IV, b"", name) == b""
    assert aes.encrypt_cbc(F2_KEY, F2_IV, F2_PLAIN) == F2_CIPHER  # the default back end


def test_aes_rejects_bad_lengths():
    for key, iv, data in ((bytes(15), F2_IV, F2_PLAIN), (F2_KEY, bytes(17), F2_PLAIN), (F2_KEY, F2_IV, bytes(31))):
        for name in aes.backends():
            _raises(UsageError, aes.encrypt_cbc, key, iv, data, name)
            _raises(UsageError, aes.decrypt_cbc, key, iv, data, name)
    _raises(UsageError, aes.encrypt_cbc, F2_KEY, F2_IV, F2_PLAIN, "rot13")


def test_concat_kdf_vector():
    v = _vector()
    assert v["kdf_input"] == b"\x00\x00\x00\x01" + v["shared_secret_Z"] + b"\x01UV"
    assert keytransport.concat_kdf(v["shared_secret_Z"]) == v["session_key_aes128"]
    _raises(UsageError, keytransport.concat_kdf, bytes(31))
    _raises(UsageError, keytransport.concat_kdf, bytes(33))


def test_decrypt_vector_every_backend():
    v = _vector()
    enc = v["ContractSignatureEncryptedPrivateKey"]
    assert enc[:16] == v["iv"]
    assert keytransport.decrypt_contract_key(v["shared_secret_Z"], enc) == v["contract_private_key_d"]
    key = v["session_key_aes128"]
    for name in aes.backends():
        assert aes.decrypt_cbc(key, enc[:16], enc[16:], name) == v["contract_private_key_d"], name
        assert aes.encrypt_cbc(key, v["iv"], v["contract_private_key_d"], name) == enc[16:], name


def test_encrypt_vector_and_round_trip():
    v = _vector()
    z, d, iv = v["shared_secret_Z"], v["contract_private_key_d"], v["iv"]
    enc = keytransport.encrypt_contract_key(z, d, iv)
    assert enc == v["ContractSignatureEncryptedPrivateKey"]
    assert keytransport.encrypt_contract_key(z, int.from_bytes(d, "big"), iv) == enc
    # A scalar with leading zero bytes, handed over short: left-padded before encryption, back as 32 bytes.
    short = b"\x01\x02\x03"
    enc = keytransport.encrypt_contract_key(z, short, iv)
    assert len(enc) == 48
    assert keytransport.decrypt_contract_key(z, enc) == bytes(29) + short
    assert keytransport.encrypt_contract_key(z, 0x010203, iv) == enc


def test_decrypt_rejects_wrong_lengths():
    v = _vector()
    z, enc = v["shared_secret_Z"], v["ContractSignatureEncryptedPrivateKey"]
    for bad in (b"", enc[:47], enc + b"\x00", enc[:32], enc + bytes(16)):
        msg = _raises(PeerError, keytransport.decrypt_contract_key, z, bad)
        assert "ContractSignatureEncryptedPrivateKey" in msg
    _raises(UsageError, keytransport.decrypt_contract_key, z[:31], enc)
    _raises(UsageError, keytransport.encrypt_contract_key, z, v["contract_private_key_d"], bytes(15))


def test_out_of_range_scalars_rejected():
    v = _vector()
    z, iv = v["shared_secret_Z"], v["iv"]
    key = keytransport.concat_kdf(z)
    n = keytransport.P256_N
    n_minus_1 = n[:31] + bytes([n[31] - 1])
    # d = 0, d = n and d = 2^256 - 1 decrypted from a well-formed 48 bytes: PeerError, and no key bytes in it.
    for d in (bytes(32), n, b"\xff" * 32):
        enc = iv + aes.encrypt_cbc(key, iv, d, "python")
        msg = _raises(PeerError, keytransport.decrypt_contract_key, z, enc)
        assert "0 < d < n" in msg and d.hex() not in msg.lower()
        _raises(UsageError, keytransport.encrypt_contract_key, z, d, iv)
    # The largest and smallest valid scalars pass.
    for d in (n_minus_1, bytes(31) + b"\x01"):
        assert keytransport.decrypt_contract_key(z, keytransport.encrypt_contract_key(z, d, iv)) == d
    for bad in (0, -1, 1 << 256, int.from_bytes(n, "big")):
        _raises(UsageError, keytransport.scalar_bytes, bad)
    _raises(UsageError, keytransport.scalar_bytes, bytes(33))
    # A wrong Z decrypts to noise: either out of range (PeerError) or a different scalar, which the key-pair
    # check below then rejects.
    try:
        wrong = keytransport.decrypt_contract_key(bytes(31) + b"\x01", v["ContractSignatureEncryptedPrivateKey"])
    except PeerError:
        wrong = None
    assert wrong != v["contract_private_key_d"]


def test_key_pair_check_with_vector_points():
    v = _vector()
    d, pub = v["contract_private_key_d"], v["contract_public_key"]
    table = {d: pub, v["oem_prov_private_key_d"]: v["oem_prov_public_key"]}

    def public_key(k):
        return table[bytes(k)]

    assert keytransport.check_key_pair(d, pub, public_key) is None
    msg = _raises(PeerError, keytransport.check_key_pair, v["oem_prov_private_key_d"], pub, public_key)
    assert "does not match" in msg and d.hex() not in msg.lower()
    _raises(PeerError, keytransport.check_key_pair, d, pub[1:], public_key)
    _raises(PeerError, keytransport.check_key_pair, d, b"\x02" + pub[1:], public_key)
    _raises(PeerError, keytransport.check_key_pair, bytes(32), pub, public_key)


def test_key_pair_with_cryptography():
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    def public_key(k):
        priv = ec.derive_private_key(int.from_bytes(k, "big"), ec.SECP256R1())
        return priv.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    v = _vector()
    keytransport.check_key_pair(v["contract_private_key_d"], v["contract_public_key"], public_key)
    keytransport.check_key_pair(v["oem_prov_private_key_d"], v["oem_prov_public_key"], public_key)
    # The vector's Z is the x-coordinate of ECDH(OEM provisioning key, DHpublickey).
    oem = ec.derive_private_key(int.from_bytes(v["oem_prov_private_key_d"], "big"), ec.SECP256R1())
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), v["DHpublickey"])
    assert oem.exchange(ec.ECDH(), peer) == v["shared_secret_Z"]
    _raises(PeerError, keytransport.check_key_pair, v["contract_private_key_d"], v["oem_prov_public_key"],
            public_key)


def test_whole_installation_step_with_p256():
    # The EV's side end to end with the board's own P-256: Z from ECDH(OEM provisioning key, DHpublickey),
    # decrypt, then d*G against the contract certificate's public key.
    from evpilot.pnc import p256

    v = _vector()
    z = p256.ecdh(v["oem_prov_private_key_d"], v["DHpublickey"])
    assert z == v["shared_secret_Z"]
    d = keytransport.decrypt_contract_key(z, v["ContractSignatureEncryptedPrivateKey"])
    keytransport.check_key_pair(d, v["contract_public_key"], p256.public_key)
    _raises(PeerError, keytransport.check_key_pair, d, v["oem_prov_public_key"], p256.public_key)
    # The station's side: the same 48 bytes from the ephemeral key's view of the ECDH.
    z2 = p256.ecdh(v["ephemeral_private_key_d"], v["oem_prov_public_key"])
    assert keytransport.encrypt_contract_key(z2, d, v["iv"]) == v["ContractSignatureEncryptedPrivateKey"]
