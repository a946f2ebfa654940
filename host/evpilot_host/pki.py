"""ISO 15118-2 test PKI: build one from the Annex F profiles (checking a certificate against them is
evpilot_host.pki_check).

How this works
--------------
The profiles are data (certs/profiles.json, one entry per role: domain component, basicConstraints,
pathlen, keyUsage, validity, issuer role). `build_pki` walks the roles in issuer order, makes a P-256 key and
an X.509 v3 certificate for each (ecdsa-with-SHA256, critical keyUsage and basicConstraints, SKI, AKI on
everything that is not self-signed) and returns them in memory; `write_pki` puts DER, PEM, PKCS#8 keys,
chain files and index.json into a fresh temporary directory next to the target and renames it into place,
so a half-written PKI is never visible.

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
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from evpilot.errors import UsageError

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
