"""DIN SPEC 70121 DC charging, station (SECC) side: the protocol session SeccConnection (station/secc.py) drives.

How this works: on_request(name, body, header, now) checks the request against the session's state (one
table, _ALLOWED: which requests may come next), then the SessionID, then hands the request to its handler,
which asks the EVSE model (station/evse.py, or anything with the same methods) and builds the response from
what the model reports. A request out of order is answered FAILED_SequenceError, a wrong SessionID
FAILED_UnknownSession; the connection ends the session after any FAILED response. Failure responses carry
the elements the XSD requires (present values from the model), so they encode like any other.

The EVSE model's methods used here: begin_session(), start_cable_check(now, voltage), cable_check(now),
precharge(now, V, A), ev_contactors(now, closed, battery_voltage), current_demand(now, V, A), stop(now),
advance(now), dc_evse_status(), dc_charge_parameter(), current_demand_fields(), present_voltage,
config.dc_max_power.

Plain Python that also imports on MicroPython (the firmware session tests run it there): no dataclasses,
and `random` is used through getrandbits only (MicroPython's random has no Random class).
"""

import random

from evpilot.v2g.messages import pv, pv_value

RUNNING, DONE, FAILED = 1, 2, 3

# States: what was answered last (what may come next is in _ALLOWED).
(_IDLE, _SETUP, _DISCOVERY, _PAYMENT, _AUTH, _AUTH_DONE, _CPD, _CPD_DONE, _CABLE, _CABLE_DONE, _PRECHARGE,
 _POWER_ON, _CHARGE, _POWER_OFF, _WELDING, _STOPPED) = range(16)

_EARLY_STOP = ("SessionStopReq",)
_ALLOWED = (
    ("SessionSetupReq",),  # _IDLE
    ("ServiceDiscoveryReq",) + _EARLY_STOP,  # _SETUP
    ("ServicePaymentSelectionReq",) + _EARLY_STOP,  # _DISCOVERY
    ("ContractAuthenticationReq",) + _EARLY_STOP,  # _PAYMENT
    ("ContractAuthenticationReq",) + _EARLY_STOP,  # _AUTH (Ongoing)
    ("ChargeParameterDiscoveryReq",) + _EARLY_STOP,  # _AUTH_DONE
    ("ChargeParameterDiscoveryReq",) + _EARLY_STOP,  # _CPD (Ongoing)
    ("CableCheckReq",) + _EARLY_STOP,  # _CPD_DONE
    ("CableCheckReq",) + _EARLY_STOP,  # _CABLE (Ongoing)
    ("PreChargeReq",) + _EARLY_STOP,  # _CABLE_DONE
    ("PreChargeReq", "PowerDeliveryReq") + _EARLY_STOP,  # _PRECHARGE
    ("CurrentDemandReq", "PowerDeliveryReq"),  # _POWER_ON
    ("CurrentDemandReq", "PowerDeliveryReq"),  # _CHARGE
    ("WeldingDetectionReq", "SessionStopReq"),  # _POWER_OFF
    ("WeldingDetectionReq", "SessionStopReq"),  # _WELDING
    (),  # _STOPPED
)

# DIN PMax is a plain xs:short in watts: the schedule offers at most this (EVerest's DIN SECC clamps the same).
_PMAX_MAX = 32767
# SAScheduleTuple covers 24 h (EVerest cites DIN [V2G-DC-556] for it).
_SCHEDULE_DURATION = 86400


class DinStationSession:
    schema = "din"

    def __init__(self, evse, seed=None, rng=None, evse_id=b"DE*EVP*E0001*1", service_id=1,
                 energy_transfer_type="DC_extended", auth_ongoing_rounds=0, cpd_ongoing_rounds=0,
                 cable_check_voltage=None, log=None):
        """evse: the EVSE model; seed: makes the SessionID reproducible (random.Random(seed) on CPython);
        rng: or an object with getrandbits(n); *_ongoing_rounds: how many times ContractAuthentication and
        ChargeParameterDiscovery answer EVSEProcessing=Ongoing before Finished."""
        self.evse = evse
        self.evse_id = evse_id
        self.service_id = service_id
        self.energy_transfer_type = energy_transfer_type
        self.auth_ongoing_rounds = auth_ongoing_rounds
        self.cpd_ongoing_rounds = cpd_ongoing_rounds
        self.cable_check_voltage = cable_check_voltage
        self.log = log
        self._bits = _random_bits(seed, rng)
        self.session_id = b"\x00"
        self.state = _IDLE
        self.status = RUNNING
        self.reason = None
        self.requests = []  # request names as received, for tests and traces
        self.ev_id = None
        self.battery_voltage = None
        self.ev_ready_to_charge = False
        self._auth_rounds = 0
        self._cpd_rounds = 0

    @property
    def finished(self):
        return self.state == _STOPPED

    # ---- SeccConnection interface -----------------------------------------------------------------

    def on_request(self, name, body, header, now):
        self.requests.append(name)
        res = name[:-3] + "Res" if name.endswith("Req") else name
        if name not in _ALLOWED[self.state]:
            return self._failed(res, "FAILED_SequenceError", "%s out of sequence after %s" % (name, _state(self)))
        if name != "SessionSetupReq" and header.get("SessionID") != self.session_id:
            return self._failed(res, "FAILED_UnknownSession", "SessionID of %s is not this session's" % name)
        handler = _HANDLERS.get(name)
        return res, handler(self, body, now)

    # ---- handlers --------------------------------------------------------------------------------

    def _session_setup(self, body, now):
        self.ev_id = body.get("EVCCID")
        hi = self._bits(32)
        lo = self._bits(32)
        self.session_id = bytes((hi >> 24 & 255, hi >> 16 & 255, hi >> 8 & 255, hi & 255,
                                 lo >> 24 & 255, lo >> 16 & 255, lo >> 8 & 255, lo & 255))
        self.evse.begin_session()
        self.state = _SETUP
        return {"ResponseCode": "OK_NewSessionEstablished", "EVSEID": self.evse_id}

    def _service_discovery(self, body, now):
        self.state = _DISCOVERY
        return self._fill("ServiceDiscoveryRes", "OK")

    def _service_payment_selection(self, body, now):
        if body.get("SelectedPaymentOption") != "ExternalPayment":
            return self._fill_failed("ServicePaymentSelectionRes", "FAILED_PaymentSelectionInvalid",
                                     "payment option %s" % body.get("SelectedPaymentOption"))
        services = (body.get("SelectedServiceList") or {}).get("SelectedService") or ()
        ids = [s.get("ServiceID") for s in services]
        if self.service_id not in ids:
            return self._fill_failed("ServicePaymentSelectionRes", "FAILED_ServiceSelectionInvalid",
                                     "services %s do not include the charge service" % ids)
        self.state = _PAYMENT
        return {"ResponseCode": "OK"}

    def _contract_authentication(self, body, now):
        if self._auth_rounds < self.auth_ongoing_rounds:
            self._auth_rounds += 1
            self.state = _AUTH
            return {"ResponseCode": "OK", "EVSEProcessing": "Ongoing"}
        self.state = _AUTH_DONE
        return {"ResponseCode": "OK", "EVSEProcessing": "Finished"}

    def _charge_parameter_discovery(self, body, now):
        if body.get("EVRequestedEnergyTransferType") != self.energy_transfer_type:
            return self._fill_failed("ChargeParameterDiscoveryRes", "FAILED_WrongEnergyTransferType",
                                     "EV asked for %s" % body.get("EVRequestedEnergyTransferType"))
        if "DC_EVChargeParameter" not in body:
            return self._fill_failed("ChargeParameterDiscoveryRes", "FAILED_WrongChargeParameter",
                                     "no DC_EVChargeParameter")
        self.evse.advance(now)
        res = self._fill("ChargeParameterDiscoveryRes", "OK")
        if self._cpd_rounds < self.cpd_ongoing_rounds:
            self._cpd_rounds += 1
            self.state = _CPD
            return res
        res["EVSEProcessing"] = "Finished"
        self.state = _CPD_DONE
        return res

    def _cable_check(self, body, now):
        if self.state == _CPD_DONE:
            self.evse.start_cable_check(now, self.cable_check_voltage)
        processing, _ = self.evse.cable_check(now)
        self.state = _CABLE if processing == "Ongoing" else _CABLE_DONE
        return {"ResponseCode": "OK", "DC_EVSEStatus": self.evse.dc_evse_status(), "EVSEProcessing": processing}

    def _precharge(self, body, now):
        target_v = _value(body["EVTargetVoltage"], "V")
        target_i = _value(body["EVTargetCurrent"], "A")
        self.battery_voltage = target_v
        u = self.evse.precharge(now, target_v, target_i)
        self.state = _PRECHARGE
        return {"ResponseCode": "OK", "DC_EVSEStatus": self.evse.dc_evse_status(), "EVSEPresentVoltage": pv(u, "V")}

    def _power_delivery(self, body, now):
        ready = bool(body.get("ReadyToChargeState"))
        if ready and self.state == _PRECHARGE:
            self.evse.ev_contactors(now, True, self.battery_voltage)
            self.ev_ready_to_charge = True
            self.state = _POWER_ON
        elif not ready and self.state in (_POWER_ON, _CHARGE, _PRECHARGE):
            self.evse.stop(now)
            self.evse.ev_contactors(now, False)
            self.state = _POWER_OFF
        else:
            return self._fill_failed("PowerDeliveryRes", "FAILED_PowerDeliveryNotApplied",
                                     "ReadyToChargeState %s after %s" % (ready, _state(self)))
        return {"ResponseCode": "OK", "DC_EVSEStatus": self.evse.dc_evse_status()}

    def _current_demand(self, body, now):
        target_v = _value(body["EVTargetVoltage"], "V")
        target_i = _value(body["EVTargetCurrent"], "A")
        self.evse.current_demand(now, target_v, target_i)
        self.state = _CHARGE
        res = {"ResponseCode": "OK"}
        res.update(self.evse.current_demand_fields())
        return res

    def _welding_detection(self, body, now):
        self.evse.advance(now)
        self.state = _WELDING
        return self._fill("WeldingDetectionRes", "OK")

    def _session_stop(self, body, now):
        self.state = _STOPPED
        self.status = DONE
        self.reason = "session stopped"
        return {"ResponseCode": "OK"}

    # ---- responses ------------------------------------------------------------------------------

    def _fill(self, res, code):
        # `res` with `code` and every element the XSD requires, from the EVSE model's present state.
        evse = self.evse
        body = {"ResponseCode": code}
        if res == "SessionSetupRes":
            body["EVSEID"] = self.evse_id
        elif res == "ServiceDiscoveryRes":
            body["PaymentOptions"] = {"PaymentOption": ["ExternalPayment"]}
            body["ChargeService"] = {
                "ServiceTag": {"ServiceID": self.service_id, "ServiceCategory": "EVCharging"},
                "FreeService": False,
                "EnergyTransferType": self.energy_transfer_type,
            }
        elif res == "ContractAuthenticationRes":
            body["EVSEProcessing"] = "Finished"
        elif res == "ChargeParameterDiscoveryRes":
            # SAScheduleList is required by the DIN schema even while Ongoing: one tuple, PMax for 24 h.
            pmax = evse.config.dc_max_power
            pmax = int(pmax) if pmax < _PMAX_MAX else _PMAX_MAX
            body["EVSEProcessing"] = "Ongoing"
            body["SAScheduleList"] = {"SAScheduleTuple": [{
                "SAScheduleTupleID": 1,
                "PMaxSchedule": {"PMaxScheduleID": 1, "PMaxScheduleEntry": [
                    {"RelativeTimeInterval": {"start": 0, "duration": _SCHEDULE_DURATION}, "PMax": pmax}]},
            }]}
            body["DC_EVSEChargeParameter"] = evse.dc_charge_parameter()
        elif res in ("CableCheckRes", "PreChargeRes", "PowerDeliveryRes", "WeldingDetectionRes"):
            body["DC_EVSEStatus"] = evse.dc_evse_status()
            if res == "CableCheckRes":
                body["EVSEProcessing"] = "Finished"
            elif res != "PowerDeliveryRes":
                body["EVSEPresentVoltage"] = pv(evse.present_voltage, "V")
        elif res == "CurrentDemandRes":
            body.update(evse.current_demand_fields())
        return body

    def _fill_failed(self, res, code, why):
        self.status = FAILED
        self.reason = "%s: %s" % (code, why)
        return self._fill(res, code)

    def _failed(self, res, code, why):
        return res, self._fill_failed(res, code, why)


_HANDLERS = {
    "SessionSetupReq": DinStationSession._session_setup,
    "ServiceDiscoveryReq": DinStationSession._service_discovery,
    "ServicePaymentSelectionReq": DinStationSession._service_payment_selection,
    "ContractAuthenticationReq": DinStationSession._contract_authentication,
    "ChargeParameterDiscoveryReq": DinStationSession._charge_parameter_discovery,
    "CableCheckReq": DinStationSession._cable_check,
    "PreChargeReq": DinStationSession._precharge,
    "PowerDeliveryReq": DinStationSession._power_delivery,
    "CurrentDemandReq": DinStationSession._current_demand,
    "WeldingDetectionReq": DinStationSession._welding_detection,
    "SessionStopReq": DinStationSession._session_stop,
}

_STATE_NAMES = ("start", "SessionSetup", "ServiceDiscovery", "ServicePaymentSelection", "ContractAuthentication",
                "ContractAuthentication(finished)", "ChargeParameterDiscovery", "ChargeParameterDiscovery(finished)",
                "CableCheck", "CableCheck(finished)", "PreCharge", "PowerDelivery(on)", "CurrentDemand",
                "PowerDelivery(off)", "WeldingDetection", "SessionStop")


def _state(session):
    return _STATE_NAMES[session.state]


def _value(d, unit):
    # A PhysicalValue the XSD requires (the decoder saw to that) as a float in `unit`.
    return pv_value(d, unit)


def _random_bits(seed, rng):
    if rng is not None:
        return rng.getrandbits
    maker = getattr(random, "Random", None)
    if maker is not None:  # CPython: a private generator, reproducible with a seed
        return maker(seed).getrandbits
    if seed is not None:  # MicroPython: the module's generator
        random.seed(seed)
    return random.getrandbits
