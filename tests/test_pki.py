"""`evpilot pki`: the generated test PKI (every role, chains, profiles, files) and the profile check.

One PKI is generated per module (EC keys are random, so tests check structure, never bytes). Broken
certificates are built here with cryptography to see that `pki show` names each deviation. The reference
certificates of RISE-V2G (tests/vectors) are checked always, Hubject's 2018 test PKI (../shared/pki-reference)
where ../shared is beside the repository (skipped with the reason otherwise).
"""

import datetime
import io
import json
import os
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from evpilot.errors import PeerError, UsageError
from evpilot_host import pki
from evpilot_host import pki_check
from evpilot_host.commands import pki as pki_command

from vectors import HUBJECT, RISE, ROOT, need_shared

PROFILES = pki.load_profiles()
ROLES = list(PROFILES["roles"])


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki") / "out"
    issued = pki.build_pki(PROFILES)
    pki.write_pki(directory, issued, PROFILES)
    return directory


def _cert(directory, role, ext="der"):
    data = (directory / (role + "." + ext)).read_bytes()
    return pki_check.load_certificates(data, role)[0]


def _run_cli(*args):
    env = dict(os.environ)
    paths = [os.path.join(ROOT, "firmware"), os.path.join(ROOT, "host")]
    env["PYTHONPATH"] = os.pathsep.join(paths + [env["PYTHONPATH"]] if env.get("PYTHONPATH") else paths)
    cmd = [sys.executable, "-m", "evpilot_host.cli", "pki"] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


# --- the generated PKI -----------------------------------------------------------------------------------


def test_profiles_cover_the_annex_f_roles():
    assert set(ROLES) == {
        "v2g_root", "cpo_sub_ca1", "cpo_sub_ca2", "secc_leaf", "cps_sub_ca1", "cps_sub_ca2", "cps_leaf",
        "mo_root", "mo_sub_ca1", "mo_sub_ca2", "contract_leaf", "oem_root", "oem_sub_ca1", "oem_sub_ca2",
        "oem_prov_leaf",
    }
    order = pki.issuer_order(PROFILES)
    for role in ROLES:
        issuer = PROFILES["roles"][role]["issuer"]
        if issuer:
            assert order.index(issuer) < order.index(role)


def test_init_writes_every_role_in_der_pem_and_key(pki_dir):
    for role in ROLES:
        der = (pki_dir / (role + ".der")).read_bytes()
        pem = (pki_dir / (role + ".pem")).read_bytes()
        assert x509.load_pem_x509_certificate(pem) == x509.load_der_x509_certificate(der)
        key = serialization.load_pem_private_key((pki_dir / (role + ".key")).read_bytes(), None)
        assert b"BEGIN PRIVATE KEY" in (pki_dir / (role + ".key")).read_bytes()  # PKCS#8
        assert key.public_key() == x509.load_der_x509_certificate(der).public_key()
    for chain in ("secc_chain", "cps_chain", "contract_chain", "oem_chain"):
        assert (pki_dir / (chain + ".pem")).exists()


def test_key_files_are_private_and_nothing_else_left_behind(pki_dir):
    for role in ROLES:
        assert stat.S_IMODE(os.stat(pki_dir / (role + ".key")).st_mode) == 0o600
    assert [p.name for p in pki_dir.parent.iterdir()] == ["out"]  # no temporary directory left


def test_index_describes_every_file(pki_dir):
    index = json.loads((pki_dir / "index.json").read_text())
    by_path = {f["path"]: f for f in index["files"]}
    listed = set(by_path) | {"index.json"}
    assert listed == {p.name for p in pki_dir.iterdir()}
    for role in ROLES:
        record = by_path[role + ".der"]
        cert = _cert(pki_dir, role)
        assert record["role"] == role
        assert record["subject"] == cert.subject.rfc4514_string()
        assert record["issuer"] == cert.issuer.rfc4514_string()
        assert int(record["serial"], 16) == cert.serial_number
        assert record["sha256"] == cert.fingerprint(hashes.SHA256()).hex()
        assert record["not_before"] and record["not_after"]
    assert by_path["oem_prov_leaf.key"]["note"] == "belongs on the device; generated here only for tests"
    assert by_path["secc_chain.pem"]["certificates"] == ["secc_leaf", "cpo_sub_ca2", "cpo_sub_ca1"]


def test_subjects_carry_the_domain_components_and_identifiers(pki_dir):
    for role in ROLES:
        cert = _cert(pki_dir, role)
        dcs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.DOMAIN_COMPONENT)]
        assert dcs == [PROFILES["roles"][role]["dc"]], role
    cn = lambda role: _cert(pki_dir, role).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value  # noqa
    assert cn("contract_leaf") == pki.DEFAULT_EMAID
    assert cn("oem_prov_leaf") == pki.DEFAULT_PCID and len(pki.DEFAULT_PCID) == 18
    assert cn("secc_leaf") == pki.DEFAULT_SECC_ID


def test_every_certificate_is_issued_by_its_issuer(pki_dir):
    for role in ROLES:
        cert = _cert(pki_dir, role)
        issuer_role = PROFILES["roles"][role]["issuer"] or role
        issuer = _cert(pki_dir, issuer_role)
        cert.verify_directly_issued_by(issuer)  # signature and issuer name == issuer's subject
        assert cert.issuer == issuer.subject
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        if issuer_role != role:
            aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
            assert aki.key_identifier == ski
        assert cert.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.ECDSA_WITH_SHA256
        assert isinstance(cert.public_key().curve, ec.SECP256R1)
        assert cert.version == x509.Version.v3
        assert cert.not_valid_after_utc <= issuer.not_valid_after_utc


def test_every_certificate_is_under_800_bytes(pki_dir):
    for role in ROLES:
        assert len((pki_dir / (role + ".der")).read_bytes()) <= 800, role


@pytest.mark.parametrize(
    "chain, root, dc",
    [("secc_chain", "v2g_root", "CPO"), ("cps_chain", "v2g_root", "CPS"), ("contract_chain", "mo_root", "MO"),
     ("oem_chain", "oem_root", "OEM")],
)
def test_chains_validate(pki_dir, chain, root, dc):
    certs = pki_check.load_certificates((pki_dir / (chain + ".pem")).read_bytes())
    assert len(certs) == 3
    anchors = [_cert(pki_dir, "v2g_root"), _cert(pki_dir, "mo_root"), _cert(pki_dir, "oem_root")]
    now = datetime.datetime.now(datetime.timezone.utc)
    assert pki_check.check_chain(certs, anchors, now=now, leaf_dc=dc) == []
    # The wrong anchor, a wrong order and a wrong leaf DC are each caught.
    others = [a for a in anchors if a != _cert(pki_dir, root)]
    assert pki_check.check_chain(certs, others)[-1].startswith("no trust anchor")
    assert pki_check.check_chain([certs[0], certs[2], certs[1]], anchors)
    assert pki_check.check_chain(certs, anchors, leaf_dc="XX") == ["leaf DC is not XX"]
    expired = now + datetime.timedelta(days=20000)
    assert any("is not valid at" in p for p in pki_check.check_chain(certs, anchors, now=expired))


def test_our_certificates_conform_and_their_roles_are_inferred(pki_dir):
    for role in ROLES:
        cert = _cert(pki_dir, role)
        inferred, _how = pki_check.infer_role(cert)
        assert inferred == role
        assert pki_check.check_certificate(cert, role, PROFILES) == [], role


def test_profile_validity(pki_dir):
    for role in ROLES:
        cert = _cert(pki_dir, role)
        days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
        limits = PROFILES["roles"][role]["validity_days"]
        assert days <= (limits["max"] or 100000)
    root = _cert(pki_dir, "v2g_root")
    leaf = _cert(pki_dir, "secc_leaf")
    assert (root.not_valid_after_utc - root.not_valid_before_utc).days > 3000  # roots long
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days <= 93  # leaves months


def test_contract_options(tmp_path):
    issued = pki.build_pki(PROFILES, emaid="DE-ABC-C123ABC56", pcid="ABCDEFGHIJ12345678", contract_days=28)
    contract = issued["contract_leaf"].certificate
    assert contract.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "DE-ABC-C123ABC56"
    assert (contract.not_valid_after_utc - contract.not_valid_before_utc).days == 28
    assert pki_check.check_certificate(contract, "contract_leaf", PROFILES) == []
    with pytest.raises(UsageError, match="eMAID"):
        pki.build_pki(PROFILES, emaid="DE-ABC")
    with pytest.raises(UsageError, match="PCID"):
        pki.build_pki(PROFILES, pcid="short")
    with pytest.raises(UsageError, match="contract validity must be 28 to 730 days"):
        pki.build_pki(PROFILES, contract_days=5000)


# --- atomic writing and overwrite protection ---------------------------------------------------------------


def test_init_refuses_to_overwrite_unless_forced(tmp_path):
    target = tmp_path / "pki"
    pki.write_pki(target, pki.build_pki(PROFILES), PROFILES)
    before = (target / "v2g_root.der").read_bytes()
    with pytest.raises(UsageError, match="already exists and is not empty; pass --force"):
        pki.write_pki(target, pki.build_pki(PROFILES), PROFILES)
    assert (target / "v2g_root.der").read_bytes() == before
    pki.write_pki(target, pki.build_pki(PROFILES), PROFILES, force=True)
    assert (target / "v2g_root.der").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pki"]  # temporary and old directories removed


def test_init_into_an_empty_directory_is_fine(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    pki.write_pki(target, pki.build_pki(PROFILES), PROFILES)
    assert (target / "index.json").exists()


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pki, "_write", broken)
    with pytest.raises(OSError):
        pki.write_pki(tmp_path / "pki", pki.build_pki(PROFILES), PROFILES)
    assert list(tmp_path.iterdir()) == []


# --- the profile check on broken certificates -------------------------------------------------------------


def _broken(role="cpo_sub_ca2", dc="same", bc_critical=True, ku_critical=True, pathlen="same", ku=None,
            days=None, key=None, hash_alg=None, extra_san=None, ski=True, aki=True, cn=None):
    """A certificate for `role` built like ours, with one thing changed."""
    profile = PROFILES["roles"][role]
    key = key or ec.generate_private_key(ec.SECP256R1())
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    attrs = []
    if dc is not None:
        attrs.append(x509.NameAttribute(NameOID.DOMAIN_COMPONENT, profile["dc"] if dc == "same" else dc))
    identities = {"emaid": "DEABCC123ABC56", "pcid": "ABCDEFGHIJ12345678", "secc_id": "SECC"}
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn or identities.get(profile["cn"], profile["cn"])))
    subject = x509.Name(attrs)
    issuer = subject if profile["issuer"] is None else x509.Name([
        x509.NameAttribute(NameOID.DOMAIN_COMPONENT, PROFILES["roles"][profile["issuer"]]["dc"]),
        x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    path_length = profile.get("path_length") if pathlen == "same" else pathlen
    usages = profile["key_usage"] if ku is None else ku
    flags = {attr: name in usages for name, attr in pki.KEY_USAGE_ATTRS}
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days or profile["validity_days"]["default"]))
        .add_extension(x509.BasicConstraints(ca=profile["ca"], path_length=path_length), critical=bc_critical)
        .add_extension(x509.KeyUsage(encipher_only=False, decipher_only=False, **flags), critical=ku_critical)
    )
    if ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if aki and profile["issuer"] is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if extra_san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in extra_san]), critical=False)
    signer = key if profile["issuer"] is None else issuer_key
    return builder.sign(signer, hash_alg or hashes.SHA256())


def _deviations(cert, role=None):
    return pki_check.check_certificate(cert, role or pki_check.infer_role(cert)[0], PROFILES)


def test_the_broken_builder_makes_a_conforming_certificate_by_default():
    for role in ROLES:
        assert _deviations(_broken(role), role) == [], role


def test_show_flags_a_wrong_dc():
    cert = _broken("secc_leaf", dc="MO")
    assert _deviations(cert, "secc_leaf") == ["wrong domainComponent DC=MO, expected DC=CPO for secc_leaf"]
    assert _deviations(_broken("secc_leaf", dc=None), "secc_leaf") == [
        "subject has no domainComponent, expected DC=CPO"]


def test_show_flags_missing_critical_flags():
    assert _deviations(_broken(bc_critical=False)) == ["basicConstraints is not marked critical"]
    assert _deviations(_broken(ku_critical=False)) == ["keyUsage is not marked critical"]


def test_show_flags_a_wrong_pathlen():
    # CPO Sub-CA 2 with pathlen 1: the CN says Sub-CA 2, so it is checked as one.
    assert _deviations(_broken("cpo_sub_ca2", pathlen=1)) == ["wrong pathlen: 1, expected 0 for cpo_sub_ca2"]
    assert _deviations(_broken("mo_sub_ca1", pathlen=None)) == ["wrong pathlen: absent, expected 1 for mo_sub_ca1"]


def test_show_flags_wrong_key_usage():
    cert = _broken("mo_sub_ca2", ku=["keyCertSign", "cRLSign"])
    assert _deviations(cert) == [
        "wrong keyUsage keyCertSign, cRLSign (missing digitalSignature, nonRepudiation);"
        " expected digitalSignature, nonRepudiation, keyCertSign, cRLSign"]


def test_show_flags_size_algorithm_key_and_validity():
    big = _broken("secc_leaf", extra_san=["host%d.example.com" % i for i in range(30)])
    assert any(d.startswith("certificate is ") and d.endswith("over the 800-byte limit") for d in _deviations(big))
    assert _deviations(_broken(hash_alg=hashes.SHA384())) == [
        "signature algorithm is ecdsa-with-SHA384, expected ecdsa-with-SHA256"]
    assert _deviations(_broken(key=ec.generate_private_key(ec.SECP384R1()))) == [
        "public key is EC secp384r1 (384 bits), expected EC secp256r1"]
    assert _deviations(_broken("secc_leaf", days=365)) == [
        "validity of 365 days is longer than the profile's 93 days for secc_leaf"]
    assert _deviations(_broken("cpo_sub_ca2", ski=False, aki=False)) == [
        "subjectKeyIdentifier missing", "authorityKeyIdentifier (key identifier) missing"]


def test_show_flags_identifiers_in_cn():
    assert _deviations(_broken("contract_leaf", cn="DE-ABC-C123ABC56")) == []
    assert _deviations(_broken("contract_leaf", cn="DE-ABC")) == [
        "CN 'DE-ABC' is not an eMAID (ISO 15118-2 Annex H: 14-15 capital letters/digits, hyphens allowed)"]
    assert _deviations(_broken("oem_prov_leaf", cn="hubjectopenpnc0001")) == [
        "CN 'hubjectopenpnc0001' is not a PCID (18 capital letters or digits)"]


def test_show_command_reports_deviations_and_exit_status(tmp_path):
    path = tmp_path / "bad.pem"
    path.write_bytes(_broken("cpo_sub_ca2", pathlen=1, bc_critical=False).public_bytes(serialization.Encoding.PEM))
    out = io.StringIO()
    assert pki_command.main(["show", str(path)], out=out) == 1
    text = out.getvalue()
    assert "role                 cpo_sub_ca2" in text
    assert "    - basicConstraints is not marked critical\n" in text
    assert "    - wrong pathlen: 1, expected 0 for cpo_sub_ca2\n" in text
    out = io.StringIO()
    assert pki_command.main(["show", "--json", "--role", "cpo_sub_ca1", str(path)], out=out) == 1
    doc = json.loads(out.getvalue())
    assert doc["role"] == "cpo_sub_ca1" and doc["role_from"] == "given"
    assert doc["deviations"] == ["basicConstraints is not marked critical"]


def test_show_rejects_garbage_and_unknown_roles(tmp_path):
    path = tmp_path / "junk.der"
    path.write_bytes(b"\x30\x03\x02\x01\x00")
    with pytest.raises(PeerError, match="junk.der"):
        pki_command.main(["show", str(path)], out=io.StringIO())
    with pytest.raises(UsageError, match="unknown role"):
        pki_command.main(["show", "--role", "nope", str(path)], out=io.StringIO())
    with pytest.raises(PeerError, match="cannot read"):
        pki_command.main(["show", str(tmp_path / "missing.pem")], out=io.StringIO())


def test_show_of_our_pki_exits_zero(pki_dir):
    out = io.StringIO()
    files = [str(pki_dir / (r + ".der")) for r in ROLES] + [str(pki_dir / "secc_chain.pem")]
    assert pki_command.main(["show"] + files, out=out) == 0
    assert out.getvalue().count("conforms to the") == len(ROLES) + 3


# --- reference certificates --------------------------------------------------------------------------------


def _reference(path):
    if path.startswith(HUBJECT):
        need_shared(path)
    with open(path, "rb") as f:
        return pki_check.load_certificates(f.read(), path)[0]


def test_hubject_v2g_root_conforms_with_an_eku_note():
    cert = _reference(os.path.join(HUBJECT, "V2G_Root.pem"))
    assert pki_check.infer_role(cert)[0] == "v2g_root"
    assert _deviations(cert) == []
    assert any("OCSPSigning on a CA: not checked" in n for n in pki_check.notes(cert))


def test_hubject_sub_cas_and_provisioning_certificate_deviate():
    mo2 = _reference(os.path.join(HUBJECT, "MO_Sub_CA_2.pem"))
    assert pki_check.infer_role(mo2)[0] == "mo_sub_ca2"
    assert _deviations(mo2) == [
        "subject has no domainComponent, expected DC=MO",
        "wrong pathlen: 1, expected 0 for mo_sub_ca2",
        "wrong keyUsage keyCertSign, cRLSign (missing digitalSignature, nonRepudiation);"
        " expected digitalSignature, nonRepudiation, keyCertSign, cRLSign",
    ]
    prov = _reference(os.path.join(HUBJECT, "hubjectopenpnc0001.pem"))
    assert pki_check.infer_role(prov)[0] == "oem_prov_leaf"
    devs = _deviations(prov)
    assert "basicConstraints missing (expected critical, CA:false)" in devs
    assert "CN 'hubjectopenpnc0001' is not a PCID (18 capital letters or digits)" in devs
    cpo2 = _reference(os.path.join(HUBJECT, "CPO_Sub_CA_2.pem"))
    assert _deviations(cpo2) == []


def test_rise_v2g_certificates_are_signed_with_sha1():
    leaf = _reference(os.path.join(RISE, "cpsLeafCert.pem"))
    assert pki_check.infer_role(leaf)[0] == "cps_leaf"
    assert _deviations(leaf) == [
        "signature algorithm is ecdsa-with-SHA1, expected ecdsa-with-SHA256",
        "authorityKeyIdentifier (key identifier) missing",
    ]
    assert _deviations(_reference(os.path.join(RISE, "v2gRootCACert.pem"))) == []


# --- the command line -------------------------------------------------------------------------------------


def test_command_line_init_show_verify(tmp_path):
    target = tmp_path / "out"
    result = _run_cli("init", str(target), "--validity-days", "90", "--emaid", "DE-ABC-C123ABC56")
    assert result.returncode == 0, result.stderr
    assert "wrote a test PKI to" in result.stdout
    assert stat.S_IMODE(os.stat(target / "oem_prov_leaf.key").st_mode) == 0o600
    result = _run_cli("show", "--json", str(target / "contract_leaf.der"))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["role"] == "contract_leaf" and doc["deviations"] == [] and doc["der_bytes"] <= 800
    assert doc["subject"].startswith("CN=DE-ABC-C123ABC56,")
    result = _run_cli("verify", str(target / "secc_chain.pem"), "--root", str(target / "v2g_root.pem"), "--dc", "CPO")
    assert result.returncode == 0, result.stderr
    result = _run_cli("init", str(target))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "evpilot: error: %s already exists and is not empty; pass --force to replace it" % target]
    result = _run_cli("init", str(target), "--force")
    assert result.returncode == 0, result.stderr

