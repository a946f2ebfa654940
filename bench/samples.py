"""Sample messages for the benchmarks, built on CPython from the project's test vectors (tests/vectors).

SessionSetupReq and CurrentDemandReq/Res are real captures (tests/vectors/exi.jsonl keeps the first real
capture of each in the full corpus). The CertificateInstallationRes is built from the RISE-V2G test data
(tests/vectors/pnc): three CPS and three MO certificates, the encrypted contract key, the DH public key, the
eMAID, and a header Signature over the four fragments, about 4 KB like the ones stations relay in the field.
"""

import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VECTORS = os.path.join(ROOT, "tests", "vectors")
sys.path.insert(0, os.path.join(ROOT, "firmware"))

from evpilot import exi  # noqa: E402

C14N = "http://www.w3.org/TR/canonical-exi/"


def _vector(standard, message):
    with open(os.path.join(VECTORS, "exi.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if (r["standard"], r["message"]) == (standard, message) and r["origin"] == "real_capture" \
                    and r["libcbv2g"]["roundtrip_identical"]:
                return bytes.fromhex(r["hex"])
    raise LookupError(message)


def _der(name):
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import load_pem_x509_certificate

    path = os.path.join(VECTORS, "pnc", "rise-v2g-signature-testdata", name)
    with open(path, "rb") as f:
        return load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)


def certificate_installation_res():
    body = {
        "ResponseCode": "OK",
        "SAProvisioningCertificateChain": {
            "Certificate": _der("cpsLeafCert.pem"),
            "SubCertificates": {"Certificate": [_der("cpsSubCA2Cert.pem"), _der("cpsSubCA1Cert.pem")]},
        },
        "ContractSignatureCertChain": {
            "Id": "id1",
            "Certificate": _der("contractCert.pem"),
            "SubCertificates": {"Certificate": [_der("moSubCA2Cert.pem"), _der("moSubCA1Cert.pem")]},
        },
        "ContractSignatureEncryptedPrivateKey": {"Id": "id2", "CONTENT": bytes.fromhex(
            "803340C03FEFBC0CF47613E50D74C660EF471D2104C2EB1C1EAE39BAE700EAB0DC9AE909CE234FF2619DD3A721C60AA0")},
        "DHpublickey": {"Id": "id3", "CONTENT": bytes.fromhex(
            "04BE426A534EBCD5444476C0809425F9A593875AA7A4C2A2167C8A295B2B9069E054AD61801552FAB1F7C710D950689012"
            "0354C763800891DA595A1619E06254E9")},
        "eMAID": {"Id": "id4", "CONTENT": "DEABCC123ABC56"},
    }
    refs = []
    for name in ("ContractSignatureCertChain", "ContractSignatureEncryptedPrivateKey", "DHpublickey", "eMAID"):
        digest = hashlib.sha256(exi.encode_fragment("iso2", {name: body[name]})).digest()
        refs.append({"URI": "#" + body[name]["Id"], "Transforms": {"Transform": [{"Algorithm": C14N}]},
                     "DigestMethod": {"Algorithm": "http://www.w3.org/2001/04/xmlenc#sha256"},
                     "DigestValue": digest})
    signature = {
        "SignedInfo": {"CanonicalizationMethod": {"Algorithm": C14N},
                       "SignatureMethod": {"Algorithm": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"},
                       "Reference": refs},
        "SignatureValue": {"CONTENT": bytes(range(64))},
    }
    doc = {"V2G_Message": {"Header": {"SessionID": bytes.fromhex("4a1b2c3d4e5f6071"), "Signature": signature},
                           "Body": {"CertificateInstallationRes": body}}}
    return exi.encode("iso2", doc)


def samples():
    """{name: (schema, EXI bytes)}."""
    return {
        "iso2_SessionSetupReq": ("iso2", _vector("iso15118-2", "SessionSetupReq")),
        "iso2_CurrentDemandReq": ("iso2", _vector("iso15118-2", "CurrentDemandReq")),
        "iso2_CurrentDemandRes": ("iso2", _vector("iso15118-2", "CurrentDemandRes")),
        "din_CurrentDemandReq": ("din", _vector("din70121", "CurrentDemandReq")),
        "din_CurrentDemandRes": ("din", _vector("din70121", "CurrentDemandRes")),
        "iso2_CertificateInstallationRes": ("iso2", certificate_installation_res()),
    }


def write(path):
    data = {k: [s, v.hex()] for k, (s, v) in samples().items()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    return data
