# ISO 15118-2 sessions, EV (evpilot.ev.iso2) against station (evpilot_sim.station.iso2), back to back
# through the in-memory pipe on a virtual clock, on CPython and MicroPython: EIM, and at the end Plug&Charge
# (the EV's ev.contracts.ContractManager over a store against the station's station.contracts.StationPnc and CPS, both
# told the connection is TLS; the TLS layer itself is tested over sockets in tests/test_tls_endpoint.py).
#
# The vehicle is SimVehicle. The EVSE is MiniEvse below rather than evpilot_sim.evse.EVSE: the real model moves
# with time (cable check takes cable_check_ms, pre-charge ramps at a rate), while these tests count requests,
# so MiniEvse moves per request instead (pre-charge ramps 100 V per request, cable check takes 3 requests,
# current follows the target at once) and every count is the same on both interpreters whatever the pipe's
# latency; tests/test_iso2_station.py runs the same sessions with the real EVSE.

from evpilot import exi
from evpilot.compat import ticks_diff
from evpilot.ev import pilot
from evpilot.ev.client import DONE, FAILED, EvClient
from evpilot.ev.iso2 import Iso2Session
from evpilot_sim.vehicle import SimVehicle
from evpilot.ev.vehicle import AC_THREE_PHASE_CORE, DC_EXTENDED
from evpilot.v2g.messages import pv
from evpilot.v2g.timers import ISO2_EVCC_ONGOING_TIMEOUT, msg_timeout
from evpilot_sim import pipe
from evpilot_sim.station import secc as S
from evpilot_sim.station.iso2 import Iso2StationSession


class MiniEvse:
    """A deterministic EVSE with the methods Iso2StationSession uses (see the module comment)."""

    def __init__(self, ac_max_current=16.0, dc_max_current=200.0, dc_max_power=50000.0, cable_check_rounds=3):
        self.ac_max_current = ac_max_current
        self.dc_max_current = dc_max_current
        self.dc_max_power = dc_max_power
        self.cable_check_rounds = cable_check_rounds
        self.present_voltage = 0.0
        self.present_current = 0.0
        self.battery_voltage = 0.0
        self.battery_connected = False
        self.ac_closed = False
        self.ac_current = 0.0
        self.meter_wh = 0.0
        self.renegotiate = False
        self.isolation_status = None
        self._checks = 0
        self._last = None

    def advance(self, now):
        if self._last is not None:
            dt = ticks_diff(now, self._last)
            power = 3 * 230.0 * self.ac_current if self.ac_closed else self.present_voltage * self.present_current
            self.meter_wh += power * dt / 3600000.0
        self._last = now
        if self.battery_connected:
            self.present_voltage = self.battery_voltage

    def begin_session(self):
        pass

    def start_cable_check(self, now):
        self.isolation_status = "Invalid"
        self._checks = 0

    def cable_check(self, now):
        self._checks += 1
        if self._checks < self.cable_check_rounds:
            return "Ongoing", "Invalid"
        self.isolation_status = "Valid"
        return "Finished", "Valid"

    def precharge(self, now, volts, amps):
        step = volts - self.present_voltage
        self.present_voltage += 100.0 if step > 100.0 else step
        return self.present_voltage

    def ev_contactors(self, now, closed, battery_voltage=None):
        self.advance(now)
        self.battery_connected = closed
        if battery_voltage is not None:
            self.battery_voltage = battery_voltage
        if not closed:
            self.present_voltage = 0.0
            self.present_current = 0.0

    def set_battery_voltage(self, volts):
        self.battery_voltage = volts
        if self.battery_connected:
            self.present_voltage = volts

    def current_demand(self, now, volts, amps):
        self.advance(now)
        limit = self.dc_max_power / self.present_voltage if self.present_voltage > 0 else self.dc_max_current
        amps = amps if amps < self.dc_max_current else self.dc_max_current
        self.present_current = amps if amps < limit else limit
        return self.present_voltage, self.present_current

    def stop(self, now):
        self.advance(now)
        self.present_current = 0.0

    def ac_offer(self):
        return self.ac_max_current

    def ac_close(self, now):
        self.ac_closed = True

    def ac_open(self, now):
        self.advance(now)
        self.ac_closed = False
        self.ac_current = 0.0

    def ac_request(self, now, amps):
        self.advance(now)
        self.ac_current = (amps if amps < self.ac_max_current else self.ac_max_current) if self.ac_closed else 0.0

    def dc_evse_status(self):
        s = {"NotificationMaxDelay": 0, "EVSENotification": "ReNegotiation" if self.renegotiate else "None",
             "EVSEStatusCode": "EVSE_Ready"}
        if self.isolation_status is not None:
            s["EVSEIsolationStatus"] = self.isolation_status
        return s

    def ac_evse_status(self):
        return {"NotificationMaxDelay": 0, "EVSENotification": "ReNegotiation" if self.renegotiate else "None",
                "RCD": False}

    def dc_charge_parameter(self):
        return {"DC_EVSEStatus": self.dc_evse_status(), "EVSEMaximumCurrentLimit": pv(self.dc_max_current, "A"),
                "EVSEMaximumPowerLimit": pv(self.dc_max_power, "W"), "EVSEMaximumVoltageLimit": pv(500, "V"),
                "EVSEMinimumCurrentLimit": pv(0, "A"), "EVSEMinimumVoltageLimit": pv(150, "V"),
                "EVSEPeakCurrentRipple": pv(5, "A")}

    def ac_charge_parameter(self):
        return {"AC_EVSEStatus": self.ac_evse_status(), "EVSENominalVoltage": pv(230, "V"),
                "EVSEMaxCurrent": pv(self.ac_max_current, "A")}

    def current_demand_fields(self):
        return {"DC_EVSEStatus": self.dc_evse_status(), "EVSEPresentVoltage": pv(self.present_voltage, "V"),
                "EVSEPresentCurrent": pv(self.present_current, "A"), "EVSECurrentLimitAchieved": False,
                "EVSEVoltageLimitAchieved": False, "EVSEPowerLimitAchieved": False,
                "EVSEMaximumCurrentLimit": pv(self.dc_max_current, "A"),
                "EVSEMaximumPowerLimit": pv(self.dc_max_power, "W")}

    def meter_info(self):
        return {"MeterID": "MINI", "MeterReading": int(self.meter_wh)}


def vehicle(mode, soc=20, target=25):
    modes = (mode,) if mode else (DC_EXTENDED, AC_THREE_PHASE_CORE)
    return SimVehicle(capacity_wh=1000, soc=soc, target_soc=target, bulk_soc=target, modes=modes)


class Run:
    """One connection: EV client + station connection through pipe.run; `tx` are the EV's requests."""

    def __init__(self, car, evse=None, ev_opts=None, st_opts=None, faults=(), latency=50, modes=None,
                 session_id=None, paused=None, start=0):
        self.car = car
        self.evse = evse or MiniEvse()
        self.tx = []  # (name, body, now) of every request the EV sent
        self.rx = []
        self.headers = []  # (direction, name, Header) of every V2G message
        self.ev = None
        self.st = None
        ev_opts = ev_opts or {}
        st_opts = dict(st_opts or {})
        if modes is not None:
            st_opts["energy_modes"] = modes

        def make_ev(protocol):
            self.ev = Iso2Session(car, **ev_opts)
            return self.ev

        def make_st(protocol):
            self.st = Iso2StationSession(self.evse, seed=7, paused=paused, **st_opts)
            return self.st

        def log(direction, name, doc, data, now):
            if name == "supportedAppProtocolReq" or name == "supportedAppProtocolRes":
                return
            body = doc["V2G_Message"]["Body"][name]
            self.headers.append((direction, name, doc["V2G_Message"]["Header"]))
            (self.tx if direction == "tx" else self.rx).append((name, body, now))

        self.client = EvClient(make_ev, [("iso2", 1)], msg_timeout, log=log)
        if session_id is not None:
            self.client.session_id = session_id
        self.secc = S.SeccConnection(("iso2",), make_st, faults=faults)
        self.end = pipe.run(self.client, self.secc, now=start, latency_ms=latency, tick=self.tick)

    def tick(self, now):
        car, evse = self.car, self.evse
        car.advance(now)
        if car.contactors_closed():
            evse.set_battery_voltage(car.present_voltage())
        evse.ac_request(now, car.ac_current)
        evse.advance(now)

    def names(self):
        """The EV's requests with repeats folded: [("CurrentDemandReq", 12), ...]."""
        out = []
        for name, _, _ in self.tx:
            if out and out[-1][0] == name:
                out[-1] = (name, out[-1][1] + 1)
            else:
                out.append((name, 1))
        return out

    def sequence(self):
        return [n for n, _ in self.names()]

    def sent(self, name):
        return [t for n, _, t in self.tx if n == name]

    def safe(self):
        return not self.car.contactors_closed() and self.car.cp_state == pilot.STATE_B


COMMON = ["SessionSetupReq", "ServiceDiscoveryReq", "PaymentServiceSelectionReq", "AuthorizationReq",
          "ChargeParameterDiscoveryReq"]
AC_SEQUENCE = COMMON + ["PowerDeliveryReq", "ChargingStatusReq", "PowerDeliveryReq", "SessionStopReq"]
DC_SEQUENCE = COMMON + ["CableCheckReq", "PreChargeReq", "PowerDeliveryReq", "CurrentDemandReq",
                        "PowerDeliveryReq", "WeldingDetectionReq", "SessionStopReq"]


def test_full_ac_session():
    car = vehicle(AC_THREE_PHASE_CORE)
    r = Run(car, modes=("AC_three_phase_core", "AC_single_phase_core"))
    assert (r.client.state, r.secc.state) == (DONE, S.DONE), (r.client.reason, r.secc.reason)
    assert r.sequence() == AC_SEQUENCE
    assert [b["ChargeProgress"] for n, b, _ in r.tx if n == "PowerDeliveryReq"] == ["Start", "Stop"]
    assert r.tx[-1][1] == {"ChargingSession": "Terminate"} and r.st.stopped_with == "Terminate"
    s = r.ev.summary()
    assert s["mode"] == "AC" and s["identification"] == "EIM" and s["evse_id"] == "DE*EVP*E0001*1"
    assert s["soc_from"] == 20 and s["soc_to"] == 25 and car.charging_complete()
    # 5 % of 1 kWh went in; the station's meter (whole Wh) saw about the same.
    assert 45 <= s["energy_wh"] <= 51, s
    assert 45 <= r.evse.meter_wh <= 52
    assert r.safe() and r.st.cycles == len(r.sent("ChargingStatusReq")) > 10


def test_full_dc_session():
    car = vehicle(DC_EXTENDED)
    r = Run(car, modes=("DC_extended",))
    assert (r.client.state, r.secc.state) == (DONE, S.DONE), (r.client.reason, r.secc.reason)
    assert r.sequence() == DC_SEQUENCE
    counts = dict(r.names())
    assert counts["CableCheckReq"] == 3  # MiniEvse: Ongoing, Ongoing, Finished
    assert counts["PreChargeReq"] == 4  # 0 -> 100 -> 200 -> 300 -> 336.x V (the pack)
    assert counts["CurrentDemandReq"] > 3 and counts["WeldingDetectionReq"] == 1
    socs = [b["DC_EVStatus"]["EVRESSSOC"] for n, b, _ in r.tx if n == "CurrentDemandReq"]
    assert socs[0] == 20 and socs[-1] >= 24 and socs == sorted(socs)
    s = r.ev.summary()
    assert s["mode"] == "DC" and s["soc_from"] == 20 and s["soc_to"] == 25
    assert 45 <= s["energy_wh"] <= 52, s
    assert r.safe()
    for name, body, _ in r.tx:  # every request is a valid ISO-2 document
        exi.encode("iso2", {"V2G_Message": {"Header": {"SessionID": r.client.session_id}, "Body": {name: body}}})


def test_mode_follows_the_station():
    car = vehicle(None)  # prefers DC, can do AC
    r = Run(car, modes=("AC_three_phase_core",))
    assert r.client.state == DONE and r.ev.summary()["mode"] == "AC"
    car2 = vehicle(AC_THREE_PHASE_CORE)
    r2 = Run(car2, modes=("DC_extended",))
    assert r2.client.state == FAILED and "energy transfer modes" in r2.client.reason and r2.safe()


def test_pause_then_resume_with_the_same_session_id():
    paused = {}
    car = vehicle(DC_EXTENDED, target=22)
    r1 = Run(car, ev_opts={"pause": True}, modes=("DC_extended",), paused=paused)
    assert r1.client.state == DONE and r1.tx[-1][1] == {"ChargingSession": "Pause"}
    sid = r1.client.session_id
    assert list(paused) == [sid] and r1.ev.summary()["reason"] == "paused"
    car.target_soc = 25
    car.stop = False
    r2 = Run(car, r1.evse, ev_opts={"resume_id": sid}, modes=("DC_extended",), session_id=sid, paused=paused,
             start=r1.end + 10000)
    assert (r2.client.state, r2.secc.state) == (DONE, S.DONE), r2.client.reason
    assert r2.rx[0][1]["ResponseCode"] == "OK_OldSessionJoined"
    assert r2.client.session_id == sid and r2.st.joined and paused == {}
    assert r2.sequence() == DC_SEQUENCE and r2.ev.summary()["soc_to"] == 25


def test_resume_refused_when_the_station_forgot_the_session():
    car = vehicle(AC_THREE_PHASE_CORE)
    r = Run(car, ev_opts={"resume_id": b"\x01" * 8}, session_id=b"\x01" * 8, modes=("AC_three_phase_core",))
    assert r.client.state == FAILED and "OK_OldSessionJoined" in r.client.reason and r.safe()


def test_renegotiation_ac_and_dc():
    for mode, loop in ((AC_THREE_PHASE_CORE, "ChargingStatusReq"), (DC_EXTENDED, "CurrentDemandReq")):
        car = vehicle(mode)
        r = Run(car, st_opts={"renegotiate_after": 3}, modes=(mode,))
        assert r.client.state == DONE, r.client.reason
        progress = [b["ChargeProgress"] for n, b, _ in r.tx if n == "PowerDeliveryReq"]
        assert progress == ["Start", "Renegotiate", "Start", "Stop"]
        seq = r.sequence()
        i = seq.index(loop)
        assert seq[i:i + 5] == [loop, "PowerDeliveryReq", "ChargeParameterDiscoveryReq", "PowerDeliveryReq", loop]
        assert dict(r.names())[loop] > 3 or seq.count(loop) == 2
        assert r.ev.renegotiations == 1 and r.st.renegotiations == 1


def test_metering_receipt_when_required():
    for mode in (AC_THREE_PHASE_CORE, DC_EXTENDED):
        car = vehicle(mode)
        r = Run(car, st_opts={"receipt_required": 2}, modes=(mode,))
        assert r.client.state == DONE, r.client.reason
        receipts = [b for n, b, _ in r.tx if n == "MeteringReceiptReq"]
        assert receipts and len(receipts) == r.st.receipts == r.ev.receipts
        assert receipts[0]["SessionID"] == r.client.session_id and "MeterID" in receipts[0]["MeterInfo"]
        assert "Id" not in receipts[0]  # EIM: an unsigned receipt


def withheld(name, mode=DC_EXTENDED, nth=1):
    car = vehicle(mode)
    r = Run(car, faults=[S.Fault(name, "withhold", nth=nth)], modes=(mode,))
    return r


def test_withheld_responses_time_out_at_their_iso2_timeout():
    cases = (("SessionSetupRes", DC_EXTENDED, 1), ("ServiceDiscoveryRes", DC_EXTENDED, 1),
             ("AuthorizationRes", DC_EXTENDED, 1), ("ChargeParameterDiscoveryRes", DC_EXTENDED, 1),
             ("CableCheckRes", DC_EXTENDED, 2), ("PreChargeRes", DC_EXTENDED, 1), ("PowerDeliveryRes", DC_EXTENDED, 1),
             ("CurrentDemandRes", DC_EXTENDED, 3), ("WeldingDetectionRes", DC_EXTENDED, 1),
             ("ChargingStatusRes", AC_THREE_PHASE_CORE, 2),
             ("PowerDeliveryRes", AC_THREE_PHASE_CORE, 2))
    for name, mode, nth in cases:
        r = withheld(name, mode, nth)
        req = name[:-3] + "Req"
        sent = r.sent(req)[nth - 1]
        assert r.client.state == FAILED and ("no " + name) in r.client.reason, (name, r.client.reason)
        assert r.end == sent + msg_timeout("iso2", req), (name, r.end, sent)
        assert r.safe(), name
    # A station that finished its session closes without SessionStopRes reaching us: failed, but safe.
    r = withheld("SessionStopRes")
    assert r.client.state == FAILED and "closed the connection" in r.client.reason and r.safe()
    assert msg_timeout("iso2", "CurrentDemandReq") == 250 and msg_timeout("iso2", "PowerDeliveryReq") == 5000


def test_authorization_ongoing_longer_than_60_s_fails():
    car = vehicle(AC_THREE_PHASE_CORE)
    r = Run(car, st_opts={"auth_ongoing": 10 ** 6}, modes=("AC_three_phase_core",), latency=500)
    first = r.sent("AuthorizationReq")[0]
    assert r.client.state == FAILED and "AuthorizationRes" in r.client.reason and "Ongoing" in r.client.reason
    # Requests every second (2 x 500 ms); the first Ongoing at or after 60 s ends it.
    assert ISO2_EVCC_ONGOING_TIMEOUT == 60000
    assert r.end - first == 60000, r.end - first
    assert len(r.sent("AuthorizationReq")) == 60 and r.safe()
    # 59 rounds of Ongoing are fine.
    car2 = vehicle(AC_THREE_PHASE_CORE)
    r2 = Run(car2, st_opts={"auth_ongoing": 59}, modes=("AC_three_phase_core",), latency=500)
    assert r2.client.state == DONE, r2.client.reason


def test_cpd_ongoing_then_finished():
    car = vehicle(DC_EXTENDED)
    r = Run(car, st_opts={"cpd_ongoing": 3, "auth_ongoing": 2}, modes=("DC_extended",))
    assert r.client.state == DONE and dict(r.names())["ChargeParameterDiscoveryReq"] == 4
    assert dict(r.names())["AuthorizationReq"] == 3


def test_failed_response_codes_end_the_session():
    for name, mode in (("SessionSetupRes", DC_EXTENDED), ("PaymentServiceSelectionRes", DC_EXTENDED),
                       ("ChargeParameterDiscoveryRes", DC_EXTENDED), ("CableCheckRes", DC_EXTENDED),
                       ("CurrentDemandRes", DC_EXTENDED), ("ChargingStatusRes", AC_THREE_PHASE_CORE),
                       ("PowerDeliveryRes", AC_THREE_PHASE_CORE)):
        car = vehicle(mode)
        r = Run(car, faults=[S.Fault(name, "failed")], modes=(mode,))
        assert r.client.state == FAILED and name in r.client.reason and "FAILED" in r.client.reason, r.client.reason
        assert r.safe() and r.secc.state == S.FAILED


def test_emergency_shutdown_and_rcd():
    car = vehicle(DC_EXTENDED)
    r = Run(car, faults=[S.Fault("CurrentDemandRes", "emergency", nth=3)], modes=("DC_extended",))
    assert r.client.state == FAILED and "EVSE_EmergencyShutdown" in r.client.reason and r.safe()
    assert len(r.sent("CurrentDemandReq")) == 3
    car = vehicle(AC_THREE_PHASE_CORE)
    r = Run(car, faults=[S.Fault("ChargingStatusRes", "emergency", nth=2)], modes=("AC_three_phase_core",))
    assert r.client.state == FAILED and "RCD" in r.client.reason and r.safe()


def test_stop_charging_from_the_evse_ends_normally():
    car = vehicle(DC_EXTENDED)
    r = Run(car, faults=[S.Fault("CurrentDemandRes", "stop", nth=2)], modes=("DC_extended",))
    assert (r.client.state, r.secc.state) == (DONE, S.DONE)
    assert len(r.sent("CurrentDemandReq")) == 2 and r.sequence()[-3:] == DC_SEQUENCE[-3:]
    assert not car.charging_complete() and r.safe()
    car = vehicle(AC_THREE_PHASE_CORE)
    r = Run(car, faults=[S.Fault("ChargingStatusRes", "stop", nth=4)], modes=("AC_three_phase_core",))
    assert r.client.state == DONE and len(r.sent("ChargingStatusReq")) == 4 and r.safe()


def test_driver_stop():
    car = vehicle(AC_THREE_PHASE_CORE)
    car.stop = True
    r = Run(car, modes=("AC_three_phase_core",))
    assert r.client.state == DONE and len(r.sent("ChargingStatusReq")) == 1 and r.safe()


def test_changed_session_id_and_dropped_connection():
    car = vehicle(DC_EXTENDED)
    r = Run(car, faults=[S.Fault("ChargeParameterDiscoveryRes", "session_id")], modes=("DC_extended",))
    assert r.client.state == FAILED and "SessionID" in r.client.reason and r.safe()
    car = vehicle(DC_EXTENDED)
    r = Run(car, faults=[S.Fault("CurrentDemandRes", "drop", nth=3)], modes=("DC_extended",))
    assert r.client.state == FAILED and "closed the connection" in r.client.reason
    assert r.ev.summary()["state"] == "Failed" and r.safe()


def test_service_detail_on_request():
    car = vehicle(AC_THREE_PHASE_CORE)
    params = {"ParameterSet": [{"ParameterSetID": 1, "Parameter": [{"Name": "Protocol", "intValue": 80}]}]}
    services = [{"ServiceID": 3, "ServiceCategory": "Internet", "FreeService": True}]
    r = Run(car, ev_opts={"service_details": (3, 9)}, modes=("AC_three_phase_core",),
            st_opts={"services": services, "service_parameters": {3: params}})
    assert r.client.state == DONE, r.client.reason
    assert r.sequence()[:4] == ["SessionSetupReq", "ServiceDiscoveryReq", "ServiceDetailReq",
                                "PaymentServiceSelectionReq"]
    assert r.ev.details[3] == params and 9 not in r.ev.details  # 9 was not offered: not asked


# ---- Plug&Charge: the EV's contract logic against the station's PnC and CPS --------------------------------

import pncfix  # noqa: E402
from test_pnc_ev import make_store, rng, snapshot  # noqa: E402

from evpilot.ev.contracts import ContractManager  # noqa: E402
from evpilot.pnc import x509, xmldsig  # noqa: E402
from evpilot_sim.station import cps as station_cps  # noqa: E402
from evpilot_sim.station import contracts as station_pnc  # noqa: E402


def station_pnc_for(contract="contract_new", cps_key=None, mo_key=True):
    def issue(emaid, now_s):
        return pncfix.chain(contract), pncfix.key(contract), pncfix.EMAID

    service = station_cps.ProvisioningService(
        pncfix.chain("cps_leaf"), cps_key or pncfix.key("cps_leaf"), issue, v2g_roots=[pncfix.der("v2g_root")],
        oem_roots=[pncfix.der("oem_root"), pncfix.der("oem_sub_ca2"), pncfix.der("oem_sub_ca1")],
        rng=rng(b"cps"), mo_roots=[pncfix.der("mo_root")])
    return station_pnc.StationPnc(cps=service, v2g_roots=[pncfix.der("v2g_root")], mo_roots=[pncfix.der("mo_root")],
                                  mo_sub_ca2=pncfix.der("mo_sub_ca2"),
                                  mo_sub_ca2_key=pncfix.key("mo_sub_ca2") if mo_key else None,
                                  clock=pncfix.NOW_S, rng=rng(b"challenge"))


def pnc_run(store, mode=AC_THREE_PHASE_CORE, ev_tls=True, st_pnc=None, manager=None, **st_opts):
    manager = manager or ContractManager(store, now_s=pncfix.NOW_S)
    st_opts["pnc"] = st_pnc or station_pnc_for()
    st_opts.setdefault("tls", True)
    r = Run(vehicle(mode), ev_opts={"pnc": manager, "tls": ev_tls}, st_opts=st_opts, modes=(mode,))
    return r, manager


def sent_with_header(r, name):
    return [(h, [b for n, b, _ in r.tx if n == name][i])
            for i, h in enumerate(h for d, n, h in r.headers if d == "tx" and n == name)]


PNC_START = ["SessionSetupReq", "ServiceDiscoveryReq", "PaymentServiceSelectionReq"]


def test_pnc_installs_a_contract_then_charges_ac():
    store = make_store()
    r, m = pnc_run(store)
    assert (r.client.state, r.secc.state) == (DONE, S.DONE), (r.client.reason, r.secc.reason, r.st.refusal)
    assert r.sequence() == PNC_START + ["CertificateInstallationReq", "PaymentDetailsReq"] + AC_SEQUENCE[3:]
    selection = [b for n, b, _ in r.tx if n == "PaymentServiceSelectionReq"][0]
    assert selection == {"SelectedPaymentOption": "Contract", "SelectedServiceList": {"SelectedService": [
        {"ServiceID": 1}, {"ServiceID": 2, "ParameterSetID": 1}]}}
    s = r.ev.summary()
    assert s["identification"] == "PnC" and s["emaid"] == pncfix.EMAID and s["contract_installed"]
    assert not s["contract_updated"] and s["sales_tariff_ignored"] is None and s["state"] == "Done"
    assert r.ev.sales_tariff is not None and r.ev.sales_tariff["Id"] == station_pnc.TARIFF_ID
    assert store.contract(now_s=pncfix.NOW_S).chain == pncfix.chain("contract_new")
    assert r.st.emaid == pncfix.EMAID and r.safe()
    # The first AuthorizationReq carries Id + GenChallenge and a Signature by the new contract key.
    (header, body), = sent_with_header(r, "AuthorizationReq")
    pub = x509.parse(pncfix.der("contract_new")).public_key
    xmldsig.verify(header["Signature"], xmldsig.by_id([("AuthorizationReq", body)]), pub)
    # A second session with the same store uses the installed contract: no certificate step.
    r2, m2 = pnc_run(store)
    assert r2.client.state == DONE and r2.sequence()[3] == "PaymentDetailsReq" and not m2.installed


def test_pnc_dc_with_signed_receipts_and_authorization_ongoing():
    store = make_store("contract_leaf")
    r, m = pnc_run(store, mode=DC_EXTENDED, receipt_required=2, auth_ongoing=2)
    assert (r.client.state, r.secc.state) == (DONE, S.DONE), (r.client.reason, r.st.refusal)
    assert r.sequence()[:5] == PNC_START + ["PaymentDetailsReq", "AuthorizationReq"]
    auth = sent_with_header(r, "AuthorizationReq")
    assert len(auth) == 3 and "Signature" in auth[0][0] and auth[0][1]["GenChallenge"]
    assert [b for h, b in auth[1:]] == [{}, {}] and all("Signature" not in h for h, b in auth[1:])
    receipts = sent_with_header(r, "MeteringReceiptReq")
    assert receipts and len(receipts) == r.st.receipts == r.ev.receipts
    pub = x509.parse(pncfix.der("contract_leaf")).public_key
    for header, body in receipts:
        assert body["SessionID"] == r.client.session_id and body["SAScheduleTupleID"] == r.ev.schedule_id
        xmldsig.verify(header["Signature"], xmldsig.by_id([("MeteringReceiptReq", body)]), pub)
    s = r.ev.summary()
    assert s["identification"] == "PnC" and not s["contract_installed"] and r.safe()


def test_pnc_update_replaces_the_contract():
    store = make_store("contract_leaf")
    manager = ContractManager(store, now_s=pncfix.NOW_S, update_requested=True)
    r, m = pnc_run(store, manager=manager)
    assert r.client.state == DONE, (r.client.reason, r.st.refusal)
    assert r.sequence()[3:5] == ["CertificateUpdateReq", "PaymentDetailsReq"]
    assert r.ev.summary()["contract_updated"] and len(store.contracts()) == 1
    assert store.contract(now_s=pncfix.NOW_S).chain == pncfix.chain("contract_new")
    assert store.private_key(pncfix.EMAID) == pncfix.key("contract_new")


def test_pnc_unsigned_sales_tariff_is_ignored():
    store = make_store("contract_leaf")
    r, m = pnc_run(store, st_pnc=station_pnc_for(mo_key=False))
    assert r.client.state == DONE, r.client.reason
    s = r.ev.summary()
    assert s["sales_tariff_ignored"] == "unsigned" and r.ev.sales_tariff is None
    assert r.ev.pmax_schedule is not None  # the schedule itself is kept


def test_pnc_falls_back_to_eim():
    # Without TLS the EV never selects Contract (the station offers it only with TLS, too); a station
    # without Plug&Charge offers only ExternalPayment.
    for ev_tls, st_opts, note in ((False, {}, "no TLS"), (True, {"tls": False}, "does not offer Contract")):
        store = make_store("contract_leaf")
        r, m = pnc_run(store, ev_tls=ev_tls, **st_opts)
        assert r.client.state == DONE, r.client.reason
        assert r.sequence() == AC_SEQUENCE
        selection = [b for n, b, _ in r.tx if n == "PaymentServiceSelectionReq"][0]
        assert selection["SelectedPaymentOption"] == "ExternalPayment"
        s = r.ev.summary()
        assert s["identification"] == "EIM" and s["emaid"] is None and note in s["pnc_note"]
    # No contract and nothing to install one with: EIM as well.
    r, m = pnc_run(make_store(oem=False))
    assert r.client.state == DONE and r.ev.summary()["identification"] == "EIM"


def test_pnc_bad_cps_signature_fails_safely_and_keeps_the_store():
    store = make_store("contract_leaf")
    before = snapshot(store)
    manager = ContractManager(store, now_s=pncfix.NOW_S, update_requested=True)
    r, m = pnc_run(store, manager=manager, st_pnc=station_pnc_for(cps_key=pncfix.key("cps_sub_ca2")))
    assert r.client.state == FAILED and "signature" in r.client.reason
    assert r.sequence()[-1] == "CertificateUpdateReq" and r.safe()
    assert snapshot(store) == before and r.ev.summary()["state"] == "Failed"
