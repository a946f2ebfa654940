"""Fragments for Plug&Charge signatures: ISO-2 MsgDef fragments (including the relaxed eMAID grammar) and
xmldsig SignedInfo fragments reproduce the known bytes, digests and the RISE-V2G SignedInfo."""

import hashlib
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509 import load_pem_x509_certificate

from evpilot import exi

from vectors import RISE, rise_fragments

C14N = "http://www.w3.org/TR/canonical-exi/"
ECDSA = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"


def test_authorization_req_fragment_known_bytes():
    doc = {"AuthorizationReq": {"Id": "id1", "GenChallenge": bytes.fromhex("6feb55b9296da243745d07d5241ca02d")}}
    data = exi.encode_fragment("iso2", doc)
    assert data.hex().upper() == "8004015A590C40837F5AADC94B6D121BA2E83EA920E50169E8"
    assert exi.decode_fragment("iso2", data) == doc


def test_emaid_fragment_uses_relaxed_grammar():
    doc = {"eMAID": {"Id": "id4", "CONTENT": "DEABCC123ABC56"}}
    data = exi.encode_fragment("iso2", doc)
    assert data.hex().upper() == "80EC0202B4B21A40041111505090D0CC4C8CD05090CD4DBD3D00"
    assert exi.decode_fragment("iso2", data) == doc


def _der(name):
    with open(os.path.join(RISE, name), "rb") as f:
        return load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)


def _rise_fragment_docs():
    # Built from the test data's own inputs (certificates, key blobs, eMAID), not from the expected bytes.
    return [
        {"ContractSignatureCertChain": {
            "Id": "id1",
            "Certificate": _der("contractCert.pem"),
            "SubCertificates": {"Certificate": [_der("moSubCA2Cert.pem"), _der("moSubCA1Cert.pem")]},
        }},
        {"ContractSignatureEncryptedPrivateKey": {"Id": "id2", "CONTENT": bytes.fromhex(
            "803340C03FEFBC0CF47613E50D74C660EF471D2104C2EB1C1EAE39BAE700EAB0DC9AE909CE234FF2619DD3A721C60AA0")}},
        {"DHpublickey": {"Id": "id3", "CONTENT": bytes.fromhex(
            "04BE426A534EBCD5444476C0809425F9A593875AA7A4C2A2167C8A295B2B9069E054AD61801552FAB1F7C710D950689012"
            "0354C763800891DA595A1619E06254E9")}},
        {"eMAID": {"Id": "id4", "CONTENT": "DEABCC123ABC56"}},
    ]


def _rise_signed_info():
    expected = rise_fragments()
    assert len(expected) == 5
    refs = []
    for doc, (want, want_digest) in zip(_rise_fragment_docs(), expected[:4]):
        data = exi.encode_fragment("iso2", doc)
        assert data == want, list(doc)
        digest = hashlib.sha256(data).digest()
        assert digest.hex().upper() == want_digest
        assert exi.decode_fragment("iso2", data) == doc
        name = next(iter(doc))
        refs.append({"URI": "#" + doc[name]["Id"], "Transforms": {"Transform": [{"Algorithm": C14N}]},
                     "DigestMethod": {"Algorithm": SHA256}, "DigestValue": digest})
    # RISE-V2G lists the references in the order id2, id1, id4, id3 (the signer's choice).
    refs = [refs[1], refs[0], refs[3], refs[2]]
    signed_info = {"SignedInfo": {"CanonicalizationMethod": {"Algorithm": C14N},
                                  "SignatureMethod": {"Algorithm": ECDSA}, "Reference": refs}}
    data = exi.encode_fragment("xmldsig", signed_info)
    assert len(data) == 559
    assert data == expected[4][0]
    assert exi.decode_fragment("xmldsig", data) == signed_info
    return data


def test_rise_v2g_fragments_digests_and_signed_info():
    assert _rise_signed_info()[:2] == b"\x80\x81"  # header, then the 6-bit code 32 (SignedInfo)


def test_rise_v2g_signature_verifies_over_our_signed_info():
    import json

    from vectors import VECTORS

    with open(os.path.join(VECTORS, "pnc", "iso2_certinstallres_signature_vector.json"), encoding="utf-8") as f:
        vec = json.load(f)
    data = _rise_signed_info()
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(vec["public_key"]))
    rs = bytes.fromhex(vec["signature_value_raw_rs_rfc6979"])
    der = utils.encode_dss_signature(int.from_bytes(rs[:32], "big"), int.from_bytes(rs[32:], "big"))
    pub.verify(der, data, ec.ECDSA(hashes.SHA256()))  # raises InvalidSignature on any byte difference


def test_signed_info_fragment_in_the_iso2_fragment_grammar():
    # SignedInfo is also a fragment element of the ISO-2 set itself (code 208): libcbv2g's vector.
    data = bytes.fromhex(
        "80d044ad0e8e8e0745e5eeeeeee5cee665cdee4ce5ea8a45ec6c2dcdedcd2c6c2d85acaf0d25e86ad0e8e8e0745e5eeeeeee5ce"
        "e665cdee4ce5e646060625e60685ef0dad8c8e6d2ce5adadee4ca46cac6c8e6c25ae6d0c2646a6c88188d2510c514b43a3a381d"
        "1797bbbbbb973b999737b933979918181897981a17bc36b632b73191b9b430991a9b210008101820283038404850586068707880"
        "889098a0a8b0b8c0c8d0d8e0e8f0f900fa00")
    doc = exi.decode_fragment("iso2", data)
    assert doc["SignedInfo"]["Reference"][0]["URI"] == "#ID1"
    assert exi.encode_fragment("iso2", doc) == data
