# SECC Discovery Protocol (ISO 15118-2 clause 7.10.1, DIN SPEC 70121 clause 8.6.1): the EV multicasts an SDP
# request over UDP (ff02::1, port 15118) and the charger (SECC) answers with the address and TCP port of its
# V2G server.
#
# Payloads (inside a V2GTP frame, payload types 0x9000 request / 0x9001 response):
#   request   security (1: 0x00 TLS, 0x10 no TLS), transport (1: 0x00 TCP, 0x10 UDP)          = 2 bytes
#   response  SECC IPv6 address (16), port (2, big-endian), security (1), transport (1)      = 20 bytes
#
# How this works: build_*/parse_* are the codec; parse_* raise PeerError naming the field and nothing else.
# SdpClient is the EV's sans-I/O discovery: poll(now) says what to send, receive(frame, now) takes what came
# in, next_deadline() says when to poll again; a neighbour's junk is counted and never raised. SdpResponder
# is the charger's side, used by the station simulator. Times are ms compared with compat.ticks_diff.

from evpilot.compat import const, ticks_add, ticks_diff
from evpilot.errors import EvpilotError, PeerError, UsageError
from evpilot.v2g import timers, v2gtp

PORT = const(15118)  # UDP port of the SECC's SDP server (ISO 15118-2 Table 15, as RISE-V2G cites it)
MULTICAST_ADDRESS = "ff02::1"  # link-local all-nodes: where the EV sends its requests ([V2G2-139])

SECURITY_TLS = const(0x00)
SECURITY_NONE = const(0x10)
TRANSPORT_TCP = const(0x00)
TRANSPORT_UDP = const(0x10)

REQUEST_LEN = const(2)
RESPONSE_LEN = const(20)

_SECURITY_NAMES = {SECURITY_TLS: "tls", SECURITY_NONE: "none"}
_TRANSPORT_NAMES = {TRANSPORT_TCP: "tcp", TRANSPORT_UDP: "udp"}


class SdpFailed(EvpilotError):
    """Discovery ended without an acceptable SDP response (the retry budget is spent)."""

    def __init__(self, message, tries=0):
        super().__init__(message)
        self.message = message
        self.tries = tries

    def __str__(self):
        return self.message


def _security_code(security):
    if security == "tls":
        return SECURITY_TLS
    if security == "none":
        return SECURITY_NONE
    raise UsageError("SDP security must be 'tls' or 'none', not %r" % (security,))


def _transport_code(transport):
    if transport == "tcp":
        return TRANSPORT_TCP
    if transport == "udp":
        return TRANSPORT_UDP
    raise UsageError("SDP transport must be 'tcp' or 'udp', not %r" % (transport,))


def _name(table, code, field):
    name = table.get(code)
    if name is None:
        raise PeerError("SDP %s: unknown value 0x%02x" % (field, code))
    return name


def build_request(security, transport="tcp"):
    return bytes((_security_code(security), _transport_code(transport)))


def parse_request(payload):
    """{"security": "tls"/"none", "transport": "tcp"/"udp"} from a request payload; PeerError if malformed."""
    if len(payload) != REQUEST_LEN:
        raise PeerError("SDP request payload: %d bytes, expected 2" % len(payload))
    return {"security": _name(_SECURITY_NAMES, payload[0], "request security"),
            "transport": _name(_TRANSPORT_NAMES, payload[1], "request transport")}


def build_response(address, port, security, transport="tcp"):
    if len(address) != 16:
        raise UsageError("SDP response: address must be 16 bytes, got %d" % len(address))
    if not 0 < port <= 0xFFFF:
        raise UsageError("SDP response: port %r out of range" % (port,))
    return bytes(address) + bytes((port >> 8, port & 0xFF, _security_code(security), _transport_code(transport)))


def parse_response(payload):
    """{"address", "port", "security", "transport"} from a response payload; PeerError if malformed."""
    if len(payload) != RESPONSE_LEN:
        raise PeerError("SDP response payload: %d bytes, expected 20" % len(payload))
    address = bytes(payload[0:16])
    if address[0] == 0xFF:
        raise PeerError("SDP response address: a multicast address cannot be a SECC")
    port = (payload[16] << 8) | payload[17]
    if port == 0:
        raise PeerError("SDP response port: 0")
    return {"address": address, "port": port,
            "security": _name(_SECURITY_NAMES, payload[18], "response security"),
            "transport": _name(_TRANSPORT_NAMES, payload[19], "response transport")}


def request_frame(security, transport="tcp"):
    return v2gtp.build(v2gtp.SDP_REQUEST, build_request(security, transport))


def _read_frame(frame):
    """(payload_type, payload) of a datagram holding exactly one V2GTP frame; PeerError otherwise."""
    # The limit keeps a hostile length from mattering: SDP payloads are 2 or 20 bytes; anything up to 64 is
    # read so that a too-long SDP payload is reported as such, not as a bad header.
    parsed = v2gtp.parse(frame, 64)
    if parsed is None:
        raise PeerError("SDP datagram: %d bytes, shorter than its V2GTP header says" % len(frame))
    ptype, payload, used = parsed
    if used != len(frame):
        raise PeerError("SDP datagram: %d bytes after the V2GTP frame" % (len(frame) - used))
    return ptype, payload


class SdpClient:
    """The EV's discovery: one request now, then one every `interval` ms until an acceptable response or
    `max_requests` requests are spent ([V2G2-159] wait, [V2G2-160] repeat, [V2G2-161] at most 50).

    security: "tls" or "none", what the EV asks for. accept_other_security: take a response whose security
    differs from the request (Josev's use_tls without enforce_tls: the EV asked for TLS and the station offers
    none); by default such a response is counted in `rejected` and the requests go on.
    """

    def __init__(self, security, now, accept_other_security=False, interval=timers.SDP_RESPONSE_TIMEOUT,
                 max_requests=timers.SDP_MAX_REQUESTS):
        if interval <= 0 or max_requests <= 0:
            raise UsageError("SdpClient: interval and max_requests must be positive")
        self.security = security
        self._frame = request_frame(security)
        self.accept_other_security = accept_other_security
        self.interval = interval
        self.max_requests = max_requests
        self.tries = 0
        self._deadline = now
        self.result = None
        self.failed = False
        self.failure = None  # text saying why, once failed
        # What came in that was not the answer: other payload types (ignored), undecodable datagrams
        # (malformed), well-formed responses we may not use (rejected); last_error says the latest reason.
        self.ignored = 0
        self.malformed = 0
        self.rejected = 0
        self.last_error = None

    def done(self):
        return self.result is not None or self.failed

    def next_deadline(self):
        """When poll() must next be called, or None when discovery is over."""
        if self.done():
            return None
        return self._deadline

    def poll(self, now):
        """The datagrams (whole V2GTP frames) to send now: [] or [request]."""
        if self.done() or ticks_diff(now, self._deadline) < 0:
            return []
        if self.tries >= self.max_requests:
            self.failed = True
            self.failure = ("SDP: no acceptable response after %d requests (%d rejected, %d malformed, "
                            "%d ignored)" % (self.tries, self.rejected, self.malformed, self.ignored))
            if self.last_error:
                self.failure += "; last problem: " + self.last_error
            return []
        self.tries += 1
        # Counted from when the request really goes out, so a late poll never shortens the wait below
        # the interval ([V2G2-159] says "at least").
        self._deadline = ticks_add(now, self.interval)
        return [self._frame]

    def receive(self, frame, now):
        """Take one received UDP payload. Returns True if it completed discovery. Never raises on input."""
        if self.done():
            self.ignored += 1
            return False
        try:
            ptype, payload = _read_frame(frame)
        except PeerError as e:
            self.malformed += 1
            self.last_error = str(e)
            return False
        if ptype != v2gtp.SDP_RESPONSE:
            self.ignored += 1  # our own request looped back, another EV's request, stray traffic
            return False
        try:
            response = parse_response(payload)
        except PeerError as e:
            self.malformed += 1
            self.last_error = str(e)
            return False
        if response["transport"] != "tcp":
            self.rejected += 1
            self.last_error = "SDP response offers transport %s, we asked for tcp" % response["transport"]
            return False
        if response["security"] != self.security and not self.accept_other_security:
            self.rejected += 1
            self.last_error = "SDP response offers security %s, we asked for %s" % (
                response["security"], self.security)
            return False
        self.result = {"address": response["address"], "port": response["port"],
                       "security": response["security"]}
        return True


class SdpResponder:
    """The SECC's side: respond(frame) turns a request datagram into a response datagram (or None).

    tls_supported: the station answers a TLS request with TLS; without it, and for a no-TLS request, it
    answers "none" (the station can run without TLS). tls_only: the station serves TLS only and answers
    every request with TLS (an EV that asked for none rejects that and asks again, or takes it).
    """

    def __init__(self, address, port, tls_supported, tls_only=False):
        build_response(address, port, "none")  # checks address and port (UsageError)
        self.address = bytes(address)
        self.port = port
        self.tls_supported = tls_supported or tls_only
        self.tls_only = tls_only
        self.answered = 0
        self.ignored = 0
        self.malformed = 0
        self.last_error = None

    def respond(self, frame):
        try:
            ptype, payload = _read_frame(frame)
            if ptype != v2gtp.SDP_REQUEST:
                self.ignored += 1
                return None
            request = parse_request(payload)
        except PeerError as e:
            self.malformed += 1
            self.last_error = str(e)
            return None
        if request["transport"] != "tcp":
            self.ignored += 1  # V2G messages run over TCP; the UDP code point is not served here
            self.last_error = "SDP request asks for transport udp"
            return None
        if self.tls_only:
            security = "tls"
        else:
            security = "tls" if request["security"] == "tls" and self.tls_supported else "none"
        self.answered += 1
        return v2gtp.build(v2gtp.SDP_RESPONSE, build_response(self.address, self.port, security))
