# evpilot.pnc.xmldsig on both interpreters: the RISE-V2G CertificateInstallationRes signature reproduced byte
# for byte (fragments, digests, the 559-byte SignedInfo, the RFC 6979 SignatureValue of the shared vector)
# and verified with the CPS leaf key; sign/verify round trips for AuthorizationReq, MeteringReceiptReq and
# SalesTariff; and every rejection with its reason (tampered element or SignedInfo, wrong key, DER or
# short SignatureValue, missing or unknown reference, wrong algorithm URIs, five references, fragments
# digested in the empty namespace, malformed shapes; nothing but SignatureError escapes).

import json

from vectorlib import vector

from evpilot.errors import UsageError
from evpilot.pnc import p256, x509, xmldsig
from evpilot.pnc.xmldsig import SignatureError

RISE = "pnc/rise-v2g-signature-testdata/"

# Test keys (not secrets): a contract key and an MO Sub-CA 2 key for the round trips.
CONTRACT_D = bytes.fromhex("5f4b9a9c3d0e2b6a7c1d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f901234567")
MO_SUBCA2_D = bytes.fromhex("0a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0fedcba987654321")


def _read(path):
    with open(vector(path)) as f:
        return f.read()


def _vector():
    return json.loads(_read("pnc/iso2_certinstallres_signature_vector.json"))


def _der(name):
    return x509.pem_to_der(_read(RISE + name))


def _readme_blocks(title):
    """The EXI blocks (bytes) and their SHA-256 (hex or None) of one README section, in order: the four
    referenced fragments, then the SignedInfo."""
    text = _read(RISE + "README.md")
    start = text.index("## XML REFERENCE ELEMENT GENERATION WITH " + title)
    end = text.find("## ", text.index("## SIGNATURE GENERATION WITH " + title) + 3)
    if end < 0:  # the last section runs to the end of the file
        end = len(text)
    out = []
    for part in text[start:end].split("EXI:\n")[1:]:
        data = bytes.fromhex(part.split("\n", 1)[0].strip())
        sha = None
        if "SHA-256:\n" in part:
            sha = part.split("SHA-256:\n", 1)[1].split("\n", 1)[0].strip()
        out.append((data, sha))
    assert len(out) == 5
    return out


def _rise_elements():
    """The four signed CertificateInstallationRes elements, built from the test data's inputs."""
    return [
        ("ContractSignatureCertChain", {
            "Id": "id1",
            "Certificate": _der("contractCert.pem"),
            "SubCertificates": {"Certificate": [_der("moSubCA2Cert.pem"), _der("moSubCA1Cert.pem")]},
        }),
        ("ContractSignatureEncryptedPrivateKey", {"Id": "id2", "CONTENT": bytes.fromhex(
            "803340C03FEFBC0CF47613E50D74C660EF471D2104C2EB1C1EAE39BAE700EAB0DC9AE909CE234FF2619DD3A721C60AA0")}),
        ("DHpublickey", {"Id": "id3", "CONTENT": bytes.fromhex(
            "04BE426A534EBCD5444476C0809425F9A593875AA7A4C2A2167C8A295B2B9069E054AD61801552FAB1F7C710D950689012"
            "0354C763800891DA595A1619E06254E9")}),
        ("eMAID", {"Id": "id4", "CONTENT": "DEABCC123ABC56"}),
    ]


def _rise_in_reference_order():
    e = _rise_elements()
    return [e[1], e[0], e[3], e[2]]  # RISE-V2G lists the references as id2, id1, id4, id3


def _cps_leaf_key():
    return x509.parse(_der("cpsLeafCert.pem")).public_key


def _reason(fn, *args):
    try:
        fn(*args)
    except SignatureError as e:
        assert e.response_code == "FAILED_SignatureError"
        return e.reason
    assert False, "expected SignatureError"


def _copy(value):
    """A deep copy of a document (dicts, lists, scalars), so a test can tamper with one part."""
    if isinstance(value, dict):
        return dict((k, _copy(value[k])) for k in value)
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _authorization():
    return ("AuthorizationReq", {"Id": "id1", "GenChallenge": bytes.fromhex("6feb55b9296da243745d07d5241ca02d")})


def _metering_receipt():
    return ("MeteringReceiptReq", {
        "Id": "id1",
        "SessionID": bytes.fromhex("4a1b2c3d4e5f6071"),
        "SAScheduleTupleID": 1,
        "MeterInfo": {"MeterID": "EVPILOT-METER-1", "MeterReading": 123456, "TMeter": 1700000000},
    })


def _sales_tariff():
    return ("SalesTariff", {
        "Id": "id1",
        "SalesTariffID": 1,
        "NumEPriceLevels": 2,
        "SalesTariffEntry": [
            {"RelativeTimeInterval": {"start": 0}, "EPriceLevel": 1},
            {"RelativeTimeInterval": {"start": 3600, "duration": 82800}, "EPriceLevel": 2},
        ],
    })


# -- the RISE-V2G vector -------------------------------------------------------------------------------


def test_rise_v2g_digests():
    blocks = _readme_blocks('CORRECT XML NAMESPACE "urn:iso:15118:2:2013:MsgBody"')
    by_name = dict(_rise_elements())
    names = ("ContractSignatureCertChain", "ContractSignatureEncryptedPrivateKey", "DHpublickey", "eMAID")
    for name, (data, sha) in zip(names, blocks[:4]):
        assert xmldsig.digest(name, by_name[name]).hex().upper() == sha, name


def test_rise_v2g_signature_reproduced_and_verified():
    vec = _vector()
    d = bytes.fromhex(vec["private_key_d"])
    sig = xmldsig.sign(_rise_in_reference_order(), d)
    signed_info_data = xmldsig.signed_info_bytes(sig["SignedInfo"])
    assert len(signed_info_data) == vec["signed_info_exi_len"] == 559
    assert signed_info_data == _readme_blocks('CORRECT XML NAMESPACE "urn:iso:15118:2:2013:MsgBody"')[4][0]
    assert [r["URI"] for r in sig["SignedInfo"]["Reference"]] == ["#id2", "#id1", "#id4", "#id3"]
    assert sig["SignatureValue"]["CONTENT"].hex().upper() == vec["signature_value_raw_rs_rfc6979"]
    # Nothing Annex J forbids: no Ids, no Type, no HMACOutputLength, no KeyInfo or Object.
    assert sorted(sig) == ["SignatureValue", "SignedInfo"]
    assert sorted(sig["SignedInfo"]) == ["CanonicalizationMethod", "Reference", "SignatureMethod"]
    assert sig["SignedInfo"]["SignatureMethod"] == {"Algorithm": xmldsig.ECDSA_SHA256}
    assert sorted(sig["SignedInfo"]["Reference"][0]) == ["DigestMethod", "DigestValue", "Transforms", "URI"]
    assert sig["SignatureValue"] == {"CONTENT": sig["SignatureValue"]["CONTENT"]}
    # The key is the CPS leaf's (the README names Sub-CA 2, wrongly).
    leaf = _cps_leaf_key()
    assert leaf.hex().upper() == vec["public_key"]
    elements = xmldsig.by_id(_rise_elements())
    assert xmldsig.verify(sig, elements, leaf) is None
    assert xmldsig.verify(sig, elements, leaf, ["id1", "id2", "id3", "id4"]) is None
    assert _reason(xmldsig.verify, sig, elements, x509.parse(_der("cpsSubCA2Cert.pem")).public_key) == "signature"


def test_rise_v2g_published_signed_info_verifies_as_received():
    # The SignedInfo as it arrives (decoded from the README's bytes) with the vector's SignatureValue.
    from evpilot import exi

    vec = _vector()
    data = _readme_blocks('CORRECT XML NAMESPACE "urn:iso:15118:2:2013:MsgBody"')[4][0]
    received = {"SignedInfo": exi.decode_fragment("xmldsig", data)["SignedInfo"],
                "SignatureValue": {"CONTENT": bytes.fromhex(vec["signature_value_raw_rs_rfc6979"])}}
    assert xmldsig.verify(received, xmldsig.by_id(_rise_elements()), _cps_leaf_key()) is None


def test_empty_namespace_fragments_have_other_digests_and_fail():
    # The README's "incorrect namespace" blocks: the same elements encoded with schema deviations in the
    # empty namespace. Their digests differ from ours, so a signature made over them fails on the first
    # Reference with "digest" even though its SignatureValue is good.
    from evpilot import exi
    import hashlib

    blocks = _readme_blocks('INCORRECT XML NAMESPACE ""')
    by_name = dict(_rise_elements())
    names = ("ContractSignatureCertChain", "ContractSignatureEncryptedPrivateKey", "DHpublickey", "eMAID")
    for name, (data, sha) in zip(names, blocks[:4]):
        assert hashlib.sha256(data).digest().hex().upper() == sha
        assert xmldsig.digest(name, by_name[name]).hex().upper() != sha, name
    wrong = exi.decode_fragment("xmldsig", blocks[4][0])["SignedInfo"]
    d = bytes.fromhex(_vector()["private_key_d"])
    sig = {"SignedInfo": wrong, "SignatureValue": {"CONTENT": p256.sign(d, xmldsig.signed_info_bytes(wrong))}}
    try:
        xmldsig.verify(sig, xmldsig.by_id(_rise_elements()), _cps_leaf_key())
    except SignatureError as e:
        assert e.reason == "digest"
        assert e.reference == "#id2"
        assert "ContractSignatureEncryptedPrivateKey" in str(e)
    else:
        assert False, "empty-namespace digests accepted"


# -- round trips ---------------------------------------------------------------------------------------


def test_authorization_req_round_trip():
    name, element = _authorization()
    sig = xmldsig.sign([(name, element)], CONTRACT_D)
    ref = sig["SignedInfo"]["Reference"][0]
    assert ref["URI"] == "#id1"
    # Digest of the known fragment bytes (Josev/EXIficient output).
    import hashlib

    known = bytes.fromhex("8004015A590C40837F5AADC94B6D121BA2E83EA920E50169E8")
    assert ref["DigestValue"] == hashlib.sha256(known).digest() == xmldsig.digest(name, element)
    pub = p256.public_key(CONTRACT_D)
    assert xmldsig.verify(sig, {"id1": (name, element)}, pub, ["id1"]) is None
    assert xmldsig.verify(sig, xmldsig.by_id([(name, element)]), pub) is None
    # A different GenChallenge (a replayed signature) fails on the digest.
    other = dict(element)
    other["GenChallenge"] = bytes(16)
    assert _reason(xmldsig.verify, sig, {"id1": (name, other)}, pub) == "digest"


def test_metering_receipt_req_round_trip():
    name, element = _metering_receipt()
    sig = xmldsig.sign([(name, element)], CONTRACT_D)
    pub = p256.public_key(CONTRACT_D)
    assert xmldsig.verify(sig, xmldsig.by_id([(name, element)]), pub, ["id1"]) is None
    tampered = _copy(element)
    tampered["MeterInfo"]["MeterReading"] = 123457
    assert _reason(xmldsig.verify, sig, xmldsig.by_id([(name, tampered)]), pub) == "digest"


def test_sales_tariff_round_trip():
    name, element = _sales_tariff()
    sig = xmldsig.sign([(name, element)], MO_SUBCA2_D)
    pub = p256.public_key(MO_SUBCA2_D)
    assert xmldsig.verify(sig, xmldsig.by_id([(name, element)]), pub) is None
    tampered = _copy(element)
    tampered["SalesTariffEntry"][1]["EPriceLevel"] = 1
    assert _reason(xmldsig.verify, sig, xmldsig.by_id([(name, tampered)]), pub) == "digest"
    assert _reason(xmldsig.verify, sig, xmldsig.by_id([(name, element)]), p256.public_key(CONTRACT_D)) == "signature"


def test_sign_keeps_the_given_order():
    e = _rise_elements()
    d = bytes.fromhex(_vector()["private_key_d"])
    sig = xmldsig.sign(e[:2], d)
    assert [r["URI"] for r in sig["SignedInfo"]["Reference"]] == ["#id1", "#id2"]
    pub = _cps_leaf_key()
    assert xmldsig.verify(sig, xmldsig.by_id(e[:2]), pub) is None
    # Only id1 and id2 were signed: with all four elements present, id3 and id4 are missing by default.
    assert _reason(xmldsig.verify, sig, xmldsig.by_id(e), pub) == "missing_reference"
    assert xmldsig.verify(sig, xmldsig.by_id(e), pub, ["id1", "id2"]) is None


def test_sign_misuse():
    name, element = _authorization()
    for bad in ([], [(name, {"GenChallenge": bytes(16)})], [(name, element), (name, element)],
                [(name, element)] * 5, [element], "AuthorizationReq"):
        try:
            xmldsig.sign(bad, CONTRACT_D)
        except UsageError:
            pass
        else:
            assert False, "sign accepted %r" % (bad,)
    try:
        xmldsig.sign([(name, element)], bytes(32))
    except UsageError:
        pass
    else:
        assert False, "sign accepted a zero key"


# -- rejections ----------------------------------------------------------------------------------------


def _signed_pair():
    """A RISE-style signature over id1 and id2 with the test key, the elements by Id and the public key."""
    e = _rise_elements()[:2]
    d = bytes.fromhex(_vector()["private_key_d"])
    return xmldsig.sign(e, d), xmldsig.by_id(e), p256.public_key(d), d


def test_tampered_element_fails_digest():
    sig, elements, pub, _ = _signed_pair()
    name, element = elements["id2"]
    tampered = dict(element)
    tampered["CONTENT"] = bytes([element["CONTENT"][0] ^ 1]) + element["CONTENT"][1:]
    elements["id2"] = (name, tampered)
    try:
        xmldsig.verify(sig, elements, pub)
    except SignatureError as e:
        assert e.reason == "digest" and e.reference == "#id2"
    else:
        assert False


def test_tampered_signed_info_fails_signature():
    sig, elements, pub, _ = _signed_pair()
    # Reordered References: every digest still matches, the SignedInfo bytes do not.
    swapped = _copy(sig)
    refs = swapped["SignedInfo"]["Reference"]
    refs[0], refs[1] = refs[1], refs[0]
    assert _reason(xmldsig.verify, swapped, elements, pub) == "signature"
    # A flipped bit in r or s.
    for i in (0, 63):
        bad = _copy(sig)
        value = bytearray(sig["SignatureValue"]["CONTENT"])
        value[i] ^= 0x80
        bad["SignatureValue"]["CONTENT"] = bytes(value)
        assert _reason(xmldsig.verify, bad, elements, pub) == "signature"


def test_wrong_key_fails_signature():
    sig, elements, _, _ = _signed_pair()
    assert _reason(xmldsig.verify, sig, elements, p256.public_key(CONTRACT_D)) == "signature"
    assert _reason(xmldsig.verify, sig, elements, b"\x04" + bytes(64)) == "signature"  # not on the curve


def test_der_or_wrong_length_signature_value_is_malformed():
    sig, elements, pub, _ = _signed_pair()
    der = p256.raw_to_der(sig["SignatureValue"]["CONTENT"])
    for value in (der, sig["SignatureValue"]["CONTENT"][:63], sig["SignatureValue"]["CONTENT"] + b"\x00", b"",
                  sig["SignatureValue"]["CONTENT"].hex()):
        bad = _copy(sig)
        bad["SignatureValue"]["CONTENT"] = value
        try:
            xmldsig.verify(bad, elements, pub)
        except SignatureError as e:
            assert e.reason == "malformed"
            if value is der:
                assert "DER" in str(e)
        else:
            assert False


def test_missing_reference():
    sig, elements, pub, _ = _signed_pair()
    assert _reason(xmldsig.verify, sig, elements, pub, ["id1", "id2", "id3"]) == "missing_reference"
    one = _copy(sig)
    one["SignedInfo"]["Reference"] = one["SignedInfo"]["Reference"][:1]
    assert _reason(xmldsig.verify, one, elements, pub) == "missing_reference"  # default: every given Id
    assert _reason(xmldsig.verify, one, elements, pub, ["id1"]) == "signature"  # SignedInfo bytes changed


def test_unknown_reference():
    sig, elements, pub, _ = _signed_pair()
    for uri in ("#id9", "id1", "#", "", "http://example.com/#id1"):
        bad = _copy(sig)
        bad["SignedInfo"]["Reference"][0]["URI"] = uri
        try:
            xmldsig.verify(bad, elements, pub, ["id2"])
        except SignatureError as e:
            assert e.reason == "unknown_reference", uri
            assert e.reference == uri
        else:
            assert False, uri


def test_wrong_algorithm_uris():
    sig, elements, pub, _ = _signed_pair()
    cases = [
        (("CanonicalizationMethod",), "http://www.w3.org/2001/10/xml-exc-c14n#"),
        (("SignatureMethod",), "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
        (("SignatureMethod",), "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"),
        (("Reference", 1, "Transforms", "Transform", 0), "http://www.w3.org/2001/10/xml-exc-c14n#"),
        (("Reference", 0, "DigestMethod"), "http://www.w3.org/2001/04/xmldsig-more#sha256"),
        (("Reference", 0, "DigestMethod"), "http://www.w3.org/2000/09/xmldsig#sha1"),
    ]
    for path, uri in cases:
        bad = _copy(sig)
        node = bad["SignedInfo"]
        for key in path:
            node = node[key]
        node["Algorithm"] = uri
        assert _reason(xmldsig.verify, bad, elements, pub) == "algorithm", path
    # No Transform, two Transforms, HMACOutputLength on the signature method.
    bad = _copy(sig)
    del bad["SignedInfo"]["Reference"][0]["Transforms"]
    assert _reason(xmldsig.verify, bad, elements, pub) == "algorithm"
    bad = _copy(sig)
    bad["SignedInfo"]["Reference"][0]["Transforms"]["Transform"].append({"Algorithm": xmldsig.C14N})
    assert _reason(xmldsig.verify, bad, elements, pub) == "algorithm"
    bad = _copy(sig)
    bad["SignedInfo"]["SignatureMethod"]["HMACOutputLength"] = 128
    assert _reason(xmldsig.verify, bad, elements, pub) == "algorithm"


def test_five_references():
    e = _rise_elements() + [("AuthorizationReq", {"Id": "id5", "GenChallenge": bytes(16)})]
    elements = xmldsig.by_id(e)
    refs = [xmldsig.reference(el["Id"], xmldsig.digest(n, el)) for n, el in e]
    d = bytes.fromhex(_vector()["private_key_d"])
    signed_info = {"CanonicalizationMethod": {"Algorithm": xmldsig.C14N},
                   "SignatureMethod": {"Algorithm": xmldsig.ECDSA_SHA256}, "Reference": refs}
    sig = {"SignedInfo": signed_info, "SignatureValue": {
        "CONTENT": p256.sign(d, xmldsig.signed_info_bytes(signed_info))}}
    assert _reason(xmldsig.verify, sig, elements, p256.public_key(d)) == "too_many_references"


def test_malformed_shapes():
    sig, elements, pub, _ = _signed_pair()
    empty = {"SignedInfo": {}, "SignatureValue": sig["SignatureValue"]}
    assert _reason(xmldsig.verify, empty, elements, pub) == "malformed"
    no_refs = _copy(sig)
    no_refs["SignedInfo"]["Reference"] = []
    assert _reason(xmldsig.verify, no_refs, elements, pub) == "malformed"
    twice = _copy(sig)
    twice["SignedInfo"]["Reference"][1] = _copy(twice["SignedInfo"]["Reference"][0])
    assert _reason(xmldsig.verify, twice, elements, pub) == "malformed"
    short_digest = _copy(sig)
    short_digest["SignedInfo"]["Reference"][0]["DigestValue"] = bytes(20)
    assert _reason(xmldsig.verify, short_digest, elements, pub) == "malformed"
    for bad in (None, {}, [], "signature", {"SignedInfo": sig["SignedInfo"]},
                {"SignedInfo": sig["SignedInfo"], "SignatureValue": b"\x00" * 64}):
        assert _reason(xmldsig.verify, bad, elements, pub) == "malformed"
    # Two received elements sharing an Id, or an element without one.
    e = _rise_elements()
    dup = [e[0], ("DHpublickey", {"Id": "id1", "CONTENT": e[2][1]["CONTENT"]})]
    assert _reason(xmldsig.by_id, dup) == "malformed"
    assert _reason(xmldsig.by_id, [("eMAID", {"CONTENT": "DEABCC123ABC56"})]) == "malformed"


def test_only_signature_errors_escape():
    # Every node of a good signature replaced by junk of each kind: verify raises SignatureError, never
    # KeyError, TypeError, IndexError or an ExiError of its own.
    sig, elements, pub, _ = _signed_pair()
    junk = (None, 0, -1, "", "x", b"", [], {}, [{}], {"Algorithm": None}, True)
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for k in node:
                paths.append(path + (k,))
                walk(node[k], path + (k,))
        elif isinstance(node, list):
            for i in range(len(node)):
                paths.append(path + (i,))
                walk(node[i], path + (i,))

    walk(sig, ())
    assert len(paths) > 20
    count = 0
    for path in paths:
        for value in junk:
            bad = _copy(sig)
            node = bad
            for key in path[:-1]:
                node = node[key]
            if node[path[-1]] == value:
                continue
            node[path[-1]] = value
            try:
                xmldsig.verify(bad, elements, pub)
            except SignatureError:
                count += 1
            else:
                assert False, "accepted %r at %r" % (value, path)
    assert count > 200


def test_verify_misuse():
    sig, elements, pub, _ = _signed_pair()
    for bad in ([("ContractSignatureCertChain", elements["id1"][1])], {"id1": elements["id2"]},
                {"id1": "ContractSignatureCertChain"}):
        try:
            xmldsig.verify(sig, bad, pub)
        except UsageError:
            pass
        else:
            assert False, "verify accepted elements %r" % (bad,)
