# The vehicle-controller interface: what the EV sessions (DIN SPEC 70121, ISO 15118-2, later -20) ask of the
# vehicle, and the request parts both sessions build from it (CurrentDemandReq, DC_EVChargeParameter).
#
# How this works
# --------------
# An integrator subclasses Vehicle on a board and answers from the BMS, the onboard charger and the contactor
# driver; SimVehicle (evpilot_sim.vehicle) is the model used on the laptop and in tests. A session calls these
# methods while it builds requests, and tells the vehicle what the station said through on_evse_status().
# Method names follow the XSD element they fill (ev_maximum_current_limit -> EVMaximumCurrentLimit,
# ev_ress_soc -> EVRESSSOC), so the mapping in a session is one line per element.
#
# Units are plain SI numbers (float or int): volts, amperes, watts, watt-hours, seconds, percent. The session
# turns them into PhysicalValue dicts with pv() and back with pv_value() (evpilot.v2g.messages). A method
# answers for the moment the session asks; time reaches the vehicle only as `now` (milliseconds, compared
# with evpilot.compat ticks_diff) through advance(now) and on_evse_status(now, ...): a Vehicle never reads a
# clock.
#
# Methods without a sensible default raise UsageError("not implemented"): an integrator finds out on the
# first session which ones the board must provide. Optional elements have defaults returning None (the
# session then leaves the element out).
#
# Safety: which checks are ours and which are the integrator's
# -----------------------------------------------------------
# Ours (evpilot.ev.plausibility, in every protocol session), on what the station *reports*: negative or
# contradictory limits, a present voltage beyond EVMaximumVoltageLimit, a present current beyond
# EVMaximumCurrentLimit, out of the battery, or above what was requested once the settling time is over, a
# PreCharge that never matches the battery within V2G_EVCC_PreCharge_Timeout; each ends the session in the
# safe state (open_contactors, set_cp_state(STATE_B), no current requested) with the value named. And on what
# the EV *requests*: EVTargetCurrent is clamped to 0..min(ev_maximum_current_limit, the station's limit) and
# to the smaller power limit, EVTargetVoltage to 0..ev_maximum_voltage_limit, the pre-charge current to 2 A,
# whatever the methods below return. A Vehicle method that raises ends the session the same way.
# The integrator's (the battery management system, which measures what we can only be told): the pack's own
# voltage, current, temperature and cell limits (answer ev_target_current / ev_maximum_* from them and stop
# through stop_requested or ev_error_code when they are exceeded); the inlet voltage measured before closing
# the contactors (present_voltage() should be the pack, the EVSE's figure is only what the station says);
# contactor feedback (contactors_closed() as measured) and welding; the isolation monitor on the vehicle
# side; for AC, the onboard charger's current against the PWM duty cycle (IEC 61851-1) and EVSEMaxCurrent.
# The protocol checks do not replace a BMS's hardware protection: they stop the session when the station's
# messages say something unsafe, which a BMS cannot see.

from evpilot.errors import UsageError

# The EnergyTransferModeType values are the messages' vocabulary; a vehicle names its modes with them, so
# they are importable from here too.
from evpilot.v2g.messages import (  # noqa: F401
    AC_SINGLE_PHASE_CORE,
    AC_THREE_PHASE_CORE,
    DC_COMBO_CORE,
    DC_CORE,
    DC_EXTENDED,
    DC_UNIQUE,
    ENERGY_TRANSFER_MODES,
    opt_int,
    opt_pv,
    pv,
)

# DC_EVErrorCodeType values a vehicle reports in DC_EVStatus.
NO_ERROR = "NO_ERROR"


def current_demand_req(vehicle, dc_ev_status, checks):
    """The CurrentDemandReq body, the same elements in DIN SPEC 70121 and ISO 15118-2: the vehicle's targets
    and limits with its DC_EVStatus (which differs between the two). checks (ev.plausibility.Checks) keeps
    the targets within the vehicle's and the station's limits."""
    v = vehicle
    u = checks.target_voltage(v.ev_target_voltage())
    body = {
        "DC_EVStatus": dc_ev_status,
        "EVTargetCurrent": pv(checks.target_current(v.ev_target_current(), u), "A"),
        "EVTargetVoltage": pv(u, "V"),
        "EVMaximumVoltageLimit": pv(v.ev_maximum_voltage_limit(), "V"),
        "EVMaximumCurrentLimit": pv(v.ev_maximum_current_limit(), "A"),
        "ChargingComplete": bool(v.charging_complete()),
    }
    opt_pv(body, "EVMaximumPowerLimit", v.ev_maximum_power_limit(), "W")
    bulk = v.bulk_charging_complete()
    if bulk is not None:
        body["BulkChargingComplete"] = bool(bulk)
    _opt_time(body, "RemainingTimeToFullSoC", v.remaining_time_to_full_soc())
    _opt_time(body, "RemainingTimeToBulkSoC", v.remaining_time_to_bulk_soc())
    return body


def precharge_req(vehicle, dc_ev_status, checks):
    """The PreChargeReq body (DIN SPEC 70121 and ISO 15118-2): the battery voltage, at most 2 A."""
    v = vehicle
    return {"DC_EVStatus": dc_ev_status, "EVTargetVoltage": pv(checks.target_voltage(v.ev_target_voltage()), "V"),
            "EVTargetCurrent": pv(checks.precharge_current(v.ev_target_current()), "A")}


# The largest PhysicalValue (32767 * 10^3). A remaining time beyond it (a station that offers almost no power
# makes it years) is left out: the element is optional, and no estimate is better than an overflow.
_PV_MAX = 32767000


def _opt_time(body, key, seconds):
    if seconds is not None and 0 <= seconds <= _PV_MAX:
        body[key] = pv(seconds, "s")


def dc_ev_charge_parameter(vehicle, dc_ev_status, departure_time=False):
    """DC_EVChargeParameter, the same elements in DIN SPEC 70121 and ISO 15118-2 (ISO-2 adds the optional
    DepartureTime, asked for with departure_time=True)."""
    v = vehicle
    p = {
        "DC_EVStatus": dc_ev_status,
        "EVMaximumCurrentLimit": pv(v.ev_maximum_current_limit(), "A"),
        "EVMaximumVoltageLimit": pv(v.ev_maximum_voltage_limit(), "V"),
    }
    if departure_time:
        opt_int(p, "DepartureTime", v.departure_time())
    opt_pv(p, "EVMaximumPowerLimit", v.ev_maximum_power_limit(), "W")
    opt_pv(p, "EVEnergyCapacity", v.ev_energy_capacity(), "Wh")
    opt_pv(p, "EVEnergyRequest", v.ev_energy_request(), "Wh")
    opt_int(p, "FullSOC", v.full_soc())
    opt_int(p, "BulkSOC", v.bulk_soc())
    return p


def _todo(name):
    raise UsageError("not implemented: Vehicle." + name)


class Vehicle:
    """What an EV session needs from the vehicle. Subclass it; see the module comment for units and time."""

    def __init__(self):
        self.energy_transfer_mode = None
        self.cp_state = None

    # -- identity and service selection --

    def evcc_id(self):
        """EVCCID: the 6-byte MAC address of the EV's PLC modem (bytes)."""
        _todo("evcc_id")

    def energy_transfer_modes(self):
        """The EnergyTransferModeType strings this vehicle supports, most preferred first."""
        _todo("energy_transfer_modes")

    def requested_energy_transfer_mode(self, offered):
        """RequestedEnergyTransferMode: the first of ours the station offers (a list of strings), or None."""
        for mode in self.energy_transfer_modes():
            if mode in offered:
                return mode
        return None

    def set_energy_transfer_mode(self, mode):
        """The session tells the vehicle which mode was agreed (before ChargeParameterDiscovery)."""
        if mode not in ENERGY_TRANSFER_MODES:
            raise UsageError("unknown energy transfer mode " + str(mode))
        self.energy_transfer_mode = mode

    # -- battery --

    def ev_ress_soc(self):
        """EVRESSSOC: state of charge in percent, an int 0..100."""
        _todo("ev_ress_soc")

    def ev_energy_capacity(self):
        """EVEnergyCapacity in Wh, or None to leave it out."""
        return None

    def ev_energy_request(self):
        """EVEnergyRequest in Wh (energy to reach full_soc), or None to leave it out."""
        return None

    def present_voltage(self):
        """The battery's present voltage in V (pre-charge target; ISO 15118-20 EVPresentVoltage)."""
        _todo("present_voltage")

    # -- AC (AC_EVChargeParameter, ChargingStatus) --

    def departure_time(self):
        """DepartureTime: seconds from now until the driver leaves, or None."""
        return None

    def e_amount(self):
        """EAmount: energy in Wh the vehicle wants (to full)."""
        _todo("e_amount")

    def ev_max_voltage(self):
        """EVMaxVoltage in V (per phase, AC)."""
        _todo("ev_max_voltage")

    def ev_max_current(self):
        """EVMaxCurrent in A per phase (the onboard charger's limit)."""
        _todo("ev_max_current")

    def ev_min_current(self):
        """EVMinCurrent in A per phase."""
        _todo("ev_min_current")

    # -- DC (DC_EVChargeParameter, DC_EVStatus, PreCharge, CurrentDemand) --

    def ev_maximum_voltage_limit(self):
        """EVMaximumVoltageLimit in V."""
        _todo("ev_maximum_voltage_limit")

    def ev_maximum_current_limit(self):
        """EVMaximumCurrentLimit in A."""
        _todo("ev_maximum_current_limit")

    def ev_maximum_power_limit(self):
        """EVMaximumPowerLimit in W, or None to leave it out."""
        return None

    def ev_target_voltage(self):
        """EVTargetVoltage in V: during pre-charge the battery voltage, while charging the set point."""
        _todo("ev_target_voltage")

    def ev_target_current(self):
        """EVTargetCurrent in A: during pre-charge a small current (<= 2 A), while charging the demand."""
        _todo("ev_target_current")

    def bulk_soc(self):
        """BulkSOC in percent, or None."""
        return None

    def full_soc(self):
        """FullSOC in percent, or None."""
        return None

    def ev_ready(self):
        """EVReady (DC_EVStatus)."""
        return True

    def ev_error_code(self):
        """EVErrorCode (DC_EVErrorCodeType string)."""
        return NO_ERROR

    def ev_cabin_conditioning(self):
        """EVCabinConditioning (DIN, optional), or None."""
        return None

    def ev_ress_conditioning(self):
        """EVRESSConditioning (DIN, optional), or None."""
        return None

    def remaining_time_to_full_soc(self):
        """RemainingTimeToFullSoC in s, or None."""
        return None

    def remaining_time_to_bulk_soc(self):
        """RemainingTimeToBulkSoC in s, or None."""
        return None

    def charging_complete(self):
        """ChargingComplete: the vehicle wants no more energy (the session then stops)."""
        _todo("charging_complete")

    def bulk_charging_complete(self):
        """BulkChargingComplete, or None to leave it out."""
        return None

    # -- switching --

    def close_contactors(self, now):
        """Close the HV contactors (DC, after pre-charge)."""
        _todo("close_contactors")

    def open_contactors(self, now):
        """Open the HV contactors (DC, after the current has stopped)."""
        _todo("open_contactors")

    def contactors_closed(self):
        """True once the contactors are closed (as measured, not as commanded)."""
        _todo("contactors_closed")

    def set_cp_state(self, state):
        """Switch S2: evpilot.ev.pilot.STATE_B (open) or STATE_C (closed; STATE_D when ventilation is needed)."""
        _todo("set_cp_state")

    # -- from the station, from the driver, and time --

    def on_evse_status(self, now, present_voltage=None, present_current=None, meter_reading=None,
                       max_current=None, max_power=None, status=None):
        """What the station reported, in SI numbers (None: not in that message).

        present_voltage, present_current: EVSEPresentVoltage/-Current (DC) or the nominal voltage (AC);
        meter_reading: MeterReading in Wh; max_current, max_power: the station's present limits (for AC,
        EVSEMaxCurrent per phase); status: the AC_EVSEStatus or DC_EVSEStatus dict as received.
        """
        pass

    def stop_requested(self):
        """True when the driver (or the vehicle) wants the session to end."""
        return False

    def advance(self, now):
        """Move a model's physics to `now`. A real vehicle has nothing to do."""
        pass
