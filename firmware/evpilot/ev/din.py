# DIN SPEC 70121 DC charging, EV side, sans-I/O: the protocol session EvClient (ev/client.py) drives.
#
# How this works
# --------------
# The session is a state machine whose state says which response it waits for. The client sends what
# first_request() / on_response() return and hands every response back; a response is first checked against
# the state (one table, STYLE rule 3: _RES[state] is the only response allowed there, anything else raises
# SequenceError naming both; _HANDLERS[state] takes it), then its ResponseCode (any FAILED* ends the
# session), then the state's handler decides the next request. The message sequence:
#
#   SessionSetup -> ServiceDiscovery -> ServicePaymentSelection (ExternalPayment)
#   -> ContractAuthentication (repeated while EVSEProcessing=Ongoing)
#   -> ChargeParameterDiscovery (repeated while Ongoing) -> CP state C
#   -> CableCheck (repeated while Ongoing) -> PreCharge (repeated until the EVSE's voltage matches the battery)
#   -> PowerDelivery(ReadyToChargeState=true) -> contactors closed
#   -> CurrentDemand (repeated until the vehicle or the EVSE ends charging)
#   -> PowerDelivery(false) -> contactors open, CP state B
#   -> WeldingDetection (repeated until the voltage has dropped) -> SessionStop
#
# Loops are bounded: each repeating phase records when its first request went out and fails once a
# response arrives after the phase's time limit. The client's message timeout covers a missing response.
# Emergencies (EVSE_EmergencyShutdown, a vehicle-side abort, a lost connection) end the session through
# safe_stop(): contactors open at once, CP state B. Every value the station reports passes the plausibility
# checks (ev/plausibility.py) before the vehicle sees it; the targets the EV sends are clamped by them.
# Repeated requests are paced (pace_ms, ev/client.py PACING): the client holds them until their cycle is up.
# An orderly stop (the vehicle is full or the driver stops, the EVSE says StopCharging / EVSE_Shutdown /
# EVSE_Malfunction) goes through PowerDelivery(false), WeldingDetection and SessionStop and ends DONE;
# summary() says why it stopped.

from evpilot.compat import const, ticks_diff
from evpilot.errors import PeerError, SequenceError, SessionError
from evpilot.ev import pilot
from evpilot.ev.client import PACING
from evpilot.ev.plausibility import Checks, value
from evpilot.ev.vehicle import current_demand_req, dc_ev_charge_parameter, precharge_req
from evpilot.v2g.timers import DIN_EVCC_CABLE_CHECK_TIMEOUT, DIN_EVCC_PRE_CHARGE_TIMEOUT

_DEBUG = const(0)

# States: the response awaited.
_SETUP = const(0)
_DISCOVERY = const(1)
_PAYMENT = const(2)
_AUTH = const(3)
_CPD = const(4)
_CABLE = const(5)
_PRECHARGE = const(6)
_POWER_ON = const(7)
_CHARGE = const(8)
_POWER_OFF = const(9)
_WELDING = const(10)
_STOP = const(11)
_DONE = const(12)
_FAILED = const(13)

# Public names for the states callers look at (const names starting with _ are not module attributes on
# MicroPython).
CURRENT_DEMAND = _CHARGE
DONE = _DONE
FAILED = _FAILED

STATE_NAMES = ("SessionSetup", "ServiceDiscovery", "ServicePaymentSelection", "ContractAuthentication",
               "ChargeParameterDiscovery", "CableCheck", "PreCharge", "PowerDelivery(on)", "CurrentDemand",
               "PowerDelivery(off)", "WeldingDetection", "SessionStop", "DONE", "FAILED")
# The one response each state accepts (None: the session is over).
_RES = ("SessionSetupRes", "ServiceDiscoveryRes", "ServicePaymentSelectionRes", "ContractAuthenticationRes",
        "ChargeParameterDiscoveryRes", "CableCheckRes", "PreChargeRes", "PowerDeliveryRes", "CurrentDemandRes",
        "PowerDeliveryRes", "WeldingDetectionRes", "SessionStopRes", None, None)

# How long the EV repeats a request answered with EVSEProcessing=Ongoing (ContractAuthentication,
# ChargeParameterDiscovery). DIN SPEC 70121 has no V2G_EVCC_Ongoing_Timeout of its own in the public
# sources: Josev's DIN EV (evcc/states/din_spec_states.py) bounds ChargeParameterDiscovery by the shared
# V2G_EVCC_ONGOING_TIMEOUT of 60 s (ISO 15118-2 [V2G2-711]), and pyPLC's fsmPev.py gives up after about 60
# rounds of one second. evpilot.v2g.timers notes the same gap.
ONGOING_TIMEOUT = const(60000)
# CableCheck and PreCharge loops: DIN SPEC 70121 Table 77 V2G_EVCC_CableCheck_Timeout (40 s) and
# V2G_EVCC_PreCharge_Timeout (7 s), from evpilot.v2g.timers (Josev din_spec/timeouts.py).
CABLE_CHECK_TIMEOUT = DIN_EVCC_CABLE_CHECK_TIMEOUT
PRE_CHARGE_TIMEOUT = DIN_EVCC_PRE_CHARGE_TIMEOUT
# Pre-charge is done when |EVSEPresentVoltage - battery voltage| is at most this (V). Not a DIN number: the
# EV decides before closing its contactors; pyPLC makes it configurable (u_delta_max_for_end_of_precharge);
# 20 V is this project's default.
PRECHARGE_TOLERANCE = 20.0
# WeldingDetection ends once EVSEPresentVoltage is below this (V): 60 V DC, the touch-safe limit that
# IEC 61851-23 uses for the output after charging. Our choice of threshold, configurable.
WELDING_VOLTAGE = 60.0
# How long the EV repeats WeldingDetectionReq waiting for the voltage to drop. DIN sets no EV timer here;
# this project's bound (configurable), well under the SECC's 60 s sequence timeout.
WELDING_TIMEOUT = const(20000)

_EMERGENCY = ("EVSE_EmergencyShutdown",)
_STOPPING = ("EVSE_Shutdown", "EVSE_Malfunction")


class DinSession:
    schema = "din"

    def __init__(self, vehicle, precharge_tolerance=PRECHARGE_TOLERANCE, ongoing_timeout_ms=ONGOING_TIMEOUT,
                 cable_check_timeout_ms=CABLE_CHECK_TIMEOUT, pre_charge_timeout_ms=PRE_CHARGE_TIMEOUT,
                 welding_voltage=WELDING_VOLTAGE, welding_timeout_ms=WELDING_TIMEOUT, log=None, pacing=PACING):
        """pacing: the cycle times of the repeated requests (ev/client.py PACING), None for none."""
        self.vehicle = vehicle
        self.checks = Checks(vehicle)
        self.pacing = pacing
        self.pace_ms = 0  # the cycle of the request on_response just returned (0: send at once)
        self.precharge_tolerance = precharge_tolerance
        self.ongoing_timeout_ms = ongoing_timeout_ms
        self.cable_check_timeout_ms = cable_check_timeout_ms
        self.pre_charge_timeout_ms = pre_charge_timeout_ms
        self.welding_voltage = welding_voltage
        self.welding_timeout_ms = welding_timeout_ms
        self.log = log
        self.state = _SETUP
        self.reason = None  # why the session ended (or is ending)
        self.evse_id = None
        self.service_id = None
        self.mode = None
        self.sa_schedule_tuple_id = None
        self.evse_limits = {}  # "max_current", "max_power", "max_voltage", "min_voltage", ... (SI numbers)
        self.evse_voltage = None
        self.evse_current = None
        self.energy_wh = 0.0
        self.rounds = 0  # requests in the present loop
        self._loop_start = None
        self._last_sample = None  # (now, V, I) of the last CurrentDemandRes
        self._start = None
        self._end = None
        self._soc_from = None
        self._soc_to = None

    # ---- EvClient interface -------------------------------------------------------------------------

    def first_request(self, now):
        self._start = now
        self._soc_from = self.vehicle.ev_ress_soc()
        self.state = _SETUP
        return "SessionSetupReq", {"EVCCID": self.vehicle.evcc_id()}

    def on_response(self, name, body, header, now):
        state = self.state
        if name != _RES[state]:  # None once the session is over: nothing is expected then
            raise SequenceError(STATE_NAMES[state], _RES[state], name)
        code = body.get("ResponseCode")
        if not isinstance(code, str) or not code.startswith("OK"):  # OK, OK_*; else FAILED, FAILED_*
            raise SessionError("%s: ResponseCode %s" % (name, code))
        status = body.get("DC_EVSEStatus")
        if status is not None and state < _POWER_OFF and status.get("EVSEStatusCode") in _EMERGENCY:
            raise SessionError("%s: EVSE_EmergencyShutdown" % name)
        self.pace_ms = 0
        nxt = _HANDLERS[state](self, body, now)
        if nxt is None:
            self._finish(now, _DONE)
        return nxt

    def safe_stop(self, now, reason):
        """Energy off at once: contactors open, CP state B; the session ends FAILED with `reason`."""
        v = self.vehicle
        try:
            v.open_contactors(now)
        finally:
            v.set_cp_state(pilot.STATE_B)
        if self.reason is None or self.state < _DONE:
            self.reason = reason
        self._finish(now, _FAILED)

    # ---- what the demo shows ----------------------------------------------------------------------------

    def summary(self):
        end = self._end
        dur = None
        if self._start is not None and end is not None:
            dur = ticks_diff(end, self._start) / 1000.0
        soc_to = self._soc_to
        if soc_to is None and self._soc_from is not None:
            soc_to = self.vehicle.ev_ress_soc()
        return {
            "protocol": "DIN SPEC 70121",
            "identification": "ExternalPayment",
            "state": STATE_NAMES[self.state],
            "energy_wh": round(self.energy_wh, 1),
            "duration_s": dur,
            "soc_from": self._soc_from,
            "soc_to": soc_to,
            "evse_id": _evse_id_text(self.evse_id),
            "reason": self.reason,
        }

    @property
    def finished(self):
        return self.state >= _DONE

    @property
    def failed(self):
        return self.state == _FAILED

    # ---- message bodies --------------------------------------------------------------------------------

    def _ev_status(self):
        v = self.vehicle
        st = {"EVReady": bool(v.ev_ready()), "EVErrorCode": v.ev_error_code(), "EVRESSSOC": v.ev_ress_soc()}
        x = v.ev_cabin_conditioning()
        if x is not None:
            st["EVCabinConditioning"] = bool(x)
        x = v.ev_ress_conditioning()
        if x is not None:
            st["EVRESSConditioning"] = bool(x)
        return st

    def _charge_parameter_req(self):
        p = dc_ev_charge_parameter(self.vehicle, self._ev_status())
        return "ChargeParameterDiscoveryReq", {"EVRequestedEnergyTransferType": self.mode, "DC_EVChargeParameter": p}

    def _precharge_req(self):
        return "PreChargeReq", precharge_req(self.vehicle, self._ev_status(), self.checks)

    def _power_delivery_req(self, ready):
        v = self.vehicle
        p = {"DC_EVStatus": self._ev_status(), "ChargingComplete": bool(v.charging_complete())}
        x = v.bulk_charging_complete()
        if x is not None:
            p["BulkChargingComplete"] = bool(x)
        return "PowerDeliveryReq", {"ReadyToChargeState": ready, "DC_EVPowerDeliveryParameter": p}

    def _current_demand_req(self):
        return "CurrentDemandReq", current_demand_req(self.vehicle, self._ev_status(), self.checks)

    # ---- transitions (one handler per state, in state order) ------------------------------------------

    def _enter(self, state, now):
        self.state = state
        self.rounds = 1
        self._loop_start = now

    def _again(self, limit_ms, what, now, loop, detail=""):
        # One more round of a repeating request, unless the phase is over its time limit; paced by `loop`
        # (an index into PACING).
        if ticks_diff(now, self._loop_start) >= limit_ms:
            raise SessionError("%s not finished within %d ms (%d requests)%s" % (what, limit_ms, self.rounds, detail))
        self.rounds += 1
        self._pace(loop)

    def _pace(self, loop):
        if self.pacing is not None:
            self.pace_ms = self.pacing[loop]

    def _on_setup(self, body, now):
        self.evse_id = body.get("EVSEID")
        self._enter(_DISCOVERY, now)
        return "ServiceDiscoveryReq", {"ServiceCategory": "EVCharging"}

    def _on_discovery(self, body, now):
        options = (body.get("PaymentOptions") or {}).get("PaymentOption") or ()
        if "ExternalPayment" not in options:
            raise SessionError("ServiceDiscoveryRes offers no ExternalPayment (%s)" % ", ".join(options))
        service = body.get("ChargeService") or {}
        offered = service.get("EnergyTransferType")
        mode = self.vehicle.requested_energy_transfer_mode([offered])
        if mode is None or not mode.startswith("DC_"):
            raise SessionError("ServiceDiscoveryRes offers %s, which this vehicle cannot use on DIN" % offered)
        try:
            self.service_id = service["ServiceTag"]["ServiceID"]
        except (KeyError, TypeError):
            raise PeerError("ServiceDiscoveryRes without ChargeService/ServiceTag/ServiceID")
        self.mode = mode
        self.vehicle.set_energy_transfer_mode(mode)
        self._enter(_PAYMENT, now)
        return "ServicePaymentSelectionReq", {
            "SelectedPaymentOption": "ExternalPayment",
            "SelectedServiceList": {"SelectedService": [{"ServiceID": self.service_id}]},
        }

    def _on_payment(self, body, now):
        self._enter(_AUTH, now)
        return "ContractAuthenticationReq", {}

    def _on_auth(self, body, now):
        if body.get("EVSEProcessing") == "Finished":
            self._enter(_CPD, now)
            return self._charge_parameter_req()
        self._again(self.ongoing_timeout_ms, "ContractAuthentication", now, 0)
        return "ContractAuthenticationReq", {}

    def _on_cpd(self, body, now):
        if body.get("EVSEProcessing") != "Finished":
            self._again(self.ongoing_timeout_ms, "ChargeParameterDiscovery", now, 0)
            return self._charge_parameter_req()
        p = body.get("DC_EVSEChargeParameter")
        tuples = (body.get("SAScheduleList") or {}).get("SAScheduleTuple")
        if p is None or not tuples:
            raise PeerError("ChargeParameterDiscoveryRes Finished without DC_EVSEChargeParameter or SAScheduleList")
        lim = self.evse_limits
        (lim["max_current"], lim["max_power"], lim["max_voltage"], lim["min_current"],
         lim["min_voltage"]) = self.checks.charge_parameter_dc("ChargeParameterDiscoveryRes", p)
        self.sa_schedule_tuple_id = tuples[0].get("SAScheduleTupleID")
        self.vehicle.on_evse_status(now, max_current=lim["max_current"], max_power=lim["max_power"],
                                    status=p.get("DC_EVSEStatus"))
        # CP state C before CableCheck: the EVSE starts its isolation test only with S2 closed.
        self.vehicle.set_cp_state(pilot.STATE_C)
        self._enter(_CABLE, now)
        return "CableCheckReq", {"DC_EVStatus": self._ev_status()}

    def _on_cable(self, body, now):
        status = body.get("DC_EVSEStatus") or {}
        if body.get("EVSEProcessing") != "Finished":
            self._again(self.cable_check_timeout_ms, "CableCheck", now, 1)
            return "CableCheckReq", {"DC_EVStatus": self._ev_status()}
        iso = status.get("EVSEIsolationStatus")
        if iso == "Fault" or iso == "Invalid":
            raise SessionError("CableCheck finished with EVSEIsolationStatus %s" % iso)
        code = status.get("EVSEStatusCode")
        if code in _STOPPING:
            raise SessionError("CableCheck finished with %s" % code)
        self._enter(_PRECHARGE, now)
        return self._precharge_req()

    def _on_precharge(self, body, now):
        status = body.get("DC_EVSEStatus") or {}
        code = status.get("EVSEStatusCode")
        if code in _STOPPING or status.get("EVSENotification") == "StopCharging":
            raise SessionError("PreCharge: the EVSE stops (%s, %s)" % (code, status.get("EVSENotification")))
        v = self.vehicle
        u = self.checks.open_voltage("PreChargeRes", value(body, "EVSEPresentVoltage", "V", "PreChargeRes"))
        self.evse_voltage = u
        v.on_evse_status(now, present_voltage=u, status=status)
        diff = u - v.present_voltage()
        if diff < 0:
            diff = -diff
        if diff <= self.precharge_tolerance:
            self._enter(_POWER_ON, now)
            return self._power_delivery_req(True)
        self._again(self.pre_charge_timeout_ms, "PreCharge", now, 2,
                    ": EVSEPresentVoltage %.1f V, battery %.1f V" % (u, v.present_voltage()))
        return self._precharge_req()

    def _on_power_on(self, body, now):
        self.vehicle.close_contactors(now)
        self._last_sample = None
        self._enter(_CHARGE, now)
        return self._current_demand_req()

    def _on_charge(self, body, now):
        v = self.vehicle
        u, i, max_i, max_p = self.checks.current_demand("CurrentDemandRes", body, now)
        status = body.get("DC_EVSEStatus") or {}
        # Energy: the previous sample's power held until now (what the EVSE reported it delivered).
        last = self._last_sample
        if last is not None:
            dt = ticks_diff(now, last[0])
            if dt > 0:
                self.energy_wh += last[1] * last[2] * dt / 3600000.0
        self._last_sample = (now, u, i)
        self.evse_voltage = u
        self.evse_current = i
        v.on_evse_status(now, present_voltage=u, present_current=i, max_current=max_i, max_power=max_p,
                         status=status)
        self.rounds += 1
        code = status.get("EVSEStatusCode")
        if code in _STOPPING or status.get("EVSENotification") == "StopCharging":
            return self._stop_charging("the EVSE stopped (%s, %s)" % (code, status.get("EVSENotification")), now)
        if v.charging_complete():
            return self._stop_charging("charging complete", now)
        if v.stop_requested():
            return self._stop_charging("stop requested by the vehicle", now)
        self._pace(3)
        return self._current_demand_req()

    def _stop_charging(self, reason, now):
        self.reason = reason
        self._soc_to = self.vehicle.ev_ress_soc()
        self._enter(_POWER_OFF, now)
        return self._power_delivery_req(False)

    def _on_power_off(self, body, now):
        # The EVSE has switched its output off: open the contactors, then S2 (CP state B), as the SECC checks
        # after PowerDelivery(off) (EVerest cites DIN [V2G-DC-988] for that check).
        v = self.vehicle
        v.open_contactors(now)
        v.set_cp_state(pilot.STATE_B)
        self._enter(_WELDING, now)
        return "WeldingDetectionReq", {"DC_EVStatus": self._ev_status()}

    def _on_welding(self, body, now):
        name = "WeldingDetectionRes"
        u = self.checks.open_voltage(name, value(body, "EVSEPresentVoltage", "V", name))
        self.evse_voltage = u
        self.vehicle.on_evse_status(now, present_voltage=u, status=body.get("DC_EVSEStatus"))
        if u < self.welding_voltage:
            self._enter(_STOP, now)
            return "SessionStopReq", {}
        self._again(self.welding_timeout_ms, "WeldingDetection (voltage %.0f V)" % u, now, 5)
        return "WeldingDetectionReq", {"DC_EVStatus": self._ev_status()}

    def _on_stop(self, body, now):
        self.vehicle.set_cp_state(pilot.STATE_B)
        return None

    def _finish(self, now, state):
        self.state = state
        if self._end is None:
            self._end = now
        if self._soc_to is None:
            self._soc_to = self.vehicle.ev_ress_soc()
        if self.reason is None:
            self.reason = "session stopped"


# Handlers by state (_SETUP .. _STOP), as function references: calling one is a tuple index and a call, where
# getattr(self, name) would look the name up and make a bound method on every response. Response names
# stay strings (what the decoder gives): comparing one with the name expected costs less than mapping it to
# a const first.
_HANDLERS = (
    DinSession._on_setup,
    DinSession._on_discovery,
    DinSession._on_payment,
    DinSession._on_auth,
    DinSession._on_cpd,
    DinSession._on_cable,
    DinSession._on_precharge,
    DinSession._on_power_on,
    DinSession._on_charge,
    DinSession._on_power_off,
    DinSession._on_welding,
    DinSession._on_stop,
)


def _evse_id_text(b):
    # EVSEID is hexBinary in DIN; chargers put ASCII in it ("DE*PNX*E12345*1"). Show text when it is text.
    if b is None:
        return None
    for c in b:
        if c < 0x20 or c > 0x7E:
            return "".join("%02x" % x for x in b)
    return "".join(chr(c) for c in b)
