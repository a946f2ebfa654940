# SimVehicle: a deterministic battery-electric vehicle model behind the Vehicle interface, for the laptop
# ("evpilot ev", "evpilot demo") and for tests.
#
# How this works
# --------------
# The battery holds energy as an integer of mWh plus a remainder in W*ms, so nothing is lost to rounding on
# boards whose float is single precision. advance(now) integrates power over the virtual time since the last
# call:
#   DC: the station's measured EVSEPresentVoltage * EVSEPresentCurrent (as last given to on_evse_status),
#       while the contactors are closed;
#   AC: phases * line voltage * the current the onboard charger draws, while the pilot switch is in state C.
#       The draw is min(onboard charger limit, the station's offer (EVSEMaxCurrent and, with a Pilot
#       attached, the PWM limit), what the battery accepts); it stops exactly at the target SoC.
# The pack's open-circuit voltage rises linearly with SoC from v_min to v_max (330..410 V: a 400 V class
# pack); its terminal voltage adds current * internal resistance.
#
# Charging curve (what ev_target_current asks for, DC): constant current up to bulk_soc (80 %), limited by
# max_current and by max_power / voltage; above bulk_soc the current tapers linearly towards zero at 100 %
# (CC-CV-like), never below taper_min_current until the target is reached. At target_soc the vehicle
# reports ChargingComplete and asks for no more current. Call advance() at least every second or so: a
# step integrates at constant power.
#
# Whatever the station reports, the model never raises: on_evse_status clamps the station's limits to zero
# from below (a negative limit offers nothing), the charging curve takes the smaller of its own and the
# station's limits and never goes below zero, and a remaining time that would not fit a message (a station
# offering almost no power) is None. Ending the session over such values is the plausibility checks'
# business (evpilot.ev.plausibility), not the model's.

from evpilot.compat import ticks_diff
from evpilot.errors import UsageError
from evpilot.ev import pilot as _pilot
from evpilot.ev.vehicle import (
    AC_SINGLE_PHASE_CORE,
    AC_THREE_PHASE_CORE,
    DC_EXTENDED,
    NO_ERROR,
    Vehicle,
)
from evpilot.v2g.messages import is_ac

# DIN SPEC 70121 / ISO 15118-2 limit the pre-charge current to 2 A.
PRECHARGE_CURRENT = 2.0
# W*ms in one mWh.
_WMS_PER_MWH = 3600
# The longest remaining time the model reports (s; about a year, well inside a PhysicalValue's 32767000 s).
_TIME_MAX_S = 31536000


class SimVehicle(Vehicle):
    def __init__(
        self,
        capacity_wh=60000,
        soc=20,
        target_soc=80,
        bulk_soc=80,
        modes=(DC_EXTENDED, AC_THREE_PHASE_CORE),
        evcc_id=b"\x02\x00\x00\x00\x00\x01",
        v_min=330.0,
        v_max=410.0,
        max_voltage=420.0,
        max_current=400.0,
        max_power=150000.0,
        internal_resistance=0.03,
        taper_min_current=5.0,
        ac_max_current=16.0,
        ac_min_current=6.0,
        ac_max_voltage=250.0,
        ac_phases=3,
        pilot=None,
    ):
        Vehicle.__init__(self)
        if capacity_wh <= 0 or soc < 0 or soc > 100 or target_soc < 0 or target_soc > 100:
            raise UsageError("SimVehicle: capacity must be positive and SoCs within 0..100")
        self.capacity_wh = capacity_wh
        self.target_soc = target_soc
        self._bulk_soc = bulk_soc
        self.modes = tuple(modes)
        self._evcc_id = evcc_id
        self.v_min = v_min
        self.v_max = v_max
        self.max_voltage = max_voltage
        self.max_current = max_current
        self.max_power = max_power
        self.r = internal_resistance
        self.taper_min_current = taper_min_current
        self.ac_max_current = ac_max_current
        self.ac_min_current = ac_min_current
        self.ac_max_voltage = ac_max_voltage
        self.ac_phases = ac_phases
        self.pilot = pilot
        self.energy_transfer_mode = self.modes[0] if self.modes else None
        self.cp_state = _pilot.STATE_B
        # Fault injection and driver input: set these directly.
        self.error_code = NO_ERROR
        self.ready = True
        self.stop = False
        # Battery content.
        self._capacity_mwh = int(capacity_wh * 1000)
        self._mwh = int(capacity_wh * 10 * soc)
        self._rem = 0
        self._last = None
        self._closed = False
        # What the station last reported (None: not yet).
        self.evse_voltage = None
        self.evse_current = None
        self.evse_max_current = None
        self.evse_max_power = None
        self._time_cache = {}  # soc_end -> (key, seconds), see _time_to
        self.meter_reading = None
        # What the onboard charger draws per phase (AC), for the station model to read.
        self.ac_current = 0.0

    # -- battery physics --

    def soc(self):
        """State of charge in percent as a float (ev_ress_soc() is the int the messages carry)."""
        return self._mwh * 100.0 / self._capacity_mwh

    def energy_wh(self):
        return self._mwh / 1000.0

    def ocv(self, soc=None):
        """Open-circuit pack voltage at `soc` (default: now)."""
        if soc is None:
            soc = self.soc()
        return self.v_min + (self.v_max - self.v_min) * soc / 100.0

    def _target_mwh(self):
        return int(self.capacity_wh * 10 * self.target_soc)

    def _dc_curve(self, soc):
        # The current the pack accepts at `soc`: CC up to bulk SoC, then a linear taper; power limited.
        i = self.max_current
        if soc > self._bulk_soc and self._bulk_soc < 100:
            i = self.max_current * (100.0 - soc) / (100.0 - self._bulk_soc)
            if i < self.taper_min_current:
                i = self.taper_min_current
        v = self.ocv(soc)
        power = self.max_power
        if self.evse_max_power is not None and self.evse_max_power < power:
            power = self.evse_max_power
        if not power > 0 or not i > 0:
            return 0.0
        if i * (v + self.r * i) > power:
            # Power at the terminals: i * (ocv + r * i) = power, solved for i.
            if self.r > 0:
                i = (-v + (v * v + 4.0 * self.r * power) ** 0.5) / (2.0 * self.r)
            else:
                i = power / v
        return i

    def _line_voltage(self):
        if self.evse_voltage:
            return self.evse_voltage
        return 230.0

    def _phases(self):
        if self.energy_transfer_mode == AC_SINGLE_PHASE_CORE:
            return 1
        return self.ac_phases

    def _ac_offer(self):
        # The station's offer per phase: EVSEMaxCurrent, and the PWM limit when the pilot carries one.
        # Without PWM (duty 100 %, states x1) IEC 61851-1 allows no current at all.
        offer = self.evse_max_current
        if self.pilot is not None:
            if not self.pilot.oscillator():
                return 0.0
            if not self.pilot.digital():
                pwm = self.pilot.max_current()
                offer = pwm if offer is None or pwm < offer else offer
        return offer or 0.0

    def _ac_draw(self):
        # Current per phase the onboard charger draws now.
        if (
            not is_ac(self.energy_transfer_mode)
            or self.cp_state != _pilot.STATE_C
            or self.charging_complete()
            or (self.pilot is not None and self.pilot.state() != _pilot.STATE_C)
        ):
            return 0.0
        i = self.ac_max_current
        offer = self._ac_offer()
        if offer < i:
            i = offer
        if i < self.ac_min_current:
            return 0.0
        # The battery's acceptance bounds it too (only near full with an 11 kW charger).
        accept = self._dc_curve(self.soc()) * self.ocv() / (self._phases() * self._line_voltage())
        return i if i < accept else accept

    def advance(self, now):
        if self._last is None:
            self._last = now
            self.ac_current = self._ac_draw()
            return
        dt = ticks_diff(now, self._last)
        if dt < 0:
            raise UsageError("SimVehicle.advance: time went backwards by " + str(-dt) + " ms")
        self._last = now
        if is_ac(self.energy_transfer_mode):
            self.ac_current = self._ac_draw()
            power = self._phases() * self._line_voltage() * self.ac_current
            work = int(power * dt + 0.5) + self._rem
            # The onboard charger stops at the target: no overshoot within a step.
            room = (self._target_mwh() - self._mwh) * _WMS_PER_MWH
            if work > room:
                work = room if room > 0 else 0
        elif self._closed and self.evse_voltage is not None and self.evse_current is not None:
            work = int(self.evse_voltage * self.evse_current * dt + 0.5) + self._rem
        else:
            return
        self._mwh += work // _WMS_PER_MWH
        self._rem = work % _WMS_PER_MWH
        if self._mwh > self._capacity_mwh:
            self._mwh = self._capacity_mwh
            self._rem = 0
        elif self._mwh < 0:
            self._mwh = 0
            self._rem = 0

    # -- Vehicle: identity --

    def evcc_id(self):
        return self._evcc_id

    def energy_transfer_modes(self):
        return list(self.modes)

    # -- Vehicle: battery --

    def ev_ress_soc(self):
        soc = int(self.soc())
        return 100 if soc > 100 else soc

    def ev_energy_capacity(self):
        return self.capacity_wh

    def ev_energy_request(self):
        left = (self._target_mwh() - self._mwh) / 1000.0
        return left if left > 0 else 0.0

    def present_voltage(self):
        current = self.evse_current if (self._closed and self.evse_current) else 0.0
        return self.ocv() + self.r * current

    # -- Vehicle: AC --

    def e_amount(self):
        return self.ev_energy_request()

    def ev_max_voltage(self):
        return self.ac_max_voltage

    def ev_max_current(self):
        return self.ac_max_current

    def ev_min_current(self):
        return self.ac_min_current

    # -- Vehicle: DC --

    def ev_maximum_voltage_limit(self):
        return self.max_voltage

    def ev_maximum_current_limit(self):
        return self.max_current

    def ev_maximum_power_limit(self):
        return self.max_power

    def ev_target_voltage(self):
        # Pre-charge matches the pack (contactors still open); while charging, the CV set point.
        if not self._closed:
            return self.ocv()
        return self.v_max

    def ev_target_current(self):
        if not self._closed:
            return PRECHARGE_CURRENT
        if self.charging_complete() or self.stop or self.error_code != NO_ERROR:
            return 0.0
        i = self._dc_curve(self.soc())
        if self.evse_max_current is not None and self.evse_max_current < i:
            i = self.evse_max_current
        return i if i > 0 else 0.0

    def bulk_soc(self):
        return self._bulk_soc if self._bulk_soc < self.target_soc else self.target_soc

    def full_soc(self):
        return self.target_soc

    def ev_ready(self):
        return self.ready and self.error_code == NO_ERROR

    def ev_error_code(self):
        return self.error_code

    def ev_cabin_conditioning(self):
        return False

    def ev_ress_conditioning(self):
        return False

    def _time_to(self, soc_end):
        # Seconds to reach soc_end along the charging curve, in 0.5 % steps (at most 200 of them). Asked every
        # charge-loop cycle, so the answer is kept until the SoC moves by 1 % or the station's power changes.
        soc = self.soc()
        if soc >= soc_end:
            return 0
        key = (int(soc), soc_end, self.energy_transfer_mode, self.evse_max_power)
        cached = self._time_cache.get(soc_end)
        if cached is not None and cached[0] == key:
            return cached[1]
        seconds = self._integrate_time(soc, soc_end)
        self._time_cache[soc_end] = (key, seconds)
        return seconds

    def _integrate_time(self, soc, soc_end):
        seconds = 0.0
        step_wh = self.capacity_wh * 0.005
        ac = is_ac(self.energy_transfer_mode)
        while soc < soc_end:
            power = self._dc_curve(soc) * self.ocv(soc)
            if ac:
                obc = self._phases() * self._line_voltage() * min(self.ac_max_current, self._ac_offer())
                power = obc if obc < power else power
            if not power > 0:
                return None
            part = 0.5 if soc_end - soc > 0.5 else soc_end - soc
            seconds += step_wh * (part / 0.5) * 3600.0 / power
            if seconds > _TIME_MAX_S:
                return None
            soc += part
        return int(seconds + 0.5)

    def remaining_time_to_full_soc(self):
        return self._time_to(self.target_soc)

    def remaining_time_to_bulk_soc(self):
        return self._time_to(self.bulk_soc())

    def charging_complete(self):
        return self._mwh >= self._target_mwh()

    def bulk_charging_complete(self):
        return self.soc() >= self.bulk_soc()

    # -- Vehicle: switching --

    def close_contactors(self, now):
        self._closed = True

    def open_contactors(self, now):
        self._closed = False

    def contactors_closed(self):
        return self._closed

    def set_cp_state(self, state):
        if state != _pilot.STATE_B and state != _pilot.STATE_C and state != _pilot.STATE_D:
            raise UsageError("SimVehicle: pilot state B, C or D, not " + str(state))
        self.cp_state = state
        if self.pilot is not None:
            self.pilot.set_ev_state(state)

    # -- Vehicle: station, driver --

    def on_evse_status(self, now, present_voltage=None, present_current=None, meter_reading=None,
                       max_current=None, max_power=None, status=None):
        # Energy up to `now` flowed at the previous values: integrate before taking the new ones.
        self.advance(now)
        if present_voltage is not None:
            self.evse_voltage = present_voltage
        if present_current is not None:
            self.evse_current = present_current
        if meter_reading is not None:
            self.meter_reading = meter_reading
        if max_current is not None:
            self.evse_max_current = max_current if max_current > 0 else 0.0
        if max_power is not None:
            self.evse_max_power = max_power if max_power > 0 else 0.0
        if is_ac(self.energy_transfer_mode):
            self.ac_current = self._ac_draw()

    def stop_requested(self):
        return self.stop
