# Message vocabulary both ends of a V2G session use (DIN SPEC 70121 and ISO 15118-2): the EV sessions
# (evpilot.ev), the vehicle interface and the station simulator (evpilot_sim) import it from here.
#
# How this works
# --------------
# Messages are plain dicts keyed by XSD element names (DESIGN principle 4). A PhysicalValueType is
# {"Multiplier": m, "Unit": u, "Value": v}: pv() makes one from an SI number, pv_value() reads one back and
# raises PeerError naming what is wrong with a peer's. opt_pv() and opt_int() fill an optional element only
# when there is a value. The EnergyTransferModeType values are the strings the schemas define.

from evpilot.errors import PeerError, UsageError

# The EnergyTransferModeType values (ISO 15118-2; DIN SPEC 70121 uses the DC ones).
AC_SINGLE_PHASE_CORE = "AC_single_phase_core"
AC_THREE_PHASE_CORE = "AC_three_phase_core"
DC_CORE = "DC_core"
DC_EXTENDED = "DC_extended"
DC_COMBO_CORE = "DC_combo_core"
DC_UNIQUE = "DC_unique"
ENERGY_TRANSFER_MODES = (
    AC_SINGLE_PHASE_CORE,
    AC_THREE_PHASE_CORE,
    DC_CORE,
    DC_EXTENDED,
    DC_COMBO_CORE,
    DC_UNIQUE,
)


def is_ac(mode):
    """True for the AC energy transfer modes."""
    return mode == AC_SINGLE_PHASE_CORE or mode == AC_THREE_PHASE_CORE


# PhysicalValueType: Value is xs:short and Multiplier (unitMultiplierType) is -3..3 in DIN and ISO-2.
_VALUE_MIN = -32768
_VALUE_MAX = 32767
_MULTIPLIER_MIN = -3
_MULTIPLIER_MAX = 3


def _round(x):
    # Half away from zero, the same on both interpreters (round() is banker's rounding on CPython).
    if x < 0:
        return -int(-x + 0.5)
    return int(x + 0.5)


def pv(value, unit):
    """A PhysicalValue dict for `value` in `unit` ("A", "V", "W", "Wh", "s", ...).

    Picks the smallest Multiplier (-3..3) whose Value still fits xs:short, which keeps the most precision:
    at least 4 significant digits for anything over 3.3, at least 3 down to 0.1 (three decimals is the
    finest the type has). 0 is {"Multiplier": 0, ..., "Value": 0}. Raises UsageError beyond 32767000.
    """
    if value == 0:
        return {"Multiplier": 0, "Unit": unit, "Value": 0}
    m = _MULTIPLIER_MIN
    while m <= _MULTIPLIER_MAX:
        # Integer powers of ten: 400.5 * 10 is exact where 400.5 / 0.1 is not.
        if m < 0:
            v = _round(value * 10 ** (-m))
        else:
            v = _round(value / 10**m)
        if v >= _VALUE_MIN and v <= _VALUE_MAX:
            return {"Multiplier": m, "Unit": unit, "Value": v}
        m += 1
    raise UsageError("physical value " + str(value) + " " + unit + " does not fit a PhysicalValue")


def opt_pv(d, key, value, unit):
    """d[key] = pv(value, unit) for an optional element; nothing when value is None."""
    if value is not None:
        d[key] = pv(value, unit)


def opt_int(d, key, value):
    """d[key] = int(value) for an optional element; nothing when value is None."""
    if value is not None:
        d[key] = int(value)


def pv_value(d, unit=None):
    """The number a PhysicalValue dict stands for (a float). With `unit`, a different Unit is a PeerError.

    DIN SPEC 70121 makes Unit optional: a value without one is accepted as being in `unit`.
    """
    try:
        m = d["Multiplier"]
        v = d["Value"]
        got = d.get("Unit")
    except (KeyError, TypeError, AttributeError):
        raise PeerError("PhysicalValue without Multiplier or Value")
    if m < _MULTIPLIER_MIN or m > _MULTIPLIER_MAX:
        raise PeerError("PhysicalValue Multiplier " + str(m) + " outside -3..3")
    if unit is not None and got is not None and got != unit:
        raise PeerError("PhysicalValue Unit " + str(got) + " where " + unit + " was expected")
    if m < 0:
        return v / 10 ** (-m)
    return float(v * 10**m)
