# The control pilot (CP) per IEC 61851-1 Annex A: states, PWM duty semantics, and a model of the line.
#
# How this works
# --------------
# The EVSE drives CP through a 1 kOhm resistor with +12 V, or with a 1 kHz +/-12 V square wave (the
# "oscillator"); the duty cycle of that wave tells the EV how much current it may draw, or (5 %) that the
# current is negotiated over digital communication (ISO 15118 / DIN SPEC 70121). The EV loads the line with
# resistors (R3 = 2.74 kOhm always once plugged, S2 adds R2 = 1.3 kOhm or 270 Ohm), which pulls the positive
# level down to 9, 6 or 3 V: that level is the state the EVSE sees.
#
#   state  level   meaning                                            (IEC 61851-1 Annex A)
#   A      +12 V   not connected
#   B      +9 V    connected, not ready (S2 open)
#   C      +6 V    connected, ready, energy transfer allowed (S2 closed)
#   D      +3 V    as C, with ventilation required
#   E       0 V    CP shorted to PE or EVSE without supply: error
#   F      -12 V   EVSE not available (EVSE applies -12 V)
#
# A suffix 1 or 2 says whether the oscillator is off (x1, constant +12 V) or on (x2, PWM): "B2" is plugged
# with PWM running. This module has the shared data (state constants, level ranges, the duty <-> current
# mapping) and `Pilot`, one line between one EV and one EVSE used in-process by the station simulator, the
# simulated vehicle and the tests. A board's hal/ driver maps the same states to ADC readings and the S2 pin.
#
# `Pilot.changes` counts every change either side can observe; a sans-I/O core keeps the last value it saw
# and compares (no callbacks, no clock: the pilot object itself never reads time).

from evpilot.compat import const
from evpilot.errors import UsageError

STATE_A = const(0)
STATE_B = const(1)
STATE_C = const(2)
STATE_D = const(3)
STATE_E = const(4)
STATE_F = const(5)

STATE_NAMES = ("A", "B", "C", "D", "E", "F")
# Nominal positive level per state in volts (Annex A).
STATE_VOLTS = (12, 9, 6, 3, 0, -12)

# Duty cycle of a constant +12 V line: no PWM, "oscillator off" (states A1, B1, C1, D1).
DUTY_NO_PWM = const(100)
# Nominal duty cycle meaning "digital communication required" (Annex A); ISO 15118-3 starts SLAC on it.
DUTY_DIGITAL = const(5)

# Lowest and highest current a PWM duty cycle can signal (Annex A).
MIN_PWM_CURRENT = 6.0
MAX_PWM_CURRENT = 80.0


def state_name(state, oscillator=None):
    """"A".."F", with "1"/"2" appended when `oscillator` (False/True) is given and the state is A..D."""
    if state < STATE_A or state > STATE_F:
        raise UsageError("pilot state " + str(state) + " out of range")
    name = STATE_NAMES[state]
    if oscillator is not None and state <= STATE_D:
        name = name + ("2" if oscillator else "1")
    return name


def volts_to_state(volts):
    """The state for a measured positive CP level (Annex A ranges: nominal +/- 1 V); None between them.

    A negative level of about -12 V alone (no positive half) is F; a board measures the positive half of the
    PWM wave for A..D and the negative half only to check the diode (E/F detection is the HAL's job).
    """
    if volts >= 11.0 and volts <= 13.0:
        return STATE_A
    if volts >= 8.0 and volts <= 10.0:
        return STATE_B
    if volts >= 5.0 and volts <= 7.0:
        return STATE_C
    if volts >= 2.0 and volts <= 4.0:
        return STATE_D
    if volts >= -1.0 and volts <= 1.0:
        return STATE_E
    if volts >= -13.0 and volts <= -11.0:
        return STATE_F
    return None


def is_digital(duty):
    """True for a duty cycle that asks for digital communication: 3 % <= duty <= 7 % (Annex A)."""
    return duty >= 3 and duty <= 7


def duty_to_current(duty):
    """Maximum current in amperes an EV may draw for a PWM duty cycle in percent (IEC 61851-1 Annex A).

        8 % <= d < 10 %    6 A
       10 % <= d <= 85 %   d * 0.6 A
       85 % <  d <= 96 %   (d - 64) * 2.5 A
       96 % <  d <= 97 %   80 A
    Anything else allows no current from the PWM signal: 0.0 (below 3 %, the 7-8 % gap, above 97 % including
    100 % = no PWM), and 3..7 % (5 % nominal) means the limit comes over digital communication, also 0.0 here.
    """
    if duty < 8 or duty > 97:
        return 0.0
    if duty < 10:
        return 6.0
    if duty <= 85:
        return duty * 0.6
    if duty <= 96:
        return (duty - 64) * 2.5
    return 80.0


def current_to_duty(amps):
    """The duty cycle in percent that signals `amps` (6..80 A), the inverse of duty_to_current.

    The mapping jumps at 85 %: 51 A at 85 %, more than 52.5 A just above. For 51 < amps <= 52.5 no duty
    cycle signals the exact current, so 85 % (51 A) is returned: the EVSE never offers more than it means.
    """
    if amps < MIN_PWM_CURRENT or amps > MAX_PWM_CURRENT:
        raise UsageError("PWM current " + str(amps) + " A outside 6..80 A")
    if amps <= 51:
        return amps / 0.6
    if amps <= 52.5:
        return 85.0
    return amps / 2.5 + 64


class Pilot:
    """One control pilot line between one EV and one EVSE.

    EVSE side: set_duty(duty) and set_oscillator(on) choose what the line carries; evse_fault(state) forces
    E or F (None clears); it reads state(). EV side: plug(connected) and set_ev_state(B, C or D) (the S2
    switch and ventilation request); it reads duty(). `changes` grows by one on every change of what either
    side observes (state or duty), so a core polls cheaply.
    """

    def __init__(self):
        self.changes = 0
        self._connected = False
        self._ev_state = STATE_B
        self._duty = DUTY_NO_PWM
        self._oscillator = False
        self._fault = None

    # -- what each side sees --

    def state(self):
        if self._fault is not None:
            return self._fault
        if not self._connected:
            return STATE_A
        return self._ev_state

    def duty(self):
        """The duty cycle the EV measures, in percent: 100 when the oscillator is off or the line is in E/F."""
        if not self._oscillator or self._fault is not None:
            return DUTY_NO_PWM
        return self._duty

    def oscillator(self):
        return self._oscillator and self._fault is None

    def name(self):
        """The state as IEC 61851-1 writes it: "A1", "B2", "C2", "E", ..."""
        return state_name(self.state(), self.oscillator())

    def max_current(self):
        """The current the PWM signal allows in amperes (0.0 for none or digital communication)."""
        return duty_to_current(self.duty())

    def digital(self):
        return self.oscillator() and is_digital(self.duty())

    # -- EVSE side --

    def set_duty(self, duty):
        if duty < 0 or duty > 100:
            raise UsageError("duty cycle " + str(duty) + " % outside 0..100")
        self._update(self._connected, self._ev_state, duty, self._oscillator, self._fault)

    def set_oscillator(self, on):
        self._update(self._connected, self._ev_state, self._duty, bool(on), self._fault)

    def evse_fault(self, state):
        """Force STATE_E (CP shorted to PE) or STATE_F (EVSE unavailable); None returns to normal."""
        if state is not None and state != STATE_E and state != STATE_F:
            raise UsageError("a pilot fault is state E or F, not " + state_name(state))
        self._update(self._connected, self._ev_state, self._duty, self._oscillator, state)

    # -- EV side --

    def plug(self, connected):
        self._update(bool(connected), self._ev_state, self._duty, self._oscillator, self._fault)

    def set_ev_state(self, state):
        """The EV's S2 switch: STATE_B (open), STATE_C (closed), STATE_D (closed, ventilation required)."""
        if state != STATE_B and state != STATE_C and state != STATE_D:
            raise UsageError("the EV can set pilot state B, C or D, not " + state_name(state))
        self._update(self._connected, state, self._duty, self._oscillator, self._fault)

    def ev_state(self):
        """What the EV's switch asks for, whether or not the line shows it (it shows A when unplugged)."""
        return self._ev_state

    def _update(self, connected, ev_state, duty, oscillator, fault):
        before = (self.state(), self.duty())
        self._connected = connected
        self._ev_state = ev_state
        self._duty = duty
        self._oscillator = oscillator
        self._fault = fault
        if (self.state(), self.duty()) != before:
            self.changes += 1
