# The project's error families.
#
# EvpilotError is the one base. Under it, errors are split by whose fault they are (STYLE rule 4):
# PeerError for bad data from the other side (a charger, a modem, a serial peer, a user's file) and
# UsageError for our own misuse of an API. Each may carry the ISO 15118 response code to answer with.


class EvpilotError(Exception):
    response_code = None


class PeerError(EvpilotError):
    """The peer (or a user's input) sent something we cannot accept."""


class UsageError(EvpilotError):
    """The caller used an API wrongly (a programming error on our side)."""


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
