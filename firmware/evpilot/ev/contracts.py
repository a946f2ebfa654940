# The EV's Plug&Charge contract logic for ISO 15118-2, over the certificate and key store.
#
# How this works
# --------------
# ContractManager is sans-I/O like the sessions: it builds request bodies with their header Signature and
# checks what the station sends, reading certificates and keys from a Store (store/keystore.py) and writing
# only through store/certs.py. The ISO-2 session (ev/iso2.py with ev/iso2_pnc.py) asks it, in order:
#   action()                  None, "install" (no usable contract: CertificateInstallation with the OEM
#                             provisioning key) or "update" (the contract expires within renew_days, the
#                             caller says so, or a station answered OK_CertificateExpiresSoon before)
#   installation_request()    (name, body, signature): Id, OEMProvisioningCert (the leaf only),
#                             ListOfRootCertificateIDs (X509IssuerSerial of every stored V2G root); signed
#                             with the OEM provisioning key
#   update_request()          the same for CertificateUpdateReq, signed with the current contract key
#   accept(name, body, signature)  CertificateInstallationRes / UpdateRes, checked in this order, then
#                             stored in one atomic step (an update replaces the old contract):
#                             1. shape; the four signed elements each with an Id
#                             2. header Signature: the four References, digests, SignedInfo signature with
#                                the CPS leaf's key (pnc.xmldsig)
#                             3. SAProvisioningCertificateChain to a stored V2G root (pnc.chain "cps")
#                             4. the new contract chain (pnc.chain "contract", CN == eMAID) to a stored MO
#                                or V2G root
#                             5. ECDH of DHpublickey with the OEM key (installation) or the old contract key
#                                (update), ConcatKDF, AES-128-CBC (pnc.keytransport); d*G == certificate key
#   payment_details_request()  eMAID + ContractSignatureCertChain (SubCertificates [Sub-CA 2, Sub-CA 1])
#   authorization_request(challenge)  Id + GenChallenge, signed with the contract key
#   check_sales_tariffs(tuples, signature)  the SalesTariffs of ChargeParameterDiscoveryRes against MO
#                             Sub-CA 2 of the contract chain; bad or unsigned ones are dropped (the caller
#                             runs under TLS, where ISO 15118-2 says to ignore them) and the reason returned
#   metering_receipt_request(session_id, schedule_id, meter_info)  signed with the contract key
# Any failure in accept() raises PncError (a PeerError) with `stage` (response, signature, cps_chain,
# contract_chain, key, store) and `reason` (the checker's own reason: expired, digest, mismatch, ...);
# nothing is written before every check passed, so the stored contract stays as it was.
#
# Keys stay home: private keys are read from the store for one signature or one ECDH and never kept on
# this object; no message, repr or log line carries key bytes.

from evpilot.compat import const
from evpilot.errors import PeerError, UsageError
from evpilot.ev.iso2_pnc import CERTIFICATE_SERVICE_ID, INSTALL_PARAMETER_SET, UPDATE_PARAMETER_SET  # noqa: F401
from evpilot.pnc import chain as pki_chain
from evpilot.pnc import keytransport, p256, x509, xmldsig
from evpilot.pnc.xmldsig import SignatureError
from evpilot.store import certs
from evpilot.store.keystore import OEM

RENEW_DAYS = const(21)  # RISE-V2G renews a contract 21 days before it expires
MAX_ROOT_IDS = const(20)  # ListOfRootCertificateIDs holds 1 to 20 entries
REQUEST_ID = "id1"  # the Id of a signed request; one signed element per request, so one Id suffices
RENEW_META = "pnc_renew"  # store metadata: the eMAID a station said expires soon
_DAY_S = const(86400)
_V2G_ROOTS = ("V2G",)
_CONTRACT_ROOTS = ("MO", "V2G")
# The elements the CPS signs in CertificateInstallationRes / UpdateRes (ISO 15118-2 [V2G2-...] 4 References).
SIGNED_ELEMENTS = ("ContractSignatureCertChain", "ContractSignatureEncryptedPrivateKey", "DHpublickey", "eMAID")


class PncError(PeerError):
    """A Plug&Charge response the EV must not accept. `stage` says which step failed (response, signature,
    cps_chain, contract_chain, key, store), `reason` the checker's machine-readable reason."""

    def __init__(self, stage, reason, message):
        super().__init__(stage + " (" + reason + "): " + message)
        self.stage = stage
        self.reason = reason
        self.message = message


def chain_element(ders, element_id=None):
    """A CertificateChainType dict from [leaf, Sub-CA 2, Sub-CA 1] DERs."""
    out = {}
    if element_id is not None:
        out["Id"] = element_id
    out["Certificate"] = ders[0]
    if len(ders) > 1:
        out["SubCertificates"] = {"Certificate": list(ders[1:])}
    return out


def chain_ders(element, what):
    """(leaf DER, [Sub-CA DERs]) of a received CertificateChainType; PncError when it has no certificate."""
    if not isinstance(element, dict) or not isinstance(element.get("Certificate"), (bytes, bytearray)):
        raise PncError("response", "malformed", what + " has no Certificate")
    subs = element.get("SubCertificates")
    subs = (subs.get("Certificate") if isinstance(subs, dict) else None) or []
    if not isinstance(subs, list) or not all(isinstance(d, (bytes, bytearray)) for d in subs):
        raise PncError("response", "malformed", what + ": SubCertificates are not certificates")
    return bytes(element["Certificate"]), [bytes(d) for d in subs]


class ContractManager:
    """The contract side of one ISO-2 session (make one per session: it reads the store once and keeps
    what happened in installed, updated and expires_soon)."""

    def __init__(self, store, now_s=None, renew_days=RENEW_DAYS, update_requested=False,
                 require_contract_root=True):
        """store: an evpilot Store; now_s: trusted time in epoch seconds, or None when the EV has none (then
        validity is not checked and only a station or the caller can ask for an update); renew_days: update a
        contract that expires within this many days; update_requested: update whatever the dates say;
        require_contract_root: a new contract chain must end at a stored MO or V2G root (False: when no
        stored root names its issuer, it is checked up to its top Sub-CA and the CPS signature vouches for
        the rest)."""
        self.store = store
        self.now_s = now_s
        self.renew_days = renew_days
        self.update_requested = update_requested
        self.require_contract_root = require_contract_root
        self.installed = False
        self.updated = False
        self.expires_soon = False  # this session's station answered OK_CertificateExpiresSoon
        self._contract = None
        self._loaded = False
        self._update_from = None  # name of the contract an update replaces
        self._roots = {}  # DCs -> parsed stored roots; the store's roots do not change during a session

    def __repr__(self):  # never reads the store: a repr must not fail
        c = self._contract
        if c is not None:
            return "<ContractManager eMAID %s>" % c.emaid
        return "<ContractManager %s>" % ("no contract" if self._loaded else "contract not read yet")

    # ---- what the EV holds and needs ---------------------------------------------------------------------

    def contract(self):
        """The contract this session uses (store.contract at now_s), or None."""
        if not self._loaded:
            self._contract = self.store.contract(now_s=self.now_s)
            self._loaded = True
        return self._contract

    @property
    def emaid(self):
        c = self.contract()
        return None if c is None else c.emaid

    def v2g_roots(self):
        return self._stored_roots(_V2G_ROOTS)

    def _stored_roots(self, dcs):
        """The stored roots with one of `dcs`, parsed once per session (every check asks again)."""
        roots = self._roots.get(dcs)
        if roots is None:
            roots = self._roots[dcs] = certs.root_certificates(self.store, dcs)
        return roots

    def can_install(self):
        return self.store.oem() is not None and len(self.v2g_roots()) > 0

    def action(self):
        """None, "install" or "update": the certificate service this session should ask for."""
        c = self.contract()
        if c is None:
            return "install" if self.can_install() else None
        if not self.v2g_roots():
            return None  # no anchor to check the CPS with: keep the contract we have
        if self.update_requested or self.store.meta().get(RENEW_META) == c.emaid:
            return "update"
        if self.now_s is not None and c.not_after - self.now_s <= self.renew_days * _DAY_S:
            return "update"
        return None

    def note_expires_soon(self):
        """PaymentDetailsRes said OK_CertificateExpiresSoon: remember it, so the next session updates."""
        self.expires_soon = True
        c = self.contract()
        if c is not None and self.store.meta().get(RENEW_META) != c.emaid:
            self.store.set_meta(RENEW_META, c.emaid)

    # ---- requests ------------------------------------------------------------------------------------------

    def root_certificate_ids(self):
        """ListOfRootCertificateIDs: X509IssuerSerial (issuer as RFC 4514 text, serial as an int) of every
        stored V2G root, at most 20."""
        roots = self.v2g_roots()
        if not roots:
            raise UsageError("no V2G root in the store: cannot ask for a contract certificate")
        return {"RootCertificateID": [{"X509IssuerName": r.issuer_string, "X509SerialNumber": r.serial}
                                      for r in roots[:MAX_ROOT_IDS]]}

    def installation_request(self):
        oem = self.store.oem()
        if oem is None:
            raise UsageError("no OEM provisioning certificate in the store: cannot install a contract")
        body = {"Id": REQUEST_ID, "OEMProvisioningCert": oem.chain[0],
                "ListOfRootCertificateIDs": self.root_certificate_ids()}
        self._update_from = None
        return "CertificateInstallationReq", body, self._sign("CertificateInstallationReq", body, OEM)

    def update_request(self):
        c = self.contract()
        if c is None:
            raise UsageError("no contract to update")
        body = {"Id": REQUEST_ID, "ContractSignatureCertChain": chain_element(c.chain), "eMAID": c.emaid,
                "ListOfRootCertificateIDs": self.root_certificate_ids()}
        self._update_from = c.name
        return "CertificateUpdateReq", body, self._sign("CertificateUpdateReq", body, c.name)

    def payment_details_request(self):
        c = self.contract()
        if c is None:
            raise UsageError("no contract for PaymentDetailsReq")
        return "PaymentDetailsReq", {"eMAID": c.emaid, "ContractSignatureCertChain": chain_element(c.chain)}

    def authorization_request(self, gen_challenge):
        """The first AuthorizationReq of a PnC session: Id + the GenChallenge of PaymentDetailsRes, signed."""
        if not isinstance(gen_challenge, (bytes, bytearray)) or len(gen_challenge) != 16:
            raise PeerError("PaymentDetailsRes: GenChallenge must be 16 bytes")
        body = {"Id": REQUEST_ID, "GenChallenge": bytes(gen_challenge)}
        return "AuthorizationReq", body, self._sign("AuthorizationReq", body, self._contract_name())

    def metering_receipt_request(self, session_id, schedule_id, meter_info):
        """MeteringReceiptReq with Id, SessionID, SAScheduleTupleID and MeterInfo as received, signed."""
        body = {"Id": REQUEST_ID, "SessionID": session_id}
        if schedule_id is not None:
            body["SAScheduleTupleID"] = schedule_id
        body["MeterInfo"] = meter_info
        return "MeteringReceiptReq", body, self._sign("MeteringReceiptReq", body, self._contract_name())

    def _contract_name(self):
        c = self.contract()
        if c is None:
            raise UsageError("no contract to sign with")
        return c.name

    def _sign(self, name, body, key_name):
        return xmldsig.sign([(name, body)], self.store.private_key(key_name))

    # ---- CertificateInstallationRes / CertificateUpdateRes -------------------------------------------------

    def accept(self, name, body, signature):
        """Check a CertificateInstallationRes or CertificateUpdateRes completely, then store the new contract
        (replacing the updated one). Returns the stored Contract; raises PncError."""
        if name not in ("CertificateInstallationRes", "CertificateUpdateRes"):
            raise UsageError("accept() takes CertificateInstallationRes or CertificateUpdateRes, not " + name)
        update = name == "CertificateUpdateRes"
        if update and self._update_from is None:
            raise UsageError("CertificateUpdateRes without an update_request() first")
        static = self._update_from if update else OEM
        if not isinstance(body, dict):
            raise PncError("response", "malformed", name + " has no body")
        elements = []
        for part in SIGNED_ELEMENTS:
            element = body.get(part)
            if not isinstance(element, dict):
                raise PncError("response", "malformed", "%s without %s" % (name, part))
            elements.append((part, element))
        cps_leaf, cps_subs = chain_ders(body.get("SAProvisioningCertificateChain"),
                                        "SAProvisioningCertificateChain")
        new_leaf, new_subs = chain_ders(body["ContractSignatureCertChain"], "ContractSignatureCertChain")
        emaid = body["eMAID"].get("CONTENT")
        encrypted = body["ContractSignatureEncryptedPrivateKey"].get("CONTENT")
        dh_public = body["DHpublickey"].get("CONTENT")
        if not isinstance(emaid, str) or not isinstance(encrypted, (bytes, bytearray)) \
                or not isinstance(dh_public, (bytes, bytearray)):
            raise PncError("response", "malformed", name + ": eMAID, encrypted key or DHpublickey has no value")

        # 1-2: the CPS signature over the four elements, with the key of the CPS leaf it sent.
        if signature is None:
            raise PncError("signature", "missing", name + " carries no header Signature")
        try:
            cps_cert = x509.parse(cps_leaf)
        except x509.CertificateError as e:
            raise PncError("cps_chain", e.reason, "CPS leaf: " + e.message)
        try:
            xmldsig.verify(signature, xmldsig.by_id(elements), cps_cert.public_key)
        except SignatureError as e:
            raise PncError("signature", e.reason, e.message)

        # 3: the CPS chain to one of our V2G roots.
        try:
            pki_chain.validate(cps_cert, cps_subs, self.v2g_roots(), self.now_s, "cps", p256.verify)
        except pki_chain.ChainError as e:
            raise PncError("cps_chain", e.reason, e.message)

        # 4: the new contract chain; its CN names the eMAID the CPS signed.
        checked = self._check_contract_chain(new_leaf, new_subs, emaid)

        # 5: the contract key, decrypted with our static key and checked against the new certificate.
        d = self._decrypt(static, dh_public, encrypted)
        try:
            keytransport.check_key_pair(d, checked.public_key, p256.public_key)
        except PeerError as e:
            raise PncError("key", "mismatch", str(e))

        # All checks passed: store in one atomic step.
        try:
            stored = certs.install_contract_chain(self.store, [new_leaf] + new_subs, d,
                                                  name=self._update_from if update else None, checked_leaf=checked)
        except PeerError as e:
            raise PncError("store", "rejected", str(e))
        if update:
            self.updated = True
        else:
            self.installed = True
        if self.store.meta().get(RENEW_META) is not None:
            try:
                self.store.set_meta(RENEW_META, None)
            except PeerError:  # a StoreError (disk full, read-only): the contract is stored; the reminder stays
                pass
        try:
            self._contract = self.store.contract_named(stored)
        except PeerError as e:  # stored, but unreadable now: the session cannot pay with it
            raise PncError("store", "unreadable", str(e))
        self._loaded = True
        self._update_from = None
        return self._contract

    def _check_contract_chain(self, leaf, subs, emaid):
        roots = self._stored_roots(_CONTRACT_ROOTS)
        try:
            return pki_chain.validate(leaf, subs, roots, self.now_s, "contract", p256.verify, emaid=emaid)[0]
        except pki_chain.ChainError as e:
            if e.reason != "unknown_root" or self.require_contract_root or not subs:
                raise PncError("contract_chain", e.reason, e.message)
        # No stored root names the issuer, and the caller accepts that: anchor at the top Sub-CA.
        try:
            top = x509.parse(subs[-1])
            return pki_chain.validate(leaf, subs[:-1], [top], self.now_s, "contract", p256.verify,
                                      emaid=emaid)[0]
        except (pki_chain.ChainError, x509.CertificateError) as e:
            raise PncError("contract_chain", e.reason, e.message)

    def _decrypt(self, static, dh_public, encrypted):
        try:
            z = p256.ecdh(self.store.private_key(static), bytes(dh_public))
        except PeerError as e:
            raise PncError("key", "dh_public_key", "DHpublickey: " + str(e))
        try:
            return keytransport.decrypt_contract_key(z, encrypted)
        except PeerError as e:
            raise PncError("key", "decrypt", str(e))

    # ---- ChargeParameterDiscoveryRes -------------------------------------------------------------------------

    def check_sales_tariffs(self, tuples, signature):
        """Check the SalesTariffs in SAScheduleTuples against MO Sub-CA 2 of the contract chain.
        Returns (tuples, problem): the tuples unchanged and None when there is no tariff or all verify;
        otherwise copies of the tuples without SalesTariff and why, e.g. "unsigned" or "signature digest".
        The received tuples are never modified."""
        tariffs = [t["SalesTariff"] for t in tuples if isinstance(t, dict) and t.get("SalesTariff") is not None]
        if not tariffs:
            return tuples, None
        problem = self._tariff_problem([("SalesTariff", t) for t in tariffs], signature)
        if problem is None:
            return tuples, None
        out = []
        for t in tuples:
            t = dict(t)
            t.pop("SalesTariff", None)
            out.append(t)
        return out, problem

    def _tariff_problem(self, elements, signature):
        if signature is None:
            return "unsigned"
        c = self.contract()
        if c is None or len(c.chain) < 2:
            return "no MO Sub-CA 2 in the contract chain"
        try:
            sub2 = x509.parse(c.chain[1])
        except x509.CertificateError as e:
            return "MO Sub-CA 2 unreadable: " + e.reason
        if not sub2.has_key_usage(x509.KU_DIGITAL_SIGNATURE):
            return "MO Sub-CA 2 lacks digitalSignature"
        try:
            xmldsig.verify(signature, xmldsig.by_id(elements), sub2.public_key)
        except SignatureError as e:
            return "signature " + e.reason
        return None
