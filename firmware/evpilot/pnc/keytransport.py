# ISO 15118-2 contract private-key transport (CertificateInstallationRes / CertificateUpdateRes).
#
# How this works
# --------------
# The CPS sends DHpublickey (an ephemeral P-256 point) and ContractSignatureEncryptedPrivateKey (48 bytes).
# The EV computes Z = x-coordinate of ECDH(its static key, DHpublickey) -- the OEM provisioning key for an
# installation, the current contract key for an update -- outside this module (evpilot.pnc.p256). Then:
#   K = SHA-256(00000001 || Z || 01 55 56)[0:16]      NIST SP 800-56A ConcatKDF: counter 1, AlgorithmID 0x01,
#                                                     PartyUInfo 'U', PartyVInfo 'V', 128-bit key
#   ContractSignatureEncryptedPrivateKey = IV (16) || AES-128-CBC(K, IV, d)   d: 32-byte big-endian, no padding
# and checks 0 < d < n (P-256 group order) and d*G == the contract certificate's public key before the key
# is stored. encrypt_contract_key is the station simulator's side of the same step.
#
# The private scalar never appears in an error message or a repr: errors say what is wrong, not the value.

import hashlib

from evpilot.errors import PeerError, UsageError
from evpilot.pnc import aes

# Order n of the P-256 base point (SEC 2, secp256r1), as 32 big-endian bytes: comparing equal-length
# big-endian byte strings compares the numbers, so no big-integer arithmetic is needed here.
P256_N = bytes.fromhex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
ENCRYPTED_KEY_LEN = 48  # IV (16) || two AES blocks (32)
_ZERO32 = bytes(32)
_KDF_PREFIX = b"\x00\x00\x00\x01"  # ConcatKDF counter, round 1
_KDF_OTHER_INFO = b"\x01UV"  # AlgorithmID 0x01, PartyUInfo 'U', PartyVInfo 'V'


def concat_kdf(z):
    """The 16-byte AES key from the 32-byte ECDH shared secret Z."""
    if len(z) != 32:
        raise UsageError("ECDH shared secret Z must be 32 bytes, got %d" % len(z))
    return hashlib.sha256(_KDF_PREFIX + bytes(z) + _KDF_OTHER_INFO).digest()[:16]


def is_valid_scalar(d):
    """True when d (32 bytes, big-endian) is a usable P-256 private key: 0 < d < n."""
    return len(d) == 32 and d != _ZERO32 and bytes(d) < P256_N


def decrypt_contract_key(ecdh_z, encrypted):
    """ContractSignatureEncryptedPrivateKey (48 bytes) -> the contract private key d (32 bytes)."""
    if len(encrypted) != ENCRYPTED_KEY_LEN:
        raise PeerError(
            "ContractSignatureEncryptedPrivateKey must be %d bytes, got %d" % (ENCRYPTED_KEY_LEN, len(encrypted))
        )
    encrypted = bytes(encrypted)
    d = aes.decrypt_cbc(concat_kdf(ecdh_z), encrypted[:16], encrypted[16:])
    if not is_valid_scalar(d):
        # A wrong Z (wrong static key) also lands here almost always: the decrypted bytes are then random.
        raise PeerError("ContractSignatureEncryptedPrivateKey does not hold a P-256 private key (0 < d < n)")
    return d


def scalar_bytes(d):
    """A private scalar as 32 big-endian bytes: an int, or bytes left-padded with zeros (a scalar with leading
    zero bytes is often handed over short; encrypting it unpadded is a known interop bug)."""
    if isinstance(d, int):
        if d <= 0 or d >> 256:
            raise UsageError("private scalar out of range (0 < d < n)")
        d = d.to_bytes(32, "big")
    if len(d) > 32:
        raise UsageError("private scalar longer than 32 bytes (%d)" % len(d))
    d = bytes(32 - len(d)) + bytes(d)
    if not is_valid_scalar(d):
        raise UsageError("private scalar out of range (0 < d < n)")
    return d


def encrypt_contract_key(ecdh_z, d, iv):
    """The station side: IV || AES-128-CBC(K, IV, d) (48 bytes). d is an int or big-endian bytes."""
    if len(iv) != 16:
        raise UsageError("IV must be 16 bytes, got %d" % len(iv))
    return bytes(iv) + aes.encrypt_cbc(concat_kdf(ecdh_z), iv, scalar_bytes(d))


def check_key_pair(d, cert_pub, public_key_fn):
    """Raise PeerError unless d*G equals the contract certificate's public key (65 bytes, 04 || X || Y).

    public_key_fn(d) -> 65-byte uncompressed point; on the board evpilot.pnc.p256.public_key."""
    if len(cert_pub) != 65 or cert_pub[0] != 4:
        raise PeerError("contract certificate public key must be an uncompressed P-256 point (65 bytes)")
    if not is_valid_scalar(d):
        raise PeerError("contract private key out of range (0 < d < n)")
    if bytes(public_key_fn(d)) != bytes(cert_pub):
        raise PeerError("decrypted contract private key does not match the contract certificate's public key")
