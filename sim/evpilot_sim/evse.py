"""A simulated EVSE power stage for the station simulator: DC and AC output, isolation check, meter, faults.

How this works: the station's protocol sessions call the method for each step of the charging process with
the virtual time `now` in milliseconds (start_cable_check / cable_check, precharge, current_demand, stop, the
ac_* methods) and build their responses from what the model reports (present voltage and current, the limit
flags, and the status dicts below, keyed by XSD element names with PhysicalValues made by
evpilot.v2g.messages.pv). Between calls, advance(now) moves the physics on the virtual clock:

- CableCheck: the isolation monitor needs `cable_check_ms`; then the result is `isolation_result` ("Valid",
  "Warning", "Fault", "Invalid": set it to inject a fault). With a test voltage the output ramps to it during
  the check and back down afterwards.
- Pre-charge: with the EV's contactors open, the output voltage ramps towards the EV's target (clamped to
  the EVSE's range) at `precharge_rate` V/s (500 V/s = 50 V per 100 ms) and settles exactly on it.
- Charging: once the EV closes its contactors (ev_contactors(now, True, battery_voltage)), the output
  voltage is the battery's (the station simulator keeps it current with set_battery_voltage) and the
  current follows the EV's target within the EVSE's limits (max current, max power / voltage, energy to be
  delivered) through a first-order lag with time constant `current_time_constant_ms`.
- AC: the delivered current per phase is min(the EV's request, the offer), while the contactor is closed.
- The meter integrates the output power over the virtual time (Wh).
- Faults: emergency_stop(), malfunction, an RCD trip (AC), or a failed isolation check switch the output
  off at once and show in EVSEStatusCode / EVSENotification.

The status mapping is this simulator's choice where the standards leave it open: EVSE_IsolationMonitoringActive
while the check runs, EVSE_Shutdown after an isolation Fault, EVSE_NotReady after an Invalid result,
EVSE_EmergencyShutdown and EVSE_Malfunction for those faults (each with EVSENotification StopCharging).
"""

import math

from evpilot.compat import ticks_diff
from evpilot.errors import UsageError
from evpilot.v2g.messages import pv

ISOLATION_RESULTS = ("Valid", "Warning", "Fault", "Invalid")


class EVSEConfig:
    """The EVSE's ratings and dynamics. EVSEConfig(dc_max_power=50000, ...); copy(**changes) varies one.
    A plain class, not a dataclass, so the station simulator also runs on MicroPython (session tests)."""

    DEFAULTS = (
        # AC
        ("ac_nominal_voltage", 230.0),
        ("ac_phases", 3),
        ("ac_max_current", 32.0),
        # DC
        ("dc_max_voltage", 920.0),
        ("dc_min_voltage", 150.0),
        ("dc_max_current", 500.0),
        ("dc_min_current", 0.0),
        ("dc_max_power", 150000.0),
        ("current_regulation_tolerance", 5.0),
        ("peak_current_ripple", 5.0),
        ("energy_to_be_delivered", None),  # Wh per session; None: not limited, element left out
        # dynamics
        ("cable_check_ms", 2000),
        ("isolation_result", "Valid"),
        ("precharge_rate", 500.0),  # V per second
        ("current_time_constant_ms", 200.0),
        # EVSEStatus
        ("notification_max_delay", 0),  # s
        ("meter_id", "EVPILOT-SIM-METER"),
    )

    def __init__(self, **values):
        for name, default in self.DEFAULTS:
            setattr(self, name, values.pop(name, default))
        if values:
            raise UsageError("unknown EVSE settings: " + ", ".join(sorted(values)))

    def copy(self, **changes):
        values = {name: getattr(self, name) for name, _ in self.DEFAULTS}
        values.update(changes)
        return EVSEConfig(**values)


class EVSE:
    """The power stage of one simulated charge point. `EVSE(config)` or `EVSE(dc_max_power=50000, ...)`."""

    def __init__(self, config=None, **overrides):
        config = config or EVSEConfig()
        self.config = config.copy(**overrides) if overrides else config
        if self.config.isolation_result not in ISOLATION_RESULTS:
            raise UsageError("isolation_result must be one of " + ", ".join(ISOLATION_RESULTS))
        self.present_voltage = 0.0
        self.present_current = 0.0
        self.target_voltage = 0.0
        self.target_current = 0.0
        self.output_on = False  # DC converter enabled (pre-charge or charging)
        self.isolation_status = None  # None until a cable check starts
        self.battery_connected = False
        self.battery_voltage = 0.0
        self.ac_closed = False
        self.ac_current = 0.0
        self.meter_wh = 0.0
        self.session_start_wh = 0.0
        # Fault injection and station-side requests.
        self.emergency = False
        self.malfunction = False
        self.rcd = False
        self.stop_charging = False
        self.renegotiate = False
        # Limit flags of the last DC step (CurrentDemandRes).
        self.current_limit_achieved = False
        self.voltage_limit_achieved = False
        self.power_limit_achieved = False
        self._cable_check_started = None
        self._check_voltage = None
        self._last = None

    # -- physics on the virtual clock --

    def advance(self, now):
        if self._last is None:
            self._last = now
            return
        dt = ticks_diff(now, self._last)
        if dt < 0:
            raise UsageError(f"EVSE.advance: time went backwards by {-dt} ms")
        self._last = now
        if dt == 0:
            return
        cfg = self.config
        # Energy of the interval at the output as it was during it.
        if self.ac_closed:
            power = cfg.ac_phases * cfg.ac_nominal_voltage * self.ac_current
        else:
            power = self.present_voltage * self.present_current
        self.meter_wh += power * dt / 3600000.0
        # The isolation monitor finishes.
        if self.isolation_status == "Invalid" and self._cable_check_started is not None:
            if ticks_diff(now, self._cable_check_started) >= cfg.cable_check_ms:
                self.isolation_status = cfg.isolation_result
                self._cable_check_started = None
                self._check_voltage = None
        # DC voltage.
        if self.battery_connected:
            self.present_voltage = self.battery_voltage
        else:
            setpoint = 0.0
            if self._check_voltage is not None and not self._faulted():
                setpoint = self._check_voltage
            elif self.output_on and not self._faulted():
                setpoint = self.target_voltage
            step = cfg.precharge_rate * dt / 1000.0
            if abs(setpoint - self.present_voltage) <= step:
                self.present_voltage = setpoint
            elif setpoint > self.present_voltage:
                self.present_voltage += step
            else:
                self.present_voltage -= step
        # DC current: first-order lag towards what the EVSE will deliver.
        goal = self._current_goal()
        if self._faulted():
            self.present_current = 0.0
        else:
            alpha = 1.0 - math.exp(-dt / cfg.current_time_constant_ms)
            self.present_current += (goal - self.present_current) * alpha
        # AC: faults open the contactor.
        if self.ac_closed and (self._faulted() or self.rcd):
            self.ac_closed = False
            self.ac_current = 0.0

    def _faulted(self):
        # A finished isolation check that failed counts; "Invalid" while the check runs does not.
        failed = self.isolation_status in ("Fault", "Invalid") and self._cable_check_started is None
        return self.emergency or self.malfunction or failed

    def _energy_left(self):
        limit = self.config.energy_to_be_delivered
        if limit is None:
            return None
        return limit - (self.meter_wh - self.session_start_wh)

    def _current_goal(self):
        # The current the EVSE regulates to now, and the limit flags that go with it.
        cfg = self.config
        self.current_limit_achieved = self.power_limit_achieved = False
        self.voltage_limit_achieved = self.target_voltage > cfg.dc_max_voltage
        if not (self.output_on and self.battery_connected) or self._faulted() or self.stop_charging:
            return 0.0
        left = self._energy_left()
        if left is not None and left <= 0:
            return 0.0
        goal = self.target_current
        if goal > cfg.dc_max_current:
            goal = cfg.dc_max_current
            self.current_limit_achieved = True
        if self.present_voltage > 0 and goal * self.present_voltage > cfg.dc_max_power:
            goal = cfg.dc_max_power / self.present_voltage
            self.power_limit_achieved = True
            self.current_limit_achieved = False
        return max(goal, 0.0)

    # -- DC steps --

    def start_cable_check(self, now, voltage=None):
        """CableCheck begins: the isolation monitor runs for cable_check_ms (at `voltage`, if given)."""
        self.advance(now)
        self.isolation_status = "Invalid"
        self._cable_check_started = now
        if voltage is not None:
            self._check_voltage = min(voltage, self.config.dc_max_voltage)

    def cable_check(self, now):
        """(EVSEProcessing, EVSEIsolationStatus): ("Ongoing", "Invalid") until the check has finished."""
        self.advance(now)
        if self.isolation_status is None:
            raise UsageError("cable_check before start_cable_check")
        if self._cable_check_started is not None:
            return "Ongoing", self.isolation_status
        return "Finished", self.isolation_status

    def precharge(self, now, target_voltage, target_current):
        """PreChargeReq: ramp the output to the EV's target; returns the present voltage after `now`."""
        self.advance(now)
        self.output_on = True
        self.target_voltage = min(max(target_voltage, 0.0), self.config.dc_max_voltage)
        self.target_current = target_current
        return self.present_voltage

    def current_demand(self, now, target_voltage, target_current):
        """CurrentDemandReq: the physics up to `now` ran on the previous targets; the new ones apply from now."""
        self.advance(now)
        self.output_on = True
        self.target_voltage = target_voltage
        self.target_current = target_current
        self._current_goal()  # refresh the limit flags for the response
        return self.present_voltage, self.present_current

    def ev_contactors(self, now, closed, battery_voltage=None):
        """The EV closed or opened its contactors; while closed the output sits at the battery's voltage."""
        self.advance(now)
        self.battery_connected = bool(closed)
        if battery_voltage is not None:
            self.battery_voltage = battery_voltage
        if closed:
            self.present_voltage = self.battery_voltage

    def set_battery_voltage(self, voltage):
        self.battery_voltage = voltage
        if self.battery_connected:
            self.present_voltage = voltage

    def stop(self, now):
        """PowerDeliveryReq Stop: the current ramps down (the lag), the output is switched off."""
        self.advance(now)
        self.output_on = False
        self.target_current = 0.0

    def begin_session(self):
        """Start counting energy_to_be_delivered from the present meter reading."""
        self.session_start_wh = self.meter_wh
        self.stop_charging = False

    # -- AC --

    def ac_offer(self):
        """EVSEMaxCurrent per phase now: 0 while a fault is active."""
        if self._faulted() or self.rcd:
            return 0.0
        return self.config.ac_max_current

    def ac_close(self, now):
        self.advance(now)
        if self._faulted() or self.rcd:
            raise UsageError("AC contactor cannot close while a fault is active")
        self.ac_closed = True

    def ac_open(self, now):
        self.advance(now)
        self.ac_closed = False
        self.ac_current = 0.0

    def ac_request(self, now, amps):
        """The EV draws `amps` per phase from now on; returns what flows: min(request, offer), 0 if open."""
        self.advance(now)
        if not self.ac_closed:
            self.ac_current = 0.0
        else:
            self.ac_current = max(0.0, min(amps, self.ac_offer()))
        return self.ac_current

    # -- fault injection --

    def emergency_stop(self, now):
        self.advance(now)
        self.emergency = True
        self.present_current = 0.0
        self.ac_closed = False
        self.ac_current = 0.0

    def set_malfunction(self, now, on=True):
        self.advance(now)
        self.malfunction = bool(on)
        if on:
            self.present_current = 0.0
            self.ac_closed = False
            self.ac_current = 0.0

    # -- message parts (dicts keyed by XSD element names) --

    def status_code(self):
        if self.emergency:
            return "EVSE_EmergencyShutdown"
        if self.malfunction:
            return "EVSE_Malfunction"
        if self._cable_check_started is not None:
            return "EVSE_IsolationMonitoringActive"
        if self.isolation_status == "Fault":
            return "EVSE_Shutdown"
        if self.isolation_status == "Invalid":
            return "EVSE_NotReady"
        return "EVSE_Ready"

    def notification(self):
        left = self._energy_left()
        if (
            self.emergency
            or self.malfunction
            or self.rcd
            or self.stop_charging
            or self._faulted()
            or (left is not None and left <= 0)
        ):
            return "StopCharging"
        if self.renegotiate:
            return "ReNegotiation"
        return "None"

    def dc_evse_status(self):
        """DC_EVSEStatus (DIN and ISO-2 share the fields); EVSEIsolationStatus only once a check started."""
        status = {
            "NotificationMaxDelay": self.config.notification_max_delay,
            "EVSENotification": self.notification(),
            "EVSEStatusCode": self.status_code(),
        }
        if self.isolation_status is not None:
            status["EVSEIsolationStatus"] = self.isolation_status
        return status

    def ac_evse_status(self):
        """AC_EVSEStatus (ISO-2): RCD true once the residual current device tripped."""
        return {
            "NotificationMaxDelay": self.config.notification_max_delay,
            "EVSENotification": self.notification(),
            "RCD": self.rcd,
        }

    def dc_charge_parameter(self):
        """DC_EVSEChargeParameter for ChargeParameterDiscoveryRes."""
        cfg = self.config
        d = {
            "DC_EVSEStatus": self.dc_evse_status(),
            "EVSEMaximumCurrentLimit": pv(cfg.dc_max_current, "A"),
            "EVSEMaximumPowerLimit": pv(cfg.dc_max_power, "W"),
            "EVSEMaximumVoltageLimit": pv(cfg.dc_max_voltage, "V"),
            "EVSEMinimumCurrentLimit": pv(cfg.dc_min_current, "A"),
            "EVSEMinimumVoltageLimit": pv(cfg.dc_min_voltage, "V"),
            "EVSECurrentRegulationTolerance": pv(cfg.current_regulation_tolerance, "A"),
            "EVSEPeakCurrentRipple": pv(cfg.peak_current_ripple, "A"),
        }
        if cfg.energy_to_be_delivered is not None:
            d["EVSEEnergyToBeDelivered"] = pv(cfg.energy_to_be_delivered, "Wh")
        return d

    def ac_charge_parameter(self):
        """AC_EVSEChargeParameter (ISO-2) for ChargeParameterDiscoveryRes."""
        return {
            "AC_EVSEStatus": self.ac_evse_status(),
            "EVSENominalVoltage": pv(self.config.ac_nominal_voltage, "V"),
            "EVSEMaxCurrent": pv(self.ac_offer(), "A"),
        }

    def current_demand_fields(self):
        """The measured and limit elements of CurrentDemandRes (ISO-2 names; DIN has the same ones)."""
        cfg = self.config
        return {
            "DC_EVSEStatus": self.dc_evse_status(),
            "EVSEPresentVoltage": pv(self.present_voltage, "V"),
            "EVSEPresentCurrent": pv(self.present_current, "A"),
            "EVSECurrentLimitAchieved": self.current_limit_achieved,
            "EVSEVoltageLimitAchieved": self.voltage_limit_achieved,
            "EVSEPowerLimitAchieved": self.power_limit_achieved,
            "EVSEMaximumVoltageLimit": pv(cfg.dc_max_voltage, "V"),
            "EVSEMaximumCurrentLimit": pv(cfg.dc_max_current, "A"),
            "EVSEMaximumPowerLimit": pv(cfg.dc_max_power, "W"),
        }

    def meter_info(self):
        """MeterInfo (ISO-2): MeterReading in whole Wh."""
        return {"MeterID": self.config.meter_id, "MeterReading": int(self.meter_wh)}
