# Certificate chain validation for the EV (ISO 15118-2 Annex F profiles, reference/plug-and-charge.md 6).
#
# How this works
# --------------
# validate(leaf, sub_cas, roots, now_s, purpose, verify) takes the chain as the messages carry it: the leaf,
# then its Sub-CAs starting with the leaf's issuer (SubCertificates = [Sub-CA 2, Sub-CA 1]), and the EV's
# trust anchors. It checks, in this order, and stops at the first failure:
#   1. at most 2 Sub-CAs; every certificate at most 800 bytes and well-formed;
#   2. every certificate is X.509 v3, signed with ecdsa-with-SHA256, carries no critical extension we do
#      not understand;
#   3. the leaf: CA:false, the key usage its purpose needs, the purpose's domain component (CPO, CPS, MO,
#      OEM); a contract's CN is an eMAID (and the expected one, when given);
#   4. each Sub-CA: CA:true with keyCertSign; pathLenConstraint allows the CAs below it, and for the SECC
#      and provisioning chains equals the profile's value (Sub-CA 2: 0, Sub-CA 1: 1);
#   5. each link: issuer name == next subject name, signature verifies with the next certificate's key;
#   6. the anchor: a root whose subject is the top issuer and whose key verifies the top certificate, a CA
#      with keyCertSign and the purpose's root domain (V2G; MO or V2G for contracts; OEM or V2G for OEM);
#   7. with trusted time only (now_s not None): notBefore <= now <= notAfter for every certificate.
# A failure raises ChainError (a PeerError) with a machine-readable `reason` and a message naming the
# certificate. Extended key usage is not checked: the Hubject V2G test root carries OCSPSigning.
# Signature checking is injected: verify(pub65, tbs_bytes, sig_raw64) -> bool (evpilot.pnc.p256.verify
# on the board), so this module needs no crypto of its own.

from evpilot.compat import const
from evpilot.errors import PeerError, UsageError
from evpilot.pnc import x509

MAX_SUB_CAS = const(2)  # ISO 15118-2: leaf + at most 2 Sub-CAs + root
MAX_PROFILE_SIZE = const(800)  # ISO 15118-2 Annex F: DER certificate size limit

# purpose -> (leaf DC, accepted root DCs, leaf key usage needed, exact Sub-CA pathlen profile)
_PURPOSES = {
    "secc": ("CPO", ("V2G",), x509.KU_DIGITAL_SIGNATURE, True),
    "cps": ("CPS", ("V2G",), x509.KU_DIGITAL_SIGNATURE, True),
    "contract": ("MO", ("MO", "V2G"), x509.KU_DIGITAL_SIGNATURE, False),
    "oem": ("OEM", ("OEM", "V2G"), x509.KU_DIGITAL_SIGNATURE, False),
}

_LEAF_NAMES = {"secc": "SECC leaf", "cps": "CPS leaf", "contract": "contract", "oem": "OEM provisioning"}
_KNOWN_CRITICAL = (x509.OID_BASIC_CONSTRAINTS, x509.OID_KEY_USAGE, x509.OID_SKI, x509.OID_AKI, x509.OID_EKU)


class ChainError(PeerError):
    """A chain the EV must not trust. `reason` is one of: too_many_subcas, oversized, malformed, algorithm,
    version, critical_extension, leaf_is_ca, key_usage, wrong_dc, emaid, emaid_mismatch, not_ca, pathlen,
    issuer_mismatch, bad_signature, unknown_root, expired, not_yet_valid. `position` is 0 for the leaf,
    1.. for Sub-CAs (1 = the leaf's issuer) and "root"."""

    def __init__(self, reason, message, position=None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.position = position


def emaid_from_cn(cn):
    """The wire form of an eMAID written in a certificate CN (hyphens removed), or None if the CN is not one.
    Annex H: country (2 letters) + provider (3) + instance (9) + optional check character: 14-15 characters."""
    if cn is None:
        return None
    e = cn.replace("-", "")
    if len(e) not in (14, 15):
        return None
    for i, ch in enumerate(e):
        if not ("A" <= ch <= "Z" or "a" <= ch <= "z" or (i >= 2 and "0" <= ch <= "9")):
            return None
    return e


def matches_emaid(cn, emaid):
    """True when the contract certificate CN names this eMAID (hyphens ignored, letters case-insensitive)."""
    e = emaid_from_cn(cn)
    if e is None or emaid is None:
        return False
    return e.upper() == emaid.replace("-", "").upper()


def _name_of(purpose, pos):
    if pos == 0:
        return _LEAF_NAMES[purpose]
    if pos == "root":
        return "root"
    return "Sub-CA %d" % (3 - pos)  # the leaf's issuer is Sub-CA 2 in a full chain


def _fail(reason, cert, purpose, pos, what):
    label = (" " + cert.label()) if cert is not None else ""
    raise ChainError(reason, _name_of(purpose, pos) + label + ": " + what, pos)


def _parse(data, purpose, pos):
    if isinstance(data, x509.Certificate):
        cert = data
    else:
        if len(data) > MAX_PROFILE_SIZE:
            _fail("oversized", None, purpose, pos, "%d bytes, over the %d of ISO 15118-2" % (len(data),
                                                                                          MAX_PROFILE_SIZE))
        try:
            cert = x509.parse(data)
        except x509.CertificateError as e:
            _fail(e.reason, None, purpose, pos, e.message)
    if len(cert.der) > MAX_PROFILE_SIZE:
        _fail("oversized", cert, purpose, pos, "%d bytes, over the %d of ISO 15118-2" % (len(cert.der),
                                                                                      MAX_PROFILE_SIZE))
    return cert


def _profile(cert, purpose, pos):
    if cert.version != 3:
        _fail("version", cert, purpose, pos, "X.509 version %d, not 3" % cert.version)
    if cert.signature_algorithm != x509.OID_ECDSA_SHA256:
        _fail("algorithm", cert, purpose, pos,
              "signed with %s, not ecdsa-with-SHA256" % cert.signature_algorithm)
    oid = cert.unknown_critical(_KNOWN_CRITICAL)
    if oid is not None:
        _fail("critical_extension", cert, purpose, pos, "unknown critical extension " + oid)


def _has_dc(cert, allowed):
    for v in cert.dc:
        if v.upper() in allowed:
            return True
    return False


def _issued_by(child, parent):
    """child's issuer is parent's subject: the same DER, or the same attributes (another string encoding)."""
    return child.issuer_der == parent.subject_der or child.issuer == parent.subject


def validate(leaf_der, sub_ca_ders, roots, now_s, purpose, verify, emaid=None):
    """Validate leaf + Sub-CAs (leaf's issuer first) against `roots` (DER bytes or parsed Certificates).
    Returns [leaf, Sub-CAs..., root] as x509.Certificate objects; raises ChainError."""
    spec = _PURPOSES.get(purpose)
    if spec is None:
        raise UsageError("chain.validate: unknown purpose %r" % (purpose,))
    if not callable(verify):
        raise UsageError("chain.validate: verify must be a function (pub65, tbs, sig64) -> bool")
    leaf_dc, root_dcs, leaf_usage, exact_pathlen = spec
    subs_in = list(sub_ca_ders or ())
    if len(subs_in) > MAX_SUB_CAS:
        raise ChainError("too_many_subcas", "%d Sub-CAs, ISO 15118-2 allows at most %d" % (len(subs_in),
                                                                                         MAX_SUB_CAS), 1)
    # 1-2: form and profile of every certificate the peer sent.
    chain = [_parse(leaf_der, purpose, 0)]
    for i, d in enumerate(subs_in):
        chain.append(_parse(d, purpose, i + 1))
    for pos, cert in enumerate(chain):
        _profile(cert, purpose, pos)

    # 3: the leaf.
    leaf = chain[0]
    if leaf.ca:
        _fail("leaf_is_ca", leaf, purpose, 0, "basicConstraints CA:true on a leaf")
    if leaf.key_usage is None or not leaf.has_key_usage(leaf_usage):
        _fail("key_usage", leaf, purpose, 0, "keyUsage %s lacks digitalSignature" % (leaf.key_usage_names(),))
    if not _has_dc(leaf, (leaf_dc,)):
        _fail("wrong_dc", leaf, purpose, 0, "domain component %s, expected %s" % (leaf.dc, leaf_dc))
    if purpose == "contract":
        if emaid_from_cn(leaf.cn) is None:
            _fail("emaid", leaf, purpose, 0, "CN is not an eMAID (14-15 characters without hyphens)")
        if emaid is not None and not matches_emaid(leaf.cn, emaid):
            _fail("emaid_mismatch", leaf, purpose, 0, "CN does not name the eMAID " + emaid)

    # 4: the Sub-CAs; chain[pos] has pos - 1 CAs below it before the leaf.
    n = len(chain)
    for pos in range(1, n):
        ca = chain[pos]
        if not ca.ca:
            _fail("not_ca", ca, purpose, pos, "issues a certificate but is not a CA")
        if not ca.has_key_usage(x509.KU_KEY_CERT_SIGN):
            _fail("key_usage", ca, purpose, pos, "CA without keyCertSign")
        below = pos - 1
        if ca.pathlen is not None and ca.pathlen < below:
            _fail("pathlen", ca, purpose, pos, "pathLenConstraint %d but %d CA(s) below" % (ca.pathlen, below))
        if exact_pathlen and ca.pathlen != below:
            _fail("pathlen", ca, purpose, pos, "pathLenConstraint %s, the profile requires %d" % (ca.pathlen,
                                                                                                 below))

    # 5: the links.
    for pos in range(n - 1):
        child = chain[pos]
        parent = chain[pos + 1]
        if not _issued_by(child, parent):
            _fail("issuer_mismatch", child, purpose, pos,
                  "issuer '%s' is not the next subject '%s'" % (child.issuer_string, parent.subject_string))
        if not verify(parent.public_key, child.tbs, child.signature):
            _fail("bad_signature", child, purpose, pos, "signature does not verify with " + parent.label())

    # 6: the trust anchor.
    top = chain[n - 1]
    candidates = []
    for r in roots or ():
        root = r if isinstance(r, x509.Certificate) else x509.parse(r)
        if _issued_by(top, root):
            candidates.append(root)
    if not candidates:
        _fail("unknown_root", top, purpose, n - 1, "issuer '%s' is none of the trusted roots" % top.issuer_string)
    anchor = None
    for root in candidates:
        if verify(root.public_key, top.tbs, top.signature):
            anchor = root
            break
    if anchor is None:
        _fail("bad_signature", top, purpose, n - 1, "signature does not verify with any root named '%s'"
              % top.issuer_string)
    if not anchor.ca or not anchor.has_key_usage(x509.KU_KEY_CERT_SIGN):
        _fail("not_ca", anchor, purpose, "root", "trust anchor is not a CA with keyCertSign")
    if anchor.pathlen is not None and anchor.pathlen < n - 1:
        _fail("pathlen", anchor, purpose, "root", "pathLenConstraint %d but %d CA(s) below" % (anchor.pathlen,
                                                                                              n - 1))
    if not _has_dc(anchor, root_dcs):
        _fail("wrong_dc", anchor, purpose, "root", "domain component %s, expected one of %s" % (anchor.dc,
                                                                                               root_dcs))
    chain.append(anchor)

    # 7: validity, when the EV has trusted time.
    if now_s is not None:
        for pos, cert in enumerate(chain):
            p = "root" if pos == n else pos
            if now_s < cert.not_before:
                _fail("not_yet_valid", cert, purpose, p, "not valid before %d (now %d)" % (cert.not_before,
                                                                                          now_s))
            if now_s > cert.not_after:
                _fail("expired", cert, purpose, p, "expired at %d (now %d)" % (cert.not_after, now_s))
    return chain
