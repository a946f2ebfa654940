"""ISO 15118-2 test PKI: build one from the Annex F profiles, and check any certificate against them.

How this works
--------------
The profiles are data (certs/profiles.json, one entry per role: domain component, basicConstraints,
pathlen, keyUsage, validity, issuer role). `build_pki` walks the roles in issuer order, makes a P-256 key and
an X.509 v3 certificate for each (ecdsa-with-SHA256, critical keyUsage and basicConstraints, SKI, AKI on
everything that is not self-signed) and returns them in memory; `write_pki` puts DER, PEM, PKCS#8 keys,
chain files and index.json into a fresh temporary directory next to the target and renames it into place,
so a half-written PKI is never visible. `check_certificate` compares one certificate with its role's profile
and returns every deviation as one readable sentence; `infer_role` guesses the role from the subject's DC,
basicConstraints and names when the caller does not give it. `check_chain` does the checks the EV does on
a chain (plug-and-charge.md section 6) with cryptography's own signature and issuer checks.

EC key generation in cryptography takes no seed, so every run produces different keys, serials and
signatures; tests compare structure, never bytes.
"""

import datetime
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from evpilot.errors import PeerError, UsageError

# certs/profiles.json of the source tree; an installed evpilot carries a copy inside this package (setup.py).
# `pki init` writes to certs/out: the source tree's (git ignores it), or the current directory's when installed.
REPO_ROOT = Path(__file__).resolve().parents[2]
_INSTALLED_PROFILES = Path(__file__).resolve().parent / "certs" / "profiles.json"
if _INSTALLED_PROFILES.is_file():
    PROFILES_PATH = _INSTALLED_PROFILES
    DEFAULT_OUT = Path("certs", "out")
else:
    PROFILES_PATH = REPO_ROOT / "certs" / "profiles.json"
    DEFAULT_OUT = REPO_ROOT / "certs" / "out"

DEFAULT_EMAID = "DEABCC123ABC56"
DEFAULT_PCID = "EVPILOTTESTPCID001"
DEFAULT_SECC_ID = "DE*EVP*E0000001"

OEM_KEY_NOTE = "belongs on the device; generated here only for tests"

# Annex H eMAID: country (2 letters) + provider (3 alphanumerics) + instance (9 alphanumerics) + optional
# check character; the CN may carry hyphens between the parts, the wire form has none.
_EMAID_RE = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}[A-Z0-9]{9}[A-Z0-9]?$")
_PCID_RE = re.compile(r"^[A-Z0-9]{18}$")

# RFC 5280 keyUsage names <-> cryptography's KeyUsage attributes.
KEY_USAGE_ATTRS = (
    ("digitalSignature", "digital_signature"),
    ("nonRepudiation", "content_commitment"),
    ("keyEncipherment", "key_encipherment"),
    ("dataEncipherment", "data_encipherment"),
    ("keyAgreement", "key_agreement"),
    ("keyCertSign", "key_cert_sign"),
    ("cRLSign", "crl_sign"),
)

_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
}


# ---------------------------------------------------------------------------------------------------------
# Profiles


def load_profiles(path=None):
    path = Path(path) if path else PROFILES_PATH
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise UsageError("cannot read the certificate profiles %s: %s" % (path, e.strerror)) from None
    except ValueError as e:
        raise UsageError("certificate profiles %s are not valid JSON: %s" % (path, e)) from None
    roles = data.get("roles")
    if not isinstance(roles, dict) or not roles:
        raise UsageError("certificate profiles %s: no 'roles'" % path)
    for name, profile in roles.items():
        issuer = profile.get("issuer")
        if issuer is not None and issuer not in roles:
            raise UsageError("certificate profiles: role %s names an unknown issuer %s" % (name, issuer))
        for usage in profile.get("key_usage", ()):
            if usage not in dict(KEY_USAGE_ATTRS):
                raise UsageError("certificate profiles: role %s has an unknown key usage %s" % (name, usage))
    return data


def issuer_order(profiles):
    """Role names so that every issuer comes before what it signs."""
    roles = profiles["roles"]
    done, order = set(), []

    def visit(name, depth=0):
        if name in done:
            return
        if depth > len(roles):
            raise UsageError("certificate profiles: issuer loop at role %s" % name)
        issuer = roles[name].get("issuer")
        if issuer:
            visit(issuer, depth + 1)
        done.add(name)
        order.append(name)

    for name in roles:
        visit(name)
    return order


def validate_emaid(emaid):
    if not _EMAID_RE.match(emaid.replace("-", "")):
        raise UsageError(
            "eMAID %r is not an ISO 15118-2 Annex H eMAID (2 letters country, 3 provider, 9 instance, optional"
            " check character; capital letters and digits, hyphens allowed between the parts)" % emaid
        )
    return emaid


def validate_pcid(pcid):
    if not _PCID_RE.match(pcid):
        raise UsageError("PCID %r is not 18 capital letters or digits" % pcid)
    return pcid


# ---------------------------------------------------------------------------------------------------------
# Building


class Issued:
    """One generated certificate with its key."""

    def __init__(self, role, certificate, key):
        self.role = role
        self.certificate = certificate
        self.key = key

    @property
    def der(self):
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self):
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self):
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _key_usage(names):
    flags = {attr: (name in names) for name, attr in KEY_USAGE_ATTRS}
    return x509.KeyUsage(encipher_only=False, decipher_only=False, **flags)


def _subject(profile, cn, organization):
    return x509.Name(
        [
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, profile["dc"]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def build_pki(profiles=None, now=None, emaid=DEFAULT_EMAID, pcid=DEFAULT_PCID, secc_id=DEFAULT_SECC_ID,
              contract_days=None):
    """Every role of the profiles, issued in order. Returns {role: Issued}."""
    profiles = profiles or load_profiles()
    roles = profiles["roles"]
    common = profiles.get("common", {})
    organization = common.get("organization", "evpilot test PKI")
    max_bytes = common.get("max_der_bytes", 800)
    validate_emaid(emaid)
    validate_pcid(pcid)
    if not secc_id or len(secc_id) > 64:
        raise UsageError("SECC id must be 1 to 64 characters")
    now = (now or datetime.datetime.now(datetime.timezone.utc)).replace(microsecond=0)
    not_before = now - datetime.timedelta(minutes=5)  # a little slack for clocks that lag
    identities = {"emaid": emaid, "pcid": pcid, "secc_id": secc_id}
    if contract_days is not None:
        limits = roles["contract_leaf"]["validity_days"]
        low, high = limits.get("min", 1), limits.get("max")
        if contract_days < low or (high is not None and contract_days > high):
            raise UsageError("contract validity must be %s to %s days, not %s" % (low, high, contract_days))

    issued = {}
    for role in issuer_order(profiles):
        profile = roles[role]
        days = profile["validity_days"]["default"]
        if role == "contract_leaf" and contract_days is not None:
            days = contract_days
        parent = issued[profile["issuer"]] if profile.get("issuer") else None
        cn = identities.get(profile["cn"], profile["cn"])
        item = issue(role, profile, cn, parent, not_before, days, organization)
        if len(item.der) > max_bytes:
            raise UsageError("%s is %d bytes DER, over the %d-byte limit" % (role, len(item.der), max_bytes))
        issued[role] = item
    return issued


def issue(role, profile, cn, parent, not_before, days, organization, key=None):
    """One certificate of `role` (its profile from profiles.json) for a fresh P-256 key (or `key`), signed by
    `parent` (an Issued; None: self-signed), valid from not_before for `days` but never past its issuer."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = _subject(profile, cn, organization)
    not_after = not_before + datetime.timedelta(days=days)
    if parent is not None:
        issuer_name, signing_key = parent.certificate.subject, parent.key
        not_after = min(not_after, parent.certificate.not_valid_after_utc)  # never outlive the issuer
    else:
        issuer_name, signing_key = subject, key
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=profile["ca"], path_length=profile.get("path_length")),
                       critical=True)
        .add_extension(_key_usage(profile["key_usage"]), critical=True)
        .add_extension(ski, critical=False)
    )
    if parent is not None:
        parent_ski = parent.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(parent_ski), critical=False
        )
    return Issued(role, builder.sign(signing_key, hashes.SHA256()), key)


def issue_contract(mo_sub_ca2, emaid, now=None, days=None, profiles=None):
    """A new contract certificate and key for `emaid`, signed by MO Sub-CA 2 (an Issued): what a backend
    hands the certificate provisioning service for CertificateInstallationRes / UpdateRes."""
    profiles = profiles or load_profiles()
    validate_emaid(emaid)
    profile = profiles["roles"]["contract_leaf"]
    organization = profiles.get("common", {}).get("organization", "evpilot test PKI")
    now = (now or datetime.datetime.now(datetime.timezone.utc)).replace(microsecond=0)
    days = days or profile["validity_days"]["default"]
    return issue("contract_leaf", profile, emaid, mo_sub_ca2, now - datetime.timedelta(minutes=5), days,
                 organization)


def fingerprint(certificate):
    return certificate.fingerprint(hashes.SHA256()).hex()


def _iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cert_record(item, path, fmt):
    c = item.certificate
    return {
        "path": path,
        "kind": "certificate",
        "format": fmt,
        "role": item.role,
        "subject": c.subject.rfc4514_string(),
        "issuer": c.issuer.rfc4514_string(),
        "serial": "%x" % c.serial_number,
        "not_before": _iso(c.not_valid_before_utc),
        "not_after": _iso(c.not_valid_after_utc),
        "der_bytes": len(item.der),
        "sha256": fingerprint(c),
    }


def _write(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, mode)  # the umask must not loosen or tighten what we asked for


def write_pki(directory, issued, profiles=None, force=False):
    """Write the PKI under `directory` atomically. Returns the index (also written as index.json)."""
    profiles = profiles or load_profiles()
    directory = Path(directory)
    if directory.exists() or directory.is_symlink():
        if not directory.is_dir():
            raise UsageError("%s exists and is not a directory" % directory)
        if any(directory.iterdir()) and not force:
            raise UsageError("%s already exists and is not empty; pass --force to replace it" % directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="." + directory.name + ".tmp-", dir=directory.parent))
    try:
        files = []
        for role, item in issued.items():
            _write(tmp / (role + ".der"), item.der)
            files.append(_cert_record(item, role + ".der", "DER"))
            _write(tmp / (role + ".pem"), item.pem)
            files.append(_cert_record(item, role + ".pem", "PEM"))
            _write(tmp / (role + ".key"), item.key_pem, 0o600)
            record = {"path": role + ".key", "kind": "private key", "format": "PKCS#8 PEM, unencrypted",
                      "role": role, "for": role + ".pem", "mode": "0600"}
            if role == "oem_prov_leaf":
                record["note"] = OEM_KEY_NOTE
            files.append(record)
        for name, chain in profiles.get("chains", {}).items():
            if not all(r in issued for r in chain["roles"]):
                continue
            _write(tmp / (name + ".pem"), b"".join(issued[r].pem for r in chain["roles"]))
            files.append({"path": name + ".pem", "kind": "chain", "format": "PEM",
                          "certificates": list(chain["roles"]), "root": chain.get("root"),
                          "use": chain.get("use", "")})
        index = {
            "generator": "evpilot pki init",
            "profiles": "certs/profiles.json",
            "note": "test PKI only; EC keys are random, so every run differs",
            "files": files,
        }
        _write(tmp / "index.json", (json.dumps(index, indent=2) + "\n").encode())
        os.chmod(tmp, 0o700)  # holds private keys
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix="." + directory.name + ".old-", dir=directory.parent))
            os.rename(directory, old / "pki")
            os.rename(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return index


# ---------------------------------------------------------------------------------------------------------
# Reading and inspecting


def load_certificates(data, name="input"):
    """All certificates in a PEM (one or more blocks) or DER blob."""
    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as e:
            raise PeerError("%s: not a readable PEM certificate (%s)" % (name, e)) from None
        return certs
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError as e:
        raise PeerError("%s: neither PEM nor a readable DER certificate (%s)" % (name, e)) from None


def _ext(certificate, cls):
    try:
        return certificate.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def _attrs(name, oid):
    return [a.value for a in name.get_attributes_for_oid(oid)]


def key_usage_names(value):
    names = []
    for name, attr in KEY_USAGE_ATTRS:
        if getattr(value, attr):
            names.append(name)
    if value.key_agreement:
        if value.encipher_only:
            names.append("encipherOnly")
        if value.decipher_only:
            names.append("decipherOnly")
    return names


def _key_description(certificate):
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC %s (%d bits)" % (key.curve.name, key.curve.key_size)
    return "%s (%s bits)" % (type(key).__name__.lstrip("_"), getattr(key, "key_size", "?"))


def _is_self_issued(certificate):
    return certificate.issuer == certificate.subject


def describe(certificate):
    """A plain-data summary of a certificate (the JSON view of `evpilot pki show`)."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    extensions = []
    for ext in certificate.extensions:
        value = ext.value
        name = getattr(ext.oid, "_name", None) or ext.oid.dotted_string
        if isinstance(value, x509.BasicConstraints):
            text = "CA:%s" % ("true" if value.ca else "false")
            if value.path_length is not None:
                text += ", pathlen:%d" % value.path_length
        elif isinstance(value, x509.KeyUsage):
            text = ", ".join(key_usage_names(value))
        elif isinstance(value, x509.SubjectKeyIdentifier):
            text = value.digest.hex()
        elif isinstance(value, x509.AuthorityKeyIdentifier):
            text = value.key_identifier.hex() if value.key_identifier else "(no key identifier)"
        elif isinstance(value, x509.ExtendedKeyUsage):
            text = ", ".join(_EKU_NAMES.get(o, o.dotted_string) for o in value)
        else:
            text = str(value)
            if len(text) > 120:
                text = text[:117] + "..."
        extensions.append({"name": name, "oid": ext.oid.dotted_string, "critical": ext.critical, "value": text})
    ski = _ext(certificate, x509.SubjectKeyIdentifier)
    aki = _ext(certificate, x509.AuthorityKeyIdentifier)
    sig_oid = certificate.signature_algorithm_oid
    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "version": certificate.version.name,
        "serial": "%x" % certificate.serial_number,
        "not_before": _iso(certificate.not_valid_before_utc),
        "not_after": _iso(certificate.not_valid_after_utc),
        "validity_days": round(
            (certificate.not_valid_after_utc - certificate.not_valid_before_utc).total_seconds() / 86400, 2
        ),
        "public_key": _key_description(certificate),
        "signature_algorithm": getattr(sig_oid, "_name", None) or sig_oid.dotted_string,
        "extensions": extensions,
        "ski": ski.value.digest.hex() if ski else None,
        "aki": aki.value.key_identifier.hex() if aki and aki.value.key_identifier else None,
        "sha256": fingerprint(certificate),
        "der_bytes": len(der),
    }


# ---------------------------------------------------------------------------------------------------------
# Role inference and profile check


def _name_tokens(text):
    """Upper-case words of a name, splitting camel case: 'CPOSubCA1' -> CPO SUB CA 1."""
    text = text.replace("V2G", " V2G ").replace("v2g", " V2G ")
    words = re.findall(r"V2G|[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", text)
    return [w.upper() for w in words]


_DOMAIN_WORDS = {"CPO": "CPO", "CPS": "CPS", "PROV": "CPS", "MO": "MO", "OEM": "OEM", "V2G": "V2G"}


def _domain_from_name(name):
    for cn in _attrs(name, NameOID.COMMON_NAME):
        for word in _name_tokens(cn):
            if word in _DOMAIN_WORDS:
                return _DOMAIN_WORDS[word]
    return None


def _sub_ca_number_from_name(name):
    for cn in _attrs(name, NameOID.COMMON_NAME):
        m = re.search(r"sub[\s_-]*(?:ca)?[\s_-]*([12])", cn, re.IGNORECASE)
        if m:
            return int(m.group(1))
    return None


# (domain, kind) -> role; kind is root, sub1, sub2 or leaf. DC=V2G sub-CAs are the CPO's.
_ROLE_BY_DOMAIN = {
    ("V2G", "root"): "v2g_root", ("V2G", "sub1"): "cpo_sub_ca1", ("V2G", "sub2"): "cpo_sub_ca2",
    ("CPO", "sub1"): "cpo_sub_ca1", ("CPO", "sub2"): "cpo_sub_ca2", ("CPO", "leaf"): "secc_leaf",
    ("CPS", "sub1"): "cps_sub_ca1", ("CPS", "sub2"): "cps_sub_ca2", ("CPS", "leaf"): "cps_leaf",
    ("MO", "root"): "mo_root", ("MO", "sub1"): "mo_sub_ca1", ("MO", "sub2"): "mo_sub_ca2",
    ("MO", "leaf"): "contract_leaf",
    ("OEM", "root"): "oem_root", ("OEM", "sub1"): "oem_sub_ca1", ("OEM", "sub2"): "oem_sub_ca2",
    ("OEM", "leaf"): "oem_prov_leaf",
}


def infer_role(certificate):
    """(role or None, how it was inferred). Uses DC and basicConstraints; names only when those are missing."""
    how = []
    bc = _ext(certificate, x509.BasicConstraints)
    if _is_self_issued(certificate):
        kind = "root"
        how.append("self-issued")
    elif bc is not None and not bc.value.ca:
        kind = "leaf"
        how.append("CA:false")
    elif bc is None:
        kind = "leaf"
        how.append("no basicConstraints, taken as a leaf")
    else:
        number = _sub_ca_number_from_name(certificate.subject)
        if number is not None:
            how.append("'Sub-CA %d' in the CN" % number)
        elif bc.value.path_length in (0, 1):
            number = 2 - bc.value.path_length
            how.append("pathlen %d" % bc.value.path_length)
        else:
            issuer_is_root = any("ROOT" in _name_tokens(v) for v in _attrs(certificate.issuer, NameOID.COMMON_NAME))
            number = 1 if issuer_is_root else 2
            how.append("issued by a %s" % ("root" if issuer_is_root else "non-root CA"))
        kind = "sub%d" % number
    dcs = _attrs(certificate.subject, NameOID.DOMAIN_COMPONENT)
    domain = dcs[0].upper() if len(dcs) == 1 else None
    if domain is not None:
        how.insert(0, "DC=%s" % dcs[0])
    if (domain, kind) not in _ROLE_BY_DOMAIN:
        # No (usable) DC: fall back to the names, as real certificates sometimes lack the DC.
        guess = _domain_from_name(certificate.subject)
        source = "subject CN"
        if guess is None or (guess, kind) not in _ROLE_BY_DOMAIN:
            guess = _domain_from_name(certificate.issuer)
            source = "issuer CN"
        if guess is not None and (guess, kind) in _ROLE_BY_DOMAIN:
            domain = guess
            how.insert(0, "%s in the %s" % (guess, source))
    role = _ROLE_BY_DOMAIN.get((domain, kind))
    return role, ", ".join(how)


def check_certificate(certificate, role, profiles=None):
    """Deviations of `certificate` from the profile of `role`, each a sentence; empty when it conforms."""
    profiles = profiles or load_profiles()
    if role not in profiles["roles"]:
        raise UsageError("unknown role %s (known: %s)" % (role, ", ".join(profiles["roles"])))
    profile = profiles["roles"][role]
    common = profiles.get("common", {})
    problems = []

    if certificate.version != x509.Version.v3:
        problems.append("version is %s, expected X.509 v3" % certificate.version.name)
    if certificate.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        name = getattr(certificate.signature_algorithm_oid, "_name", certificate.signature_algorithm_oid.dotted_string)
        problems.append("signature algorithm is %s, expected ecdsa-with-SHA256" % name)
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        problems.append("public key is %s, expected EC secp256r1" % _key_description(certificate))
    size = len(certificate.public_bytes(serialization.Encoding.DER))
    limit = common.get("max_der_bytes", 800)
    if size > limit:
        problems.append("certificate is %d bytes DER, over the %d-byte limit" % (size, limit))

    # Subject: domain component and the identifier some roles carry in their CN.
    dcs = _attrs(certificate.subject, NameOID.DOMAIN_COMPONENT)
    if not dcs:
        problems.append("subject has no domainComponent, expected DC=%s" % profile["dc"])
    elif len(dcs) > 1:
        problems.append("subject has %d domainComponents (%s), expected only DC=%s"
                        % (len(dcs), ", ".join(dcs), profile["dc"]))
    elif dcs[0] != profile["dc"]:
        problems.append("wrong domainComponent DC=%s, expected DC=%s for %s" % (dcs[0], profile["dc"], role))
    cns = _attrs(certificate.subject, NameOID.COMMON_NAME)
    if len(cns) != 1:
        problems.append("subject has %d common names, expected one" % len(cns))
    elif profile.get("cn") == "emaid" and not _EMAID_RE.match(cns[0].replace("-", "")):
        problems.append("CN %r is not an eMAID (ISO 15118-2 Annex H: 14-15 capital letters/digits, hyphens allowed)"
                        % cns[0])
    elif profile.get("cn") == "pcid" and not _PCID_RE.match(cns[0]):
        problems.append("CN %r is not a PCID (18 capital letters or digits)" % cns[0])
    if profile.get("issuer") is None and not _is_self_issued(certificate):
        problems.append("a root must be self-issued (issuer == subject)")

    bc = _ext(certificate, x509.BasicConstraints)
    if bc is None:
        problems.append("basicConstraints missing (expected critical, CA:%s)" % ("true" if profile["ca"] else "false"))
    else:
        if not bc.critical:
            problems.append("basicConstraints is not marked critical")
        if bc.value.ca != profile["ca"]:
            problems.append("basicConstraints CA:%s, expected CA:%s"
                            % (str(bc.value.ca).lower(), str(profile["ca"]).lower()))
        elif "path_length" in profile and bc.value.path_length != profile["path_length"]:
            got = "absent" if bc.value.path_length is None else str(bc.value.path_length)
            want = "absent" if profile["path_length"] is None else str(profile["path_length"])
            problems.append("wrong pathlen: %s, expected %s for %s" % (got, want, role))

    ku = _ext(certificate, x509.KeyUsage)
    if ku is None:
        problems.append("keyUsage missing (expected critical %s)" % ", ".join(profile["key_usage"]))
    else:
        if not ku.critical:
            problems.append("keyUsage is not marked critical")
        got = key_usage_names(ku.value)
        want = profile["key_usage"]
        missing = [u for u in want if u not in got]
        extra = [u for u in got if u not in want]
        if missing or extra:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(missing))
            if extra:
                parts.append("unexpected " + ", ".join(extra))
            problems.append("wrong keyUsage %s (%s); expected %s"
                            % (", ".join(got) or "(none)", "; ".join(parts), ", ".join(want)))

    ski = _ext(certificate, x509.SubjectKeyIdentifier)
    if ski is None:
        problems.append("subjectKeyIdentifier missing")
    aki = _ext(certificate, x509.AuthorityKeyIdentifier)
    if profile.get("issuer") is not None and (aki is None or aki.value.key_identifier is None):
        problems.append("authorityKeyIdentifier (key identifier) missing")
    if profile.get("issuer") is None and aki is not None and ski is not None \
            and aki.value.key_identifier not in (None, ski.value.digest):
        problems.append("self-signed root whose authorityKeyIdentifier differs from its subjectKeyIdentifier")

    days = (certificate.not_valid_after_utc - certificate.not_valid_before_utc).total_seconds() / 86400
    limits = profile.get("validity_days", {})
    if limits.get("max") is not None and days > limits["max"] + 1:  # a day of slack for leap seconds and clocks
        problems.append("validity of %.0f days is longer than the profile's %d days for %s"
                        % (days, limits["max"], role))
    if limits.get("min") is not None and days < limits["min"] - 1:
        problems.append("validity of %.0f days is shorter than the profile's %d days for %s"
                        % (days, limits["min"], role))
    return problems


def notes(certificate, now=None):
    """Observations that are not profile deviations (expiry, EKU on a CA, ...)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    out = []
    if certificate.not_valid_after_utc < now:
        out.append("expired on %s" % _iso(certificate.not_valid_after_utc))
    elif certificate.not_valid_before_utc > now:
        out.append("not valid before %s" % _iso(certificate.not_valid_before_utc))
    eku = _ext(certificate, x509.ExtendedKeyUsage)
    bc = _ext(certificate, x509.BasicConstraints)
    if eku is not None:
        names = ", ".join(_EKU_NAMES.get(o, o.dotted_string) for o in eku.value)
        if bc is not None and bc.value.ca:
            out.append("extendedKeyUsage %s on a CA: not checked (plug-and-charge.md: no EKU checks on CAs)" % names)
        else:
            out.append("extendedKeyUsage %s: not part of the ISO 15118-2 profile" % names)
    return out


# ---------------------------------------------------------------------------------------------------------
# Chains


def check_chain(chain, anchors, now=None, leaf_dc=None):
    """What the EV checks on a chain (leaf first, without the root) against trust anchors.

    Returns a list of problems; empty means the chain is good. plug-and-charge.md section 6.
    """
    problems = []
    if not chain:
        return ["empty chain"]
    if len(chain) > 3:
        problems.append("%d Sub-CAs, at most 2 allowed" % (len(chain) - 1))
    anchor = None
    for a in anchors:
        if a.subject == chain[-1].issuer:
            anchor = a
            break
    if anchor is None:
        return problems + ["no trust anchor named %s" % chain[-1].issuer.rfc4514_string()]
    path = list(chain) + [anchor]
    for depth, (child, parent) in enumerate(zip(path, path[1:])):
        label = "certificate %d (%s)" % (depth, child.subject.rfc4514_string())
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as e:
            problems.append("%s: not issued by %s: %s" % (label, parent.subject.rfc4514_string(), e or "bad signature"))
        ski = _ext(parent, x509.SubjectKeyIdentifier)
        aki = _ext(child, x509.AuthorityKeyIdentifier)
        if ski is None or aki is None or aki.value.key_identifier != ski.value.digest:
            problems.append("%s: authorityKeyIdentifier does not match the issuer's subjectKeyIdentifier" % label)
        bc = _ext(parent, x509.BasicConstraints)
        ku = _ext(parent, x509.KeyUsage)
        if bc is None or not bc.value.ca:
            problems.append("issuer of %s is not a CA" % label)
        elif bc.value.path_length is not None and bc.value.path_length < depth:
            problems.append("issuer of %s allows pathlen %d, the chain needs %d" % (label, bc.value.path_length, depth))
        if ku is None or not ku.value.key_cert_sign:
            problems.append("issuer of %s lacks keyCertSign" % label)
        if now is not None and not (child.not_valid_before_utc <= now <= child.not_valid_after_utc):
            problems.append("%s is not valid at %s" % (label, _iso(now)))
    leaf_bc = _ext(chain[0], x509.BasicConstraints)
    if leaf_bc is None or leaf_bc.value.ca:
        problems.append("leaf is not CA:false")
    if leaf_dc is not None and _attrs(chain[0].subject, NameOID.DOMAIN_COMPONENT) != [leaf_dc]:
        problems.append("leaf DC is not %s" % leaf_dc)
    return problems
