# What both ends of a V2G TCP connection share, sans-I/O: the EV's EvClient (evpilot.ev.client) and the
# station simulator's SeccConnection (evpilot_sim.station.secc) build on V2gConnection.
#
# How this works
# --------------
# An adapter (OS sockets, the board's TCP, TlsEndpoint, or the virtual-clock pipe) calls
#   connection_made(now), data_received(data, now), connection_lost(now), on_timer(now)
# (and the EV's abort(now, reason)), sends what output() returns, sleeps until next_deadline() and closes
# the connection once `finished` is true. This base does what is the same on both sides:
#   - V2GTP reassembly: data_received cuts the stream into messages (v2gtp.Reassembler, bounded) and hands
#     each EXI payload to the subclass's _on_payload(payload, now); any other payload type is a PeerError.
#     A received payload is a view of the one receive buffer (decoded in place, never copied): it and the
#     exi_bytes the log hook gets for "rx" are valid during the call only (copy them to keep them);
#   - the envelope: _decode_apphand() and _decode() turn a payload into (name, message) and (name, body,
#     header) of the one message a V2G_Message body holds, _envelope() builds a V2G_Message, _frame() encodes
#     one into a V2GTP frame; each message passes the log hook, log(direction, name, doc, exi_bytes, now)
#     ("rx", "tx"; the station adds "fault"), on its way;
#   - the states RUNNING -> DONE | FAILED with a reason: _end(state, reason) is the one way into a terminal
#     state (the deadline goes with it); every EvpilotError raised while handling a message ends the
#     connection through _fail(now, reason), which the EV extends with its safe stop;
#   - the deadline of what the side waits for (`deadline`), and earliest() to combine it with others.
# What a message means, which timer runs and what is answered is the subclass's business.

from evpilot import exi
from evpilot.compat import const, ticks_diff
from evpilot.errors import EvpilotError, PeerError
from evpilot.v2g import v2gtp

RUNNING = const(1)
DONE = const(2)
FAILED = const(3)


def earliest(a, b):
    """The earlier of two tick times, either of which may be None."""
    if a is None:
        return b
    if b is None or ticks_diff(a, b) <= 0:
        return a
    return b


def first_key(d):
    """The first key of a dict (a decoded document's root, a body's message), None when it is empty."""
    for k in d:
        return k
    return None


class V2gConnection:
    def __init__(self, make_session, log=None):
        """make_session(protocol) -> the protocol session, once SupportedAppProtocol has chosen one;
        log(direction, name, doc, exi_bytes, now) sees every message (None: no log)."""
        self.make_session = make_session
        self.log = log
        self.state = RUNNING
        self.reason = None
        self.protocol = None
        self.session = None
        self.deadline = None  # of what this side waits for
        self._out = []
        self._stream = v2gtp.Reassembler()
        # Decode what the peer sends checking only what the bits bound, not the XSD facets: the station
        # simulator sets it, so that a real EV that breaks a facet (a car's PowerDeliveryReq with 4 phases in
        # use, in a 1..3 field) can still be tested; the EV never does.
        self.lenient = False
        self._tx = None  # the frame buffer while _frame encodes
        self._tx_len = 0

    # ---- adapter side ---------------------------------------------------------------------------------

    @property
    def finished(self):
        return self.state != RUNNING

    def output(self):
        out, self._out = self._out, []
        return out

    def data_received(self, data, now):
        if self.state != RUNNING:
            return
        try:
            for ptype, payload in self._stream.feed(data):
                if ptype != v2gtp.EXI:
                    raise PeerError("unexpected V2GTP payload type 0x%04x" % ptype)
                self._on_payload(payload, now)
                if self.state != RUNNING:
                    return
        except EvpilotError as e:
            self._fail(now, str(e))

    # ---- for the subclasses ---------------------------------------------------------------------------

    def _on_payload(self, payload, now):
        raise NotImplementedError

    def _decode_apphand(self, payload, now):
        """(name, message) of a SupportedAppProtocol message, logged as received."""
        doc = exi.decode("apphand", payload, True, self.lenient)
        name = first_key(doc)
        self._logged("rx", name, doc, payload[:len(payload) - v2gtp.PAD], now)
        return name, doc

    def _decode(self, payload, now):
        """(name, body, header) of the one message in a V2G_Message of the session's schema set, logged as
        received. A document that is not a V2G_Message, or a body without exactly one message, is a PeerError."""
        doc = exi.decode(self.session.schema, payload, True, self.lenient)
        msg = doc.get("V2G_Message")
        if msg is None:
            raise PeerError("expected a V2G_Message, got %s" % first_key(doc))
        body = msg.get("Body") or {}
        if len(body) != 1:
            raise PeerError("a V2G_Message body holds one message, this one %d" % len(body))
        name = next(iter(body))  # the body holds one message (checked above)
        self._logged("rx", name, doc, payload[:len(payload) - v2gtp.PAD], now)
        return name, body[name], msg.get("Header") or {}

    def _envelope(self, name, body, session_id, signature=None):
        """A V2G_Message document: Header (SessionID, and the XMLDSig Signature when there is one), Body."""
        header = {"SessionID": session_id}
        if signature is not None:
            header["Signature"] = signature
        return {"V2G_Message": {"Header": header, "Body": {name: body}}}

    def _frame(self, schema, name, doc, now):
        """The V2GTP frame for a document, logged as sent. The encoder writes straight into a frame buffer
        (grown to the largest message, never shrunk) behind room for the header, so the frame costs one
        allocation of its own size, whatever the message."""
        stream = self._stream
        shared = not stream.busy()
        # The receive buffer doubles as the frame buffer while it holds no part of a message (the message
        # that led here is decoded: what the session keeps of it are copies); one large buffer, not two.
        self._tx = stream.buf if shared else bytearray(256)
        self._tx_len = v2gtp.HEADER_LEN
        exi.encode(schema, doc, sink=self._tx_put)
        n = self._tx_len
        tx = self._tx
        if shared:
            stream.buf = tx  # grown, perhaps
        self._tx = None
        tx[0:v2gtp.HEADER_LEN] = v2gtp.header(v2gtp.EXI, n - v2gtp.HEADER_LEN)
        view = memoryview(tx)
        self._logged("tx", name, doc, view[v2gtp.HEADER_LEN:n], now)
        return bytes(view[:n])

    def _tx_put(self, chunk):
        n = self._tx_len
        end = n + len(chunk)
        tx = self._tx
        if end > len(tx):
            size = len(tx) * 2
            while size < end:
                size *= 2
            grown = bytearray(size)
            grown[:n] = memoryview(tx)[:n]
            self._tx = tx = grown
        tx[n:end] = chunk
        self._tx_len = end

    def _end(self, state, reason):
        self.state = state
        self.reason = reason
        self.deadline = None

    def _fail(self, now, reason):
        self._end(FAILED, reason)

    def _logged(self, direction, name, doc, data, now):
        if self.log is not None:
            self.log(direction, name, doc, data, now)
