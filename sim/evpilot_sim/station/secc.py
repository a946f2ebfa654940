"""The station (SECC) side of one V2G connection, sans-I/O, with fault injection for bench tests.

How this works: SeccConnection is a V2gConnection (evpilot.v2g.connection: the adapter interface, V2GTP
reassembly, the envelope, the RUNNING/DONE/FAILED states, the log hook). An adapter (OS sockets, or an
in-memory pipe in the demo and the tests) calls connection_made(now), data_received(data, now),
connection_lost(now) and on_timer(now), sends what output() returns, and closes the connection once
`finished` is true. The connection answers SupportedAppProtocol itself (evpilot.v2g.sap), then hands every
request to the protocol session it made for the chosen protocol (station/din.py, station/iso2.py): an object
with
    schema                          "din" or "iso2"
    on_request(name, body, header, now) -> (response name, response body)
                                       or (response name, response body, header Signature or None)
    session_id                      the SessionID it handed out (bytes), put in every response header
    finished                        true once SessionStopRes went out
A returned Signature (ISO 15118-2 Plug&Charge: CertificateInstallationRes, a signed SalesTariff) goes into the
response header beside the SessionID; the request header, SessionID and Signature included, reaches the
session as `header`. The session checks the SessionID (a wrong one is answered FAILED_UnknownSession, with
the elements its response needs) and the sequence (FAILED_SequenceError); the connection ends after any
FAILED response, waits at most V2G_SECC_Sequence_Timeout for each request, and applies the faults it was
given before a response leaves (see Fault).
"""

from evpilot.compat import ticks_add, ticks_diff
from evpilot.errors import SequenceError
from evpilot.v2g import sap
from evpilot.v2g.connection import DONE, FAILED, RUNNING, V2gConnection, earliest

# [V2G2-723] / DIN SPEC 70121 [V2G-DC-467]: the SECC waits at most 60 s for the EV's next request.
SEQUENCE_TIMEOUT_MS = 60000
# A new TCP connection must bring its SupportedAppProtocolReq sooner: an EV gives up on the whole setup
# (plug-in to SessionSetupRes) after V2G_EVCC_CommunicationSetup_Timeout, 20 s ([V2G2-714]..[V2G2-716],
# ISO 15118-2 Table 111; DIN SPEC 70121 Table 76 alike), so a connection silent for that long is no EV's
# and only holds the charging point's slot (an idle or hostile connection).
SETUP_TIMEOUT_MS = 20000


class Fault:
    """One injected fault: applied to the `nth` (1-based; 0 = every) response named `response`.

    action: "withhold" (never answer), "delay" (answer `delay_ms` later), "failed" (ResponseCode FAILED),
    "session_id" (answer with another SessionID), "stop" (EVSENotification StopCharging), "emergency"
    (EVSEStatusCode EVSE_EmergencyShutdown), "drop" (close the connection instead of answering)."""

    ACTIONS = ("withhold", "delay", "failed", "session_id", "stop", "emergency", "drop")

    def __init__(self, response, action, nth=1, delay_ms=0):
        if action not in self.ACTIONS:
            raise ValueError("unknown fault action %r (known: %s)" % (action, ", ".join(self.ACTIONS)))
        self.response = response
        self.action = action
        self.nth = nth
        self.delay_ms = delay_ms
        self.hits = 0

    def matches(self, name, count):
        return name == self.response and (self.nth == 0 or self.nth == count)

    def __repr__(self):
        return "Fault(%r, %r, nth=%d)" % (self.response, self.action, self.nth)


class SeccConnection(V2gConnection):
    def __init__(self, supported, make_session, faults=(), log=None, sequence_timeout_ms=SEQUENCE_TIMEOUT_MS,
                 setup_timeout_ms=SETUP_TIMEOUT_MS):
        """supported: protocols this station speaks, e.g. ("iso2", "din"); make_session(protocol) -> session."""
        V2gConnection.__init__(self, make_session, log)
        self.lenient = True  # a real EV that breaks an XSD facet is still served (what it sends is logged)
        self.supported = tuple(supported)
        self.faults = list(faults)
        self.sequence_timeout_ms = sequence_timeout_ms
        self.setup_timeout_ms = setup_timeout_ms
        self._waiting_ms = sequence_timeout_ms  # what the present deadline allows (for the reason)
        self._delayed = []  # [(due, frame)]
        self._counts = {}

    @property
    def finished(self):
        return self.state != RUNNING and not self._delayed

    def next_deadline(self):
        best = self.deadline if self.state == RUNNING else None
        for due, _ in self._delayed:
            best = earliest(best, due)
        return best

    def connection_made(self, now):
        self._waiting_ms = min(self.setup_timeout_ms, self.sequence_timeout_ms)
        self.deadline = ticks_add(now, self._waiting_ms)

    def connection_lost(self, now):
        if self.state == RUNNING:
            self._end(FAILED, "the EV closed the connection")
        self._delayed = []

    def on_timer(self, now):
        due = [f for t, f in self._delayed if ticks_diff(now, t) >= 0]
        if due:
            self._delayed = [(t, f) for t, f in self._delayed if ticks_diff(now, t) < 0]
            self._out.extend(due)
        if self.state == RUNNING and self.deadline is not None and ticks_diff(now, self.deadline) >= 0:
            self._end(FAILED, "no request from the EV within %d ms" % self._waiting_ms)

    # ---- protocol ------------------------------------------------------------------------------------

    def _on_payload(self, payload, now):
        self._waiting_ms = self.sequence_timeout_ms
        self.deadline = ticks_add(now, self.sequence_timeout_ms)
        if self.session is None:
            name, req = self._decode_apphand(payload, now)
            if name != "supportedAppProtocolReq":
                raise SequenceError("SupportedAppProtocol", "supportedAppProtocolReq", name)
            res, protocol = sap.negotiate(req, self.supported)
            self._respond("apphand", "supportedAppProtocolRes", res, now)
            if protocol is None:
                self._end(FAILED, "no common protocol")
                return
            self.protocol = protocol
            self.session = self.make_session(protocol)
            return
        name, body, header = self._decode(payload, now)
        answer = self.session.on_request(name, body, header, now)
        res_name, res_body = answer[0], answer[1]
        res = self._envelope(res_name, res_body, self.session.session_id, answer[2] if len(answer) > 2 else None)
        self._respond(self.session.schema, res_name, res, now)
        if res_body.get("ResponseCode", "OK").startswith("FAILED"):
            self._end(FAILED, "answered %s with %s" % (name, res_body["ResponseCode"]))
        elif self.session.finished:
            self._end(DONE, "session stopped")

    def _respond(self, schema, name, doc, now):
        count = self._counts.get(name, 0) + 1
        self._counts[name] = count
        delay = 0
        for fault in self.faults:
            if not fault.matches(name, count):
                continue
            fault.hits += 1
            a = fault.action
            if a == "withhold":
                self._logged("fault", name, {"withheld": fault.response}, None, now)
                return
            if a == "drop":
                self._logged("fault", name, {"dropped": fault.response}, None, now)
                self._end(FAILED, "connection dropped (fault injection)")
                return
            if a == "delay":
                delay = fault.delay_ms
            body = doc.get("V2G_Message", {}).get("Body", {}).get(name)
            if a == "failed" and body is not None:
                body["ResponseCode"] = "FAILED"
            elif a == "session_id" and "V2G_Message" in doc:
                sid = doc["V2G_Message"]["Header"]["SessionID"]
                doc["V2G_Message"]["Header"]["SessionID"] = bytes((b ^ 0xFF) for b in sid)
            elif a in ("stop", "emergency") and body is not None:
                for key in ("DC_EVSEStatus", "AC_EVSEStatus"):
                    status = body.get(key)
                    if status is not None:
                        status["EVSENotification"] = "StopCharging"
                        if a == "emergency" and "EVSEStatusCode" in status:
                            status["EVSEStatusCode"] = "EVSE_EmergencyShutdown"
                        if a == "emergency" and "RCD" in status:
                            status["RCD"] = True
        frame = self._frame(schema, name, doc, now)
        if delay:
            self._delayed.append((ticks_add(now, delay), frame))
        else:
            self._out.append(frame)
