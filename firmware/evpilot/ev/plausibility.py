# Physical plausibility on the EV: what the station reports is checked against the vehicle's limits and
# against physics before a session acts on it, and what the EV requests is kept within the vehicle's (and
# the station's) limits. DIN SPEC 70121 and ISO 15118-2, AC and DC, use this one layer (ev/din.py,
# ev/iso2.py; ev/vehicle.py builds the requests through it).
#
# How this works
# --------------
# A session makes one Checks(vehicle) and calls, with the response's name (for the reason), either
#   charge_parameter_dc/_ac(name, p), current_demand(name, body, now)   which read the elements, check them
# or, with SI numbers (value() reads a PhysicalValue element):
#   limits_dc(name, max_i, max_p, max_u, min_i, min_u)   ChargeParameterDiscoveryRes / CurrentDemandRes limits
#   limits_ac(name, max_i, nominal_u)                   AC_EVSEChargeParameter, ChargingStatusRes
#   voltage(name, u) / open_voltage(name, u)           EVSEPresentVoltage, contactors closed / open
#   current(name, i, now)                               EVSEPresentCurrent in the charge loop
#   target_current(i, u) / target_voltage(u)            clamp what the EV requests
# A value that breaks a rule raises SessionError naming the element, its value and the bound; the client then
# ends the session in its safe state (contactors open, no current requested, CP state B) with that reason.
# Every check is a few float comparisons: nothing allocates unless it fails.
#
# Which checks are ours and which the integrator's (the battery management system): see ev/vehicle.py.
#
# The rules and where they come from:
#  - Limits are magnitudes. A negative EVSEMaximum*/EVSEMinimum*/EVSEMaxCurrent/EVSENominalVoltage has no
#    meaning in DIN SPEC 70121 or ISO 15118-2 (the EV discharges only in ISO 15118-20 BPT, which has its own
#    discharge limits), so it ends the session. A minimum above its maximum, likewise.
#  - A limit above the vehicle's own is not an error: the EV requests min(its limit, the station's)
#    (ISO 15118-2 and DIN both leave the demand to the EV within both sets of limits). Absurdly large limits
#    are thereby ignored; so is a power limit of almost nothing (the EV requests ~0 A, as when a station
#    pauses).
#  - AC voltages above 1000 V are outside IEC 61851-1's scope (AC supply up to 1000 V), DC voltages above
#    1500 V outside IEC 61851-23's: absurd in any state. With the contactors open (PreCharge, welding
#    detection) that and a negative voltage are all that end the session at once (see open_voltage).
#  - With the contactors closed, a present voltage above the vehicle's EVMaximumVoltageLimit plus a measuring
#    margin endangers the pack
#    (IEC 61851-23 has the station shut down on overvoltage itself; the EV does not rely on it).
#    The margin, max(VOLTAGE_MARGIN_V, VOLTAGE_MARGIN_REL * limit), is ours: wider than the few per cent of
#    measuring accuracy IEC 61851-23 asks of a station.
#  - A present current beyond the vehicle's EVMaximumCurrentLimit plus a margin (max(CURRENT_MARGIN_A,
#    CURRENT_MARGIN_REL * limit); IEC 61851-23's regulation accuracy is commonly given as +/-2.5 A below
#    50 A, +/-5 % above), or a current out of the battery beyond the margin (negative: nothing discharges in
#    DIN or ISO-2 DC), ends the session at once.
#  - A present current above what the EV asked (the larger of its last two targets: the station answers while
#    it regulates towards the newest) plus the margin is tolerated while the station ramps down, at most
#    CURRENT_SETTLE_MS; a current that stays above it (a current flowing while none is requested among them)
#    ends the session. 1 s is our bound: a station's output follows a new target within a fraction of it.
#  - Before the contactors close, the station's voltage must match the battery (PRECHARGE tolerance in the
#    sessions); a PreCharge that never matches ends at V2G_EVCC_PreCharge_Timeout with the voltages named.
#  - Requests: EVTargetCurrent is clamped to 0..min(EVMaximumCurrentLimit, EVSEMaximumCurrentLimit) and to
#    the smaller power limit at the target voltage; EVTargetVoltage to 0..EVMaximumVoltageLimit; PreCharge's
#    EVTargetCurrent to at most 2 A (the pre-charge current limit of DIN SPEC 70121 and ISO 15118-2).

from evpilot.compat import ticks_diff
from evpilot.errors import PeerError, SessionError
from evpilot.v2g.messages import pv_value

VOLTAGE_MARGIN_V = 10.0
VOLTAGE_MARGIN_REL = 0.025
CURRENT_MARGIN_A = 10.0
CURRENT_MARGIN_REL = 0.05
CURRENT_SETTLE_MS = 1000
AC_VOLTAGE_MAX = 1000.0  # IEC 61851-1 scope
DC_VOLTAGE_MAX = 1500.0  # IEC 61851-23 scope
PRECHARGE_CURRENT_MAX = 2.0


def value(body, element, unit, name=None):
    """The SI number of the PhysicalValue `element` of a response body; None when it is absent, unless the
    response `name` is given (the element is required): then its absence is a PeerError naming both."""
    d = body.get(element)
    if d is None:
        if name is not None:
            raise PeerError("%s without %s" % (name, element))
        return None
    return pv_value(d, unit)


# DC_EVSEStatusCode values that end the session failed at once (ISO 15118-2; DIN's are checked in ev/din.py).
_DC_FAIL_CODES = ("EVSE_EmergencyShutdown", "EVSE_Malfunction")


def status_ac(status, name):
    """AC_EVSEStatus: present, and RCD not tripped."""
    if status is None:
        raise PeerError(name + " without AC_EVSEStatus")
    if status.get("RCD"):
        raise SessionError(name + ": RCD tripped (AC_EVSEStatus RCD true)")


def status_dc(status, name):
    """DC_EVSEStatus: present, no emergency shutdown or malfunction, no isolation fault."""
    if status is None:
        raise PeerError(name + " without DC_EVSEStatus")
    code = status.get("EVSEStatusCode")
    if code in _DC_FAIL_CODES:
        raise SessionError("%s: %s" % (name, code))
    if status.get("EVSEIsolationStatus") == "Fault":
        raise SessionError(name + ": EVSEIsolationStatus Fault")


def _fail(name, element, value, unit, why):
    raise SessionError("%s: %s %s %s %s" % (name, element, _num(value), unit, why))


def _num(x):
    # Whole numbers without ".0", others with one decimal (the reason stays readable on both interpreters).
    if x == int(x):
        return "%d" % int(x)
    return "%.3f" % x if -1 < x < 1 else "%.1f" % x


def _neg(name, element, value, unit):
    if value is not None and value < 0:
        _fail(name, element, value, unit, "is negative")


class Checks:
    def __init__(self, vehicle, settle_ms=CURRENT_SETTLE_MS):
        self.vehicle = vehicle
        self.settle_ms = settle_ms
        self.evse_max_current = None  # the station's present limits, as last reported (None: not given)
        self.evse_max_power = None
        self.targets = (0.0, 0.0)  # the EV's last two EVTargetCurrent (newest first)
        self._over_since = None  # when the present current went above what was asked

    # ---- station limits ---------------------------------------------------------------------------------

    def limits_dc(self, name, max_i, max_p, max_u=None, min_i=None, min_u=None):
        _neg(name, "EVSEMaximumCurrentLimit", max_i, "A")
        _neg(name, "EVSEMaximumPowerLimit", max_p, "W")
        _neg(name, "EVSEMaximumVoltageLimit", max_u, "V")
        _neg(name, "EVSEMinimumCurrentLimit", min_i, "A")
        _neg(name, "EVSEMinimumVoltageLimit", min_u, "V")
        if min_i is not None and max_i is not None and min_i > max_i:
            _fail(name, "EVSEMinimumCurrentLimit", min_i, "A", "above EVSEMaximumCurrentLimit %s A" % _num(max_i))
        if min_u is not None and max_u is not None and min_u > max_u:
            _fail(name, "EVSEMinimumVoltageLimit", min_u, "V", "above EVSEMaximumVoltageLimit %s V" % _num(max_u))
        if min_u is not None:
            ev_max = self.vehicle.ev_maximum_voltage_limit()
            if min_u > ev_max:
                _fail(name, "EVSEMinimumVoltageLimit", min_u, "V", "above the vehicle's maximum %s V" % _num(ev_max))
        if max_i is not None:
            self.evse_max_current = max_i
        if max_p is not None:
            self.evse_max_power = max_p

    def charge_parameter_dc(self, name, p):
        """DC_EVSEChargeParameter, checked: (max current, max power, max voltage, min current, min voltage)."""
        lim = (value(p, "EVSEMaximumCurrentLimit", "A", name), value(p, "EVSEMaximumPowerLimit", "W"),
               value(p, "EVSEMaximumVoltageLimit", "V", name), value(p, "EVSEMinimumCurrentLimit", "A", name),
               value(p, "EVSEMinimumVoltageLimit", "V", name))
        self.limits_dc(name, lim[0], lim[1], lim[2], lim[3], lim[4])
        return lim

    def charge_parameter_ac(self, name, p):
        """AC_EVSEChargeParameter, checked (AC_EVSEStatus too): (EVSEMaxCurrent, EVSENominalVoltage)."""
        status_ac(p.get("AC_EVSEStatus"), name)
        max_i = value(p, "EVSEMaxCurrent", "A")
        u = value(p, "EVSENominalVoltage", "V")
        self.limits_ac(name, max_i, u)
        return max_i, u

    def current_demand(self, name, body, now):
        """CurrentDemandRes, checked: (present voltage, present current, max current, max power)."""
        u = self.voltage(name, value(body, "EVSEPresentVoltage", "V", name))
        i = self.current(name, value(body, "EVSEPresentCurrent", "A", name), now)
        max_i = value(body, "EVSEMaximumCurrentLimit", "A")
        max_p = value(body, "EVSEMaximumPowerLimit", "W")
        self.limits_dc(name, max_i, max_p, value(body, "EVSEMaximumVoltageLimit", "V"))
        return u, i, max_i, max_p

    def limits_ac(self, name, max_i, nominal_u=None):
        _neg(name, "EVSEMaxCurrent", max_i, "A")
        _neg(name, "EVSENominalVoltage", nominal_u, "V")
        if nominal_u is not None and nominal_u > AC_VOLTAGE_MAX:
            _fail(name, "EVSENominalVoltage", nominal_u, "V", "above 1000 V AC (IEC 61851-1)")
        if max_i is not None:
            self.evse_max_current = max_i

    # ---- measurements -----------------------------------------------------------------------------------

    def open_voltage(self, name, u):
        """EVSEPresentVoltage while the contactors are open (PreCharge, WeldingDetection): the pack is not
        connected, and a station's output still decays from its cable-check voltage at the start of PreCharge
        (recorded from real chargers: 500 V towards a 360 V pack), so only a negative or absurd value ends the
        session here; one that never matches the battery ends PreCharge at its timeout."""
        if u < -VOLTAGE_MARGIN_V:
            _fail(name, "EVSEPresentVoltage", u, "V", "is negative")
        if u > DC_VOLTAGE_MAX:
            _fail(name, "EVSEPresentVoltage", u, "V", "above 1500 V DC (IEC 61851-23)")
        return u

    def voltage(self, name, u):
        """EVSEPresentVoltage with the contactors closed (CurrentDemand): within the vehicle's maximum."""
        if u < -VOLTAGE_MARGIN_V:
            _fail(name, "EVSEPresentVoltage", u, "V", "is negative")
        top = self.vehicle.ev_maximum_voltage_limit()
        margin = top * VOLTAGE_MARGIN_REL
        if margin < VOLTAGE_MARGIN_V:
            margin = VOLTAGE_MARGIN_V
        if u > top + margin:
            _fail(name, "EVSEPresentVoltage", u, "V", "above the vehicle's maximum %s V" % _num(top))
        return u

    def current(self, name, i, now):
        top = self.vehicle.ev_maximum_current_limit()
        margin = top * CURRENT_MARGIN_REL
        if margin < CURRENT_MARGIN_A:
            margin = CURRENT_MARGIN_A
        if i < -margin:
            _fail(name, "EVSEPresentCurrent", i, "A", "flows out of the battery")
        if i > top + margin:
            _fail(name, "EVSEPresentCurrent", i, "A", "above the vehicle's maximum %s A" % _num(top))
        a, b = self.targets
        asked = a if a > b else b
        m = asked * CURRENT_MARGIN_REL
        if i > asked + (m if m > CURRENT_MARGIN_A else CURRENT_MARGIN_A):
            if self._over_since is None:
                self._over_since = now
            elif ticks_diff(now, self._over_since) >= self.settle_ms:
                _fail(name, "EVSEPresentCurrent", i, "A", "for %d ms while %s A was requested"
                      % (ticks_diff(now, self._over_since), _num(a)))
        else:
            self._over_since = None
        return i

    # ---- what the EV requests ---------------------------------------------------------------------------

    def target_voltage(self, u):
        top = self.vehicle.ev_maximum_voltage_limit()
        if u > top:
            u = top
        return u if u > 0 else 0.0

    def target_current(self, i, u):
        """EVTargetCurrent within 0 .. the smaller current limit and the smaller power limit at `u` (V)."""
        v = self.vehicle
        top = v.ev_maximum_current_limit()
        x = self.evse_max_current
        if x is not None and x < top:
            top = x
        if i > top:
            i = top
        p = v.ev_maximum_power_limit()
        x = self.evse_max_power
        if x is not None and (p is None or x < p):
            p = x
        if p is not None and u > 0 and i * u > p:
            i = p / u
        if not i > 0:  # also catches a NaN from a vehicle model
            i = 0.0
        self.targets = (i, self.targets[0])
        return i

    def precharge_current(self, i):
        if i > PRECHARGE_CURRENT_MAX:
            i = PRECHARGE_CURRENT_MAX
        return i if i > 0 else 0.0
