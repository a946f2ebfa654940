# Watching the TLS 1.2 record layer from outside the TLS library (RFC 5246 6.2.1).
#
# How this works: a record is a 5-byte header (content type, version, 16-bit length) and that many bytes of
# body. RecordWatcher follows one direction of a connection as its bytes pass by, keeping only the header
# it is in the middle of and a few counters, and notes what the backend cannot ask its library:
#   - ccs:            a ChangeCipherSpec (type 20) went by: the records after it are encrypted;
#   - finished_end:   the stream offset just past the first handshake record (type 22) after it, which in
#                     TLS 1.2 is the Finished message: once the library has taken (or written) every byte up
#                     to there without an error, that side's part of the handshake is over;
#   - alert:          (level, description) of the first alert (type 21) sent in the clear, before the CCS,
#                     so a refusal can be named ("handshake_failure (40)");
#   - random:         the 32-byte random of the first handshake message (a ClientHello when watching what a
#                     client sends), to match the NSS key log.
# A header with an unknown content type or a length beyond the RFC's limit raises TlsError("protocol"):
# the peer is not speaking TLS 1.2, and nothing is allocated from its numbers.

from evpilot.compat import const
from evpilot.tls.connection import TlsError

CHANGE_CIPHER_SPEC = const(20)
ALERT = const(21)
HANDSHAKE = const(22)
APPLICATION_DATA = const(23)
MAX_RECORD = const(16384 + 2048)  # TLSCiphertext.length limit (RFC 5246 6.2.3)

ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
          40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
          44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
          47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error",
          51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
          90: "user_canceled", 100: "no_renegotiation"}


def alert_text(alert):
    level, description = alert
    return "%s%s (%d)" % ("fatal " if level == 2 else "", ALERTS.get(description, "alert"), description)


class RecordWatcher:
    def __init__(self, keep_random=False):
        self.pos = 0  # bytes seen so far
        self.ccs = False
        self.finished_end = None
        self.alert = None
        self.random = None
        self._keep_random = keep_random
        self._hdr = bytearray(5)
        self._hlen = 0
        self._type = 0
        self._left = 0  # body bytes still to come in the current record
        self._body_pos = 0  # how far into the current body we are
        self._first = True  # the current record is the first one
        self._grab = None  # bytes of the current body we keep (alert, ClientHello start)

    def feed(self, data):
        i = 0
        n = len(data)
        while i < n:
            if self._left == 0:
                take = min(5 - self._hlen, n - i)
                self._hdr[self._hlen:self._hlen + take] = data[i:i + take]
                self._hlen += take
                i += take
                if self._hlen == 5:
                    self._hlen = 0
                    self._header(self.pos + i)
                continue
            take = min(self._left, n - i)
            if self._grab is not None:
                room = len(self._grab) - self._body_pos
                if room > 0:
                    k = min(room, take)
                    self._grab[self._body_pos:self._body_pos + k] = data[i:i + k]
            self._body_pos += take
            self._left -= take
            i += take
            if self._left == 0:
                self._record_done()
        self.pos += n

    def _header(self, at):
        t = self._hdr[0]
        length = (self._hdr[3] << 8) | self._hdr[4]
        if t < CHANGE_CIPHER_SPEC or t > APPLICATION_DATA or self._hdr[1] != 3:
            raise TlsError("protocol", "TLS: not a TLS record (content type %d, version %d.%d)"
                           % (t, self._hdr[1], self._hdr[2]))
        if length > MAX_RECORD:
            raise TlsError("protocol", "TLS: record of %d bytes, the limit is %d" % (length, MAX_RECORD))
        self._type = t
        self._left = length
        self._body_pos = 0
        self._grab = None
        if t == CHANGE_CIPHER_SPEC:
            self.ccs = True
        elif t == HANDSHAKE and self.ccs and self.finished_end is None:
            self.finished_end = at + length
        elif t == ALERT and not self.ccs and self.alert is None:
            self._grab = bytearray(2)
        elif t == HANDSHAKE and self._first and self._keep_random:
            self._grab = bytearray(38)  # msg type (1), length (3), version (2), random (32)
        if length == 0:
            self._record_done()

    def _record_done(self):
        if self._grab is not None and self._body_pos >= len(self._grab):
            if self._type == ALERT:
                self.alert = (self._grab[0], self._grab[1])
            elif self._type == HANDSHAKE:
                self.random = bytes(self._grab[6:38])
        self._grab = None
        self._first = False


class HelloWatcher(RecordWatcher):
    """Only the random of the ClientHello (the CPython backend's key-log match)."""

    def __init__(self):
        super().__init__(keep_random=True)

    def feed(self, data):
        if self.random is None and self.pos < 4096:
            RecordWatcher.feed(self, data)
