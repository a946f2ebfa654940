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
    when the extension is absent; ca/pathlen are None without basicConstraints.

    Kept small on purpose (a board holds several at once while it checks a CertificateInstallationRes): the
    object keeps the DER it was parsed from (the caller's bytes, not a copy), the integers and the offsets
    of its parts; tbs, names, keys, the signature and the extension values are made from the DER each time
    they are read (parse() has checked all of them already, so reading them cannot fail)."""

    def __init__(self, data=b""):
        self._d = data
        self.version = 1
        self.serial = 0
        self.signature_algorithm = ""
        self.not_before = 0
        self.not_after = 0
        self.ca = None
        self.pathlen = None
        self.key_usage = None
        # Offsets into the DER: tbsCertificate, issuer, subject, extensions (the [3] content: 0, 0 without
        # them), signature BIT STRING content after its unused-bits octet, the public key point (65 bytes),
        # SKI and AKI keyIdentifier (start, end; 0, 0 when absent).
        self._at = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)

    def _part(self, i):
        at = self._at
        return self._d[at[i]:at[i + 1]]

    @property
    def der(self):
        return self._d

    @property
    def tbs(self):
        """The tbsCertificate exactly as received (what the issuer signed)."""
        return self._part(0)

    @property
    def issuer_der(self):
        return self._part(2)

    @property
    def subject_der(self):
        return self._part(4)

    @property
    def issuer_rdns(self):
        return _rdns(self._d, self._at[2], self._at[3], "tbsCertificate.issuer")

    @property
    def subject_rdns(self):
        return _rdns(self._d, self._at[4], self._at[5], "tbsCertificate.subject")

    @property
    def issuer(self):
        return [a for rdn in self.issuer_rdns for a in rdn]

    @property
    def subject(self):
        return [a for rdn in self.subject_rdns for a in rdn]

    @property
    def public_key(self):
        """The EC P-256 public key as the 65-byte uncompressed point."""
        p = self._at[10]
        return self._d[p:p + 65]

    @property
    def signature_der(self):
        return self._part(8)

    @property
    def signature(self):
        """The signature as raw r || s (64 bytes, the form XMLDSig uses); b"" when not ECDSA."""
        if not self.signature_algorithm.startswith("1.2.840.10045.4."):  # ecdsa-with-*
            return b""
        return _ecdsa_signature(self._part(8))

    @property
    def ski(self):
        return None if not self._at[12] else bytes(self._d[self._at[11]:self._at[12]])

    @property
    def aki(self):
        return None if not self._at[14] else bytes(self._d[self._at[13]:self._at[14]])

    @property
    def extensions(self):
        """{oid: critical} of every extension present."""
        out = {}
        self._each_extension(lambda oid, critical, r, field: out.__setitem__(oid, critical))
        return out

    @property
    def eku(self):
        found = []
        self._each_extension(lambda oid, critical, r, field: found.append(_eku(r, field)) if oid == OID_EKU
                             else None)
        return found[0] if found else None

    def _each_extension(self, fn):
        at = self._at
        if at[7]:
            _walk_extensions(der.Reader(self._d, "tbsCertificate.extensions", at[6], at[7]), fn)

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

    def unknown_critical(self, known):
        """The first critical extension whose OID is not in `known`, or None."""
        found = []
        self._each_extension(lambda oid, critical, r, field: found.append(oid) if critical and oid not in known
                             else None)
        return found[0] if found else None

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
    """Parse one DER certificate; raises CertificateError. The Certificate keeps `data` itself when it is
    bytes (a copy of a bytearray or memoryview), so parsing adds only a small object."""
    if len(data) > der.MAX_CERT_SIZE:
        raise CertificateError("oversized", "certificate of %d bytes (limit %d)" % (len(data), der.MAX_CERT_SIZE))
    try:
        return _parse(data if isinstance(data, bytes) else bytes(data))
    except der.DerError as e:
        raise CertificateError("malformed", str(e))


def _parse(data):
    c = Certificate(data)
    top = der.Reader(data, "Certificate")
    cert = top.enter(der.SEQUENCE, "Certificate")
    top.expect_end("Certificate (trailing data)")
    start = cert.pos
    tbs = cert.enter(der.SEQUENCE, "tbsCertificate")
    tbs_end = cert.pos

    if tbs.optional(der.context(0)):
        v = tbs.enter(der.context(0), "tbsCertificate.version")
        c.version = v.small_int("tbsCertificate.version", 2) + 1
        v.expect_end()
    c.serial = tbs.integer("tbsCertificate.serialNumber")
    inner_alg = _algorithm(tbs, "tbsCertificate.signature")
    issuer = _name(tbs, "tbsCertificate.issuer")
    validity = tbs.enter(der.SEQUENCE, "tbsCertificate.validity")
    c.not_before = validity.time("tbsCertificate.validity.notBefore")
    c.not_after = validity.time("tbsCertificate.validity.notAfter")
    validity.expect_end()
    subject = _name(tbs, "tbsCertificate.subject")
    point = _public_key(tbs)
    for n in (1, 2):  # issuerUniqueID, subjectUniqueID: allowed, unused
        if tbs.optional(der.context(n, False)):
            tbs.skip("tbsCertificate.uniqueID")
    ext = (0, 0)
    found = [0, 0, 0, 0]  # SKI, AKI keyIdentifier offsets
    if tbs.optional(der.context(3)):
        if c.version != 3:
            raise der.DerError("tbsCertificate.extensions", "extensions in a version %d certificate" % c.version)
        outer = tbs.enter(der.context(3), "tbsCertificate.extensions")
        ext = (outer.pos, outer.end)
        _extensions(outer, c, found)
    tbs.expect_end("tbsCertificate")

    c.signature_algorithm = _algorithm(cert, "signatureAlgorithm")
    if c.signature_algorithm != inner_alg:
        raise der.DerError("signatureAlgorithm", "differs from tbsCertificate.signature")
    value, unused = cert.bit_string("signatureValue")
    if unused:
        raise der.DerError("signatureValue", "not a whole number of octets")
    bits = (cert.pos - len(value), cert.pos)
    cert.expect_end("Certificate")
    if c.signature_algorithm.startswith("1.2.840.10045.4."):  # ecdsa-with-*
        _ecdsa_signature(value)  # checked now, made again from the DER when asked for
    c._at = (start, tbs_end, issuer[0], issuer[1], subject[0], subject[1], ext[0], ext[1], bits[0], bits[1],
             point, found[0], found[1], found[2], found[3])
    return c


def _content(r, tag, field):
    """(start, end) of the content of the next element, which must have `tag` (Reader.element without the
    view)."""
    t, start, stop = r.tlv(field)
    if t != tag:
        raise der.DerError(field, "expected tag 0x%02x, found 0x%02x" % (tag, t))
    return start, stop


def _algorithm(r, field):
    alg = r.enter(der.SEQUENCE, field)
    oid = alg.oid(field + ".algorithm")
    if oid.startswith("1.2.840.10045.4.3."):  # ecdsa-with-SHA2 family: parameters MUST be absent (RFC 5758)
        alg.expect_end(field + ".parameters")
    elif not alg.at_end():
        der.walk(alg, field + ".parameters")
    return oid


def _name(r, field):
    """(start, end) of the Name at the reader, after checking all of it."""
    start = r.pos
    _rdn_list(r.enter(der.SEQUENCE, field), field)
    return start, r.pos


def _rdns(data, start, end, field):
    """The RDNs of the Name at data[start:end] (checked by parse): lists of (oid, value)."""
    return _rdn_list(der.Reader(data, field, start, end).enter(der.SEQUENCE, field), field)


def _rdn_list(name, field):
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
    return rdns


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
    at = spki.pos - len(point)
    spki.expect_end(f)
    if unused or len(point) != 65 or point[0] != 4:
        raise der.DerError(f + ".subjectPublicKey", "not a 65-byte uncompressed P-256 point")
    x = int.from_bytes(point[1:33], "big")
    y = int.from_bytes(point[33:], "big")
    if x >= _P or y >= _P or (y * y - x * x * x + 3 * x - _B) % _P:
        raise der.DerError(f + ".subjectPublicKey", "point is not on the P-256 curve")
    return at


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


def _extensions(outer, c, found):
    """Check every extension; keep ca, pathlen and key_usage on c and the SKI / AKI keyIdentifier offsets in
    found."""
    seen = []

    def take(oid, critical, r, field):
        if oid in seen:
            raise der.DerError(field, "appears twice")
        seen.append(oid)
        if oid == OID_BASIC_CONSTRAINTS:
            _basic_constraints(r, c, field)
        elif oid == OID_KEY_USAGE:
            _key_usage(r, c, field)
        elif oid == OID_SKI:
            found[0], found[1] = _content(r, der.OCTET_STRING, field)
        elif oid == OID_AKI:
            _aki(r, found, field)
        elif oid == OID_EKU:
            _eku(r, field)
        else:
            der.walk(r, field)
        r.expect_end(field)

    _walk_extensions(outer, take)


def _walk_extensions(outer, fn):
    """fn(oid, critical, reader over extnValue, field) for each extension of the [3] content at `outer`."""
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
        start, stop = _content(e, der.OCTET_STRING, field + ".extnValue")
        e.expect_end(field)
        fn(oid, critical, der.Reader(e.data, field, start, stop), field)


def _eku(r, field):
    seq = r.enter(der.SEQUENCE, field)
    eku = []
    while not seq.at_end():
        eku.append(seq.oid(field + ".keyPurposeId"))
    if not eku:
        raise der.DerError(field, "empty extendedKeyUsage")
    return eku


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


def _aki(r, found, field):
    seq = r.enter(der.SEQUENCE, field)
    if seq.optional(der.context(0, False)):
        found[2], found[3] = _content(seq, der.context(0, False), field + ".keyIdentifier")
    if not seq.at_end():  # authorityCertIssuer [1], authorityCertSerialNumber [2]: checked, unused
        der.walk(seq, field)
    seq.expect_end(field)
