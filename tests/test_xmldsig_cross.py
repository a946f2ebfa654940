# evpilot.pnc.xmldsig against `cryptography` (OpenSSL), CPython only: our Annex J signatures verify with
# OpenSSL (ECDSA-SHA256 over the EXI SignedInfo bytes, r || s converted to DER), signatures OpenSSL makes over
# our SignedInfo bytes (random nonces, r || s taken out of DER) verify with ours, the RISE-V2G vector checks
# with the CPS leaf key as `cryptography` loads it, and OpenSSL's DER sent as a SignatureValue is refused.

import json
import os

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509 import load_pem_x509_certificate
from hypothesis import given, settings
from hypothesis import strategies as st

from evpilot.pnc import p256, xmldsig
from evpilot.pnc.xmldsig import SignatureError

from vectors import RISE, VECTORS

scalars = st.integers(min_value=1, max_value=p256.N - 1)
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8).map(lambda s: "id" + s)
fast = settings(max_examples=30, deadline=None)


def _pub65(key):
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _der_of(raw):
    return utils.encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def _raw_of(der):
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _openssl_accepts(pub65, data, raw):
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub65)
    try:
        pub.verify(_der_of(raw), data, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


def _elements(element_id, challenge, meter_reading):
    return {
        "AuthorizationReq": [("AuthorizationReq", {"Id": element_id, "GenChallenge": challenge})],
        "MeteringReceiptReq": [("MeteringReceiptReq", {
            "Id": element_id, "SessionID": challenge[:8], "SAScheduleTupleID": 1 + challenge[0] % 255,
            "MeterInfo": {"MeterID": "M-" + element_id, "MeterReading": meter_reading}})],
        "SalesTariff": [("SalesTariff", {
            "Id": element_id, "SalesTariffID": 1 + challenge[1] % 255,
            "SalesTariffEntry": [{"RelativeTimeInterval": {"start": 0, "duration": 86400},
                                  "EPriceLevel": challenge[2] % 8}]})],
        "CertificateInstallationRes parts": [
            ("DHpublickey", {"Id": element_id + "a", "CONTENT": b"\x04" + challenge * 4}),
            ("eMAID", {"Id": element_id + "b", "CONTENT": "DEABC" + (element_id.upper() + "000000000")[:9]}),
            ("ContractSignatureEncryptedPrivateKey", {"Id": element_id + "c", "CONTENT": challenge * 3}),
        ],
    }


kinds = st.sampled_from(["AuthorizationReq", "MeteringReceiptReq", "SalesTariff", "CertificateInstallationRes parts"])


@fast
@given(scalars, ids, st.binary(min_size=16, max_size=16), st.integers(min_value=0, max_value=2**63 - 1), kinds)
def test_our_signatures_verify_with_openssl(d, element_id, challenge, reading, kind):
    elements = _elements(element_id, challenge, reading)[kind]
    sig = xmldsig.sign(elements, d)
    key = ec.derive_private_key(d, ec.SECP256R1())
    data = xmldsig.signed_info_bytes(sig["SignedInfo"])
    raw = sig["SignatureValue"]["CONTENT"]
    assert len(raw) == 64
    assert _openssl_accepts(_pub65(key), data, raw)
    tampered = bytearray(data)
    tampered[len(data) // 2] ^= 1
    assert not _openssl_accepts(_pub65(key), bytes(tampered), raw)
    assert xmldsig.verify(sig, xmldsig.by_id(elements), _pub65(key)) is None


@fast
@given(scalars, ids, st.binary(min_size=16, max_size=16), st.integers(min_value=0, max_value=2**63 - 1), kinds)
def test_openssl_signatures_verify_with_ours(d, element_id, challenge, reading, kind):
    elements = _elements(element_id, challenge, reading)[kind]
    key = ec.derive_private_key(d, ec.SECP256R1())
    signed_info = {
        "CanonicalizationMethod": {"Algorithm": xmldsig.C14N},
        "SignatureMethod": {"Algorithm": xmldsig.ECDSA_SHA256},
        "Reference": [xmldsig.reference(e["Id"], xmldsig.digest(n, e)) for n, e in elements],
    }
    der = key.sign(xmldsig.signed_info_bytes(signed_info), ec.ECDSA(hashes.SHA256()))  # random k
    sig = {"SignedInfo": signed_info, "SignatureValue": {"CONTENT": _raw_of(der)}}
    by_id = xmldsig.by_id(elements)
    assert xmldsig.verify(sig, by_id, _pub65(key)) is None
    # OpenSSL's DER as the SignatureValue is refused (Annex J: raw r || s).
    with pytest.raises(SignatureError) as e:
        xmldsig.verify({"SignedInfo": signed_info, "SignatureValue": {"CONTENT": der}}, by_id, _pub65(key))
    assert e.value.reason == "malformed"
    # Another key, and a changed SignedInfo, do not verify.
    other = ec.derive_private_key(d + 1 if d < p256.N - 1 else 1, ec.SECP256R1())
    with pytest.raises(SignatureError) as e:
        xmldsig.verify(sig, by_id, _pub65(other))
    assert e.value.reason == "signature"
    if len(elements) > 1:  # References in another order: digests still match, SignedInfo bytes do not
        changed = dict(signed_info, Reference=list(reversed(signed_info["Reference"])))
        with pytest.raises(SignatureError) as e:
            xmldsig.verify({"SignedInfo": changed, "SignatureValue": sig["SignatureValue"]}, by_id, _pub65(key))
        assert e.value.reason == "signature"


def _leaf_key_and_der(name):
    with open(os.path.join(RISE, name), "rb") as f:
        cert = load_pem_x509_certificate(f.read())
    return cert.public_key(), cert.public_bytes(serialization.Encoding.DER)


def test_rise_v2g_vector_with_openssl():
    with open(os.path.join(VECTORS, "pnc", "iso2_certinstallres_signature_vector.json"), encoding="utf-8") as f:
        vec = json.load(f)
    pem = {}
    for name in ("contractCert.pem", "moSubCA2Cert.pem", "moSubCA1Cert.pem"):
        pem[name] = _leaf_key_and_der(name)[1]
    elements = [
        ("ContractSignatureEncryptedPrivateKey", {"Id": "id2", "CONTENT": bytes.fromhex(
            "803340C03FEFBC0CF47613E50D74C660EF471D2104C2EB1C1EAE39BAE700EAB0DC9AE909CE234FF2619DD3A721C60AA0")}),
        ("ContractSignatureCertChain", {
            "Id": "id1", "Certificate": pem["contractCert.pem"],
            "SubCertificates": {"Certificate": [pem["moSubCA2Cert.pem"], pem["moSubCA1Cert.pem"]]}}),
        ("eMAID", {"Id": "id4", "CONTENT": "DEABCC123ABC56"}),
        ("DHpublickey", {"Id": "id3", "CONTENT": bytes.fromhex(
            "04BE426A534EBCD5444476C0809425F9A593875AA7A4C2A2167C8A295B2B9069E054AD61801552FAB1F7C710D950689012"
            "0354C763800891DA595A1619E06254E9")}),
    ]
    sig = xmldsig.sign(elements, bytes.fromhex(vec["private_key_d"]))
    assert sig["SignatureValue"]["CONTENT"].hex().upper() == vec["signature_value_raw_rs_rfc6979"]
    data = xmldsig.signed_info_bytes(sig["SignedInfo"])
    leaf, _ = _leaf_key_and_der("cpsLeafCert.pem")
    leaf.verify(_der_of(sig["SignatureValue"]["CONTENT"]), data, ec.ECDSA(hashes.SHA256()))
    sub_ca2, _ = _leaf_key_and_der("cpsSubCA2Cert.pem")  # the README's claim: not the signer
    with pytest.raises(InvalidSignature):
        sub_ca2.verify(_der_of(sig["SignatureValue"]["CONTENT"]), data, ec.ECDSA(hashes.SHA256()))
    leaf65 = leaf.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert xmldsig.verify(sig, xmldsig.by_id(elements), leaf65) is None
