# The EV side of one V2G connection, sans-I/O: SupportedAppProtocol, then the chosen protocol's session.
#
# How this works: EvClient is a V2gConnection (evpilot.v2g.connection: the adapter interface, V2GTP
# reassembly, the envelope, the RUNNING/DONE/FAILED states, the log hook). An adapter (OS sockets, the
# board's TCP, or an in-memory pipe in tests) calls connection_made(now), data_received(data, now),
# connection_lost(now) and on_timer(now), sends what output() returns, sleeps until next_deadline(), and
# closes the connection once `finished` is true. The client offers its protocols, keeps the SessionID, checks
# it on every response, and runs one request at a time with its message timeout. What to send and what a
# response means is the protocol session's business (ev/din.py, ev/iso2.py): an object with
#   schema                      "din" or "iso2"
#   first_request(now)          -> (name, body) of the first request (SessionSetupReq)
#   on_response(name, body, header, now) -> (name, body) of the next request, or None once the session is
#                               over; header is the response's Header: its SessionID (the one SessionSetupRes
#                               handed out, checked by the client before) and, in ISO 15118-2 Plug&Charge,
#                               the XMLDSig Signature the checks need
#   safe_stop(now, reason)      bring the vehicle to a safe state: energy off, contactors open, CP state B
# A request may also be (name, body, signature): a signature that is not None goes into Header["Signature"]
# (pnc.xmldsig.sign builds it). A session may set `pace_ms` when on_response returns a repeated request: the
# client holds it until pace_ms after the previous request went out (PACING below), then sends it; its
# message timeout starts then.
# To resume a paused session, set the client's session_id to the old SessionID before connection_made.
# on_response raises PeerError (SessionError, SequenceError among them) for anything it cannot accept; the
# client then ends the connection in the failed state after calling safe_stop. Any other exception (a vehicle
# model's TypeError, a MemoryError) does the same with the exception named: nothing but the project's errors
# leaves data_received, on_timer or abort, and every end, good or bad, is a defined state with a reason;
# nothing continues after it.

from evpilot.compat import const, ticks_add, ticks_diff
from evpilot.errors import EvpilotError, PeerError, SequenceError
from evpilot.v2g import sap, timers
from evpilot.v2g.connection import DONE, FAILED, RUNNING, V2gConnection, earliest

_SAP_TIMEOUT_MS = const(2000)  # ISO 15118-2 Table 109 / DIN SPEC 70121 Table 75: SupportedAppProtocolReq
_COMMUNICATION_SETUP_MS = timers.ISO2_EVCC_COMMUNICATION_SETUP_TIMEOUT  # = DIN's (both 20 s)
_INITIAL_SESSION_ID = b"\x00"  # [V2G2-756]: SessionSetupReq carries SessionID 0 (one byte of zero in practice)

# Pacing: the cycle time (ms, from one request to the next) of each repeated request, indexed
#   0 Ongoing loops (ContractAuthentication/Authorization, ChargeParameterDiscovery), 1 CableCheck,
#   2 PreCharge, 3 CurrentDemand, 4 ChargingStatus, 5 WeldingDetection.
# An EV waits for each response and then paces; it never floods the station (unpaced, about 2,000 CableCheckReq
# went out during a station's 2 s of cable check). Neither DIN SPEC 70121 nor ISO 15118-2 sets an EV cycle
# time; they bound it from both sides: the EV must send its next request within
# V2G_EVCC_Sequence_Performance_Time (40 s ISO-2, 59 s DIN; evpilot.v2g.timers), a CurrentDemandRes comes
# within V2G_EVCC_Msg_Timeout 250 ms (Table 109 / DIN Table 75) and V2G_SECC_Msg_Performance_Time 25 ms.
# What EVs do: pyPLC's EV (uhi22/pyPLC fsmPev.py, tested on production chargers) waits about 1 s in
# CableCheck and 0.5 s between PreChargeReq, and sends CurrentDemandReq on its 30 ms main-loop tick after
# each response; an EV's charge loop commonly cycles every 50-250 ms. Our choices: 500 ms for the Ongoing
# loops and CableCheck (the station's isolation test takes seconds), 250 ms for PreCharge (7 s
# V2G_EVCC_PreCharge_Timeout leaves 28 rounds; the station ramps a few hundred V/s) and WeldingDetection,
# 100 ms for CurrentDemand (a new station limit reaches the next request within one cycle), 500 ms for
# ChargingStatus (AC: the current is set by the PWM and the onboard charger, the messages only report).
PACING = (500, 500, 250, 100, 500, 250)


class EvClient(V2gConnection):
    def __init__(self, make_session, offers, msg_timeout, log=None):
        """make_session(protocol) -> protocol session; offers [(protocol, priority)] for SupportedAppProtocol;
        msg_timeout(protocol, request name) -> ms; log(direction, name, doc, exi_bytes, now) sees every
        message ("tx" or "rx")."""
        V2gConnection.__init__(self, make_session, log)
        self.offers = list(offers)
        self.msg_timeout = msg_timeout
        self.session_id = _INITIAL_SESSION_ID
        self.expected = None  # name of the response awaited; `deadline` is its timeout
        self.setup_deadline = None  # of the whole set-up, until SessionSetupRes
        self.sent_at = None  # when the last request went out
        self._held = None  # a paced request waiting for `deadline` to go out

    # ---- adapter side ---------------------------------------------------------------------------------

    def next_deadline(self):
        if self.state != RUNNING:
            return None
        if self.setup_deadline is None:  # from SessionSetupRes on: the adapters ask at every step, keep it short
            return self.deadline
        return earliest(self.setup_deadline, self.deadline)

    def connection_made(self, now, plugged_in=None):
        """The TCP connection is up. plugged_in: when the EV saw state B (the app that watches the pilot
        knows); V2G_EVCC_CommunicationSetup_Timeout runs from then (20 s in ISO 15118-2 and DIN SPEC 70121,
        evpilot.v2g.timers) until SessionSetupRes, from the connection when it is not given."""
        self.setup_deadline = ticks_add(now if plugged_in is None else plugged_in, _COMMUNICATION_SETUP_MS)
        doc = sap.request(self.offers)
        self._send("apphand", "supportedAppProtocolReq", doc, _SAP_TIMEOUT_MS, now)

    def connection_lost(self, now):
        if self.state == RUNNING:
            if self._held is not None:
                self._fail(now, "the station closed the connection before " + self._held[0])
            else:
                self._fail(now, "the station closed the connection while waiting for " + str(self.expected))

    def data_received(self, data, now):
        try:
            V2gConnection.data_received(self, data, now)
        except Exception as e:  # not ours (ours end the session in the base): still the safe state
            self._crash(now, e)

    def on_timer(self, now):
        if self.state != RUNNING:
            return
        if self.setup_deadline is not None and ticks_diff(now, self.setup_deadline) >= 0:
            self._fail(now, "communication set-up not complete within %d ms" % _COMMUNICATION_SETUP_MS)
        elif self.deadline is not None and ticks_diff(now, self.deadline) >= 0:
            held = self._held
            if held is None:
                self._fail(now, "no %s within its timeout" % self.expected)
                return
            self._held = None
            try:
                self._next(held, now)
            except EvpilotError as e:
                self._fail(now, str(e))
            except Exception as e:
                self._crash(now, e)

    def abort(self, now, reason):
        """The vehicle side ends the session (emergency, unplug): safe state, connection closed."""
        if self.state == RUNNING:
            self._fail(now, reason)

    # ---- protocol ------------------------------------------------------------------------------------

    def _on_payload(self, payload, now):
        if self.session is None:
            name, doc = self._decode_apphand(payload, now)
            if name != self.expected:
                raise SequenceError("SupportedAppProtocol", self.expected, name)
            self.protocol = sap.chosen(doc, self.offers)
            self.session = self.make_session(self.protocol)
            self._next(self.session.first_request(now), now)
            return
        name, body, header = self._decode(payload, now)
        if name != self.expected:
            raise SequenceError(self.protocol + " session", self.expected, name)
        sid = header.get("SessionID")
        if name == "SessionSetupRes":
            if not sid or sid == _INITIAL_SESSION_ID * len(sid):
                raise PeerError("SessionSetupRes without a SessionID")
            self.session_id = sid
            self.setup_deadline = None
        elif sid != self.session_id:
            raise PeerError("SessionID %s in %s, expected %s" % (_hex(sid), name, _hex(self.session_id)))
        session = self.session
        nxt = session.on_response(name, body, header, now)
        if nxt is None:
            self.setup_deadline = None
            self._end(DONE, "session stopped")
            return
        pace = getattr(session, "pace_ms", 0)
        if pace and self.sent_at is not None:
            due = ticks_add(self.sent_at, pace)
            if ticks_diff(due, now) > 0:
                self._held = nxt
                self.expected = None
                self.deadline = due
                return
        self._next(nxt, now)

    def _next(self, request, now):
        name, body = request[0], request[1]
        doc = self._envelope(name, body, self.session_id, request[2] if len(request) > 2 else None)
        self._send(self.session.schema, name, doc, self.msg_timeout(self.protocol, name), now)

    def _send(self, schema, name, doc, timeout, now):
        self._out.append(self._frame(schema, name, doc, now))
        self.expected = name[:-3] + "Res"  # every request name ends in Req, supportedAppProtocolReq too
        self.deadline = ticks_add(now, timeout)
        self.sent_at = now

    def _crash(self, now, e):
        if self.state == RUNNING:
            self._fail(now, "internal error: %s: %s" % (type(e).__name__, e))

    def _fail(self, now, reason):
        self._end(FAILED, reason)
        self.setup_deadline = None
        self._held = None
        if self.session is not None:
            try:
                self.session.safe_stop(now, reason)
            except Exception:
                pass  # the safe state is the session's; a second problem must not hide the first


def _hex(b):
    return "none" if b is None else "".join("%02x" % c for c in b)
