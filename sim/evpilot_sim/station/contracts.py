# The station's Plug&Charge side for ISO 15118-2 (reference/plug-and-charge.md 2): what Iso2StationSession
# needs beyond EIM, kept here so the session module stays a state machine.
#
# How this works
# --------------
# StationPnc holds the station's Plug&Charge material and answers the checks the session asks for:
#   certificate service   ServiceID 2 "ContractCertificate" with ParameterSets 1 (installation) and 2 (update),
#                         listed only when a ProvisioningService (station/cps.py) is configured;
#   certificate(...)      CertificateInstallationReq / CertificateUpdateReq, handed to the ProvisioningService;
#   check_contract(...)   PaymentDetailsReq: the eMAID is the contract certificate's CN (hyphens ignored),
#                         the chain leads to one of the MO or V2G roots, not revoked, valid at trusted time;
#   challenge()           16 random bytes for PaymentDetailsRes;
#   check_authorization   the first AuthorizationReq: Id, the GenChallenge sent, a header Signature by the
#                         contract key;
#   check_signed(...)     any Id-carrying request element signed by the contract key (MeteringReceiptReq);
#   sales_tariff()        the SalesTariff for ChargeParameterDiscoveryRes with an Id, signed with the MO
#                         Sub-CA 2 key when one is configured.
# Checks return (response code, text) with code None when all is well, so the session answers with the
# ISO-2 code and keeps the text for logs and session records. Time: `clock` gives trusted epoch seconds
# (None: no trusted time, so no validity checks and EVSETimeStamp 0; an int: a fixed time for tests; a
# function: called for each check, e.g. time.time in the command-line adapter).
#
# Plain Python that MicroPython imports; evpilot_host.pki_material.station_pnc() builds a StationPnc from a
# directory made by `evpilot pki init` (CPython, with the cryptography package).

from evpilot.errors import UsageError
from evpilot.pnc import chain, p256, x509, xmldsig
from evpilot_sim.station import cps as _cps

CERTIFICATE_SERVICE_ID = 2  # ISO 15118-2 Table 105: the Certificate service
INSTALLATION_SET = 1  # ParameterSetID "Installation"
UPDATE_SET = 2  # ParameterSetID "Update"
TARIFF_ID = "tariff1"

DEFAULT_SALES_TARIFF = {
    "SalesTariffID": 1,
    "NumEPriceLevels": 1,
    "SalesTariffEntry": [{"RelativeTimeInterval": {"start": 0, "duration": 86400}, "EPriceLevel": 1}],
}


def _urandom(n):
    from os import urandom

    return urandom(n)


def _certs(items):
    return [c if isinstance(c, x509.Certificate) else x509.parse(c) for c in items]


def _copy(value):
    if isinstance(value, dict):
        return dict((k, _copy(value[k])) for k in value)
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class StationPnc:
    def __init__(self, cps=None, v2g_roots=(), mo_roots=(), mo_sub_ca2=None, mo_sub_ca2_key=None, clock=None,
                 rng=None, sales_tariff=None, revoked=()):
        """cps: a station.cps.ProvisioningService (None: no Certificate service). v2g_roots, mo_roots: trust
        anchors for contract chains in PaymentDetailsReq (DER or parsed). mo_sub_ca2 (DER) and
        mo_sub_ca2_key (32 bytes): sign the SalesTariff (no key: the tariff goes out unsigned). clock:
        trusted time (see the module comment). rng(n): random bytes for GenChallenge (default os.urandom).
        sales_tariff: SalesTariff content without Id (default: one price level for 24 h). revoked: eMAIDs
        refused with FAILED_CertificateRevoked."""
        self.cps = cps
        self.v2g_roots = _certs(v2g_roots)
        self.mo_roots = _certs(mo_roots)
        self.mo_sub_ca2 = x509.parse(mo_sub_ca2) if isinstance(mo_sub_ca2, (bytes, bytearray)) else mo_sub_ca2
        self.mo_sub_ca2_key = mo_sub_ca2_key
        if mo_sub_ca2_key is not None and self.mo_sub_ca2 is not None:
            if p256.public_key(mo_sub_ca2_key) != self.mo_sub_ca2.public_key:
                raise UsageError("mo_sub_ca2_key is not the key of the mo_sub_ca2 certificate")
        self.clock = clock
        self.rng = rng or _urandom
        self.sales_tariff_content = sales_tariff if sales_tariff is not None else DEFAULT_SALES_TARIFF
        self.revoked = [e.replace("-", "").upper() for e in revoked]

    def now_s(self):
        """Trusted epoch seconds, or None."""
        c = self.clock
        if c is None:
            return None
        return int(c() if callable(c) else c)

    # ---- service discovery ---------------------------------------------------------------------------

    def certificate_service(self):
        """The ServiceList entry of the Certificate service, or None without a provisioning service."""
        if self.cps is None:
            return None
        return {"ServiceID": CERTIFICATE_SERVICE_ID, "ServiceCategory": "ContractCertificate", "FreeService": True}

    def certificate_parameters(self):
        """ServiceParameterList of the Certificate service (ServiceDetailRes)."""
        return {"ParameterSet": [
            {"ParameterSetID": INSTALLATION_SET, "Parameter": [{"Name": "Service", "stringValue": "Installation"}]},
            {"ParameterSetID": UPDATE_SET, "Parameter": [{"Name": "Service", "stringValue": "Update"}]},
        ]}

    def add_certificate_service(self, services, service_parameters):
        """Add the Certificate service to a station's ServiceList entries and {ServiceID: parameters} in
        place, unless there is no provisioning service or the station already lists ServiceID 2."""
        service = self.certificate_service()
        if service is None:
            return
        if CERTIFICATE_SERVICE_ID not in [s.get("ServiceID") for s in services]:
            services.append(service)
        if CERTIFICATE_SERVICE_ID not in service_parameters:
            service_parameters[CERTIFICATE_SERVICE_ID] = self.certificate_parameters()

    # ---- certificate installation and update ---------------------------------------------------------

    def certificate(self, update, req, signature):
        """(response body, header Signature or None, refusal text or None) for CertificateInstallationReq
        (update False) or CertificateUpdateReq (update True)."""
        if self.cps is None:
            return _cps.refusal(_cps.NO_CERTIFICATE), None, "no certificate provisioning service"
        now_s = self.now_s()
        if update:
            body, sig = self.cps.update(req, signature, now_s)
        else:
            body, sig = self.cps.installation(req, signature, now_s)
        return body, sig, self.cps.last_error

    # ---- PaymentDetails, Authorization, signed requests ----------------------------------------------

    def check_contract(self, emaid, cert_chain):
        """(code, text, contract leaf) for PaymentDetailsReq; code None when the contract is accepted."""
        if isinstance(emaid, dict):
            emaid = emaid.get("CONTENT")
        if not isinstance(emaid, str) or chain.emaid_from_cn(emaid) is None:
            return "FAILED_CertChainError", "eMAID %r is not an eMAID" % (emaid,), None
        try:
            ders = _cps.chain_ders(cert_chain, "ContractSignatureCertChain")
            leaf = _cps.parse_certificate(ders[0], "contract certificate")
        except _cps.Refusal as e:
            return e.response_code, e.message, None
        if not chain.matches_emaid(leaf.cn, emaid):
            return "FAILED_CertChainError", "contract certificate CN %r does not name the eMAID %s" % (
                leaf.cn, emaid), None
        if emaid.replace("-", "").upper() in self.revoked:
            return "FAILED_CertificateRevoked", "contract " + emaid + " is revoked", None
        try:
            chain.validate(leaf, ders[1:], self.mo_roots + self.v2g_roots, self.now_s(), "contract", p256.verify,
                           emaid=emaid)
        except chain.ChainError as e:
            return _cps.chain_code(e), "contract chain: " + e.message, None
        return None, None, leaf

    def challenge(self):
        value = bytes(self.rng(16))
        if len(value) != 16:
            raise UsageError("rng(16) returned %d bytes" % len(value))
        return value

    def check_signed(self, name, element, signature, pub):
        """(code, text): code None when `element` carries an Id and `signature` signs it with pub."""
        element_id = element.get("Id") if isinstance(element, dict) else None
        if not isinstance(element_id, str) or not element_id:
            return "FAILED_SignatureError", name + " has no Id (it must be signed)"
        if signature is None:
            return "FAILED_SignatureError", name + " is not signed (no header Signature)"
        try:
            xmldsig.verify(signature, xmldsig.by_id([(name, element)]), pub, [element_id])
        except xmldsig.SignatureError as e:
            return "FAILED_SignatureError", name + ": " + e.message
        return None, None

    def check_authorization(self, req, signature, challenge, pub):
        """(code, text) for the first AuthorizationReq under Contract; code None when accepted."""
        if not isinstance(req, dict) or not req.get("Id"):
            return "FAILED_ChallengeInvalid", "AuthorizationReq has no Id"
        if challenge is None or req.get("GenChallenge") != challenge:
            return "FAILED_ChallengeInvalid", "AuthorizationReq GenChallenge is not the one of PaymentDetailsRes"
        return self.check_signed("AuthorizationReq", req, signature, pub)

    # ---- SalesTariff ---------------------------------------------------------------------------------

    def sales_tariff(self):
        """(SalesTariff element with Id, header Signature or None)."""
        tariff = _copy(self.sales_tariff_content)
        tariff["Id"] = TARIFF_ID
        if self.mo_sub_ca2_key is None:
            return tariff, None
        return tariff, xmldsig.sign([("SalesTariff", tariff)], self.mo_sub_ca2_key)
