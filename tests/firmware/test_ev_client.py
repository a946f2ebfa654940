# The EV connection driver (evpilot.ev.client) on a virtual clock, against a scripted station: the
# handshake, SessionID handling, message timeouts at their exact deadline, and every error ending in the
# failed state with the vehicle brought to its safe state.

from evpilot import exi
from evpilot.ev import client as C
from evpilot.v2g import sap, v2gtp

SID = b"\x11\x22\x33\x44\x55\x66\x77\x88"


class FakeSession:
    schema = "din"

    def __init__(self, protocol):
        self.protocol = protocol
        self.stopped = None

    def first_request(self, now):
        return "SessionSetupReq", {"EVCCID": b"\x02\x00\x00\x00\x00\x01"}

    def on_response(self, name, body, header, now):
        if name == "SessionSetupRes":
            return "SessionStopReq", {}
        return None

    def safe_stop(self, now, reason):
        self.stopped = reason


def timeouts(protocol, name):
    return 2000


class Station:
    """Answers whatever the client sends; `tweak(name, doc)` may change a response or return None."""

    def __init__(self, supported=("din",), sid=SID, tweak=None):
        self.supported = supported
        self.sid = sid
        self.tweak = tweak
        self.stream = v2gtp.Reassembler()
        self.seen = []

    def answer(self, frames):
        out = []
        for frame in frames:
            for _, payload in self.stream.feed(frame):
                if not self.seen:
                    req = exi.decode("apphand", payload)
                    self.seen.append("supportedAppProtocolReq")
                    doc, _ = sap.negotiate(req, self.supported)
                    name, schema = "supportedAppProtocolRes", "apphand"
                else:
                    req = exi.decode("din", payload)["V2G_Message"]
                    name = next(iter(req["Body"]))
                    self.seen.append(name)
                    res = {"SessionSetupReq": ("SessionSetupRes", {"ResponseCode": "OK_NewSessionEstablished",
                                                                   "EVSEID": b"\x01"}),
                           "SessionStopReq": ("SessionStopRes", {"ResponseCode": "OK"})}[name]
                    name = res[0]
                    doc = {"V2G_Message": {"Header": {"SessionID": self.sid}, "Body": {res[0]: res[1]}}}
                    schema = "din"
                if self.tweak is not None:
                    doc = self.tweak(name, doc)
                if doc is not None:
                    out.append(v2gtp.build(v2gtp.EXI, exi.encode(schema, doc)))
        return out


def run(station, client=None, step=10, until=20000, split=None):
    sessions = []

    def make(protocol):
        s = FakeSession(protocol)
        sessions.append(s)
        return s

    c = client or C.EvClient(make, [("din", 1)], timeouts)
    now = 0
    c.connection_made(now)
    while not c.finished and now < until:
        for data in station.answer(c.output()):
            if split:
                for i in range(0, len(data), split):
                    c.data_received(data[i:i + split], now)
            else:
                c.data_received(data, now)
        now += step
        c.on_timer(now)
    return c, (sessions[0] if sessions else None), now


def test_handshake_and_clean_stop():
    st = Station()
    c, s, _ = run(st)
    assert c.state == C.DONE and c.protocol == "din"
    assert st.seen == ["supportedAppProtocolReq", "SessionSetupReq", "SessionStopReq"]
    assert c.session_id == SID and s.stopped is None


def test_any_split_of_the_byte_stream():
    for split in (1, 5, 9):
        c, _, _ = run(Station(), split=split)
        assert c.state == C.DONE


def test_timeout_fires_at_its_deadline_not_before():
    st = Station(tweak=lambda name, doc: None if name == "SessionSetupRes" else doc)
    c, s, now = run(st, step=1)
    assert c.state == C.FAILED and "SessionSetupRes" in c.reason
    # The request went out at t=0 (SAP answered within the same tick) and the timeout is 2000 ms.
    assert now == 2000
    assert s.stopped == c.reason


def test_station_picks_nothing():
    c, s, _ = run(Station(supported=("iso2",)))
    assert c.state == C.FAILED and "Failed_NoNegotiation" in c.reason and s is None


def test_wrong_session_id_fails_safely():
    def tweak(name, doc):
        if name == "SessionStopRes":
            doc["V2G_Message"]["Header"]["SessionID"] = b"\x99" * 8
        return doc

    c, s, _ = run(Station(tweak=tweak))
    assert c.state == C.FAILED and "SessionID" in c.reason and s.stopped == c.reason


def test_unexpected_message_and_garbage():
    def wrong(name, doc):
        if name == "SessionSetupRes":
            doc["V2G_Message"]["Body"] = {"SessionStopRes": {"ResponseCode": "OK"}}
        return doc

    c, s, _ = run(Station(tweak=wrong))
    assert c.state == C.FAILED and "expected SessionSetupRes, got SessionStopRes" in c.reason
    c2 = C.EvClient(FakeSession, [("din", 1)], timeouts)
    c2.connection_made(0)
    c2.data_received(b"\x01\xfe\x80\x01\x00\x00\x00\x02\xff\xff", 5)
    assert c2.state == C.FAILED
    c3 = C.EvClient(FakeSession, [("din", 1)], timeouts)
    c3.connection_made(0)
    c3.data_received(b"\x02\xfd\x80\x01", 5)
    assert c3.state == C.RUNNING  # half a header: wait for the rest
    c3.data_received(b"\x00\x00\x00\x00", 6)
    assert c3.state == C.FAILED and "V2GTP" in c3.reason


def test_connection_lost_and_abort():
    c = C.EvClient(FakeSession, [("din", 1)], timeouts)
    c.connection_made(0)
    c.connection_lost(100)
    assert c.state == C.FAILED and "closed" in c.reason and c.next_deadline() is None
    sessions = []

    def make(p):
        sessions.append(FakeSession(p))
        return sessions[-1]

    c = C.EvClient(make, [("din", 1)], timeouts)
    c.connection_made(0)
    for data in Station().answer(c.output()):
        c.data_received(data, 1)
    c.abort(2, "emergency stop")
    assert c.state == C.FAILED and sessions[0].stopped == "emergency stop"
    # Nothing is accepted after the end.
    c.data_received(b"\x01", 3)
    assert c.output() == [] or c.state == C.FAILED


def test_communication_setup_timeout():
    # Each response comes just inside its own 2 s timeout, but SessionSetupRes not within 20 s of the
    # connection: V2G_EVCC_CommunicationSetup_Timeout ends the session.
    c = C.EvClient(FakeSession, [("din", 1)], lambda protocol, name: 30000)
    c.connection_made(0)
    assert c.next_deadline() == 2000  # supportedAppProtocolRes first
    for data in Station().answer(c.output()):
        c.data_received(data, 1900)
    assert c.next_deadline() == 20000  # the set-up limit comes before SessionSetupRes's own 30 s
    c.on_timer(19999)
    assert c.state == C.RUNNING
    c.on_timer(20000)
    assert c.state == C.FAILED and "set-up" in c.reason


class SigningSession(FakeSession):
    """Sends SessionStopReq with a header Signature and keeps each response's Header."""

    def __init__(self, protocol):
        super().__init__(protocol)
        self.headers = []

    def on_response(self, name, body, header, now):
        self.headers.append(header)
        if name == "SessionSetupRes":
            return "SessionStopReq", {}, SIGNATURE
        return None


SIGNATURE = {"SignedInfo": {"CanonicalizationMethod": {"Algorithm": "http://www.w3.org/TR/canonical-exi/"},
                            "SignatureMethod": {"Algorithm": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"},
                            "Reference": [{"URI": "#id1", "DigestMethod": {
                                "Algorithm": "http://www.w3.org/2001/04/xmlenc#sha256"}, "DigestValue": bytes(32)}]},
             "SignatureValue": {"CONTENT": bytes(range(64))}}


def test_request_signature_and_response_header():
    # A session may return (name, body, signature): the signature goes into the request Header. A session
    # gets each response's Header (its SessionID, its Signature) as on_response's argument.
    seen = []

    def tweak(name, doc):
        if name == "SessionStopRes":
            doc["V2G_Message"]["Header"]["Signature"] = SIGNATURE
        return doc

    st = Station(tweak=tweak)
    original = st.answer

    def answer(frames):
        for frame in frames:
            if len(st.seen) >= 1:
                payload = frame[8:]
                seen.append(exi.decode("din", payload)["V2G_Message"]["Header"])
        return original(frames)

    st.answer = answer
    sessions = []

    def make(p):
        sessions.append(SigningSession(p))
        return sessions[-1]

    c = C.EvClient(make, [("din", 1)], timeouts)
    c, _, _ = run(st, client=c)
    s = sessions[0]
    assert c.state == C.DONE
    assert seen[0] == {"SessionID": b"\x00"} and seen[1] == {"SessionID": SID, "Signature": SIGNATURE}
    assert s.headers == [{"SessionID": SID}, {"SessionID": SID, "Signature": SIGNATURE}]
