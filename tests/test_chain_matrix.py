"""Chain validation (evpilot.pnc.chain) against a test PKI built here with `cryptography`: one valid chain per
purpose (SECC, CPS, contract, OEM provisioning) and a negative matrix where each case breaks one rule of the
ISO 15118-2 profile and must be rejected with its own reason. Signatures are checked by a verifier built on
`cryptography`, so this module is CPython-only."""

import datetime

import pytest
from cryptography import x509 as cx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from evpilot.errors import PeerError, UsageError
from evpilot.pnc import chain, x509

NOW = 1750000000  # 2025-06-15
T0 = datetime.datetime.fromtimestamp(NOW, datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def verify(pub, tbs, sig):
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(pub))
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), bytes(tbs), ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


def name(cn, dc, org="evpilot test"):
    attrs = [cx.NameAttribute(NameOID.COMMON_NAME, cn), cx.NameAttribute(NameOID.ORGANIZATION_NAME, org),
             cx.NameAttribute(NameOID.COUNTRY_NAME, "DE")]
    if dc:
        attrs.append(cx.NameAttribute(NameOID.DOMAIN_COMPONENT, dc))
    return cx.Name(attrs)


KU_NAMES = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
            "key_cert_sign", "crl_sign")
CA_KU = ("key_cert_sign", "crl_sign")


class Node:
    def __init__(self, cert, key):
        self.cert = cert
        self.key = key
        self.der = cert.public_bytes(serialization.Encoding.DER)


def make(cn, dc, issuer=None, ca=False, pathlen=None, ku=("digital_signature",), key=None, start=-10,
         days=100, hash_alg=None, extra=(), basic=True, issuer_name=None, sign_key=None, ku_critical=True):
    """A certificate (Node) issued by `issuer` (None: self-signed) with the profile's extensions."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = name(cn, dc)
    b = (cx.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer_name or (issuer.cert.subject if issuer else subject))
         .public_key(key.public_key()).serial_number(cx.random_serial_number())
         .not_valid_before(T0 + start * DAY).not_valid_after(T0 + (start + days) * DAY))
    if basic:
        b = b.add_extension(cx.BasicConstraints(ca=ca, path_length=pathlen if ca else None), critical=True)
    if ku is not None:
        flags = {n: (n in ku) for n in KU_NAMES}
        b = b.add_extension(cx.KeyUsage(encipher_only=False, decipher_only=False, **flags), critical=ku_critical)
    b = b.add_extension(cx.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    for ext, critical in extra:
        b = b.add_extension(ext, critical=critical)
    signer = sign_key or (issuer.key if issuer else key)
    return Node(b.sign(signer, hash_alg or hashes.SHA256()), key)


class PKI:
    """The reference hierarchy of plug-and-charge.md section 1."""

    def __init__(self):
        self.v2g = make("V2G Root", "V2G", ca=True, ku=CA_KU, start=-100, days=3650)
        self.cpo1 = make("CPO Sub-CA 1", "V2G", self.v2g, ca=True, pathlen=1, ku=CA_KU, start=-50, days=1000)
        self.cpo2 = make("CPO Sub-CA 2", "V2G", self.cpo1, ca=True, pathlen=0, ku=CA_KU, start=-50, days=700)
        self.secc = make("SECC-0001", "CPO", self.cpo2, ku=("digital_signature", "key_agreement"))
        self.cps1 = make("CPS Sub-CA 1", "CPS", self.v2g, ca=True, pathlen=1, ku=CA_KU, start=-50, days=1000)
        self.cps2 = make("CPS Sub-CA 2", "CPS", self.cps1, ca=True, pathlen=0, ku=CA_KU, start=-50, days=700)
        self.cps = make("CPS Leaf", "CPS", self.cps2)
        self.mo = make("MO Root", "MO", ca=True, ku=CA_KU, start=-100, days=3650)
        self.mo1 = make("MO Sub-CA 1", "MO", self.mo, ca=True, pathlen=1, ku=CA_KU, start=-50, days=1000)
        self.mo2 = make("MO Sub-CA 2", "MO", self.mo1, ca=True, pathlen=0,
                        ku=CA_KU + ("digital_signature", "content_commitment"), start=-50, days=700)
        self.contract = make("DE-ABC-C123ABC56", "MO", self.mo2,
                             ku=("digital_signature", "content_commitment", "key_encipherment", "key_agreement"))
        self.oem = make("OEM Root", "OEM", ca=True, ku=CA_KU, start=-100, days=3650)
        self.oem1 = make("OEM Sub-CA 1", "OEM", self.oem, ca=True, pathlen=1, ku=CA_KU, start=-50, days=1000)
        self.oem2 = make("OEM Sub-CA 2", "OEM", self.oem1, ca=True, pathlen=0, ku=CA_KU, start=-50, days=700)
        self.prov = make("WMIV0ABCDEF1234567", "OEM", self.oem2, ku=("digital_signature", "key_agreement"))
        self.roots = [n.der for n in (self.v2g, self.mo, self.oem)]


@pytest.fixture(scope="module")
def pki():
    return PKI()


def check(pki, leaf, subs, purpose, roots=None, now=NOW, **kw):
    return chain.validate(leaf.der if isinstance(leaf, Node) else leaf,
                          [s.der if isinstance(s, Node) else s for s in subs],
                          pki.roots if roots is None else roots, now, purpose, verify, **kw)


def test_valid_chain_per_purpose(pki):
    got = check(pki, pki.secc, [pki.cpo2, pki.cpo1], "secc")
    assert [c.cn for c in got] == ["SECC-0001", "CPO Sub-CA 2", "CPO Sub-CA 1", "V2G Root"]
    assert got[0].dc == ["CPO"] and got[-1].der == pki.v2g.der
    got = check(pki, pki.cps, [pki.cps2, pki.cps1], "cps")
    assert [c.cn for c in got] == ["CPS Leaf", "CPS Sub-CA 2", "CPS Sub-CA 1", "V2G Root"]
    got = check(pki, pki.contract, [pki.mo2, pki.mo1], "contract", emaid="DEABCC123ABC56")
    assert got[-1].cn == "MO Root" and chain.emaid_from_cn(got[0].cn) == "DEABCC123ABC56"
    got = check(pki, pki.prov, [pki.oem2, pki.oem1], "oem")
    assert got[0].cn == "WMIV0ABCDEF1234567"
    # Parsed roots work as well as DER; no trusted time means no validity check.
    assert len(check(pki, pki.secc, [pki.cpo2, pki.cpo1], "secc",
                     roots=[x509.parse(pki.v2g.der)], now=None)) == 4


def test_contract_chain_to_the_v2g_root(pki):
    mo1 = make("MO Sub-CA 1 (V2G)", "MO", pki.v2g, ca=True, pathlen=1, ku=CA_KU)
    mo2 = make("MO Sub-CA 2 (V2G)", "MO", mo1, ca=True, pathlen=0, ku=CA_KU)
    leaf = make("DEABCC123ABC56", "MO", mo2, ku=("digital_signature", "key_agreement"))
    assert check(pki, leaf, [mo2, mo1], "contract")[-1].cn == "V2G Root"


def test_single_sub_ca_and_no_sub_ca(pki):
    leaf = make("SECC-0002", "CPO", pki.cpo2)
    one = make("CPO Sub-CA only", "V2G", pki.v2g, ca=True, pathlen=0, ku=CA_KU)
    leaf1 = make("SECC-0003", "CPO", one)
    assert len(check(pki, leaf1, [one], "secc")) == 3
    direct = make("SECC-0004", "CPO", pki.v2g)
    assert len(check(pki, direct, [], "secc")) == 2
    assert leaf is not None


def _negative_cases(pki):
    """(name, leaf, subs, purpose, kwargs, reason, position)"""
    p = pki
    cases = []

    def add(label, leaf, subs, purpose, reason, position=0, **kw):
        cases.append((label, leaf, subs, purpose, kw, reason, position))

    secc_subs = [p.cpo2, p.cpo1]
    add("expired leaf", make("SECC-old", "CPO", p.cpo2, start=-100, days=50), secc_subs, "secc", "expired")
    add("leaf not yet valid", make("SECC-new", "CPO", p.cpo2, start=5, days=50), secc_subs, "secc",
        "not_yet_valid")
    old_sub = make("CPO Sub-CA 2", "V2G", p.cpo1, ca=True, pathlen=0, ku=CA_KU, start=-400, days=300,
                   key=p.cpo2.key)
    add("expired Sub-CA", p.secc, [old_sub, p.cpo1], "secc", "expired", 1)
    add("SECC leaf with DC=CPS", make("SECC-dc", "CPS", p.cpo2), secc_subs, "secc", "wrong_dc")
    add("SECC leaf without DC", make("SECC-nodc", None, p.cpo2), secc_subs, "secc", "wrong_dc")
    add("CPS chain with the SECC leaf", p.secc, secc_subs, "cps", "wrong_dc")
    add("contract with DC=CPO", make("DEABCC123ABC57", "CPO", p.mo2), [p.mo2, p.mo1], "contract", "wrong_dc")
    mo_secc1 = make("MO-anchored CPO 1", "V2G", p.mo, ca=True, pathlen=1, ku=CA_KU)
    mo_secc2 = make("MO-anchored CPO 2", "V2G", mo_secc1, ca=True, pathlen=0, ku=CA_KU)
    add("SECC chain anchored at the MO root", make("SECC-mo", "CPO", mo_secc2), [mo_secc2, mo_secc1], "secc",
        "wrong_dc", "root")
    sub2_pl1 = make("CPO Sub-CA 2", "V2G", p.cpo1, ca=True, pathlen=1, ku=CA_KU, key=p.cpo2.key)
    add("Sub-CA 2 with pathlen 1 (profile: 0)", p.secc, [sub2_pl1, p.cpo1], "secc", "pathlen", 1)
    sub1_pl0 = make("MO Sub-CA 1", "MO", p.mo, ca=True, pathlen=0, ku=CA_KU, key=p.mo1.key)
    add("Sub-CA 1 with pathlen 0 over Sub-CA 2", p.contract, [p.mo2, sub1_pl0], "contract", "pathlen", 2)
    extra = make("CPO Sub-CA 0", "V2G", p.v2g, ca=True, pathlen=2, ku=CA_KU)
    add("three Sub-CAs", p.secc, [p.cpo2, p.cpo1, extra], "secc", "too_many_subcas", 1)
    add("issuer name differs from the Sub-CA's subject",
        make("SECC-iss", "CPO", p.cpo2, issuer_name=name("CPO Sub-CA 9", "V2G")), secc_subs, "secc",
        "issuer_mismatch")
    add("Sub-CAs in the wrong order", p.secc, [p.cpo1, p.cpo2], "secc", "pathlen", 1)
    add("leaf signed by another key", make("SECC-sig", "CPO", p.cpo2, sign_key=ec.generate_private_key(
        ec.SECP256R1())), secc_subs, "secc", "bad_signature")
    fake_root = make("V2G Root", "V2G", ca=True, ku=CA_KU)  # same name, other key
    fake1 = make("CPO Sub-CA 1", "V2G", fake_root, ca=True, pathlen=1, ku=CA_KU, key=p.cpo1.key)
    add("Sub-CA 1 signed by an impostor root of the same name", p.secc, [p.cpo2, fake1], "secc",
        "bad_signature", 2)
    other_root = make("Other V2G Root", "V2G", ca=True, ku=CA_KU)
    o1 = make("Other CPO 1", "V2G", other_root, ca=True, pathlen=1, ku=CA_KU)
    o2 = make("Other CPO 2", "V2G", o1, ca=True, pathlen=0, ku=CA_KU)
    add("chain to an unknown root", make("SECC-other", "CPO", o2), [o2, o1], "secc", "unknown_root", 2)
    add("leaf with CA:true", make("SECC-ca", "CPO", p.cpo2, ca=True, ku=("digital_signature",)), secc_subs,
        "secc", "leaf_is_ca")
    add("leaf key usage keyAgreement only", make("SECC-ku", "CPO", p.cpo2, ku=("key_agreement",)), secc_subs,
        "secc", "key_usage")
    add("leaf without keyUsage", make("SECC-noku", "CPO", p.cpo2, ku=None), secc_subs, "secc", "key_usage")
    sub2_noks = make("CPO Sub-CA 2", "V2G", p.cpo1, ca=True, pathlen=0, ku=("crl_sign",), key=p.cpo2.key)
    add("Sub-CA without keyCertSign", p.secc, [sub2_noks, p.cpo1], "secc", "key_usage", 1)
    sub2_notca = make("CPO Sub-CA 2", "V2G", p.cpo1, ca=False, ku=CA_KU, key=p.cpo2.key)
    add("Sub-CA with CA:false", p.secc, [sub2_notca, p.cpo1], "secc", "not_ca", 1)
    sub2_nobc = make("CPO Sub-CA 2", "V2G", p.cpo1, basic=False, ku=CA_KU, key=p.cpo2.key)
    add("Sub-CA without basicConstraints", p.secc, [sub2_nobc, p.cpo1], "secc", "not_ca", 1)
    big = cx.UnrecognizedExtension(cx.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x04\x82\x01\x90" + b"A" * 400)
    add("leaf over 800 bytes", make("SECC-big", "CPO", p.cpo2, extra=[(big, False)]), secc_subs, "secc",
        "oversized")
    add("leaf signed with ecdsa-with-SHA384", make("SECC-384", "CPO", p.cpo2, hash_alg=hashes.SHA384()),
        secc_subs, "secc", "algorithm")
    add("leaf key on secp384r1", make("SECC-p384", "CPO", p.cpo2, key=ec.generate_private_key(ec.SECP384R1())),
        secc_subs, "secc", "algorithm")
    bad_ku = cx.UnrecognizedExtension(cx.ObjectIdentifier("2.5.29.15"), b"\x03\x09\x00\x80")
    add("malformed keyUsage extension", make("SECC-badext", "CPO", p.cpo2, ku=None, extra=[(bad_ku, True)]),
        secc_subs, "secc", "malformed")
    add("truncated leaf", p.secc.der[:-5], secc_subs, "secc", "malformed")
    add("Sub-CA that is not DER", p.secc, [b"\x30\x80" + p.cpo2.der[2:], p.cpo1], "secc", "malformed", 1)
    crit = cx.UnrecognizedExtension(cx.ObjectIdentifier("1.3.6.1.4.1.99999.2"), b"\x05\x00")
    add("unknown critical extension", make("SECC-crit", "CPO", p.cpo2, extra=[(crit, True)]), secc_subs, "secc",
        "critical_extension")
    mo_subs = [p.mo2, p.mo1]
    add("contract CN is not an eMAID", make("John Doe", "MO", p.mo2), mo_subs, "contract", "emaid")
    add("contract CN != expected eMAID", p.contract, mo_subs, "contract", "emaid_mismatch",
        emaid="DEABCC123ABC99")
    add("OEM provisioning leaf with DC=MO", make("WMIV0ABCDEF1234568", "MO", p.oem2), [p.oem2, p.oem1], "oem",
        "wrong_dc")
    return cases


def test_negative_matrix(pki):
    cases = _negative_cases(pki)
    assert len(cases) >= 20
    reasons = set()
    for label, leaf, subs, purpose, kw, reason, position in cases:
        with pytest.raises(chain.ChainError) as info:
            check(pki, leaf, subs, purpose, **kw)
        e = info.value
        assert (e.reason, e.position) == (reason, position), (label, e.reason, e.position, str(e))
        assert isinstance(e, PeerError)
        reasons.add(reason)
    assert len(reasons) >= 17, sorted(reasons)


def test_messages_name_the_certificate(pki):
    with pytest.raises(chain.ChainError) as info:
        check(pki, make("SECC-late", "CPO", pki.cpo2, start=-100, days=50), [pki.cpo2, pki.cpo1], "secc")
    assert "SECC leaf 'SECC-late'" in str(info.value) and "expired" in str(info.value)
    with pytest.raises(chain.ChainError) as info:
        sub = make("CPO Sub-CA 2", "V2G", pki.cpo1, ca=False, ku=CA_KU, key=pki.cpo2.key)
        check(pki, pki.secc, [sub, pki.cpo1], "secc")
    assert "Sub-CA 2 'CPO Sub-CA 2'" in str(info.value)


def test_time_is_checked_only_with_trusted_time(pki):
    late = make("SECC-late2", "CPO", pki.cpo2, start=-100, days=50)
    assert check(pki, late, [pki.cpo2, pki.cpo1], "secc", now=None)[0].cn == "SECC-late2"
    edge = x509.parse(pki.secc.der)
    check(pki, pki.secc, [pki.cpo2, pki.cpo1], "secc", now=edge.not_before)
    check(pki, pki.secc, [pki.cpo2, pki.cpo1], "secc", now=edge.not_after)
    with pytest.raises(chain.ChainError):
        check(pki, pki.secc, [pki.cpo2, pki.cpo1], "secc", now=edge.not_after + 1)


def test_eku_is_not_checked_on_cas(pki):
    ocsp = cx.ExtendedKeyUsage([cx.oid.ExtendedKeyUsageOID.OCSP_SIGNING])
    root = make("EKU Root", "V2G", ca=True, ku=CA_KU, extra=[(ocsp, False)])
    s1 = make("EKU Sub 1", "V2G", root, ca=True, pathlen=1, ku=CA_KU, extra=[(ocsp, False)])
    s2 = make("EKU Sub 2", "V2G", s1, ca=True, pathlen=0, ku=CA_KU)
    leaf = make("SECC-eku", "CPO", s2)
    got = check(pki, leaf, [s2, s1], "secc", roots=[root.der])
    assert got[-1].eku == ["1.3.6.1.5.5.7.3.9"]


def test_misuse_is_a_usage_error(pki):
    with pytest.raises(UsageError):
        check(pki, pki.secc, [pki.cpo2, pki.cpo1], "tls")
    with pytest.raises(UsageError):
        chain.validate(pki.secc.der, [], pki.roots, NOW, "secc", None)


def test_parser_agrees_with_cryptography(pki):
    for node in (pki.v2g, pki.cpo1, pki.cpo2, pki.secc, pki.contract, pki.mo2, pki.prov):
        ours = x509.parse(node.der)
        c = node.cert
        assert ours.serial == c.serial_number
        assert ours.subject_string == c.subject.rfc4514_string()
        assert ours.issuer_string == c.issuer.rfc4514_string()
        assert ours.tbs == c.tbs_certificate_bytes
        assert ours.signature_der == c.signature
        assert ours.public_key == c.public_key().public_bytes(serialization.Encoding.X962,
                                                               serialization.PublicFormat.UncompressedPoint)
        assert ours.not_before == int(c.not_valid_before_utc.timestamp())
        assert ours.not_after == int(c.not_valid_after_utc.timestamp())
        bc = c.extensions.get_extension_for_class(cx.BasicConstraints).value
        assert (ours.ca, ours.pathlen) == (bc.ca, bc.path_length)
        ski = c.extensions.get_extension_for_class(cx.SubjectKeyIdentifier).value.digest
        assert ours.ski == ski


def test_escaping_matches_rfc4514_string_of_cryptography():
    key = ec.generate_private_key(ec.SECP256R1())
    odd = cx.Name([cx.NameAttribute(NameOID.COMMON_NAME, ' #a,b+c"d\\e<f>g;h '),
                   cx.NameAttribute(NameOID.ORGANIZATION_NAME, "Ümlaut GmbH"),
                   cx.NameAttribute(NameOID.EMAIL_ADDRESS, "x@example.org")])
    cert = (cx.CertificateBuilder().subject_name(odd).issuer_name(odd).public_key(key.public_key())
            .serial_number(1).not_valid_before(T0).not_valid_after(T0 + DAY).sign(key, hashes.SHA256()))
    ours = x509.parse(cert.public_bytes(serialization.Encoding.DER))
    assert ours.subject_string == cert.subject.rfc4514_string()
    assert ours.version == 3 and ours.extensions == {} and ours.key_usage is None and ours.ca is None
