"""Property: any decodable response, fed to the firmware's EV where that response is expected, never makes the
EV raise anything but the project's errors, nor request values outside the vehicle's limits or the schema.

A whole session runs (EvClient with the DIN or ISO-2 EV session and SimVehicle, against the simulated station
and EVSE through the in-memory pipe, on a virtual clock); the k-th response the EV receives is replaced by a
random document of the same message, generated from the grammar (tests/exi_random.py), encoded and decoded
again by the strict codec, so it is what a hostile but schema-valid station can send. The session then goes
on against the real station. Checked, for every example:
  - the EV session's on_response raised nothing but EvpilotError (the client turns anything else into a
    failure named "internal error", which is an escape too);
  - every request the EV sent encodes with the strict codec (nothing we send breaks an XSD facet) and its
    targets and limits are within the vehicle's (EVTargetCurrent and EVMaximumCurrentLimit in [0, the
    vehicle's max_current], voltages in [0, max_voltage], EVMaximumPowerLimit in [0, max_power]);
  - the AC current the vehicle draws stays within [0, ac_max_current];
  - a session that failed ended with its contactors open.
CPython only (hypothesis); the hostile-station cases with named values run on both interpreters elsewhere.
"""

import os
import sys

import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import exi_random  # noqa: E402

from evpilot import exi  # noqa: E402
from evpilot.errors import EvpilotError  # noqa: E402
from evpilot.ev.client import FAILED, EvClient  # noqa: E402
from evpilot.ev.din import DinSession  # noqa: E402
from evpilot.ev.iso2 import Iso2Session  # noqa: E402
from evpilot.ev.vehicle import AC_THREE_PHASE_CORE, DC_EXTENDED  # noqa: E402
from evpilot.v2g.timers import msg_timeout  # noqa: E402
from evpilot_sim import pipe  # noqa: E402
from evpilot_sim.evse import EVSE  # noqa: E402
from evpilot_sim.station import din as SD  # noqa: E402
from evpilot_sim.station import secc as S  # noqa: E402
from evpilot_sim.station.iso2 import Iso2StationSession  # noqa: E402
from evpilot_sim.vehicle import SimVehicle  # noqa: E402

EXAMPLES = int(os.environ.get("EVPILOT_PROPERTY_EXAMPLES", "60"))
SID = b"\x01\x02\x03\x04\x05\x06\x07\x08"
# (EVSE setting, vehicle limit) per request value: what the EV may ask for.
CURRENTS = ("EVTargetCurrent", "EVMaximumCurrentLimit")
VOLTAGES = ("EVTargetVoltage", "EVMaximumVoltageLimit")
POWERS = ("EVMaximumPowerLimit",)


def _pv(d):
    return d["Value"] * 10.0 ** d["Multiplier"]


# Units by the element's name, and the status values that let a session go on: most random documents get
# them, so that their values are acted on instead of refused at the first wrong unit or alarm.
_UNITS = (("Voltage", "V"), ("Current", "A"), ("Power", "W"), ("Energy", "Wh"), ("Time", "s"), ("PMax", "W"))
_BENIGN = {"ResponseCode": "OK", "EVSEStatusCode": "EVSE_Ready", "EVSENotification": "None", "RCD": False,
           "EVSEIsolationStatus": "Valid", "SAScheduleTupleID": 1}


def _plausible(d, rnd):
    if isinstance(d, list):
        for x in d:
            _plausible(x, rnd)
        return
    if not isinstance(d, dict):
        return
    for key, v in d.items():
        if isinstance(v, dict) and "Unit" in v and "Value" in v:
            for part, unit in _UNITS:
                if part in key and rnd.random() < 0.9:
                    v["Unit"] = unit
                    break
        elif key in _BENIGN and rnd.random() < 0.75:
            d[key] = _BENIGN[key]
        else:
            _plausible(v, rnd)


def random_body(schema, name, rnd):
    """A decodable body of message `name`: generated from the grammar, through the strict encoder and decoder;
    usually with the units its names call for and statuses that let the session go on (_plausible)."""
    doc = exi_random.random_message(schema, name, rnd, signature=False)
    body = doc["V2G_Message"]["Body"][name]
    if rnd.random() < 0.85:
        _plausible(body, rnd)
    doc["V2G_Message"]["Header"] = {"SessionID": SID}
    return exi.decode(schema, exi.encode(schema, doc))["V2G_Message"]["Body"][name]


class Hostile:
    """The EV's protocol session, with its k-th response replaced by a random one of the same message."""

    def __init__(self, inner, k, rnd):
        self.inner = inner
        self.schema = inner.schema
        self.k = k
        self.rnd = rnd
        self.n = 0
        self.injected = None
        self.escaped = None
        self.requests = []

    def __getattr__(self, name):  # pace_ms, summary(), ...
        return getattr(self.inner, name)

    def first_request(self, now):
        req = self.inner.first_request(now)
        self.requests.append(req)
        return req

    def on_response(self, name, body, header, now):
        self.n += 1
        if self.n == self.k:
            body = random_body(self.schema, name, self.rnd)
            self.injected = (name, body)
        try:
            nxt = self.inner.on_response(name, body, header, now)
        except EvpilotError:
            raise
        except Exception as e:  # an escape: recorded, then the client's own handling goes on
            self.escaped = e
            raise
        if nxt is not None:
            self.requests.append(nxt)
        return nxt

    def safe_stop(self, now, reason):
        return self.inner.safe_stop(now, reason)


class Session:
    def __init__(self, protocol, mode, k, rnd):
        self.car = SimVehicle(capacity_wh=1000, soc=20, target_soc=22, bulk_soc=22, modes=(mode,))
        self.evse = EVSE(cable_check_ms=600)
        self.hostile = None
        self.ac_currents = []
        schema = "din" if protocol == "din" else "iso2"

        def make_ev(p):
            inner = DinSession(self.car) if p == "din" else Iso2Session(self.car)
            self.hostile = Hostile(inner, k, rnd)
            return self.hostile

        def make_st(p):
            if p == "din":
                return SD.DinStationSession(self.evse, seed=7)
            return Iso2StationSession(self.evse, seed=7, energy_modes=(mode,))

        self.client = EvClient(make_ev, [(schema, 1)], msg_timeout)
        self.secc = S.SeccConnection((schema,), make_st)
        self.schema = schema
        pipe.run(self.client, self.secc, latency_ms=20, tick=self.tick, limit_ms=900000)

    def tick(self, now):
        car, evse = self.car, self.evse
        car.advance(now)
        self.ac_currents.append(car.ac_current)
        if car.contactors_closed():
            evse.set_battery_voltage(car.present_voltage())
        evse.ac_request(now, car.ac_current)
        evse.advance(now)


def check(s):
    h = s.hostile
    car = s.car
    assert h is not None, s.client.reason
    assert h.escaped is None, "%s escaped after %r: %r" % (type(h.escaped).__name__, h.injected, h.escaped)
    reason = s.client.reason or ""
    assert not reason.startswith("internal error"), (reason, h.injected)
    for req in h.requests:
        name, body = req[0], req[1]
        doc = {"V2G_Message": {"Header": {"SessionID": SID}, "Body": {name: body}}}
        exi.encode(s.schema, doc)  # raises ExiError if a value breaks its facet
        for key in CURRENTS + VOLTAGES + POWERS:
            for where in (body, body.get("DC_EVChargeParameter") or {}):
                if key not in where:
                    continue
                v = _pv(where[key])
                limit = car.max_current if key in CURRENTS else car.max_voltage if key in VOLTAGES else car.max_power
                assert 0 <= v <= limit * 1.0001, (name, key, v, limit, h.injected)
    for a in s.ac_currents:
        assert 0 <= a <= car.ac_max_current, (a, h.injected)
    if s.client.state == FAILED:
        assert not car.contactors_closed(), (reason, h.injected)


def _reference_length(protocol, mode):
    s = Session(protocol, mode, 0, None)
    assert s.client.state != FAILED, s.client.reason
    return s.hostile.n


CASES = [("din", DC_EXTENDED), ("iso2", DC_EXTENDED), ("iso2", AC_THREE_PHASE_CORE)]
_LENGTHS = {}


def _length(protocol, mode):
    key = (protocol, mode)
    if key not in _LENGTHS:
        _LENGTHS[key] = _reference_length(protocol, mode)
    return _LENGTHS[key]


@pytest.mark.parametrize("protocol,mode", CASES, ids=["din-dc", "iso2-dc", "iso2-ac"])
def test_reference_session_completes(protocol, mode):
    # Without an injected response the session ends normally and passes the same checks.
    s = Session(protocol, mode, 0, None)
    assert s.client.state != FAILED, s.client.reason
    check(s)
    assert s.hostile.n >= 8


class _Fake:
    """A finished session with one request, for the checker's own test."""

    def __init__(self, body):
        self.car = SimVehicle(capacity_wh=1000)
        self.schema = "iso2"
        self.ac_currents = [0.0]
        self.client = type("C", (), {"state": 2, "reason": "session stopped"})()
        self.hostile = type("H", (), {"escaped": None, "injected": None, "requests": [("PreChargeReq", body)]})()


def test_the_checker_fails_on_out_of_range_requests():
    good = {"DC_EVStatus": {"EVReady": True, "EVErrorCode": "NO_ERROR", "EVRESSSOC": 20},
            "EVTargetVoltage": {"Multiplier": 0, "Unit": "V", "Value": 400},
            "EVTargetCurrent": {"Multiplier": 0, "Unit": "A", "Value": 2}}
    check(_Fake(good))
    for key, value in (("EVTargetCurrent", -1), ("EVTargetCurrent", 401), ("EVTargetVoltage", 421)):
        bad = dict(good)
        bad[key] = dict(good[key], Value=value)
        with pytest.raises(AssertionError):
            check(_Fake(bad))
    bad = dict(good, DC_EVStatus=dict(good["DC_EVStatus"], EVRESSSOC=101))  # breaks percentValueType
    with pytest.raises(EvpilotError):
        check(_Fake(bad))


@pytest.mark.parametrize("protocol,mode", CASES, ids=["din-dc", "iso2-dc", "iso2-ac"])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_decodable_response_is_handled(protocol, mode, data):
    n = _length(protocol, mode)
    k = data.draw(st.integers(1, n), label="response index")
    rnd = data.draw(st.randoms(use_true_random=False), label="rnd")
    s = Session(protocol, mode, k, rnd)
    assert s.hostile.injected is not None or s.hostile.n < k
    check(s)
