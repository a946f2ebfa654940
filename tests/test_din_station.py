"""DIN SPEC 70121 station session (evpilot_sim.station.din): sequence and SessionID checks, response codes,
reproducible SessionIDs, every response encodable; and the EV session (evpilot.ev.din) fed with the responses
of real chargers recorded in the project's vectors (tests/vectors/exi.jsonl)."""


from evpilot import exi
from evpilot.ev import din
from evpilot.errors import SessionError
from evpilot_sim.vehicle import SimVehicle
from evpilot.v2g import sap, v2gtp
from evpilot_sim.station import din as SD
from evpilot_sim.station import secc as S
from evpilot_sim.evse import EVSE

from vectors import records

ZERO = b"\x00"


def encodes(name, body, sid=b"\x01" * 8):
    doc = {"V2G_Message": {"Header": {"SessionID": sid}, "Body": {name: body}}}
    return exi.decode("din", exi.encode("din", doc))["V2G_Message"]["Body"][name]


def setup(**config):
    st = SD.DinStationSession(EVSE(cable_check_ms=100), seed=1, **config)
    name, body = st.on_request("SessionSetupReq", {"EVCCID": b"\x02\x00\x00\x00\x00\x01"}, {"SessionID": ZERO}, 0)
    assert name == "SessionSetupRes" and body["ResponseCode"] == "OK_NewSessionEstablished"
    return st


def ask(st, name, body, now=10, sid=None):
    res, rbody = st.on_request(name, body, {"SessionID": st.session_id if sid is None else sid}, now)
    encodes(res, rbody)
    return res, rbody


DC_STATUS = {"EVReady": True, "EVErrorCode": "NO_ERROR", "EVRESSSOC": 50}
CPD = {"EVRequestedEnergyTransferType": "DC_extended",
       "DC_EVChargeParameter": {"DC_EVStatus": DC_STATUS,
                                "EVMaximumCurrentLimit": {"Multiplier": 0, "Unit": "A", "Value": 200},
                                "EVMaximumVoltageLimit": {"Multiplier": 0, "Unit": "V", "Value": 420}}}


def test_session_id_is_random_and_seedable():
    a, b, c = setup(), setup(), SD.DinStationSession(EVSE(), seed=2)
    c.on_request("SessionSetupReq", {"EVCCID": b"\x01"}, {"SessionID": ZERO}, 0)
    assert len(a.session_id) == 8 and a.session_id == b.session_id != c.session_id
    assert a.session_id != b"\x00" * 8


def test_sequence_errors():
    st = SD.DinStationSession(EVSE(), seed=1)
    res, body = st.on_request("ServiceDiscoveryReq", {}, {"SessionID": ZERO}, 0)
    assert (res, body["ResponseCode"]) == ("ServiceDiscoveryRes", "FAILED_SequenceError")
    encodes(res, body)
    assert st.status == SD.FAILED and "out of sequence" in st.reason
    # Every request out of place gets its own response type, FAILED_SequenceError, and encodes.
    for name, body in (("CurrentDemandReq", {}), ("PreChargeReq", {}), ("WeldingDetectionReq", {}),
                       ("CableCheckReq", {}), ("PowerDeliveryReq", {}), ("ChargeParameterDiscoveryReq", CPD),
                       ("ContractAuthenticationReq", {}), ("SessionSetupReq", {"EVCCID": b"\x01"})):
        st = setup()
        res, rbody = ask(st, name, body)
        assert res == name[:-3] + "Res" and rbody["ResponseCode"] == "FAILED_SequenceError", (name, rbody)


def test_unknown_session():
    st = setup()
    res, body = ask(st, "ServiceDiscoveryReq", {"ServiceCategory": "EVCharging"}, sid=b"\x99" * 8)
    assert body["ResponseCode"] == "FAILED_UnknownSession" and st.status == SD.FAILED


def test_payment_service_and_energy_type_checks():
    st = setup()
    _, body = ask(st, "ServiceDiscoveryReq", {})
    assert body["PaymentOptions"]["PaymentOption"] == ["ExternalPayment"]
    assert body["ChargeService"]["EnergyTransferType"] == "DC_extended"
    _, body = ask(st, "ServicePaymentSelectionReq", {"SelectedPaymentOption": "Contract",
                                                     "SelectedServiceList": {"SelectedService": [{"ServiceID": 1}]}})
    assert body["ResponseCode"] == "FAILED_PaymentSelectionInvalid"
    st = setup()
    ask(st, "ServiceDiscoveryReq", {})
    _, body = ask(st, "ServicePaymentSelectionReq", {"SelectedPaymentOption": "ExternalPayment",
                                                     "SelectedServiceList": {"SelectedService": [{"ServiceID": 7}]}})
    assert body["ResponseCode"] == "FAILED_ServiceSelectionInvalid"
    st = setup(auth_ongoing_rounds=2, cpd_ongoing_rounds=1)
    ask(st, "ServiceDiscoveryReq", {})
    ask(st, "ServicePaymentSelectionReq", {"SelectedPaymentOption": "ExternalPayment",
                                           "SelectedServiceList": {"SelectedService": [{"ServiceID": 1}]}})
    seen = [ask(st, "ContractAuthenticationReq", {})[1]["EVSEProcessing"] for _ in range(3)]
    assert seen == ["Ongoing", "Ongoing", "Finished"]
    wrong = dict(CPD, EVRequestedEnergyTransferType="DC_core")
    _, body = ask(st, "ChargeParameterDiscoveryReq", wrong)
    assert body["ResponseCode"] == "FAILED_WrongEnergyTransferType"


def test_charge_parameters_and_schedule():
    st = setup(cpd_ongoing_rounds=1)
    ask(st, "ServiceDiscoveryReq", {})
    ask(st, "ServicePaymentSelectionReq", {"SelectedPaymentOption": "ExternalPayment",
                                           "SelectedServiceList": {"SelectedService": [{"ServiceID": 1}]}})
    ask(st, "ContractAuthenticationReq", {})
    _, body = ask(st, "ChargeParameterDiscoveryReq", CPD)
    assert body["EVSEProcessing"] == "Ongoing"
    _, body = ask(st, "ChargeParameterDiscoveryReq", CPD)
    assert body["EVSEProcessing"] == "Finished"
    (t,) = body["SAScheduleList"]["SAScheduleTuple"]
    assert t["SAScheduleTupleID"] == 1 and t["PMaxSchedule"]["PMaxScheduleEntry"][0]["PMax"] == 32767
    assert body["DC_EVSEChargeParameter"]["EVSEMaximumCurrentLimit"] == {"Multiplier": -1, "Unit": "A", "Value": 5000}
    # CableCheck runs the EVSE's isolation check: Ongoing until it is done.
    _, body = ask(st, "CableCheckReq", {"DC_EVStatus": DC_STATUS}, now=20)
    assert body["EVSEProcessing"] == "Ongoing" and body["DC_EVSEStatus"]["EVSEStatusCode"] == "EVSE_IsolationMonitoringActive"
    _, body = ask(st, "CableCheckReq", {"DC_EVStatus": DC_STATUS}, now=200)
    assert body["EVSEProcessing"] == "Finished" and body["DC_EVSEStatus"]["EVSEIsolationStatus"] == "Valid"
    # PowerDelivery(on) before PreCharge is out of sequence.
    _, body = ask(st, "PowerDeliveryReq", {"ReadyToChargeState": True}, now=210)
    assert body["ResponseCode"] == "FAILED_SequenceError"


def test_connection_answers_and_ends_on_sequence_error():
    conn = S.SeccConnection(("din",), lambda p: SD.DinStationSession(EVSE(), seed=3))
    conn.connection_made(0)
    req = sap.request([("din", 1)])
    conn.data_received(v2gtp.build(v2gtp.EXI, exi.encode("apphand", req)), 1)
    conn.output()
    doc = {"V2G_Message": {"Header": {"SessionID": ZERO}, "Body": {"CableCheckReq": {"DC_EVStatus": DC_STATUS}}}}
    conn.data_received(v2gtp.build(v2gtp.EXI, exi.encode("din", doc)), 2)
    (frame,) = conn.output()
    res = exi.decode("din", frame[8:])["V2G_Message"]["Body"]
    assert res["CableCheckRes"]["ResponseCode"] == "FAILED_SequenceError"
    assert conn.state == S.FAILED and "FAILED_SequenceError" in conn.reason


# ---- the EV session against real chargers' responses ------------------------------------------------------

def _real_charger_responses():
    for r in records(("din70121",)):
        if r.get("real_charger") and r["message"].endswith("Res"):
            yield r


def test_ev_session_accepts_real_charger_responses():
    """Each recorded response of a real charger (Alpitronic, Compleo, Tesla, ABB), given to the EV session in the
    state that awaits it: a FAILED code ends the session naming it, an emergency ends it, Ongoing repeats the
    request, anything else moves on to the next request, which encodes."""
    repeat = {"ContractAuthenticationRes", "ChargeParameterDiscoveryRes", "CableCheckRes", "PreChargeRes",
              "CurrentDemandRes", "WeldingDetectionRes"}
    moved = 0
    chargers = set()
    for r in _real_charger_responses():
        name = r["message"]
        body = exi.decode("din", bytes.fromhex(r["hex"]))["V2G_Message"]["Body"][name]
        v = SimVehicle()
        s = din.DinSession(v)
        s.first_request(0)
        s.state = din._RES.index(name)
        s._loop_start = 0
        s.mode = "DC_extended"
        code = body["ResponseCode"]
        emergency = (body.get("DC_EVSEStatus") or {}).get("EVSEStatusCode") == "EVSE_EmergencyShutdown"
        try:
            out = s.on_response(name, body, {}, 100)
        except SessionError as e:
            assert code.startswith("FAILED") or emergency, (name, str(e), r["source"])
            assert name in str(e)
            continue
        assert not code.startswith("FAILED") and not emergency, (name, r["source"])
        chargers.add(r["real_charger"])
        if out is None:
            assert name == "SessionStopRes"
            continue
        nxt, nbody = out
        encodes(nxt, nbody)
        if body.get("EVSEProcessing") == "Ongoing":
            assert nxt == name[:-3] + "Req"
        elif name not in repeat:
            moved += 1
            assert nxt != name[:-3] + "Req" or name == "PowerDeliveryRes"
    assert moved > 20 and len(chargers) >= 4  # tests/vectors: one per charger, message and outcome


def test_ev_session_reads_a_real_charge_parameter_discovery():
    for r in _real_charger_responses():
        if r["message"] == "ChargeParameterDiscoveryRes" and "Compleo" in r["real_charger"]:
            body = exi.decode("din", bytes.fromhex(r["hex"]))["V2G_Message"]["Body"]["ChargeParameterDiscoveryRes"]
            if body["EVSEProcessing"] == "Finished":
                break
    else:
        raise AssertionError("no finished ChargeParameterDiscoveryRes from Compleo in the vectors")
    v = SimVehicle()
    s = din.DinSession(v)
    s.first_request(0)
    s.state = din._RES.index("ChargeParameterDiscoveryRes")
    s._loop_start = 0
    s.mode = "DC_extended"
    name, _ = s.on_response("ChargeParameterDiscoveryRes", body, {}, 50)
    assert name == "CableCheckReq" and v.cp_state == din.pilot.STATE_C
    assert s.evse_limits["max_current"] > 0 and s.evse_limits["max_voltage"] > 0
    assert s.sa_schedule_tuple_id == body["SAScheduleList"]["SAScheduleTuple"][0]["SAScheduleTupleID"]
