# ISO 15118-2 EV session with external identification (EIM, SelectedPaymentOption ExternalPayment), AC and DC.
#
# How this works
# --------------
# EvClient (ev/client.py) runs SupportedAppProtocol, frames, decodes, keeps the SessionID and the message
# timeouts; this object decides what to send next. It is sans-I/O: every call gets `now` (ms), nothing reads
# a clock. The session moves through the states below; _EXPECT says which response each state accepts and
# _HANDLER which method handles it (STYLE rule 3: transitions are data, an illegal step raises SequenceError
# naming both), as in ev/din.py.
#
#   SessionSetup -> ServiceDiscovery -> [ServiceDetail...] -> PaymentServiceSelection -> Authorization*
#   -> ChargeParameterDiscovery* -> AC: PowerDelivery(Start) -> ChargingStatus* [-> MeteringReceipt]
#                                   DC: CableCheck* -> PreCharge* -> PowerDelivery(Start) -> CurrentDemand*
#   -> PowerDelivery(Stop) -> [DC: WeldingDetection*] -> SessionStop(Terminate | Pause)
#   (* repeats: EVSEProcessing Ongoing, or the charge loop). An EVSENotification ReNegotiation in the charge
#   loop goes PowerDelivery(Renegotiate) -> ChargeParameterDiscovery -> PowerDelivery(Start) -> loop.
#
# Every FAILED response code, an EVSE emergency shutdown or malfunction (DC_EVSEStatus EVSEStatusCode, AC
# RCD), an isolation fault, and an exceeded Ongoing/CableCheck/PreCharge/WeldingDetection bound raise
# SessionError naming the message; the client then calls safe_stop(): contactors open, CP state B. Values
# the station reports pass the plausibility checks (ev/plausibility.py) first, and the targets the EV sends
# are clamped by them. Repeated requests are paced (pace_ms, ev/client.py PACING).
#
# Plug&Charge (pnc=ContractManager, tls=True): the Contract steps live in ev/iso2_pnc.py (Iso2PncSteps,
# inherited): certificate installation/update, PaymentDetails, the signed AuthorizationReq, SalesTariff
# checks and signed MeteringReceiptReq. Without them the session is EIM exactly as described above.
#
# Resuming a paused session: create the session with resume_id=<old SessionID> and set the client's
# session_id to the same bytes before connection_made. SessionSetupRes must then be OK_OldSessionJoined with
# that SessionID; anything else ends the session.
#
# on_response gets each response's Header: the session keeps the SessionID of SessionSetupRes (EIM
# MeteringReceiptReq carries it in its body) and the Header of the response it is handling in
# response_header (Plug&Charge checks its Signature).

from evpilot.compat import const, ticks_diff
from evpilot.errors import PeerError, SequenceError, SessionError
from evpilot.ev import pilot
from evpilot.ev.client import PACING
from evpilot.ev.iso2_pnc import PNC_EXPECT, PNC_HANDLER, PNC_STATE_NAMES, Iso2PncSteps
from evpilot.ev.plausibility import Checks, status_ac, status_dc, value
from evpilot.ev.vehicle import current_demand_req, dc_ev_charge_parameter, precharge_req
from evpilot.v2g.messages import is_ac, opt_int, pv
from evpilot.v2g.timers import ISO2_EVCC_CABLE_CHECK_TIMEOUT, ISO2_EVCC_ONGOING_TIMEOUT, ISO2_EVCC_PRE_CHARGE_TIMEOUT

# No ISO-2 timer bounds WeldingDetection; this is our own bound (a car does a few rounds; RISE-V2G and Josev
# repeat it until the voltage is low). Voltage below which the output counts as discharged (IEC 61851-23
# safe DC voltage, 60 V).
WELDING_DETECTION_TIMEOUT = const(20000)
WELDING_SAFE_VOLTAGE = 60.0
# Pre-charge is done when the station's output is this close to the battery (Josev/RISE-V2G use a small
# tolerance too; the value is ours, an option).
PRECHARGE_TOLERANCE_V = 10.0

# States (one per request in flight).
_SETUP = const(0)
_DISCOVERY = const(1)
_DETAIL = const(2)
_PAYMENT = const(3)
_AUTH = const(4)
_CPD = const(5)
_CABLE = const(6)
_PRECHARGE = const(7)
_START = const(8)
_LOOP = const(9)
_RECEIPT = const(10)
_RENEGOTIATE = const(11)
_STOP = const(12)
_WELDING = const(13)
_SESSION_STOP = const(14)
_DONE = const(15)
_FAILED = const(16)

_STATE_NAMES = ("SessionSetup", "ServiceDiscovery", "ServiceDetail", "PaymentServiceSelection",
                "Authorization", "ChargeParameterDiscovery", "CableCheck", "PreCharge", "PowerDeliveryStart",
                "ChargeLoop", "MeteringReceipt", "PowerDeliveryRenegotiate", "PowerDeliveryStop",
                "WeldingDetection", "SessionStop", "Done", "Failed") + PNC_STATE_NAMES

# The response each state accepts (None: none; _LOOP's is _EXPECT_LOOP[ac]); _HANDLER, after the class,
# holds the handler of each state.
_EXPECT = ("SessionSetupRes", "ServiceDiscoveryRes", "ServiceDetailRes", "PaymentServiceSelectionRes",
           "AuthorizationRes", "ChargeParameterDiscoveryRes", "CableCheckRes", "PreChargeRes",
           "PowerDeliveryRes", None, "MeteringReceiptRes", "PowerDeliveryRes", "PowerDeliveryRes",
           "WeldingDetectionRes", "SessionStopRes", None, None) + PNC_EXPECT
_EXPECT_LOOP = ("CurrentDemandRes", "ChargingStatusRes")  # indexed by self.ac

# DC_EVSEStatusCode values that ask for a normal stop (those that end it failed: ev/plausibility.py).
_DC_STOP_CODES = ("EVSE_Shutdown", "EVSE_UtilityInterruptEvent")


class Iso2Session(Iso2PncSteps):
    schema = "iso2"

    def __init__(self, vehicle, pause=False, resume_id=None, service_details=(), max_entries=None,
                 schedule_index=0, precharge_tolerance=PRECHARGE_TOLERANCE_V, pnc=None, tls=False, pacing=PACING):
        """vehicle: a Vehicle; pause: end with SessionStop Pause (keep the SessionID for resume_id later);
        resume_id: the SessionID of a paused session to join; service_details: ServiceIDs to ask
        ServiceDetail for (only those the station lists); max_entries: MaxEntriesSAScheduleTuple or None;
        pnc: an ev.contracts.ContractManager to pay with Contract; tls: the connection runs over TLS (required
        for Contract); pacing: cycle times of the repeated requests (ev/client.py PACING), None for none."""
        self._pnc_init(pnc, tls)
        self.vehicle = vehicle
        self.checks = Checks(vehicle)
        self.pacing = pacing
        self.pace_ms = 0  # the cycle of the request on_response just returned (0: at once)
        self.pause = pause
        self.resume_id = resume_id
        self.service_details = list(service_details)
        self.max_entries = max_entries
        self.schedule_index = schedule_index
        self.precharge_tolerance = precharge_tolerance
        self.session_id = None  # from SessionSetupRes's Header
        self.response_header = None  # the Header of the response being handled
        self.state = _SETUP
        self.reason = None
        self.mode = None
        self.ac = False
        self.evse_id = None
        self.service_id = 1
        self.schedule_id = None
        self.pmax_schedule = None
        self.details = {}  # ServiceID -> ServiceParameterList
        self.receipts = 0
        self.renegotiations = 0
        self.cycles = 0
        self._pending_details = []
        self._renegotiating = False
        self._loop_started = None  # start of the present Ongoing / CableCheck / PreCharge / welding loop
        self._start = None
        self._end = None
        self._soc_from = None
        self._soc_to = None
        self._meter_first = None
        self._meter_last = None
        self._dc_wh = 0.0
        self._dc_last = None  # (now, watts) of the last CurrentDemandRes

    # ---- the protocol session interface -----------------------------------------------------------------

    def first_request(self, now):
        self._start = now
        self._soc_from = self.vehicle.ev_ress_soc()
        self.state = _SETUP
        return "SessionSetupReq", {"EVCCID": self.vehicle.evcc_id()}

    def on_response(self, name, body, header, now):
        state = self.state
        expect = _EXPECT[state]
        if state == _LOOP:
            expect = _EXPECT_LOOP[self.ac]
        if name != expect:  # None once the session is over: nothing is expected then
            raise SequenceError(_STATE_NAMES[state], expect, name)
        code = body.get("ResponseCode")
        if not isinstance(code, str) or not code.startswith("OK"):  # OK, OK_*; else FAILED, FAILED_*
            raise SessionError("%s: ResponseCode %s" % (name, code))
        self.response_header = header
        if state == _SETUP:
            self.session_id = header.get("SessionID")
        self.vehicle.advance(now)
        self.pace_ms = 0
        nxt = _HANDLER[state](self, body, now)
        if nxt is None:
            self._finish(now)
            self.state = _DONE
        return nxt

    def safe_stop(self, now, reason):
        self.state = _FAILED
        self.reason = reason
        self._finish(now)
        v = self.vehicle
        try:
            v.open_contactors(now)
        finally:
            v.set_cp_state(pilot.STATE_B)

    def summary(self):
        energy = None
        if self._meter_first is not None and self._meter_last != self._meter_first:
            energy = self._meter_last - self._meter_first
        elif not self.ac and self._dc_wh > 0:
            energy = int(self._dc_wh + 0.5)
        duration = None
        if self._start is not None and self._end is not None:
            duration = ticks_diff(self._end, self._start)
        return self._pnc_summary({
            "protocol": "iso2",
            "mode": None if self.mode is None else ("AC" if self.ac else "DC"),
            "energy_transfer_mode": self.mode,
            "energy_wh": energy,
            "duration_ms": duration,
            "soc_from": self._soc_from,
            "soc_to": self._soc_to,
            "evse_id": self.evse_id,
            "state": _STATE_NAMES[self.state],
            "reason": self.reason,
            "renegotiations": self.renegotiations,
            "receipts": self.receipts,
        })

    # ---- handlers: one per state, each returns the next request or None ---------------------------------

    def _on_setup(self, body, now):
        code = body["ResponseCode"]
        if self.resume_id is not None:
            # A resumed session must be joined with the SessionID it had.
            if code != "OK_OldSessionJoined" or (self.session_id is not None and self.session_id != self.resume_id):
                raise SessionError("SessionSetupRes: %s, expected OK_OldSessionJoined for the paused session" % code)
        elif code != "OK_NewSessionEstablished":
            raise SessionError("SessionSetupRes: %s, expected OK_NewSessionEstablished" % code)
        self.evse_id = body.get("EVSEID")
        self.state = _DISCOVERY
        return "ServiceDiscoveryReq", {}

    def _on_discovery(self, body, now):
        self.payment_option = self._choose_payment(body)
        service = body.get("ChargeService") or {}
        offered = (service.get("SupportedEnergyTransferMode") or {}).get("EnergyTransferMode") or []
        mode = self.vehicle.requested_energy_transfer_mode(offered)
        if mode is None or mode not in offered:
            raise SessionError("ServiceDiscoveryRes: none of our energy transfer modes in %s" % (offered,))
        self.mode = mode
        self.ac = is_ac(mode)
        self.vehicle.set_energy_transfer_mode(mode)
        self.service_id = service.get("ServiceID", 1)
        listed = [self.service_id]
        for s in (body.get("ServiceList") or {}).get("Service") or []:
            listed.append(s.get("ServiceID"))
        self._pending_details = [sid for sid in self.service_details if sid in listed]
        return self._next_detail_or_payment()

    def _next_detail_or_payment(self):
        if self._pending_details:
            self.state = _DETAIL
            return "ServiceDetailReq", {"ServiceID": self._pending_details[0]}
        self.state = _PAYMENT
        return "PaymentServiceSelectionReq", {"SelectedPaymentOption": self.payment_option,
                                              "SelectedServiceList": self._selected_services()}

    def _on_detail(self, body, now):
        asked = self._pending_details.pop(0)
        if body.get("ServiceID") != asked:
            raise SessionError("ServiceDetailRes: ServiceID %s, asked for %s" % (body.get("ServiceID"), asked))
        self.details[asked] = body.get("ServiceParameterList")
        return self._next_detail_or_payment()

    def _on_payment(self, body, now):
        if self.identification == "PnC":
            return self._pnc_after_payment(now)
        return self._authorize(now, ("AuthorizationReq", {}))  # EIM: no Id, no GenChallenge

    def _authorize(self, now, request):
        self.state = _AUTH
        self._loop_started = now
        return request

    def _on_auth(self, body, now):
        if self._ongoing(body, now, ISO2_EVCC_ONGOING_TIMEOUT, "AuthorizationRes"):
            self._pace(0)
            return "AuthorizationReq", {}
        self._loop_started = now
        return self._cpd_request()

    def _cpd_request(self):
        self.state = _CPD
        v = self.vehicle
        req = {"RequestedEnergyTransferMode": self.mode}
        if self.max_entries is not None:
            req["MaxEntriesSAScheduleTuple"] = self.max_entries
        if self.ac:
            p = {"EAmount": pv(v.e_amount(), "Wh"), "EVMaxVoltage": pv(v.ev_max_voltage(), "V"),
                 "EVMaxCurrent": pv(v.ev_max_current(), "A"), "EVMinCurrent": pv(v.ev_min_current(), "A")}
            opt_int(p, "DepartureTime", v.departure_time())
            req["AC_EVChargeParameter"] = p
        else:
            req["DC_EVChargeParameter"] = dc_ev_charge_parameter(v, self._dc_ev_status(), True)
        return "ChargeParameterDiscoveryReq", req

    def _on_cpd(self, body, now):
        key = "AC_EVSEChargeParameter" if self.ac else "DC_EVSEChargeParameter"
        param = body.get(key)
        if param is None:
            raise SessionError("ChargeParameterDiscoveryRes without %s (mode %s)" % (key, self.mode))
        name = "ChargeParameterDiscoveryRes"
        if self.ac:
            max_i, u = self.checks.charge_parameter_ac(name, param)
            self.vehicle.on_evse_status(now, present_voltage=u, max_current=max_i, status=param.get("AC_EVSEStatus"))
        else:
            status_dc(param.get("DC_EVSEStatus"), name)
            max_i, max_p = self.checks.charge_parameter_dc(name, param)[:2]
            self.vehicle.on_evse_status(now, max_current=max_i, max_power=max_p, status=param.get("DC_EVSEStatus"))
        if self._ongoing(body, now, ISO2_EVCC_ONGOING_TIMEOUT, name):
            self._pace(0)
            return self._cpd_request()
        tuples = self._pnc_tariffs((body.get("SAScheduleList") or {}).get("SAScheduleTuple") or [])
        if not tuples:
            raise SessionError("ChargeParameterDiscoveryRes: Finished without an SAScheduleList")
        chosen = tuples[self.schedule_index if self.schedule_index < len(tuples) else 0]
        self.schedule_id = chosen.get("SAScheduleTupleID")
        self.pmax_schedule = chosen.get("PMaxSchedule")
        self.sales_tariff = chosen.get("SalesTariff")
        if self._renegotiating:
            self._renegotiating = False
            return self._power_delivery("Start", now)  # CP C and contactors closed already: back to the loop
        self.vehicle.set_cp_state(pilot.STATE_C)
        if self.ac:
            return self._power_delivery("Start", now)
        self.state = _CABLE
        self._loop_started = now
        return "CableCheckReq", {"DC_EVStatus": self._dc_ev_status()}

    def _on_cable(self, body, now):
        status = body.get("DC_EVSEStatus")
        status_dc(status, "CableCheckRes")
        if self._ongoing(body, now, ISO2_EVCC_CABLE_CHECK_TIMEOUT, "CableCheckRes"):
            self._pace(1)
            return "CableCheckReq", {"DC_EVStatus": self._dc_ev_status()}
        if (status or {}).get("EVSEIsolationStatus") not in ("Valid", "Warning"):
            raise SessionError("CableCheckRes: Finished with isolation %s" % (status or {}).get("EVSEIsolationStatus"))
        self.state = _PRECHARGE
        self._loop_started = now
        return self._precharge_request()

    def _precharge_request(self):
        return "PreChargeReq", precharge_req(self.vehicle, self._dc_ev_status(), self.checks)

    def _on_precharge(self, body, now):
        status_dc(body.get("DC_EVSEStatus"), "PreChargeRes")
        present = self.checks.open_voltage("PreChargeRes", value(body, "EVSEPresentVoltage", "V", "PreChargeRes"))
        self.vehicle.on_evse_status(now, present_voltage=present, status=body.get("DC_EVSEStatus"))
        target = self.vehicle.present_voltage()
        if abs(present - target) <= self.precharge_tolerance:
            self.vehicle.close_contactors(now)  # pre-charge matched the pack: close
            return self._power_delivery("Start", now)
        if ticks_diff(now, self._loop_started) >= ISO2_EVCC_PRE_CHARGE_TIMEOUT:
            raise SessionError("PreChargeRes: EVSEPresentVoltage %.1f V after %d ms, battery at %.1f V "
                               "(V2G_EVCC_PreCharge_Timeout)" % (present, ISO2_EVCC_PRE_CHARGE_TIMEOUT, target))
        self._pace(2)
        return self._precharge_request()

    def _power_delivery(self, progress, now):
        self.state = {"Start": _START, "Stop": _STOP, "Renegotiate": _RENEGOTIATE}[progress]
        req = {"ChargeProgress": progress, "SAScheduleTupleID": self.schedule_id}
        if not self.ac:
            v = self.vehicle
            p = {"DC_EVStatus": self._dc_ev_status(), "ChargingComplete": bool(v.charging_complete())}
            bulk = v.bulk_charging_complete()
            if bulk is not None:
                p["BulkChargingComplete"] = bool(bulk)
            req["DC_EVPowerDeliveryParameter"] = p
        return "PowerDeliveryReq", req

    def _on_start(self, body, now):
        self._check_status(body, "PowerDeliveryRes")
        if self.ac:
            self.vehicle.close_contactors(now)
        return self._loop_request(now)

    def _loop_request(self, now):
        self.state = _LOOP
        if self.ac:
            return "ChargingStatusReq", {}
        return "CurrentDemandReq", current_demand_req(self.vehicle, self._dc_ev_status(), self.checks)

    def _on_loop(self, body, now):
        self.cycles += 1
        v = self.vehicle
        meter = body.get("MeterInfo")
        reading = None if meter is None else meter.get("MeterReading")
        if reading is not None:
            if self._meter_first is None:
                self._meter_first = reading
            self._meter_last = reading
        c = self.checks
        name = _EXPECT_LOOP[self.ac]
        if self.ac:
            status = body.get("AC_EVSEStatus")
            max_i = c.charge_parameter_ac(name, body)[0]
            v.on_evse_status(now, max_current=max_i, meter_reading=reading, status=status)
        else:
            status = body.get("DC_EVSEStatus")
            status_dc(status, name)
            volts, amps, max_i, max_p = c.current_demand(name, body, now)
            if self._dc_last is not None:
                self._dc_wh += self._dc_last[1] * ticks_diff(now, self._dc_last[0]) / 3600000.0
            self._dc_last = (now, volts * amps)
            v.on_evse_status(now, present_voltage=volts, present_current=amps, meter_reading=reading,
                             max_current=max_i, max_power=max_p, status=status)
        if self.schedule_id is not None and body.get("SAScheduleTupleID") not in (None, self.schedule_id):
            raise SessionError("%s: SAScheduleTupleID %s, agreed %s"
                               % (_EXPECT_LOOP[self.ac], body.get("SAScheduleTupleID"), self.schedule_id))
        notification = (status or {}).get("EVSENotification")
        if (notification == "StopCharging" or (status or {}).get("EVSEStatusCode") in _DC_STOP_CODES
                or v.charging_complete() or v.stop_requested()):
            return self._power_delivery("Stop", now)
        if body.get("ReceiptRequired"):
            if meter is None:
                raise SessionError("%s: ReceiptRequired without MeterInfo" % _EXPECT_LOOP[self.ac])
            self.state = _RECEIPT
            if self.identification == "PnC":
                return self._pnc_receipt(meter)  # signed with the contract key
            req = {"SessionID": self.session_id, "MeterInfo": meter}  # EIM: unsigned, no Id
            if self.schedule_id is not None:
                req["SAScheduleTupleID"] = self.schedule_id
            return "MeteringReceiptReq", req
        if notification == "ReNegotiation":
            return self._power_delivery("Renegotiate", now)
        self._pace(4 if self.ac else 3)
        return self._loop_request(now)

    def _on_receipt(self, body, now):
        self._check_status(body, "MeteringReceiptRes")
        self.receipts += 1
        status = body.get("AC_EVSEStatus") or body.get("DC_EVSEStatus") or {}
        if status.get("EVSENotification") == "StopCharging":
            return self._power_delivery("Stop", now)
        if status.get("EVSENotification") == "ReNegotiation":
            return self._power_delivery("Renegotiate", now)
        return self._loop_request(now)

    def _on_renegotiate(self, body, now):
        self._check_status(body, "PowerDeliveryRes")
        self.renegotiations += 1
        self._renegotiating = True
        self._loop_started = now
        return self._cpd_request()

    def _on_stop(self, body, now):
        # Energy transfer has stopped: open the contactors, S2 open (CP state B).
        v = self.vehicle
        v.open_contactors(now)
        v.set_cp_state(pilot.STATE_B)
        if self.ac:
            return self._session_stop()
        self.state = _WELDING
        self._loop_started = now
        return "WeldingDetectionReq", {"DC_EVStatus": self._dc_ev_status()}

    def _on_welding(self, body, now):
        status_dc(body.get("DC_EVSEStatus"), "WeldingDetectionRes")
        volts = self.checks.open_voltage("WeldingDetectionRes",
                                    value(body, "EVSEPresentVoltage", "V", "WeldingDetectionRes"))
        if volts <= WELDING_SAFE_VOLTAGE:
            return self._session_stop()
        if ticks_diff(now, self._loop_started) >= WELDING_DETECTION_TIMEOUT:
            raise SessionError("WeldingDetectionRes: still %.1f V after %d ms" % (volts, WELDING_DETECTION_TIMEOUT))
        self._pace(5)
        return "WeldingDetectionReq", {"DC_EVStatus": self._dc_ev_status()}

    def _session_stop(self):
        self.state = _SESSION_STOP
        return "SessionStopReq", {"ChargingSession": "Pause" if self.pause else "Terminate"}

    def _on_session_stop(self, body, now):
        self.reason = "paused" if self.pause else "terminated"
        return None

    # ---- helpers ----------------------------------------------------------------------------------------

    def _ongoing(self, body, now, limit, name):
        processing = body.get("EVSEProcessing")
        if processing == "Finished":
            return False
        if processing not in ("Ongoing", "Ongoing_WaitingForCustomerInteraction"):
            raise PeerError("%s: EVSEProcessing %s" % (name, processing))
        if ticks_diff(now, self._loop_started) >= limit:
            raise SessionError("%s: still %s after %d ms" % (name, processing, limit))
        return True

    def _check_status(self, body, name):
        if self.ac:
            status_ac(body.get("AC_EVSEStatus"), name)
        else:
            status_dc(body.get("DC_EVSEStatus"), name)

    def _pace(self, loop):
        if self.pacing is not None:
            self.pace_ms = self.pacing[loop]

    def _dc_ev_status(self):
        v = self.vehicle
        return {"EVReady": bool(v.ev_ready()), "EVErrorCode": v.ev_error_code(), "EVRESSSOC": v.ev_ress_soc()}

    def _finish(self, now):
        if self._end is None:
            self._end = now
            try:
                self._soc_to = self.vehicle.ev_ress_soc()
            except Exception:  # a vehicle that cannot say must not hide why the session ended
                self._soc_to = None


# Handlers by state, in _EXPECT's order, as function references (as in ev/din.py): calling one is a tuple
# index and a call, where getattr(self, name) would look the name up and make a bound method each time.
_HANDLER = (Iso2Session._on_setup, Iso2Session._on_discovery, Iso2Session._on_detail, Iso2Session._on_payment,
            Iso2Session._on_auth, Iso2Session._on_cpd, Iso2Session._on_cable, Iso2Session._on_precharge,
            Iso2Session._on_start, Iso2Session._on_loop, Iso2Session._on_receipt, Iso2Session._on_renegotiate,
            Iso2Session._on_stop, Iso2Session._on_welding, Iso2Session._on_session_stop, None, None) + PNC_HANDLER

