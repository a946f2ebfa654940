# X.509 v3 certificates (RFC 5280) as ISO 15118-2 Annex F profiles them, parsed from DER into a small object.
#
# How this works
# --------------
# parse(der) reads Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue } with the
# bounded reader of der.py and keeps what the EV needs: the tbsCertificate bytes exactly as received (what
# the issuer signed), names as ordered (oid, value) lists plus their RFC 4514 text (X509IssuerName), the
# validity in epoch seconds, the EC P-256 public key as the 65-byte uncompressed point, the extensions the
# profile uses (basicConstraints, keyUsage, subject/authority key identifiers, extendedKeyUsage) with their
# critical flags, and the signature both as DER and as raw r||s (64 bytes, the form XMLDSig uses).
#
# Parsing checks form, not policy: a well-formed certificate signed with ecdsa-with-SHA1 parses (RISE-V2G's
# test certificates are), and chain.py decides what the profile accepts. Only keys other than P-256 are
# refused here, because nothing downstream could use them. Errors are CertificateError (a PeerError) with a
# machine-readable `reason`: "malformed", "oversized" or "algorithm".

from evpilot.compat import const
from evpilot.errors import PeerError
from evpilot.pnc import der

try:
    import ubinascii as _binascii
except ImportError:
    import binascii as _binascii

OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_P256 = "1.2.840.10045.3.1.7"
OID_CN = "2.5.4.3"
OID_DC = "0.9.2342.19200300.100.1.25"
OID_BASIC_CONSTRAINTS = "2.5.29.19"
OID_KEY_USAGE = "2.5.29.15"
OID_SKI = "2.5.29.14"
OID_AKI = "2.5.29.35"
OID_EKU = "2.5.29.37"

# keyUsage named bits (RFC 5280 4.2.1.3), as bit masks of Certificate.key_usage.
KU_DIGITAL_SIGNATURE = const(0x001)
KU_NON_REPUDIATION = const(0x002)
KU_KEY_ENCIPHERMENT = const(0x004)
KU_DATA_ENCIPHERMENT = const(0x008)
KU_KEY_AGREEMENT = const(0x010)
KU_KEY_CERT_SIGN = const(0x020)
KU_CRL_SIGN = const(0x040)
KU_ENCIPHER_ONLY = const(0x080)
KU_DECIPHER_ONLY = const(0x100)
KEY_USAGE_NAMES = ("digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment",
                   "keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly")

# RFC 4514 short names (the set cryptography's rfc4514_string uses); other types print as dotted OIDs.
_SHORT_NAMES = {
    "2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.6": "C",
    "2.5.4.9": "STREET", OID_DC: "DC", "0.9.2342.19200300.100.1.1": "UID",
}

# P-256 curve: y^2 = x^3 - 3x + b over GF(p).
_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B


class CertificateError(PeerError):
    """A certificate we cannot accept; `reason` is machine-readable, the text says why."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
        self.message = message


class Certificate:
    """A parsed certificate. Names are lists of (oid, value) in DER order; key_usage is a KU_* mask or None
    when the extension is absent; ca/pathlen are None without basicConstraints."""

    def __init__(self):
        self.der = b""
        self.tbs = b""
        self.version = 1
        self.serial = 0
        self.signature_algorithm = ""
        self.issuer = []
        self.subject = []
        self.issuer_der = b""
        self.subject_der = b""
        self.issuer_rdns = []
        self.subject_rdns = []
        self.not_before = 0
        self.not_after = 0
        self.public_key = b""
        self.extensions = {}  # oid -> critical (bool), every extension present
        self.ca = None
        self.pathlen = None
        self.key_usage = None
        self.ski = None
        self.aki = None
        self.eku = None
        self.signature_der = b""
        self.signature = b""

    def attrs(self, oid, issuer=False):
        return [v for o, v in (self.issuer if issuer else self.subject) if o == oid]

    @property
    def cn(self):
        found = self.attrs(OID_CN)
        return found[0] if found else None

    @property
    def dc(self):
        """The subject's domain component values (ISO 15118: V2G, CPO, CPS, MO, OEM)."""
        return self.attrs(OID_DC)

    @property
    def issuer_string(self):
        return rfc4514(self.issuer_rdns)

    @property
    def subject_string(self):
        return rfc4514(self.subject_rdns)

    def has_key_usage(self, mask):
        return self.key_usage is not None and self.key_usage & mask == mask

    def critical(self, oid):
        return self.extensions.get(oid, False)

    def key_usage_names(self):
        if self.key_usage is None:
            return None
        return [n for i, n in enumerate(KEY_USAGE_NAMES) if self.key_usage & (1 << i)]

    def label(self):
        cn = self.cn
        return "'" + cn + "'" if cn is not None else "'" + self.subject_string + "'"


def pem_to_der(text):
    """DER of the first (or only) certificate in a PEM text (str or bytes)."""
    return pem_to_ders(text)[0]


def pem_to_ders(text):
    """DER of every CERTIFICATE block in a PEM text, in order."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode()
        except Exception:
            raise CertificateError("malformed", "PEM: not ASCII text")
    begin = "-----BEGIN CERTIFICATE-----"
    end = "-----END CERTIFICATE-----"
    found = []
    pos = 0
    while True:
        a = text.find(begin, pos)
        if a < 0:
            break
        b = text.find(end, a)
        if b < 0:
            raise CertificateError("malformed", "PEM: BEGIN CERTIFICATE without END")
        body = "".join(text[a + len(begin):b].split())
        # Check the alphabet first: CPython's a2b_base64 silently skips characters outside it.
        if not body or len(body) % 4 or any(not (ch.isalpha() or ch.isdigit() or ch in "+/=") or ord(ch) > 127
                                            for ch in body):
            raise CertificateError("malformed", "PEM: bad base64")
        try:
            found.append(_binascii.a2b_base64(body))
        except Exception:
            raise CertificateError("malformed", "PEM: bad base64")
        pos = b + len(end)
    if not found:
        raise CertificateError("malformed", "PEM: no CERTIFICATE block")
    return found


def rfc4514(rdns):
    """RFC 4514 text of a name: RDNs in reverse DER order, multi-valued ones joined with '+'."""
    parts = []
    for rdn in reversed(rdns):
        parts.append("+".join(_SHORT_NAMES.get(oid, oid) + "=" + _escape(value) for oid, value in rdn))
    return ",".join(parts)


def _escape(value):
    out = []
    last = len(value) - 1
    for i, c in enumerate(value):
        if c in '\\"+,;<>':
            out.append("\\" + c)
        elif c == "\x00":
            out.append("\\00")
        elif (i == 0 and c in "# ") or (i == last and c == " "):
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


def parse(data):
    """Parse one DER certificate; raises CertificateError."""
    if len(data) > der.MAX_CERT_SIZE:
        raise CertificateError("oversized", "certificate of %d bytes (limit %d)" % (len(data), der.MAX_CERT_SIZE))
    try:
        return _parse(data)
    except der.DerError as e:
        raise CertificateError("malformed", str(e))


def _parse(data):
    c = Certificate()
    top = der.Reader(data, "Certificate")
    cert = top.enter(der.SEQUENCE, "Certificate")
    top.expect_end("Certificate (trailing data)")
    c.der = bytes(data)
    start = cert.pos
    tbs = cert.enter(der.SEQUENCE, "tbsCertificate")
    c.tbs = bytes(cert.data[start:cert.pos])

    if tbs.optional(der.context(0)):
        v = tbs.enter(der.context(0), "tbsCertificate.version")
        c.version = v.small_int("tbsCertificate.version", 2) + 1
        v.expect_end()
    c.serial = tbs.integer("tbsCertificate.serialNumber")
    inner_alg = _algorithm(tbs, "tbsCertificate.signature")
    c.issuer_der, c.issuer_rdns = _name(tbs, "tbsCertificate.issuer")
    validity = tbs.enter(der.SEQUENCE, "tbsCertificate.validity")
    c.not_before = validity.time("tbsCertificate.validity.notBefore")
    c.not_after = validity.time("tbsCertificate.validity.notAfter")
    validity.expect_end()
    c.subject_der, c.subject_rdns = _name(tbs, "tbsCertificate.subject")
    c.issuer = [a for rdn in c.issuer_rdns for a in rdn]
    c.subject = [a for rdn in c.subject_rdns for a in rdn]
    c.public_key = _public_key(tbs)
    for n in (1, 2):  # issuerUniqueID, subjectUniqueID: allowed, unused
        if tbs.optional(der.context(n, False)):
            tbs.skip("tbsCertificate.uniqueID")
    if tbs.optional(der.context(3)):
        if c.version != 3:
            raise der.DerError("tbsCertificate.extensions", "extensions in a version %d certificate" % c.version)
        _extensions(tbs.enter(der.context(3), "tbsCertificate.extensions"), c)
    tbs.expect_end("tbsCertificate")

    c.signature_algorithm = _algorithm(cert, "signatureAlgorithm")
    if c.signature_algorithm != inner_alg:
        raise der.DerError("signatureAlgorithm", "differs from tbsCertificate.signature")
    bits, unused = cert.bit_string("signatureValue")
    if unused:
        raise der.DerError("signatureValue", "not a whole number of octets")
    cert.expect_end("Certificate")
    c.signature_der = bits
    if c.signature_algorithm.startswith("1.2.840.10045.4."):  # ecdsa-with-*
        c.signature = _ecdsa_signature(bits)
    return c


def _algorithm(r, field):
    alg = r.enter(der.SEQUENCE, field)
    oid = alg.oid(field + ".algorithm")
    if oid.startswith("1.2.840.10045.4.3."):  # ecdsa-with-SHA2 family: parameters MUST be absent (RFC 5758)
        alg.expect_end(field + ".parameters")
    elif not alg.at_end():
        der.walk(alg, field + ".parameters")
    return oid


def _name(r, field):
    start = r.pos
    name = r.enter(der.SEQUENCE, field)
    raw = bytes(r.data[start:r.pos])
    rdns = []
    while not name.at_end():
        rdn_r = name.enter(der.SET, field + ".rdn")
        rdn = []
        while not rdn_r.at_end():
            atv = rdn_r.enter(der.SEQUENCE, field + ".attribute")
            oid = atv.oid(field + ".attribute.type")
            tag = atv.peek()
            if tag in der._STRING_TAGS:
                value = atv.string(field + "." + _SHORT_NAMES.get(oid, oid))
            else:  # RFC 4514 2.4: an unknown value type prints as '#' and the hex of its encoding
                _, enc = atv.raw(field + ".attribute.value")
                value = "#" + _binascii.hexlify(enc).decode()
            atv.expect_end(field + ".attribute")
            rdn.append((oid, value))
        if not rdn:
            raise der.DerError(field, "empty RDN")
        rdns.append(rdn)
    return raw, rdns


def _public_key(tbs):
    f = "tbsCertificate.subjectPublicKeyInfo"
    spki = tbs.enter(der.SEQUENCE, f)
    alg = spki.enter(der.SEQUENCE, f + ".algorithm")
    key_oid = alg.oid(f + ".algorithm")
    if key_oid != OID_EC_PUBLIC_KEY:
        raise CertificateError("algorithm", "public key algorithm %s is not id-ecPublicKey" % key_oid)
    if alg.peek() != der.OID:
        raise CertificateError("algorithm", "EC public key without a named curve")
    curve = alg.oid(f + ".namedCurve")
    if curve != OID_P256:
        raise CertificateError("algorithm", "EC curve %s is not secp256r1 (1.2.840.10045.3.1.7)" % curve)
    alg.expect_end(f + ".algorithm")
    point, unused = spki.bit_string(f + ".subjectPublicKey")
    spki.expect_end(f)
    if unused or len(point) != 65 or point[0] != 4:
        raise der.DerError(f + ".subjectPublicKey", "not a 65-byte uncompressed P-256 point")
    x = int.from_bytes(point[1:33], "big")
    y = int.from_bytes(point[33:], "big")
    if x >= _P or y >= _P or (y * y - x * x * x + 3 * x - _B) % _P:
        raise der.DerError(f + ".subjectPublicKey", "point is not on the P-256 curve")
    return point


def _ecdsa_signature(bits):
    r = der.Reader(bits, "signatureValue")
    seq = r.enter(der.SEQUENCE, "signatureValue")
    r.expect_end("signatureValue")
    out = b""
    for part in ("r", "s"):
        v = seq.integer("signatureValue." + part)
        if v <= 0 or v >> 256:
            raise der.DerError("signatureValue." + part, "outside 1..2^256-1")
        out += v.to_bytes(32, "big")
    seq.expect_end("signatureValue")
    return out


def _extensions(outer, c):
    exts = outer.enter(der.SEQUENCE, "tbsCertificate.extensions")
    outer.expect_end("tbsCertificate.extensions")
    if exts.at_end():
        raise der.DerError("tbsCertificate.extensions", "empty extension list")
    while not exts.at_end():
        e = exts.enter(der.SEQUENCE, "extension")
        oid = e.oid("extension.extnID")
        field = "extension " + oid
        critical = False
        if e.optional(der.BOOLEAN):
            critical = e.boolean(field + ".critical")
        value = e.octet_string(field + ".extnValue")
        e.expect_end(field)
        if oid in c.extensions:
            raise der.DerError(field, "appears twice")
        c.extensions[oid] = critical
        r = der.Reader(value, field)
        if oid == OID_BASIC_CONSTRAINTS:
            _basic_constraints(r, c, field)
        elif oid == OID_KEY_USAGE:
            _key_usage(r, c, field)
        elif oid == OID_SKI:
            c.ski = r.octet_string(field)
        elif oid == OID_AKI:
            _aki(r, c, field)
        elif oid == OID_EKU:
            seq = r.enter(der.SEQUENCE, field)
            c.eku = []
            while not seq.at_end():
                c.eku.append(seq.oid(field + ".keyPurposeId"))
            if not c.eku:
                raise der.DerError(field, "empty extendedKeyUsage")
        else:
            der.walk(r, field)
        r.expect_end(field)


def _basic_constraints(r, c, field):
    seq = r.enter(der.SEQUENCE, field)
    c.ca = False
    if seq.optional(der.BOOLEAN):
        c.ca = seq.boolean(field + ".cA")
    if seq.optional(der.INTEGER):
        c.pathlen = seq.small_int(field + ".pathLenConstraint", 255)
    seq.expect_end(field)


def _key_usage(r, c, field):
    bits, unused = r.bit_string(field)
    if len(bits) > 2:
        raise der.DerError(field, "more than 16 bits")
    mask = 0
    for i in range(len(bits) * 8 - unused):
        if bits[i >> 3] & (0x80 >> (i & 7)):
            mask |= 1 << i
    c.key_usage = mask


def _aki(r, c, field):
    seq = r.enter(der.SEQUENCE, field)
    if seq.optional(der.context(0, False)):
        c.aki = bytes(seq.element(der.context(0, False), field + ".keyIdentifier"))
    if not seq.at_end():  # authorityCertIssuer [1], authorityCertSerialNumber [2]: checked, unused
        der.walk(seq, field)
    seq.expect_end(field)
