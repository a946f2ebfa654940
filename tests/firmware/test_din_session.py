# DIN SPEC 70121 DC charging end to end: the EV session (evpilot.ev.din) in EvClient against the station
# session (evpilot_sim.station.din) in SeccConnection, through the in-memory pipe on a virtual clock, with
# the simulated vehicle and the simulated EVSE (evpilot_sim.evse), the same models on both interpreters.
# Faults come from the connection's fault injection (withhold, FAILED, stop, emergency, SessionID, drop) and
# from the models.

from evpilot.errors import SessionError  # noqa: E402
from evpilot.ev import client as C  # noqa: E402
from evpilot.ev import din, pilot  # noqa: E402
from evpilot_sim.vehicle import SimVehicle  # noqa: E402
from evpilot.v2g import timers  # noqa: E402
from evpilot_sim import pipe  # noqa: E402
from evpilot_sim.station import din as SD  # noqa: E402
from evpilot_sim.station import secc as S  # noqa: E402

from evpilot_sim.evse import EVSE  # noqa: E402


def make_evse(**kw):
    return EVSE(**kw)


class Bench:
    """One EV, one station, their sessions, the models and the message log."""

    def __init__(self, faults=(), vehicle=None, evse=None, ev_options=None, station_options=None):
        self.vehicle = vehicle or SimVehicle(capacity_wh=1000, soc=20, target_soc=30)
        self.evse = evse or make_evse(cable_check_ms=200)
        self.ev_session = None
        self.st_session = None
        self.sent = []  # (now, request name) as the EV sent them
        self.received = []  # (now, response name) as the EV got them
        ev_options = ev_options or {}
        station_options = station_options or {}

        def ev_session(protocol):
            self.ev_session = din.DinSession(self.vehicle, **ev_options)
            return self.ev_session

        def st_session(protocol):
            self.st_session = SD.DinStationSession(self.evse, seed=7, **station_options)
            return self.st_session

        def log(direction, name, doc, data, now):
            if direction == "tx":
                self.sent.append((now, name))
            else:
                self.received.append((now, name))

        self.ev = C.EvClient(ev_session, [("din", 1)], timers.msg_timeout, log=log)
        self.st = S.SeccConnection(("din",), st_session, faults=faults)
        self.hook = None

    def tick(self, now):
        # The cable between them: the EVSE sees the battery's voltage, both models move with time.
        self.vehicle.advance(now)
        self.evse.advance(now)
        self.evse.set_battery_voltage(self.vehicle.present_voltage())
        if self.hook is not None:
            self.hook(self, now)

    def run(self, latency_ms=10):
        self.end = pipe.run(self.ev, self.st, latency_ms=latency_ms, tick=self.tick)
        return self

    def sequence(self):
        """Request names in order, with a repeated request listed once."""
        out = []
        for _, name in self.sent:
            if not out or out[-1] != name:
                out.append(name)
        return out

    def last_sent(self, name):
        t = None
        for now, n in self.sent:
            if n == name:
                t = now
        return t

    def assert_safe(self):
        assert not self.vehicle.contactors_closed()
        assert self.vehicle.cp_state == pilot.STATE_B


FULL = [
    "supportedAppProtocolReq", "SessionSetupReq", "ServiceDiscoveryReq", "ServicePaymentSelectionReq",
    "ContractAuthenticationReq", "ChargeParameterDiscoveryReq", "CableCheckReq", "PreChargeReq",
    "PowerDeliveryReq", "CurrentDemandReq", "PowerDeliveryReq", "WeldingDetectionReq", "SessionStopReq",
]


def test_full_session():
    b = Bench(station_options={"auth_ongoing_rounds": 2, "cpd_ongoing_rounds": 1}).run()
    assert b.sequence() == FULL
    assert (b.ev.state, b.st.state) == (C.DONE, S.DONE)
    s = b.ev_session
    assert s.state == din.DONE and b.st_session.finished
    counts = {}
    for _, name in b.sent:
        counts[name] = counts.get(name, 0) + 1
    assert counts["ContractAuthenticationReq"] == 3 and counts["ChargeParameterDiscoveryReq"] == 2
    assert counts["CurrentDemandReq"] > 10
    summary = s.summary()
    assert summary["protocol"] == "DIN SPEC 70121" and summary["identification"] == "ExternalPayment"
    assert summary["energy_wh"] > 50
    assert summary["soc_from"] == 20 and summary["soc_to"] >= 30
    assert summary["evse_id"] == "DE*EVP*E0001*1" and summary["reason"] == "charging complete"
    assert summary["duration_s"] > 0
    assert s.sa_schedule_tuple_id == 1 and s.evse_limits["max_current"] == 500.0
    b.assert_safe()


# The first response of each kind withheld: the EV gives up exactly V2G_EVCC_Msg_Timeout after the request.
WITHHELD = [
    ("SessionSetupRes", 1), ("ServiceDiscoveryRes", 1), ("ServicePaymentSelectionRes", 1),
    ("ContractAuthenticationRes", 1), ("ChargeParameterDiscoveryRes", 1), ("CableCheckRes", 1),
    ("PreChargeRes", 1), ("PowerDeliveryRes", 1), ("CurrentDemandRes", 1), ("PowerDeliveryRes", 2),
    ("WeldingDetectionRes", 1),
]


def test_withheld_response_times_out_at_its_din_timeout():
    for res, nth in WITHHELD:
        b = Bench([S.Fault(res, "withhold", nth=nth)]).run()
        req = res[:-3] + "Req"
        assert b.ev.state == C.FAILED and ("no " + res) in b.ev.reason, (res, b.ev.reason)
        timeout = timers.msg_timeout("din", req)
        assert b.end == b.last_sent(req) + timeout, (res, b.end, b.last_sent(req), timeout)
        assert b.ev_session.failed
        b.assert_safe()
    # A station that withholds SessionStopRes has also ended its side, so the EV sees the connection close.
    b = Bench([S.Fault("SessionStopRes", "withhold")]).run()
    assert b.ev.state == C.FAILED and "closed the connection while waiting for SessionStopRes" in b.ev.reason
    b.assert_safe()
    assert timers.msg_timeout("din", "CurrentDemandReq") == 250
    assert timers.msg_timeout("din", "CableCheckReq") == 2000


def test_failed_response_codes_end_the_session():
    for res in ("SessionSetupRes", "ServicePaymentSelectionRes", "ChargeParameterDiscoveryRes", "CableCheckRes",
                "PreChargeRes", "PowerDeliveryRes", "CurrentDemandRes", "WeldingDetectionRes"):
        b = Bench([S.Fault(res, "failed")]).run()
        assert b.ev.state == C.FAILED, res
        assert res in b.ev.reason and "FAILED" in b.ev.reason, b.ev.reason
        b.assert_safe()


def test_emergency_shutdown_during_current_demand():
    b = Bench([S.Fault("CurrentDemandRes", "emergency", nth=5)]).run()
    assert b.ev.state == C.FAILED and "EVSE_EmergencyShutdown" in b.ev.reason
    # No orderly stop after an emergency: the last request was the CurrentDemandReq it answered.
    assert b.sent[-1][1] == "CurrentDemandReq"
    b.assert_safe()
    assert b.ev_session.summary()["state"] == "FAILED"


def test_emergency_from_the_evse_model():
    def hook(bench, now):
        if bench.ev_session is not None and bench.ev_session.rounds == 4 and bench.ev_session.state == din.CURRENT_DEMAND:
            if EVSE is not None:
                bench.evse.emergency_stop(now)
            else:
                bench.evse.emergency = True

    b = Bench()
    b.hook = hook
    b.run()
    assert b.ev.state == C.FAILED and "EmergencyShutdown" in b.ev.reason
    b.assert_safe()


def test_evse_stop_charging_is_an_orderly_stop():
    b = Bench([S.Fault("CurrentDemandRes", "stop", nth=5)]).run()
    # StopCharging asks the EV to end the session: energy off, welding check, SessionStop.
    assert b.sequence()[-4:] == ["CurrentDemandReq", "PowerDeliveryReq", "WeldingDetectionReq", "SessionStopReq"]
    assert b.ev.state == C.DONE and "StopCharging" in b.ev_session.reason
    s = b.ev_session.summary()
    assert s["soc_to"] < 30 and s["state"] == "DONE"
    b.assert_safe()


def test_vehicle_stop_request():
    def hook(bench, now):
        s = bench.ev_session
        if s is not None and s.state == din.CURRENT_DEMAND and s.rounds >= 3:
            bench.vehicle.stop = True

    b = Bench()
    b.hook = hook
    b.run()
    assert b.ev.state == C.DONE and b.ev_session.reason == "stop requested by the vehicle"
    b.assert_safe()


def test_changed_session_id_and_dropped_connection():
    for fault in (S.Fault("PreChargeRes", "session_id"), S.Fault("CurrentDemandRes", "session_id", nth=3)):
        b = Bench([fault]).run()
        assert b.ev.state == C.FAILED and "SessionID" in b.ev.reason
        b.assert_safe()
    b = Bench([S.Fault("CurrentDemandRes", "drop", nth=3)]).run()
    assert b.ev.state == C.FAILED and "closed the connection" in b.ev.reason
    assert b.ev_session.reason == b.ev.reason
    b.assert_safe()


def test_ongoing_contract_authentication_is_bounded():
    # Responses every second (500 ms each way): the EV gives up at the first one 60 s after it began.
    b = Bench(station_options={"auth_ongoing_rounds": 1000}).run(latency_ms=500)
    assert b.ev.state == C.FAILED and "ContractAuthentication not finished within 60000 ms" in b.ev.reason
    first = [t for t, n in b.sent if n == "ContractAuthenticationReq"][0]
    assert b.end == first + din.ONGOING_TIMEOUT == first + 60000
    b.assert_safe()


def test_cable_check_is_bounded_and_checks_isolation():
    b = Bench(evse=make_evse(cable_check_ms=10 ** 6)).run(latency_ms=500)
    assert b.ev.state == C.FAILED and "CableCheck not finished within 40000 ms" in b.ev.reason
    first = [t for t, n in b.sent if n == "CableCheckReq"][0]
    assert b.end == first + timers.DIN_EVCC_CABLE_CHECK_TIMEOUT
    b.assert_safe()
    for result in ("Fault", "Invalid"):
        b = Bench(evse=make_evse(cable_check_ms=200, isolation_result=result)).run()
        assert b.ev.state == C.FAILED and ("EVSEIsolationStatus " + result) in b.ev.reason, b.ev.reason
        b.assert_safe()


def test_precharge_is_bounded():
    # An EVSE that ramps at 10 V/s never reaches the battery's voltage within 7 s.
    b = Bench(evse=make_evse(cable_check_ms=200, precharge_rate=10.0)).run(latency_ms=250)
    assert b.ev.state == C.FAILED and "PreCharge not finished within 7000 ms" in b.ev.reason
    first = [t for t, n in b.sent if n == "PreChargeReq"][0]
    assert b.end == first + timers.DIN_EVCC_PRE_CHARGE_TIMEOUT
    assert not b.vehicle.contactors_closed()
    b.assert_safe()


def test_out_of_state_response_is_refused():
    s = din.DinSession(SimVehicle())
    s.first_request(0)
    try:
        s.on_response("CurrentDemandRes", {"ResponseCode": "OK"}, {}, 10)
    except SessionError as e:
        assert "CurrentDemandRes" in str(e) and "SessionSetup" in str(e)
    else:
        raise AssertionError("accepted a response out of sequence")
