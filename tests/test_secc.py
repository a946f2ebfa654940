"""The station connection driver (evpilot_sim.station.secc) against the EV connection driver, through the
in-memory pipe on a virtual clock: SupportedAppProtocol, SessionID checks, the sequence timeout and each
injected fault."""

import sys
import os

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "firmware"))

from evpilot.ev import client as C  # noqa: E402
from evpilot_sim import pipe  # noqa: E402
from evpilot_sim.station import secc as S  # noqa: E402

from test_ev_client import FakeSession, timeouts  # noqa: E402

SID = b"\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8"


class FakeStationSession:
    schema = "din"

    def __init__(self, protocol):
        self.session_id = SID
        self.finished = False
        self.seen = []

    def on_request(self, name, body, header, now):
        self.seen.append(name)
        if name == "SessionSetupReq":
            return "SessionSetupRes", {"ResponseCode": "OK_NewSessionEstablished", "EVSEID": b"\x01"}
        if header.get("SessionID") != self.session_id:
            return name[:-3] + "Res", {"ResponseCode": "FAILED_UnknownSession"}
        self.finished = True
        return "SessionStopRes", {"ResponseCode": "OK"}


def pair(faults=(), supported=("din",), offers=(("din", 1),)):
    made = {}

    def ev_session(p):
        made["ev"] = FakeSession(p)
        return made["ev"]

    def st_session(p):
        made["st"] = FakeStationSession(p)
        return made["st"]

    ev = C.EvClient(ev_session, list(offers), timeouts)
    st = S.SeccConnection(supported, st_session, faults=faults)
    return ev, st, made


def test_clean_session():
    ev, st, made = pair()
    end = pipe.run(ev, st, latency_ms=10)
    assert (ev.state, st.state) == (C.DONE, S.DONE)
    assert made["st"].seen == ["SessionSetupReq", "SessionStopReq"]
    assert ev.session_id == SID
    assert end == 60  # three round trips of 2 x 10 ms


def test_no_common_protocol():
    ev, st, _ = pair(supported=("iso2",))
    pipe.run(ev, st)
    assert ev.state == C.FAILED and st.state == S.FAILED and "no common protocol" in st.reason


def test_withheld_response_times_the_ev_out():
    ev, st, made = pair([S.Fault("SessionSetupRes", "withhold")])
    end = pipe.run(ev, st, latency_ms=10)
    assert ev.state == C.FAILED and "no SessionSetupRes" in ev.reason
    assert made["ev"].stopped == ev.reason
    assert end == 20 + 2000  # SessionSetupReq left at 20 ms; the EV's timeout is 2 s
    assert st.state == S.FAILED and "closed" in st.reason


def test_delay_within_and_beyond_the_timeout():
    ev, st, _ = pair([S.Fault("SessionStopRes", "delay", delay_ms=1500)])
    pipe.run(ev, st)
    assert ev.state == C.DONE
    ev, st, _ = pair([S.Fault("SessionStopRes", "delay", delay_ms=2500)])
    pipe.run(ev, st)
    assert ev.state == C.FAILED and "SessionStopRes" in ev.reason


def test_changed_session_id_and_dropped_connection():
    ev, st, made = pair([S.Fault("SessionStopRes", "session_id")])
    pipe.run(ev, st)
    assert ev.state == C.FAILED and "SessionID" in ev.reason and made["ev"].stopped
    ev, st, _ = pair([S.Fault("SessionSetupRes", "drop")])
    pipe.run(ev, st)
    assert st.state == S.FAILED and ev.state == C.FAILED and "closed" in ev.reason


def test_station_sequence_timeout():
    ev, st, _ = pair()
    st.sequence_timeout_ms = 1000
    st.connection_made(0)
    st.on_timer(999)
    assert st.state == S.RUNNING
    st.on_timer(1000)
    assert st.state == S.FAILED and "no request" in st.reason


def test_unknown_fault_action():
    try:
        S.Fault("SessionSetupRes", "explode")
    except ValueError as e:
        assert "explode" in str(e)
    else:
        raise AssertionError("accepted an unknown action")


class SigningStationSession:
    """An ISO-2 station session that answers with a header Signature and remembers the request header."""

    schema = "iso2"

    def __init__(self, protocol):
        self.session_id = SID
        self.finished = False
        self.headers = []

    def on_request(self, name, body, header, now):
        from evpilot.pnc import xmldsig

        self.headers.append(header)
        tariff = {"Id": "tariff", "SalesTariffID": 1,
                  "SalesTariffEntry": [{"RelativeTimeInterval": {"start": 0}, "EPriceLevel": 1}]}
        return "SessionSetupRes", {"ResponseCode": "OK_NewSessionEstablished", "EVSEID": "DE*EVP*E1"}, \
            xmldsig.sign([("SalesTariff", tariff)], SIGNING_KEY)


SIGNING_KEY = bytes.fromhex("0a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0fedcba987654321")


def test_signature_in_and_out_of_the_header():
    from evpilot import exi
    from evpilot.pnc import p256, xmldsig
    from evpilot.v2g import sap, v2gtp

    made = {}

    def st_session(p):
        made["st"] = SigningStationSession(p)
        return made["st"]

    st = S.SeccConnection(("iso2",), st_session)
    st.connection_made(0)
    offers = [("iso2", 1)]
    st.data_received(v2gtp.build(v2gtp.EXI, exi.encode("apphand", sap.request(offers))), 10)
    assert len(st.output()) == 1
    auth = {"Id": "a1", "GenChallenge": b"\x07" * 16}
    req_sig = xmldsig.sign([("AuthorizationReq", auth)], SIGNING_KEY)
    req = {"V2G_Message": {"Header": {"SessionID": b"\x00", "Signature": req_sig},
                           "Body": {"SessionSetupReq": {"EVCCID": b"\x02" * 6}}}}
    st.data_received(v2gtp.build(v2gtp.EXI, exi.encode("iso2", req)), 20)
    assert made["st"].headers[0]["Signature"] == req_sig  # the request's Signature reaches the session
    (frame,) = st.output()
    _, payload, _ = v2gtp.parse(frame)
    header = exi.decode("iso2", payload)["V2G_Message"]["Header"]
    assert header["SessionID"] == SID
    refs = header["Signature"]["SignedInfo"]["Reference"]
    assert [r["URI"] for r in refs] == ["#tariff"]
    pub = p256.public_key(SIGNING_KEY)
    assert p256.verify(pub, xmldsig.signed_info_bytes(header["Signature"]["SignedInfo"]),
                       header["Signature"]["SignatureValue"]["CONTENT"])
    assert st.state == S.RUNNING  # a signed answer is an answer like any other: the session goes on


def test_station_serves_an_ev_that_breaks_a_facet_the_ev_side_refuses_it():
    # The station simulator decodes what EVs send without the XSD facets (real cars break some), so a
    # supportedAppProtocolReq with Priority 24 (1..20) is answered; the EV side's strict codec refuses it.
    from evpilot import exi
    from evpilot.errors import ExiError
    from evpilot.v2g import sap, v2gtp

    req = sap.request([("din", 1)])
    req["supportedAppProtocolReq"]["AppProtocol"][0]["Priority"] = 24
    data = exi.encode("apphand", req, True)  # lenient: the strict encoder refuses Priority 24
    try:
        exi.encode("apphand", req)
    except ExiError as e:
        assert "Priority" in str(e)
    else:
        assert False, "Priority 24 encoded"
    st = S.SeccConnection(("din",), lambda p: FakeStationSession(p))
    st.connection_made(0)
    st.data_received(v2gtp.build(v2gtp.EXI, data), 0)
    assert st.reason is None and st.protocol == "din", st.reason
    out = st.output()
    assert out and exi.decode("apphand", out[0][8:])["supportedAppProtocolRes"]["ResponseCode"] == "OK_SuccessfulNegotiation"
    try:
        exi.decode("apphand", data)
    except ExiError as e:
        assert "Priority" in str(e)
    else:
        assert False, "the strict decoder took Priority 24"
