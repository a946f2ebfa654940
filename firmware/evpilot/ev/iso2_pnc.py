# The Plug&Charge steps of the ISO 15118-2 EV session: Iso2Session (ev/iso2.py) inherits them.
#
# How this works
# --------------
# With a ContractManager (ev/contracts.py) and TLS, the session pays with "Contract" when the station offers it;
# otherwise (no TLS, Contract not offered, no contract and none installable) it stays with ExternalPayment
# and pnc_note says why. ISO 15118-2 never allows Contract without TLS. The PnC part of the sequence:
#
#   ServiceDiscovery -> PaymentServiceSelection(Contract [+ Certificate service 2, ParameterSetID 1 install
#   | 2 update]) -> [CertificateInstallation | CertificateUpdate] -> PaymentDetails -> Authorization (signed,
#   first request only; Ongoing rounds are empty) -> ChargeParameterDiscovery (SalesTariff signature checked;
#   a bad or unsigned one is dropped and recorded) -> ... -> MeteringReceipt (signed)
#
# The three states below extend iso2.py's tables (STYLE rule 3: iso2.py holds the one transition table).
# Iso2Session.on_response keeps the Header of the response being handled in `response_header`; its
# Signature is what the checks use.

from evpilot.compat import const
from evpilot.errors import EvpilotError, SessionError

# Defined here, not in ev/contracts.py (which imports them from here): an EIM-only session then never loads the
# Plug&Charge modules (X.509, chains, XMLDSig, P-256, the store), which only a ContractManager brings in.
CERTIFICATE_SERVICE_ID = const(2)  # ISO 15118-2 Table 105: the Certificate service
INSTALL_PARAMETER_SET = const(1)  # ParameterSetID 1: Installation
UPDATE_PARAMETER_SET = const(2)  # ParameterSetID 2: Update

# These continue the state numbers of iso2.py, whose last state is _FAILED = 16.
CERT_INSTALL = const(17)
CERT_UPDATE = const(18)
PAYMENT_DETAILS = const(19)
PNC_STATE_NAMES = ("CertificateInstallation", "CertificateUpdate", "PaymentDetails")
PNC_EXPECT = ("CertificateInstallationRes", "CertificateUpdateRes", "PaymentDetailsRes")


class Iso2PncSteps:
    """Mixed into Iso2Session; needs its state, service_id, session_id, schedule_id, response_header and
    _authorize()."""

    def _pnc_init(self, contracts, tls):
        self.contracts = contracts  # a ContractManager, or None for EIM only
        self.tls = bool(tls)
        self.identification = "EIM"
        self.cert_action = None  # "install" or "update": the Certificate service asked for
        self.pnc_note = None  # why Contract was not used, or a PnC event worth reporting
        self.tariff_ignored = None  # why a SalesTariff was dropped
        self.sales_tariff = None  # the accepted SalesTariff of the chosen schedule
        self.payment_option = "ExternalPayment"

    def _signature(self):
        return (self.response_header or {}).get("Signature")

    def _choose_payment(self, body):
        """"Contract" or "ExternalPayment" for this ServiceDiscoveryRes; SessionError when neither works."""
        options = (body.get("PaymentOptionList") or {}).get("PaymentOption") or []
        if self.contracts is not None:
            note = None
            if not self.tls:
                note = "no TLS: Contract is never selected without it"
            elif "Contract" not in options:
                note = "the station does not offer Contract"
            else:
                listed = [s.get("ServiceID") for s in (body.get("ServiceList") or {}).get("Service") or []]
                try:
                    action = self.contracts.action()
                    usable = action == "install" or self.contracts.contract() is not None
                except EvpilotError as e:  # a damaged store: pay another way rather than fail the session
                    action, usable, note = None, False, "the certificate store cannot be read: " + str(e)
                if action is not None and CERTIFICATE_SERVICE_ID not in listed:
                    if action == "install":
                        note = "no contract, and the station offers no Certificate service to install one"
                    else:
                        self.pnc_note = "contract update due, but the station offers no Certificate service"
                    action = None
                if note is None and not usable:
                    note = "no usable contract, and none can be installed (OEM provisioning key or V2G root missing)"
                if note is None:
                    self.identification = "PnC"
                    self.cert_action = action
                    return "Contract"
            self.pnc_note = note
        if "ExternalPayment" not in options:
            raise SessionError("ServiceDiscoveryRes: no ExternalPayment among %s" % (options,))
        return "ExternalPayment"

    def _selected_services(self):
        services = [{"ServiceID": self.service_id}]
        if self.cert_action is not None:
            services.append({"ServiceID": CERTIFICATE_SERVICE_ID, "ParameterSetID":
                             INSTALL_PARAMETER_SET if self.cert_action == "install" else UPDATE_PARAMETER_SET})
        return {"SelectedService": services}

    def _pnc_after_payment(self, now):
        if self.cert_action == "install":
            self.state = CERT_INSTALL
            return self.contracts.installation_request()
        if self.cert_action == "update":
            self.state = CERT_UPDATE
            return self.contracts.update_request()
        return self._payment_details()

    def _payment_details(self):
        self.state = PAYMENT_DETAILS
        return self.contracts.payment_details_request()

    def _on_certificate(self, body, now):
        name = PNC_EXPECT[self.state - CERT_INSTALL]
        self.contracts.accept(name, body, self._signature())  # PncError ends the session; store untouched
        return self._payment_details()

    def _on_payment_details(self, body, now):
        if body.get("ResponseCode") == "OK_CertificateExpiresSoon":
            try:
                self.contracts.note_expires_soon()
            except EvpilotError as e:  # the reminder is a convenience; the session goes on
                self.pnc_note = "could not note OK_CertificateExpiresSoon: " + str(e)
        return self._authorize(now, self.contracts.authorization_request(body.get("GenChallenge")))

    def _pnc_tariffs(self, tuples):
        """The SAScheduleTuples to use: under PnC the SalesTariffs are checked, bad ones dropped."""
        if self.identification != "PnC":
            return tuples
        tuples, problem = self.contracts.check_sales_tariffs(tuples, self._signature())
        if problem is not None:
            self.tariff_ignored = problem
        return tuples

    def _pnc_receipt(self, meter):
        return self.contracts.metering_receipt_request(self.session_id, self.schedule_id, meter)

    def _pnc_summary(self, out):
        c = self.contracts if self.identification == "PnC" else None
        out["identification"] = self.identification
        out["emaid"] = None if c is None else c.emaid
        out["contract_installed"] = c is not None and c.installed
        out["contract_updated"] = c is not None and c.updated
        out["sales_tariff_ignored"] = self.tariff_ignored
        out["pnc_note"] = self.pnc_note
        return out


# The handlers of the three states, continuing iso2.py's _HANDLER.
PNC_HANDLER = (Iso2PncSteps._on_certificate, Iso2PncSteps._on_certificate, Iso2PncSteps._on_payment_details)
