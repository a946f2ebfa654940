# The certificate provisioning service (CPS) of the station simulator: CertificateInstallationRes and
# CertificateUpdateRes for ISO 15118-2 Plug&Charge (reference/plug-and-charge.md 2-4).
#
# How this works
# --------------
# ProvisioningService answers one request body (a dict as evpilot.exi decodes it) plus the request's header
# Signature and the current time (epoch seconds, or None without trusted time):
#   1. the request signature: the whole Req element (by its Id), signed with the OEM provisioning key
#      (installation) or the current contract key (update), checked with evpilot.pnc.xmldsig.verify;
#   2. the requester's certificates: the OEM provisioning chain when OEM trust anchors are configured, the
#      current contract chain (eMAID == CN, chain to an MO or V2G root) for an update;
#   3. ListOfRootCertificateIDs must name one of the station's V2G roots, else the EV could not check the
#      CPS chain we would send (FAILED_NoCertificateAvailable; with no V2G roots configured nothing matches);
#   4. a contract from issue_contract(emaid_or_None, now_s) -> ([leaf, MO Sub-CA 2, MO Sub-CA 1], d, emaid);
#      it may return None (FAILED_NoCertificateAvailable) or raise Refusal(code, why), e.g.
#      FAILED_ContractCanceled;
#   5. an ephemeral P-256 key; Z = ECDH(ephemeral, the EV's static public key: OEM provisioning key, or the
#      old contract key for an update); ContractSignatureEncryptedPrivateKey = keytransport.encrypt_contract_key;
#   6. the response with Ids on ContractSignatureCertChain, ContractSignatureEncryptedPrivateKey,
#      DHpublickey and eMAID, and a header Signature over those four made with the CPS leaf key.
# A refusal is (body, None): the ISO-2 response code and schema-valid placeholders for the mandatory
# elements (empty binaries, the CPS chain, a 14-character placeholder eMAID); nothing is signed.
# ISO-2 has no "FAILED_CertificateExpiredOrRevoked": an expired or not yet valid certificate is answered
# FAILED_CertificateExpired, a revoked one (Refusal from issue_contract) FAILED_CertificateRevoked.
#
# Plain Python that MicroPython imports (the firmware tests run this service there too): only evpilot.*.

from evpilot.errors import PeerError, UsageError
from evpilot.pnc import chain, keytransport, p256, x509, xmldsig

OK = "OK"
FAILED = "FAILED"
SIGNATURE_ERROR = "FAILED_SignatureError"
NO_CERTIFICATE = "FAILED_NoCertificateAvailable"
CHAIN_ERROR = "FAILED_CertChainError"
EXPIRED = "FAILED_CertificateExpired"
REVOKED = "FAILED_CertificateRevoked"
CANCELED = "FAILED_ContractCanceled"

# The Ids of the four signed response elements (the response is its own message: no clash with the Req).
_IDS = ("id1", "id2", "id3", "id4")
_PLACEHOLDER_EMAID = "ZZ000000000000"  # eMAIDType needs 14-15 characters even in a refusal


class Refusal(PeerError):
    """Raised by issue_contract (or inside the service) to refuse with an ISO-2 response code."""

    def __init__(self, response_code, message):
        super().__init__(message)
        self.response_code = response_code
        self.message = message


def _default_rng(n):
    try:
        from os import urandom
    except ImportError:  # pragma: no cover - a port without os.urandom must pass rng=
        raise UsageError("no os.urandom here: give ProvisioningService an rng")
    return urandom(n)


def chain_code(e):
    """The ISO-2 response code for a ChainError."""
    if e.reason in ("expired", "not_yet_valid"):
        return EXPIRED
    return CHAIN_ERROR


def _cert_chain(ders, element_id=None):
    """CertificateChainType: the leaf, then SubCertificates [Sub-CA 2, Sub-CA 1] when there are any."""
    out = {}
    if element_id is not None:
        out["Id"] = element_id
    out["Certificate"] = bytes(ders[0])
    if len(ders) > 1:
        out["SubCertificates"] = {"Certificate": [bytes(d) for d in ders[1:]]}
    return out


def chain_ders(value, what):
    """[leaf, sub-CAs...] DERs of a received CertificateChainType; Refusal(FAILED_CertChainError)."""
    if not isinstance(value, dict) or not isinstance(value.get("Certificate"), (bytes, bytearray)):
        raise Refusal(CHAIN_ERROR, what + " has no Certificate")
    subs = (value.get("SubCertificates") or {}).get("Certificate") or []
    if not isinstance(subs, list):
        subs = [subs]
    for s in subs:
        if not isinstance(s, (bytes, bytearray)):
            raise Refusal(CHAIN_ERROR, what + ": a SubCertificates entry is not binary")
    return [bytes(value["Certificate"])] + [bytes(s) for s in subs]


def parse_certificate(data, what):
    try:
        return x509.parse(data)
    except x509.CertificateError as e:
        raise Refusal(CHAIN_ERROR, what + ": " + e.message)


def _norm_name(text):
    """An RFC 4514 name compared loosely: case and blanks around separators do not matter."""
    return ",".join(p.strip() for p in str(text).split(",")).lower()


class ProvisioningService:
    def __init__(self, cps_chain, cps_key, issue_contract, v2g_roots=(), oem_roots=(), rng=None, mo_roots=(),
                 retry_counter=None):
        """cps_chain: [CPS leaf, CPS Sub-CA 2, CPS Sub-CA 1] DERs; cps_key: the CPS leaf's 32-byte scalar.
        issue_contract(emaid_or_None, now_s) -> ([leaf, MO Sub-CA 2, MO Sub-CA 1] DERs, 32-byte key, emaid),
        None, or raises Refusal. v2g_roots: the V2G roots the CPS chain leads to (DER). oem_roots: OEM trust
        anchors, optionally with the OEM Sub-CAs the CPS knows (the request carries the leaf only); empty:
        the OEM chain is not checked. mo_roots: MO roots for the current contract chain of an update (the V2G
        roots then count too); without them only eMAID == CN is checked. retry_counter: RetryCounter of
        CertificateUpdateRes (None leaves it out). rng(n) -> n random bytes (default os.urandom)."""
        if not cps_chain:
            raise UsageError("cps_chain needs at least the CPS leaf")
        if not callable(issue_contract):
            raise UsageError("issue_contract must be a function (emaid_or_None, now_s) -> (chain, key, emaid)")
        self.cps_chain = [bytes(d) for d in cps_chain]
        self.cps_key = cps_key
        self.issue_contract = issue_contract
        self.rng = rng or _default_rng
        self.retry_counter = retry_counter
        self.v2g_roots = [r if isinstance(r, x509.Certificate) else x509.parse(r) for r in v2g_roots]
        self.mo_roots = [r if isinstance(r, x509.Certificate) else x509.parse(r) for r in mo_roots]
        self.oem_anchors = []
        self.oem_sub_cas = []
        for r in oem_roots:
            cert = r if isinstance(r, x509.Certificate) else x509.parse(r)
            if cert.issuer_der == cert.subject_der:
                self.oem_anchors.append(cert)
            else:
                self.oem_sub_cas.append(cert)
        self.last_error = None  # why the last request was refused (text), for logs and tests

    # ---- the two requests ----------------------------------------------------------------------------

    def installation(self, req, signature, now_s):
        """(CertificateInstallationRes body, header Signature or None) for a CertificateInstallationReq."""
        return self._answer("CertificateInstallationReq", req, signature, now_s)

    def update(self, req, signature, now_s):
        """(CertificateUpdateRes body, header Signature or None) for a CertificateUpdateReq."""
        return self._answer("CertificateUpdateReq", req, signature, now_s)

    def _answer(self, name, req, signature, now_s):
        self.last_error = None
        update = name == "CertificateUpdateReq"
        try:
            if not isinstance(req, dict):
                raise Refusal(FAILED, name + " is not an element")
            if update:
                static_pub, emaid = self._check_update(req, signature, now_s)
            else:
                static_pub, emaid = self._check_installation(req, signature, now_s), None
            self._check_root_ids(req.get("ListOfRootCertificateIDs"))
            issued = self.issue_contract(emaid, now_s)
            if issued is None:
                raise Refusal(NO_CERTIFICATE, "no contract available" + (" for " + emaid if emaid else ""))
            contract, d, new_emaid = issued
            return self._response(update, contract, d, new_emaid, static_pub)
        except Refusal as e:
            return self._refusal(update, e.response_code, str(e), req)
        except PeerError as e:  # our building blocks refusing the peer's data (UsageError is our bug: raised)
            code = e.response_code or FAILED
            return self._refusal(update, code, str(e), req)

    def _check_signature(self, name, req, signature, pub):
        req_id = req.get("Id")
        if not isinstance(req_id, str) or not req_id:
            raise Refusal(SIGNATURE_ERROR, name + " has no Id to sign")
        if signature is None:
            raise Refusal(SIGNATURE_ERROR, name + " is not signed (no header Signature)")
        try:
            xmldsig.verify(signature, xmldsig.by_id([(name, req)]), pub, [req_id])
        except xmldsig.SignatureError as e:
            raise Refusal(SIGNATURE_ERROR, name + ": " + e.message)

    def _check_installation(self, req, signature, now_s):
        """The OEM provisioning certificate's public key, once the request checks out."""
        cert_der = req.get("OEMProvisioningCert")
        if not isinstance(cert_der, (bytes, bytearray)):
            raise Refusal(CHAIN_ERROR, "CertificateInstallationReq has no OEMProvisioningCert")
        leaf = parse_certificate(bytes(cert_der), "OEMProvisioningCert")
        self._check_signature("CertificateInstallationReq", req, signature, leaf.public_key)
        if self.oem_anchors or self.oem_sub_cas:
            try:
                chain.validate(leaf, self._oem_path(leaf), self.oem_anchors, now_s, "oem", p256.verify)
            except chain.ChainError as e:
                raise Refusal(chain_code(e), "OEM provisioning chain: " + e.message)
        return leaf.public_key

    def _oem_path(self, leaf):
        """The Sub-CAs from the known OEM Sub-CAs that lead from the leaf towards an anchor (at most 2)."""
        path = []
        top = leaf
        while len(path) < chain.MAX_SUB_CAS:
            if any(a.subject_der == top.issuer_der for a in self.oem_anchors):
                break
            nxt = None
            for ca in self.oem_sub_cas:
                if ca.subject_der == top.issuer_der and ca not in path:
                    nxt = ca
                    break
            if nxt is None:
                break
            path.append(nxt)
            top = nxt
        return path

    def _check_update(self, req, signature, now_s):
        """(old contract public key, eMAID) once the CertificateUpdateReq checks out."""
        ders = chain_ders(req.get("ContractSignatureCertChain"), "ContractSignatureCertChain")
        leaf = parse_certificate(ders[0], "contract certificate")
        self._check_signature("CertificateUpdateReq", req, signature, leaf.public_key)
        emaid = req.get("eMAID")
        if isinstance(emaid, dict):  # eMAID with attributes decodes as {"CONTENT": ...}
            emaid = emaid.get("CONTENT")
        if not isinstance(emaid, str) or chain.emaid_from_cn(emaid) is None:
            raise Refusal(CHAIN_ERROR, "CertificateUpdateReq eMAID %r is not an eMAID" % (emaid,))
        if self.mo_roots:  # a contract may also chain to a V2G root
            try:
                chain.validate(leaf, ders[1:], self.mo_roots + self.v2g_roots, now_s, "contract", p256.verify,
                               emaid=emaid)
            except chain.ChainError as e:
                raise Refusal(chain_code(e), "current contract chain: " + e.message)
        elif not chain.matches_emaid(leaf.cn, emaid):
            raise Refusal(CHAIN_ERROR, "contract certificate CN %r does not name the eMAID %s" % (leaf.cn, emaid))
        return leaf.public_key, emaid.replace("-", "")

    def _check_root_ids(self, listed):
        ids = (listed or {}).get("RootCertificateID") if isinstance(listed, dict) else None
        if isinstance(ids, dict):
            ids = [ids]
        if not ids:
            raise Refusal(NO_CERTIFICATE, "ListOfRootCertificateIDs is empty")
        for entry in ids:
            if not isinstance(entry, dict):
                continue
            name = entry.get("X509IssuerName")
            serial = entry.get("X509SerialNumber")
            if name is None:
                continue
            name = _norm_name(name)
            for root in self.v2g_roots:
                if root.serial == serial and name in (_norm_name(root.issuer_string), _norm_name(root.subject_string)):
                    return root
        raise Refusal(NO_CERTIFICATE, "ListOfRootCertificateIDs names none of this station's V2G roots")

    # ---- responses ------------------------------------------------------------------------------------

    def _response(self, update, contract, d, emaid, static_pub):
        if not contract or not emaid:
            raise UsageError("issue_contract returned no chain or no eMAID")
        eph_d, eph_pub = p256.generate(self.rng)
        z = p256.ecdh(eph_d, static_pub)
        encrypted = keytransport.encrypt_contract_key(z, d, self.rng(16))
        elements = [
            ("ContractSignatureCertChain", _cert_chain(contract, _IDS[0])),
            ("ContractSignatureEncryptedPrivateKey", {"Id": _IDS[1], "CONTENT": encrypted}),
            ("DHpublickey", {"Id": _IDS[2], "CONTENT": eph_pub}),
            ("eMAID", {"Id": _IDS[3], "CONTENT": emaid}),
        ]
        body = {"ResponseCode": OK, "SAProvisioningCertificateChain": _cert_chain(self.cps_chain)}
        for name, element in elements:
            body[name] = element
        if update and self.retry_counter is not None:
            body["RetryCounter"] = self.retry_counter
        return body, xmldsig.sign(elements, self.cps_key)

    def _refusal(self, update, code, why, req):
        self.last_error = code + ": " + why
        emaid = None
        if update and isinstance(req, dict):
            emaid = req.get("eMAID")
            emaid = emaid.get("CONTENT") if isinstance(emaid, dict) else emaid
        return refusal(code, self.cps_chain, emaid, self.retry_counter if update else None), None


def refusal(code, cps_chain=None, emaid=None, retry_counter=None):
    """A CertificateInstallationRes / CertificateUpdateRes body that refuses with `code`: the mandatory
    elements hold placeholders (empty binaries, the CPS chain when given, `emaid` or a placeholder eMAID).
    retry_counter is for CertificateUpdateRes only (None: left out)."""
    if not isinstance(emaid, str) or not 14 <= len(emaid) <= 15:
        emaid = _PLACEHOLDER_EMAID
    body = {
        "ResponseCode": code,
        "SAProvisioningCertificateChain": _cert_chain(cps_chain) if cps_chain else {"Certificate": b""},
        "ContractSignatureCertChain": {"Id": _IDS[0], "Certificate": b""},
        "ContractSignatureEncryptedPrivateKey": {"Id": _IDS[1], "CONTENT": b""},
        "DHpublickey": {"Id": _IDS[2], "CONTENT": b""},
        "eMAID": {"Id": _IDS[3], "CONTENT": emaid},
    }
    if retry_counter is not None:
        body["RetryCounter"] = retry_counter
    return body
