# Pacing of the EV's repeated requests (ev/client.py PACING), on a virtual clock, on CPython and MicroPython:
# the firmware EV (DIN SPEC 70121 DC, ISO 15118-2 DC and AC) against the station simulator with the
# simulated EVSE (cable check 2 s, pre-charge at 500 V/s, Ongoing rounds). Each repeated loop (the Ongoing
# loops, CableCheck, PreCharge, CurrentDemand, ChargingStatus, WeldingDetection) sends a request once per
# cycle, no faster and no slower than the cycle and the round trip allow; requests per second are counted per
# loop; a new station limit reaches the next CurrentDemandReq within one cycle; pacing=None restores the
# unpaced behaviour (each request right after its response).

from evpilot.ev import client as C
from evpilot.ev import din, pilot
from evpilot.ev.iso2 import Iso2Session
from evpilot.v2g import timers
from evpilot.v2g.messages import pv_value
from evpilot_sim import pipe
from evpilot_sim.evse import EVSE
from evpilot_sim.station import secc as S
from evpilot_sim.station.din import DinStationSession
from evpilot_sim.station.iso2 import Iso2StationSession
from evpilot_sim.vehicle import SimVehicle

LATENCY = 10
# Request name -> index into PACING.
LOOPS = (("ContractAuthenticationReq", 0), ("AuthorizationReq", 0), ("ChargeParameterDiscoveryReq", 0),
         ("CableCheckReq", 1), ("PreChargeReq", 2), ("CurrentDemandReq", 3), ("ChargingStatusReq", 4),
         ("WeldingDetectionReq", 5))


class Limit:
    """Wraps a station session: from the nth CurrentDemandRes on, EVSEMaximumCurrentLimit is `amps`."""

    def __init__(self, inner, nth, amps):
        self.inner, self.nth, self.amps, self.n = inner, nth, amps, 0
        self.schema = inner.schema

    @property
    def session_id(self):
        return self.inner.session_id

    @property
    def finished(self):
        return self.inner.finished

    def on_request(self, name, body, header, now):
        answer = self.inner.on_request(name, body, header, now)
        if answer[0] == "CurrentDemandRes":
            self.n += 1
            if self.n >= self.nth:
                answer[1]["EVSEMaximumCurrentLimit"] = {"Multiplier": 0, "Unit": "A", "Value": self.amps}
        return answer


def run(std, mode="dc", pacing=C.PACING, ongoing=3, limit=None, hook=None, done=True):
    modes = ("AC_three_phase_core",) if mode == "ac" else ("DC_extended",)
    car = SimVehicle(capacity_wh=1000, soc=20, target_soc=30, modes=modes)
    evse = EVSE()  # cable check 2000 ms, pre-charge 500 V/s
    tx, rx = [], []

    def make_ev(protocol):
        if std == "din":
            return din.DinSession(car, pacing=pacing)
        return Iso2Session(car, pacing=pacing)

    def make_st(protocol):
        if std == "din":
            st = DinStationSession(evse, seed=7, auth_ongoing_rounds=ongoing, cpd_ongoing_rounds=ongoing)
        else:
            st = Iso2StationSession(evse, seed=7, energy_modes=modes, auth_ongoing=ongoing, cpd_ongoing=ongoing)
        return st if limit is None else Limit(st, limit[0], limit[1])

    def log(direction, name, doc, data, now):
        if not name.startswith("supportedAppProtocol"):
            (tx if direction == "tx" else rx).append((name, doc["V2G_Message"]["Body"][name], now))

    def tick(now):
        car.advance(now)
        evse.advance(now)
        evse.set_battery_voltage(car.present_voltage())
        evse.ac_request(now, car.ac_current)
        if hook is not None:
            hook(client, car, now)

    client = C.EvClient(make_ev, [(std, 1)], timers.msg_timeout, log=log)
    secc = S.SeccConnection((std,), make_st)
    pipe.run(client, secc, latency_ms=LATENCY, tick=tick)
    if done:
        assert client.state == C.DONE, client.reason
    return tx, rx, client, car


def loops(tx):
    """{request name: [times]} of the requests sent more than once in a row."""
    out = {}
    prev = None
    for name, _, now in tx:
        if name == prev:
            out[name].append(now)
        else:
            out[name] = [now]  # a later run of the same request (a second PowerDelivery...) starts anew
        prev = name
    return dict((k, v) for k, v in out.items() if len(v) > 1)


def rate(times):
    """Requests per second over a loop (first to last request)."""
    return (len(times) - 1) * 1000.0 / (times[-1] - times[0])


def check_paced(tx, expected):
    seen = loops(tx)
    for name, idx in LOOPS:
        if name not in seen:
            continue
        times = seen[name]
        cycle = C.PACING[idx]
        gaps = [b - a for a, b in zip(times, times[1:])]
        # Never faster than the cycle; no slower than the cycle or the round trip, whichever is longer.
        assert min(gaps) >= cycle, (name, gaps)
        assert max(gaps) <= max(cycle, 2 * LATENCY) + LATENCY, (name, gaps)
        assert rate(times) <= 1000.0 / cycle + 0.001, (name, rate(times))
    assert sorted(seen) == sorted(expected), sorted(seen)
    return seen


def test_din_dc_loops_are_paced():
    seen = check_paced(run("din")[0], ["ContractAuthenticationReq", "ChargeParameterDiscoveryReq", "CableCheckReq",
                                       "PreChargeReq", "CurrentDemandReq", "WeldingDetectionReq"])
    # The station's cable check takes 2 s: 500 ms apart, that is 5 requests (unpaced: about 100).
    assert len(seen["CableCheckReq"]) == 5 and 9.9 <= rate(seen["CurrentDemandReq"]) <= 10.0


def test_iso2_dc_loops_are_paced():
    seen = check_paced(run("iso2")[0], ["AuthorizationReq", "ChargeParameterDiscoveryReq", "CableCheckReq",
                                        "PreChargeReq", "CurrentDemandReq", "WeldingDetectionReq"])
    assert len(seen["AuthorizationReq"]) == 4 and len(seen["CableCheckReq"]) == 5


def test_iso2_ac_loop_is_paced():
    seen = check_paced(run("iso2", "ac")[0], ["AuthorizationReq", "ChargeParameterDiscoveryReq", "ChargingStatusReq"])
    assert 1.9 <= rate(seen["ChargingStatusReq"]) <= 2.0


def test_without_pacing_each_request_follows_its_response():
    seen = loops(run("din", pacing=None)[0])
    for name in ("CableCheckReq", "CurrentDemandReq"):
        times = seen[name]
        assert [b - a for a, b in zip(times, times[1:])] == [2 * LATENCY] * (len(times) - 1), name
    assert len(seen["CableCheckReq"]) > 90  # what the station got before pacing: 2 s of cable check / 20 ms


def test_a_new_station_limit_reaches_the_next_request_within_one_cycle():
    for std in ("din", "iso2"):
        tx, rx = run(std, limit=(5, 50))[:2]
        res = [t for n, _, t in rx if n == "CurrentDemandRes"]
        reqs = [(t, pv_value(b["EVTargetCurrent"])) for n, b, t in tx if n == "CurrentDemandReq"]
        arrived = res[4]  # the first response with the 50 A limit
        after = [(t, i) for t, i in reqs if t >= arrived]
        assert after[0][0] - arrived <= C.PACING[3] and after[0][1] <= 50.0, (std, after[:2])
        assert all(i <= 50.0 for _, i in after), std
        assert max(i for t, i in reqs if t < arrived) > 300  # before it, the EV asked for much more


def test_a_held_request_ends_safely_when_the_vehicle_aborts_or_the_station_closes():
    for what in ("abort", "lost"):
        held = []

        def hook(client, car, now):
            # While a paced CurrentDemandReq waits for its cycle: the driver unplugs, or the TCP link drops.
            if not held and client._held is not None and client._held[0] == "CurrentDemandReq":
                held.append(now)
                if what == "abort":
                    client.abort(now, "unplugged")
                else:
                    client.connection_lost(now)

        tx, rx, client, car = run("iso2", hook=hook, done=False)
        assert held and client.state == C.FAILED, (what, client.reason)
        assert client.reason == ("unplugged" if what == "abort" else
                                 "the station closed the connection before CurrentDemandReq"), client.reason
        assert not car.contactors_closed() and car.cp_state == pilot.STATE_B
        assert tx[-1][2] < held[0] and client.next_deadline() is None  # the held request never went out
