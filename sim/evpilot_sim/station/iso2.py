"""ISO 15118-2 station (SECC) session, AC and DC, with external identification (EIM) and Plug&Charge
(Contract), sans-I/O.

How this works: SeccConnection (station/secc.py) answers SupportedAppProtocol, decodes each request and calls
on_request(name, body, header, now); this object checks the SessionID and the sequence, drives the EVSE
model (station/evse.py, or anything with the same methods) and returns the response. `_NEXT` is the
sequence as data: for each state, the requests that may come next; anything else is answered
FAILED_SequenceError (and the connection ends). A request with another SessionID than the one handed out is
answered FAILED_UnknownSession.

Plug&Charge (pnc= a station.contracts.StationPnc, and tls=True: Contract is never offered without TLS): the
PaymentOptionList offers Contract, the ServiceList the Certificate service (ServiceID 2) when the StationPnc
has a provisioning service, and a Contract session runs PaymentServiceSelection -> [CertificateInstallation |
CertificateUpdate] -> PaymentDetails -> Authorization (the first one signed by the contract key over the
GenChallenge sent) -> ...; ChargeParameterDiscoveryRes carries a SalesTariff signed with the MO Sub-CA 2 key
and MeteringReceiptReq must be signed by the contract key. A handler that has a header Signature to send
leaves it in self._signature and on_request returns (name, body, signature). Why the last request was
refused (Plug&Charge checks) is in `refusal`.

Config (keyword arguments, all optional):
    seed                  seeds the random.Random that makes SessionIDs (8 bytes)
    evse_id               EVSEID string
    energy_modes          SupportedEnergyTransferMode, e.g. ("AC_three_phase_core",) or ("DC_extended",)
    payment_options       PaymentOptionList; default ("Contract", "ExternalPayment") with pnc and tls,
                          else ("ExternalPayment",); "Contract" is dropped without pnc and tls
    services              ServiceList entries ({"ServiceID", "ServiceCategory", "FreeService", ...})
    service_parameters    {ServiceID: ServiceParameterList} for ServiceDetailRes
    auth_ongoing          how many AuthorizationRes say Ongoing before Finished (default 0)
    cpd_ongoing           the same for ChargeParameterDiscoveryRes
    cable_check_ongoing   minimum Ongoing CableCheckRes rounds on top of what the EVSE model needs
    receipt_required      False, True (every cycle) or N (every N-th ChargingStatus/CurrentDemand cycle)
    renegotiate_after     N: notify ReNegotiation once, in the N-th charge-loop response
    paused                a dict SessionID -> info shared between connections; SessionStop Pause stores
                          the session there and a SessionSetupReq with that SessionID joins it again
    pnc                   a station.contracts.StationPnc (Plug&Charge material and checks)
    tls                   True when the connection runs over TLS (Contract needs it)
For session records: payment ("Contract" / "ExternalPayment" once selected), emaid (Contract only),
evcc_id, mode, energy_wh (meter advance since SessionSetup).
Plain Python that MicroPython can import (the firmware session tests run it there too).
"""

import random

from evpilot.errors import PeerError
from evpilot.v2g.messages import is_ac, pv, pv_value
from evpilot.pnc.chain import emaid_from_cn as chain_emaid
from evpilot_sim.station.cps import refusal as cps_refusal

# state -> requests that may come next (the ISO 15118-2 EIM message sequence, AC and DC)
_NEXT = {
    "idle": ("SessionSetupReq",),
    "setup": ("ServiceDiscoveryReq", "SessionStopReq"),
    "discovery": ("ServiceDetailReq", "PaymentServiceSelectionReq", "SessionStopReq"),
    "payment": ("AuthorizationReq", "SessionStopReq"),
    "payment_contract": ("CertificateInstallationReq", "CertificateUpdateReq", "PaymentDetailsReq",
                         "SessionStopReq"),
    "certificate": ("PaymentDetailsReq", "SessionStopReq"),
    "payment_details": ("AuthorizationReq", "SessionStopReq"),
    "auth_ongoing": ("AuthorizationReq", "SessionStopReq"),
    "authorized": ("ChargeParameterDiscoveryReq", "SessionStopReq"),
    "cpd_ongoing": ("ChargeParameterDiscoveryReq", "SessionStopReq"),
    "cpd_ac": ("PowerDeliveryReq", "ChargeParameterDiscoveryReq", "SessionStopReq"),
    "cpd_dc": ("CableCheckReq", "ChargeParameterDiscoveryReq", "SessionStopReq"),
    "cpd_renegotiated": ("PowerDeliveryReq",),
    "cable_check": ("CableCheckReq", "PreChargeReq", "SessionStopReq"),
    "precharge": ("PreChargeReq", "PowerDeliveryReq", "SessionStopReq"),
    "charging_ac": ("ChargingStatusReq", "PowerDeliveryReq"),
    "charging_dc": ("CurrentDemandReq", "PowerDeliveryReq"),
    "receipt_ac": ("MeteringReceiptReq", "ChargingStatusReq", "PowerDeliveryReq"),
    "receipt_dc": ("MeteringReceiptReq", "CurrentDemandReq", "PowerDeliveryReq"),
    "renegotiate": ("ChargeParameterDiscoveryReq",),
    "stopped_ac": ("SessionStopReq",),
    "stopped_dc": ("WeldingDetectionReq", "SessionStopReq"),
    "welding": ("WeldingDetectionReq", "SessionStopReq"),
    "done": (),
}


class Iso2StationSession:
    schema = "iso2"

    def __init__(self, evse, seed=None, evse_id="DE*EVP*E0001*1", energy_modes=("AC_three_phase_core", "DC_extended"),
                 payment_options=None, services=(), service_parameters=None, auth_ongoing=0,
                 cpd_ongoing=0, cable_check_ongoing=0, receipt_required=False, renegotiate_after=None, paused=None,
                 pnc=None, tls=False):
        self.evse = evse
        self.evse_id = evse_id
        self.energy_modes = list(energy_modes)
        # Contract (Plug&Charge) only over TLS and with the Plug&Charge material: PnC without TLS is a known
        # field bug (reference/plug-and-charge.md 7).
        self.pnc = pnc if tls else None
        if payment_options is None:
            payment_options = ("Contract", "ExternalPayment") if self.pnc is not None else ("ExternalPayment",)
        self.payment_options = [p for p in payment_options
                                if p != "Contract" or self.pnc is not None] or ["ExternalPayment"]
        self.services = list(services)
        self.service_parameters = dict(service_parameters or {})
        if self.pnc is not None and "Contract" in self.payment_options:
            self.pnc.add_certificate_service(self.services, self.service_parameters)
        self.auth_ongoing = auth_ongoing
        self.cpd_ongoing = cpd_ongoing
        self.cable_check_ongoing = cable_check_ongoing
        self.receipt_required = receipt_required
        self.renegotiate_after = renegotiate_after
        self.paused = paused if paused is not None else {}
        try:
            self._rng = random.Random(seed)
        except AttributeError:  # MicroPython: the module is the generator
            if seed is not None:
                random.seed(seed)
            self._rng = random
        self.session_id = b"\x00"
        self.finished = False
        self.state = "idle"
        self.joined = False  # the session was resumed (OK_OldSessionJoined)
        self.mode = None
        self.schedule_id = 1
        self.evcc_id = None
        self.cycles = 0
        self.receipts = 0
        self.renegotiations = 0
        self.stopped_with = None  # ChargingSession of SessionStopReq
        self.requests = []  # names in order, for tests and logs
        self.payment = None  # SelectedPaymentOption
        self.emaid = None  # the contract's eMAID (wire form) once PaymentDetails accepted it
        self.refusal = None  # why the last Plug&Charge check refused, for logs and records
        self._meter_start = None
        self._cert_sets = None  # ParameterSetIDs selected for the Certificate service (None: not selected)
        self._contract_pub = None
        self._challenge = None
        self._signature = None
        self._auth_rounds = 0
        self._cpd_rounds = 0
        self._cable_rounds = 0
        self._renegotiate_pending = False
        self._renegotiated = False

    @property
    def ac(self):
        if self.mode is not None:
            return is_ac(self.mode)
        return bool(self.energy_modes) and is_ac(self.energy_modes[0])

    def on_request(self, name, body, header, now):
        self.requests.append(name)
        res = name[:-3] + "Res" if name.endswith("Req") else name
        if name != "SessionSetupReq" and header.get("SessionID") != self.session_id:
            return res, self._skeleton(res, "FAILED_UnknownSession")
        if name not in _NEXT[self.state]:
            return res, self._skeleton(res, "FAILED_SequenceError")
        handler = getattr(self, "_" + name, None)
        if handler is None:
            return res, self._skeleton(res, "FAILED_SequenceError")
        if hasattr(self.evse, "advance"):
            self.evse.advance(now)
        self._signature = None
        body = handler(body, header, now)
        if self._signature is not None:
            return res, body, self._signature
        return res, body

    @property
    def energy_wh(self):
        """Energy metered since SessionSetup (Wh), or None when the EVSE model has no meter."""
        now = self._meter()
        if now is None or self._meter_start is None:
            return None
        return now - self._meter_start

    def _meter(self):
        wh = getattr(self.evse, "meter_wh", None)
        if wh is None and hasattr(self.evse, "meter_info"):
            wh = (self.evse.meter_info() or {}).get("MeterReading")
        return wh

    # ---- handlers -----------------------------------------------------------------------------------------

    def _SessionSetupReq(self, body, header, now):
        self.evcc_id = body.get("EVCCID")
        sid = header.get("SessionID")
        if sid in self.paused:
            info = self.paused.pop(sid)
            self.session_id = sid
            self.joined = True
            self.mode = info.get("mode")
            code = "OK_OldSessionJoined"
        else:
            self.session_id = bytes([self._rng.getrandbits(8) for _ in range(8)])
            code = "OK_NewSessionEstablished"
        self._meter_start = self._meter()
        self.state = "setup"
        return {"ResponseCode": code, "EVSEID": self.evse_id}

    def _ServiceDiscoveryReq(self, body, header, now):
        self.state = "discovery"
        res = {"ResponseCode": "OK", "PaymentOptionList": {"PaymentOption": list(self.payment_options)},
               "ChargeService": self._charge_service()}
        if self.services:
            res["ServiceList"] = {"Service": [dict(s) for s in self.services]}
        return res

    def _ServiceDetailReq(self, body, header, now):
        sid = body.get("ServiceID")
        known = [1] + [s.get("ServiceID") for s in self.services]
        if sid not in known:
            return {"ResponseCode": "FAILED_ServiceIDInvalid", "ServiceID": sid if isinstance(sid, int) else 0}
        res = {"ResponseCode": "OK", "ServiceID": sid}
        if sid in self.service_parameters:
            res["ServiceParameterList"] = self.service_parameters[sid]
        return res

    def _PaymentServiceSelectionReq(self, body, header, now):
        if body.get("SelectedPaymentOption") not in self.payment_options:
            return {"ResponseCode": "FAILED_PaymentSelectionInvalid"}
        selected = [s.get("ServiceID") for s in (body.get("SelectedServiceList") or {}).get("SelectedService") or []]
        known = [1] + [s.get("ServiceID") for s in self.services]
        if 1 not in selected or any(s not in known for s in selected):
            return {"ResponseCode": "FAILED_ServiceSelectionInvalid"}
        self.payment = body["SelectedPaymentOption"]
        if self.payment == "Contract":
            for s in body["SelectedServiceList"]["SelectedService"]:
                if s.get("ServiceID") == 2:
                    self._cert_sets = self._cert_sets or []
                    if s.get("ParameterSetID") is not None:
                        self._cert_sets.append(s["ParameterSetID"])
            self.state = "payment_contract"
        else:
            self.state = "payment"
        return {"ResponseCode": "OK"}

    def _CertificateInstallationReq(self, body, header, now):
        return self._certificate(False, body, header)

    def _CertificateUpdateReq(self, body, header, now):
        return self._certificate(True, body, header)

    def _certificate(self, update, body, header):
        # The EV selects the Certificate service with ParameterSetID 1 (installation) or 2 (update).
        wanted = 2 if update else 1
        if self._cert_sets is None or (self._cert_sets and wanted not in self._cert_sets):
            return self._skeleton("CertificateUpdateRes" if update else "CertificateInstallationRes",
                                  "FAILED_SequenceError")
        res, self._signature, self.refusal = self.pnc.certificate(update, body, header.get("Signature"))
        if res["ResponseCode"] == "OK":
            self.state = "certificate"
        return res

    def _PaymentDetailsReq(self, body, header, now):
        now_s = self.pnc.now_s()
        stamp = now_s if now_s is not None else 0
        code, self.refusal, leaf = self.pnc.check_contract(body.get("eMAID"), body.get("ContractSignatureCertChain"))
        if code is not None:
            return {"ResponseCode": code, "GenChallenge": bytes(16), "EVSETimeStamp": stamp}
        self.emaid = chain_emaid(leaf.cn)
        self._contract_pub = leaf.public_key
        self._challenge = self.pnc.challenge()
        self.state = "payment_details"
        return {"ResponseCode": "OK", "GenChallenge": self._challenge, "EVSETimeStamp": stamp}

    def _AuthorizationReq(self, body, header, now):
        if self.payment == "Contract" and self.state == "payment_details":
            # The first request only: while the answer is Ongoing the EV sends empty requests.
            code, self.refusal = self.pnc.check_authorization(body, header.get("Signature"), self._challenge,
                                                              self._contract_pub)
            if code is not None:
                return {"ResponseCode": code, "EVSEProcessing": "Finished"}
        if self._auth_rounds < self.auth_ongoing:
            self._auth_rounds += 1
            self.state = "auth_ongoing"
            return {"ResponseCode": "OK", "EVSEProcessing": "Ongoing"}
        self.state = "authorized"
        return {"ResponseCode": "OK", "EVSEProcessing": "Finished"}

    def _ChargeParameterDiscoveryReq(self, body, header, now):
        mode = body.get("RequestedEnergyTransferMode")
        if mode not in self.energy_modes:
            return self._skeleton("ChargeParameterDiscoveryRes", "FAILED_WrongEnergyTransferMode")
        if self.mode is not None and mode != self.mode and self.state != "authorized":
            return self._skeleton("ChargeParameterDiscoveryRes", "FAILED_WrongEnergyTransferMode")
        self.mode = mode
        key = "AC_EVChargeParameter" if is_ac(mode) else "DC_EVChargeParameter"
        if key not in body:
            return self._skeleton("ChargeParameterDiscoveryRes", "FAILED_WrongChargeParameter")
        if self.state == "authorized" and hasattr(self.evse, "begin_session"):
            self.evse.begin_session()
        if is_ac(mode):  # what the EV will draw per phase once the contactor closes (the meter's model)
            self._ev_amps = pv_value(body[key].get("EVMaxCurrent"), "A")
        res = {"ResponseCode": "OK"}
        res.update(self._charge_parameter())
        if self._cpd_rounds < self.cpd_ongoing:
            self._cpd_rounds += 1
            self.state = "cpd_ongoing"
            res["EVSEProcessing"] = "Ongoing"
            return res
        res["EVSEProcessing"] = "Finished"
        schedule = {"SAScheduleTupleID": self.schedule_id, "PMaxSchedule": {
            "PMaxScheduleEntry": [{"RelativeTimeInterval": {"start": 0, "duration": 86400},
                                   "PMax": pv(self._pmax(res), "W")}]}}
        if self.payment == "Contract":
            schedule["SalesTariff"], self._signature = self.pnc.sales_tariff()
        res["SAScheduleList"] = {"SAScheduleTuple": [schedule]}
        if self.state == "renegotiate" or (self.state == "cpd_ongoing" and self._renegotiated):
            self.state = "cpd_renegotiated"
        else:
            self.state = "cpd_ac" if self.ac else "cpd_dc"
        return res

    def _PowerDeliveryReq(self, body, header, now):
        progress = body.get("ChargeProgress")
        evse = self.evse
        if body.get("SAScheduleTupleID") != self.schedule_id and progress != "Stop":
            return self._status_body("FAILED_TariffSelectionInvalid")
        charging = self.state in ("charging_ac", "charging_dc", "receipt_ac", "receipt_dc")
        if progress == "Start":
            if charging:
                return self._status_body("FAILED_SequenceError")
            if self.state == "cpd_renegotiated":
                self._renegotiated = False
            elif self.ac:
                try:
                    evse.ac_close(now)
                except Exception:  # the EVSE model refuses while a fault is active
                    return self._status_body("FAILED_PowerDeliveryNotApplied")
                if hasattr(evse, "ac_request") and getattr(self, "_ev_amps", None):
                    evse.ac_request(now, self._ev_amps)  # the car draws up to its maximum, the EVSE's limit
            else:
                evse.ev_contactors(now, True, evse.present_voltage)
            self.state = "charging_ac" if self.ac else "charging_dc"
        elif progress == "Renegotiate":
            if not charging:
                return self._status_body("FAILED_SequenceError")
            self._renegotiate_pending = False
            self._renegotiated = True
            self.renegotiations += 1
            if hasattr(evse, "renegotiate"):
                evse.renegotiate = False
            self.state = "renegotiate"
        elif progress == "Stop":
            if self.ac:
                evse.ac_open(now)
            else:
                evse.stop(now)
            self.state = "stopped_ac" if self.ac else "stopped_dc"
        else:
            return self._status_body("FAILED")
        return self._status_body("OK")

    def _ChargingStatusReq(self, body, header, now):
        self.cycles += 1
        status = self._loop_status()
        res = {"ResponseCode": "OK", "EVSEID": self.evse_id, "SAScheduleTupleID": self.schedule_id,
               "EVSEMaxCurrent": pv(self.evse.ac_offer(), "A"), "MeterInfo": self.evse.meter_info(),
               "AC_EVSEStatus": status}
        self._receipt(res, "receipt_ac", "charging_ac")
        return res

    def _CurrentDemandReq(self, body, header, now):
        self.cycles += 1
        volts = pv_value(body.get("EVTargetVoltage"), "V")
        amps = pv_value(body.get("EVTargetCurrent"), "A")
        self.evse.current_demand(now, volts, amps)
        res = {"ResponseCode": "OK"}
        res.update(self.evse.current_demand_fields())
        res["DC_EVSEStatus"] = self._loop_status()
        res["EVSEID"] = self.evse_id
        res["SAScheduleTupleID"] = self.schedule_id
        res["MeterInfo"] = self.evse.meter_info()
        self._receipt(res, "receipt_dc", "charging_dc")
        return res

    def _MeteringReceiptReq(self, body, header, now):
        if self.state not in ("receipt_ac", "receipt_dc"):
            return self._status_body("FAILED_SequenceError")
        if self.payment == "Contract":
            code, self.refusal = self.pnc.check_signed("MeteringReceiptReq", body, header.get("Signature"),
                                                       self._contract_pub)
            if code is not None:
                return self._status_body(code)
        if body.get("SessionID") != self.session_id or not body.get("MeterInfo"):
            return self._status_body("FAILED_MeteringSignatureNotValid")
        self.receipts += 1
        self.state = "charging_ac" if self.ac else "charging_dc"
        return self._status_body("OK")

    def _CableCheckReq(self, body, header, now):
        evse = self.evse
        if self.state != "cable_check":
            evse.start_cable_check(now)
            self._cable_rounds = 0
        self.state = "cable_check"
        self._cable_rounds += 1
        processing, _ = evse.cable_check(now)
        if self._cable_rounds <= self.cable_check_ongoing:
            processing = "Ongoing"
        return {"ResponseCode": "OK", "DC_EVSEStatus": evse.dc_evse_status(), "EVSEProcessing": processing}

    def _PreChargeReq(self, body, header, now):
        self.state = "precharge"
        volts = self.evse.precharge(now, pv_value(body.get("EVTargetVoltage"), "V"),
                                    pv_value(body.get("EVTargetCurrent"), "A"))
        return {"ResponseCode": "OK", "DC_EVSEStatus": self.evse.dc_evse_status(),
                "EVSEPresentVoltage": pv(volts, "V")}

    def _WeldingDetectionReq(self, body, header, now):
        evse = self.evse
        if self.state != "welding":
            evse.ev_contactors(now, False)  # the EV opened its contactors after PowerDeliveryRes Stop
        self.state = "welding"
        return {"ResponseCode": "OK", "DC_EVSEStatus": evse.dc_evse_status(),
                "EVSEPresentVoltage": pv(evse.present_voltage, "V")}

    def _SessionStopReq(self, body, header, now):
        how = body.get("ChargingSession")
        if how == "Pause":
            self.paused[self.session_id] = {"mode": self.mode, "evcc_id": self.evcc_id}
        elif how != "Terminate":
            return {"ResponseCode": "FAILED"}
        self.stopped_with = how
        self.state = "done"
        self.finished = True
        return {"ResponseCode": "OK"}

    # ---- helpers ----------------------------------------------------------------------------------------

    def _charge_service(self):
        return {"ServiceID": 1, "ServiceCategory": "EVCharging", "FreeService": False,
                "SupportedEnergyTransferMode": {"EnergyTransferMode": list(self.energy_modes)}}

    def _charge_parameter(self):
        if self.ac:
            return {"AC_EVSEChargeParameter": self.evse.ac_charge_parameter()}
        return {"DC_EVSEChargeParameter": self.evse.dc_charge_parameter()}

    def _pmax(self, res):
        if self.ac:
            p = res["AC_EVSEChargeParameter"]
            phases = 1 if self.mode == "AC_single_phase_core" else 3
            return pv_value(p["EVSENominalVoltage"]) * pv_value(p["EVSEMaxCurrent"]) * phases
        return pv_value(res["DC_EVSEChargeParameter"]["EVSEMaximumPowerLimit"])

    def _evse_status(self):
        if self.ac:
            return "AC_EVSEStatus", self.evse.ac_evse_status()
        return "DC_EVSEStatus", self.evse.dc_evse_status()

    def _status_body(self, code):
        key, status = self._evse_status()
        return {"ResponseCode": code, key: status}

    def _loop_status(self):
        # ReNegotiation once, in the renegotiate_after-th cycle (unless the EVSE has something worse to say).
        if self.renegotiate_after is not None and self.cycles == self.renegotiate_after and not self.renegotiations:
            self._renegotiate_pending = True
        key, status = self._evse_status()
        if self._renegotiate_pending and status.get("EVSENotification") == "None":
            status["EVSENotification"] = "ReNegotiation"
        return status

    def _receipt(self, res, receipt_state, loop_state):
        every = self.receipt_required
        if every is False or every is None:
            self.state = loop_state
            return
        ask = every is True or (every > 0 and self.cycles % every == 0)
        res["ReceiptRequired"] = ask
        self.state = receipt_state if ask else loop_state

    def _skeleton(self, name, code):
        """A schema-valid response `name` with ResponseCode `code` and only the mandatory elements."""
        if name == "SessionSetupRes":
            return {"ResponseCode": code, "EVSEID": self.evse_id}
        if name == "ServiceDiscoveryRes":
            return {"ResponseCode": code, "PaymentOptionList": {"PaymentOption": list(self.payment_options)},
                    "ChargeService": self._charge_service()}
        if name == "ServiceDetailRes":
            return {"ResponseCode": code, "ServiceID": 1}
        if name in ("PaymentServiceSelectionRes", "SessionStopRes"):
            return {"ResponseCode": code}
        if name == "PaymentDetailsRes":
            return {"ResponseCode": code, "GenChallenge": bytes(16), "EVSETimeStamp": 0}
        if name in ("CertificateInstallationRes", "CertificateUpdateRes"):
            return cps_refusal(code)
        if name == "AuthorizationRes":
            return {"ResponseCode": code, "EVSEProcessing": "Finished"}
        if name == "ChargeParameterDiscoveryRes":
            res = {"ResponseCode": code, "EVSEProcessing": "Finished"}
            res.update(self._charge_parameter())
            return res
        if name in ("PowerDeliveryRes", "MeteringReceiptRes"):
            return self._status_body(code)
        if name == "ChargingStatusRes":
            return {"ResponseCode": code, "EVSEID": self.evse_id, "SAScheduleTupleID": self.schedule_id,
                    "AC_EVSEStatus": self.evse.ac_evse_status()}
        dc = {"ResponseCode": code, "DC_EVSEStatus": self.evse.dc_evse_status()}
        if name == "CableCheckRes":
            dc["EVSEProcessing"] = "Finished"
            return dc
        if name in ("PreChargeRes", "WeldingDetectionRes"):
            dc["EVSEPresentVoltage"] = pv(self.evse.present_voltage, "V")
            return dc
        if name == "CurrentDemandRes":
            dc.update(self.evse.current_demand_fields())
            dc["ResponseCode"] = code
            dc["EVSEID"] = self.evse_id
            dc["SAScheduleTupleID"] = self.schedule_id
            return dc
        raise PeerError("%s: no response this station can give (%s)" % (name, code))
