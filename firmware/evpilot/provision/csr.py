# A PKCS#10 certification request (RFC 2986) for a P-256 key, built and signed on the device.
#
# How this works
# --------------
# The OEM provisioning key pair is born on the board (service.py, oem-keygen); the laptop's OEM Sub-CA needs
# its public key and proof that the board holds the private key. build(d, pub, cn, dc, o) returns
#   CertificationRequest ::= SEQUENCE {
#       certificationRequestInfo SEQUENCE { version INTEGER 0, subject Name,
#                                           subjectPKInfo SEQUENCE { AlgorithmIdentifier, BIT STRING },
#                                           attributes [0] IMPLICIT SET OF Attribute (empty) },
#       signatureAlgorithm AlgorithmIdentifier (ecdsa-with-SHA256, no parameters: RFC 5758 3.2),
#       signature BIT STRING (DER ECDSA-Sig-Value over the DER of certificationRequestInfo) }
# with the subject DC (IA5String), O and CN (UTF8String), the order of ISO 15118-2 Annex F's OEM provisioning
# certificate. Only the writer lives here; reading DER is evpilot.pnc.der's job. The private key is used to
# sign and is in nothing returned.

from evpilot.pnc import der, p256

# RFC 5480 2.1.1 id-ecPublicKey, 2.1.1.1 secp256r1; RFC 5758 3.2 ecdsa-with-SHA256 (OID TLVs).
_EC_PUBLIC_KEY = b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x01"
_PRIME256V1 = b"\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07"
_ECDSA_SHA256 = b"\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02"
# X.520 id-at-commonName 2.5.4.3, id-at-organizationName 2.5.4.10; RFC 4519 domainComponent
# 0.9.2342.19200300.100.1.25
_CN = b"\x06\x03\x55\x04\x03"
_O = b"\x06\x03\x55\x04\x0a"
_DC = b"\x06\x0a\x09\x92\x26\x89\x93\xf2\x2c\x64\x01\x19"

MAX_NAME_PART = 64


def tlv(tag, content):
    """One DER TLV with a definite length in its shortest form."""
    n = len(content)
    if n < 0x80:
        head = bytes((tag, n))
    elif n < 0x100:
        head = bytes((tag, 0x81, n))
    else:
        head = bytes((tag, 0x82, n >> 8, n & 0xFF))
    return head + content


def _rdn(oid, tag, value):
    return tlv(der.SET, tlv(der.SEQUENCE, oid + tlv(tag, value.encode())))


def name(cn, dc=None, o=None):
    parts = b""
    if dc:
        parts += _rdn(_DC, der.IA5_STRING, dc)
    if o:
        parts += _rdn(_O, der.UTF8_STRING, o)
    parts += _rdn(_CN, der.UTF8_STRING, cn)
    return tlv(der.SEQUENCE, parts)


def spki(pub):
    alg = tlv(der.SEQUENCE, _EC_PUBLIC_KEY + _PRIME256V1)
    return tlv(der.SEQUENCE, alg + tlv(der.BIT_STRING, b"\x00" + bytes(pub)))


def build(d, pub, cn, dc="OEM", o=None):
    """The DER CSR for the key pair (d, pub) with subject DC=dc, O=o, CN=cn."""
    for part in (cn, dc, o):
        if part is not None and (not isinstance(part, str) or len(part) > MAX_NAME_PART):
            from evpilot.errors import PeerError

            raise PeerError("CSR subject parts must be strings of at most %d characters" % MAX_NAME_PART)
    info = tlv(der.SEQUENCE, b"\x02\x01\x00" + name(cn, dc, o) + spki(pub) + bytes((der.context(0), 0)))
    sig = p256.raw_to_der(p256.sign(d, info))
    return tlv(der.SEQUENCE, info + tlv(der.SEQUENCE, _ECDSA_SHA256) + tlv(der.BIT_STRING, b"\x00" + sig))
