# The EV side of one V2G connection, sans-I/O: SupportedAppProtocol, then the chosen protocol's session.
#
# How this works: an adapter (OS sockets, the board's TCP, or an in-memory pipe in tests) calls
#   connection_made(now), data_received(data, now), connection_lost(now) and on_timer(now),
# sends what output() returns, sleeps until next_deadline(), and closes the connection once `finished` is
# true. The client frames and deframes V2GTP, encodes and decodes EXI (apphand first, then the protocol's
# schema set), keeps the SessionID, and runs one request at a time with its message timeout. What to send
# and what a response means is the protocol session's business (ev/din.py, ev/iso2.py): an object with
#   schema                      "din" or "iso2"
#   first_request(now)          -> (name, body) of the first request (SessionSetupReq)
#   on_response(name, body, now) -> (name, body) of the next request, or None once the session is over
#   safe_stop(now, reason)      bring the vehicle to a safe state: energy off, contactors open, CP state B
#   session_id                  (optional) set by the client to the SessionID from SessionSetupRes
#   received_header             (optional) set by the client to each response's Header before on_response
#                               is called: the Plug&Charge checks need its Signature (ISO 15118-2 XMLDSig)
# A request may also be (name, body, signature): a signature that is not None goes into Header["Signature"]
# (pnc.xmldsig.sign builds it). Sessions without these optional parts (DIN) work unchanged.
# To resume a paused session, set the client's session_id to the old SessionID before connection_made.
# on_response raises PeerError (or SessionError) for anything it cannot accept; the client then ends the
# connection in the failed state after calling safe_stop. Every end, good or bad, is a defined state with a
# reason; nothing continues after it.

from evpilot import exi
from evpilot.compat import const, ticks_add, ticks_diff
from evpilot.errors import EvpilotError, PeerError
from evpilot.v2g import sap, timers, v2gtp

RUNNING = const(1)
DONE = const(2)
FAILED = const(3)

_SAP_TIMEOUT_MS = const(2000)  # ISO 15118-2 Table 109 / DIN SPEC 70121 Table 75: SupportedAppProtocolReq
_COMMUNICATION_SETUP_MS = timers.ISO2_EVCC_COMMUNICATION_SETUP_TIMEOUT  # = DIN's (both 20 s)
_INITIAL_SESSION_ID = b"\x00"  # [V2G2-756]: SessionSetupReq carries SessionID 0 (one byte of zero in practice)


class SessionError(EvpilotError):
    """The session cannot go on (a FAILED response code, an EVSE stop, a limit exceeded)."""


class EvClient:
    def __init__(self, make_session, offers, msg_timeout, log=None):
        """make_session(protocol) -> protocol session; offers [(protocol, priority)] for SupportedAppProtocol;
        msg_timeout(protocol, request name) -> ms; log(direction, name, doc, exi_bytes, now) sees every
        message ("tx" or "rx")."""
        self.make_session = make_session
        self.offers = list(offers)
        self.msg_timeout = msg_timeout
        self.log = log
        self.state = RUNNING
        self.reason = None
        self.protocol = None
        self.session = None
        self.session_id = _INITIAL_SESSION_ID
        self.expected = None  # name of the response awaited
        self.deadline = None  # of the awaited response
        self.setup_deadline = None  # of the whole set-up, until SessionSetupRes
        self._out = []
        self._stream = v2gtp.Reassembler()

    # ---- adapter side ---------------------------------------------------------------------------------

    @property
    def finished(self):
        return self.state != RUNNING

    def output(self):
        out, self._out = self._out, []
        return out

    def next_deadline(self):
        if self.state != RUNNING:
            return None
        d, s = self.deadline, self.setup_deadline
        if d is None or (s is not None and ticks_diff(s, d) < 0):
            return s
        return d

    def connection_made(self, now, plugged_in=None):
        """The TCP connection is up. plugged_in: when the EV saw state B (the app that watches the pilot
        knows); V2G_EVCC_CommunicationSetup_Timeout runs from then (20 s in ISO 15118-2 and DIN SPEC 70121,
        evpilot.v2g.timers) until SessionSetupRes, from the connection when it is not given."""
        self.setup_deadline = ticks_add(now if plugged_in is None else plugged_in, _COMMUNICATION_SETUP_MS)
        doc = sap.request(self.offers)
        self._send("apphand", "supportedAppProtocolReq", doc, _SAP_TIMEOUT_MS, now)

    def data_received(self, data, now):
        if self.state != RUNNING:
            return
        try:
            for ptype, payload in self._stream.feed(data):
                if ptype != v2gtp.EXI:
                    raise PeerError("unexpected V2GTP payload type 0x%04x" % ptype)
                self._on_message(payload, now)
                if self.state != RUNNING:
                    return
        except EvpilotError as e:
            self._fail(now, str(e))

    def connection_lost(self, now):
        if self.state == RUNNING:
            self._fail(now, "the station closed the connection while waiting for " + str(self.expected))

    def on_timer(self, now):
        if self.state != RUNNING:
            return
        if self.setup_deadline is not None and ticks_diff(now, self.setup_deadline) >= 0:
            self._fail(now, "communication set-up not complete within %d ms" % _COMMUNICATION_SETUP_MS)
        elif self.deadline is not None and ticks_diff(now, self.deadline) >= 0:
            self._fail(now, "no %s within its timeout" % self.expected)

    def abort(self, now, reason):
        """The vehicle side ends the session (emergency, unplug): safe state, connection closed."""
        if self.state == RUNNING:
            self._fail(now, reason)

    # ---- protocol ------------------------------------------------------------------------------------

    def _on_message(self, payload, now):
        if self.session is None:
            doc = exi.decode("apphand", payload)
            name = next(iter(doc))
            self._logged("rx", name, doc, payload, now)
            if name != "supportedAppProtocolRes":
                raise PeerError("expected supportedAppProtocolRes, got " + name)
            self.protocol = sap.chosen(doc, self.offers)
            self.session = self.make_session(self.protocol)
            self._next(self.session.first_request(now), now)
            return
        doc = exi.decode(self.session.schema, payload)
        msg = doc.get("V2G_Message")
        if msg is None:
            raise PeerError("expected a V2G_Message")
        body = msg.get("Body") or {}
        if len(body) != 1:
            raise PeerError("a V2G_Message body holds one message, this one %d" % len(body))
        name = next(iter(body))
        self._logged("rx", name, doc, payload, now)
        if name != self.expected:
            raise PeerError("expected %s, got %s" % (self.expected, name))
        sid = msg.get("Header", {}).get("SessionID")
        if name == "SessionSetupRes":
            if not sid or sid == _INITIAL_SESSION_ID * len(sid):
                raise PeerError("SessionSetupRes without a SessionID")
            self.session_id = sid
            self.setup_deadline = None
            if hasattr(self.session, "session_id"):
                self.session.session_id = sid  # ISO-2 needs it in MeteringReceiptReq and to check a resumed one
        elif sid != self.session_id:
            raise PeerError("SessionID %s in %s, expected %s" % (_hex(sid), name, _hex(self.session_id)))
        if hasattr(self.session, "received_header"):
            self.session.received_header = msg.get("Header") or {}
        nxt = self.session.on_response(name, body[name], now)
        if nxt is None:
            self.state = DONE
            self.reason = "session stopped"
            self.deadline = self.setup_deadline = None
            return
        self._next(nxt, now)

    def _next(self, request, now):
        if len(request) == 3:
            name, body, signature = request
        else:
            name, body = request
            signature = None
        header = {"SessionID": self.session_id}
        if signature is not None:
            header["Signature"] = signature
        doc = {"V2G_Message": {"Header": header, "Body": {name: body}}}
        self._send(self.session.schema, name, doc, self.msg_timeout(self.protocol, name), now)

    def _send(self, schema, name, doc, timeout, now):
        data = exi.encode(schema, doc)
        self._logged("tx", name, doc, data, now)
        self._out.append(v2gtp.build(v2gtp.EXI, data))
        self.expected = name[:-3] + "Res" if name.endswith("Req") else "supportedAppProtocolRes"
        self.deadline = ticks_add(now, timeout)

    def _fail(self, now, reason):
        self.state = FAILED
        self.reason = reason
        self.deadline = self.setup_deadline = None
        if self.session is not None:
            try:
                self.session.safe_stop(now, reason)
            except EvpilotError:
                pass  # the safe state is the session's; a second problem must not hide the first

    def _logged(self, direction, name, doc, data, now):
        if self.log is not None:
            self.log(direction, name, doc, data, now)


def _hex(b):
    return "none" if b is None else "".join("%02x" % c for c in b)
