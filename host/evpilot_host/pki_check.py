"""Checking certificates against the ISO 15118-2 Annex F profiles (`evpilot pki show`, `evpilot pki verify`).

How this works
--------------
`load_certificates` reads PEM or DER; `describe` summarises a certificate; `check_certificate` compares one
certificate with its role's profile (certs/profiles.json, through evpilot_host.pki.load_profiles) and returns
every deviation as one readable sentence; `infer_role` guesses the role from the subject's DC,
basicConstraints and names when the caller does not give it; `notes` says what else a reader should know
(validity, a key that belongs on the device); `check_chain` does the checks the EV does on a chain (ISO
15118-2 Annex F; the firmware's own version is evpilot.pnc.chain) with cryptography's signature and issuer
checks.
"""

import datetime
import re

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from evpilot.errors import PeerError, UsageError
from evpilot_host.pki import _EKU_NAMES, _EMAID_RE, _PCID_RE, KEY_USAGE_ATTRS, _iso, fingerprint, load_profiles


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
