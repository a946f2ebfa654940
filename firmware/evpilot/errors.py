# The project's error families.
#
# EvpilotError is the one base. Under it, errors are split by whose fault they are (STYLE rule 4):
# PeerError for bad data from the other side (a charger, a modem, a serial peer, a user's file) and
# UsageError for our own misuse of an API. Each may carry the ISO 15118 response code to answer with.
# SessionError is the peer error a V2G session ends with when the station's answers do not let it go on;
# SequenceError, one of those, names the state and the message that was not allowed there (h11's
# LocalProtocolError / RemoteProtocolError pair, and its _state.py for the naming).


class EvpilotError(Exception):
    response_code = None


class PeerError(EvpilotError):
    """The peer (or a user's input) sent something we cannot accept."""


class UsageError(EvpilotError):
    """The caller used an API wrongly (a programming error on our side)."""


class SessionError(PeerError):
    """The session cannot go on: a FAILED response code, a message out of sequence, an EVSE stop or fault, a
    phase over its time limit, nothing offered that this side can use. The data may be well-formed; what
    it says ends the session."""


class SequenceError(SessionError):
    """A message the state machine does not allow in its present state."""

    def __init__(self, state, expected, got):
        super().__init__("state %s: expected %s, got %s" % (state, expected, got))
        self.state = state
        self.expected = expected
        self.got = got


class ExiError(PeerError):
    """An EXI stream or document is malformed, unsupported or over a limit.

    `path` names the element path ("V2G_Message/Body/CurrentDemandReq/EVTargetCurrent") and `bit` the bit
    position in the stream where the problem was found (None when encoding).
    """

    def __init__(self, message, path=None, bit=None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.bit = bit

    def __str__(self):
        text = self.message
        if self.path:
            text = text + " at " + self.path
        if self.bit is not None:
            text = text + " (bit " + str(self.bit) + ")"
        return text
