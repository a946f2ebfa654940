# A sans-I/O V2G endpoint behind TLS: the EV client or the station connection, unchanged, over a
# TlsConnection, with the same adapter interface on the outside.
#
# How this works
# --------------
# The adapter interface the cores share (EvClient, SeccConnection; evpilot_sim.pipe and the socket loops
# drive it) is: connection_made(now), data_received(data, now), connection_lost(now), on_timer(now),
# output() -> [bytes], next_deadline(), finished. TlsEndpoint(inner, tls) has the same methods; bytes in and
# out are TLS records, the inner endpoint sees plaintext:
#   connection_made    starts the handshake (the client's ClientHello goes out with the next output());
#                      the inner endpoint's connection_made waits until the handshake is complete, so the
#                      EV sends SupportedAppProtocolReq only once the station is authenticated;
#   data_received      feeds TLS, starts the inner endpoint when the handshake completes, hands it what
#                      was decrypted: from then on each piece as TLS decrypts it (TlsConnection.sink), so
#                      a large message is copied once, into the inner endpoint's receive buffer;
#   output             encrypts what the inner endpoint wrote; once it has finished, close_notify follows;
#   next_deadline      the inner endpoint's, or the handshake deadline while there is no inner session.
# A TLS failure (TlsError: chain, DC, handshake, bad record) ends the endpoint: the inner endpoint, when it
# has started, is told with abort(now, reason) (the EV goes to its safe state) or connection_lost(now);
# `reason` says why and `error` is the TlsError; the fatal alert TLS queued is still sent. No bytes of keys
# or plaintext are logged. on_established(tls), when given, is called once the handshake is complete (the
# command line prints the negotiated version, suite and the SECC's DC there). It runs wherever evpilot.tls
# runs (CPython's ssl; MicroPython's mbedTLS over a user stream), on a socket stream (evpilot.aio.stream) or
# the virtual-clock pipe alike.

from evpilot.compat import const, ticks_add, ticks_diff
from evpilot.errors import PeerError
from evpilot.tls.connection import TlsError

# Our bound on the TLS handshake (no ISO 15118-2 timer names it; it runs inside
# V2G_EVCC_CommunicationSetup_Timeout, 20 s, which the EV client starts once TLS is up).
HANDSHAKE_TIMEOUT_MS = const(10000)


class TlsEndpoint:
    def __init__(self, inner, tls, handshake_timeout_ms=HANDSHAKE_TIMEOUT_MS, on_established=None):
        """inner: the plaintext endpoint; tls: a fresh evpilot.tls.TlsConnection (client or server)."""
        self.inner = inner
        self.tls = tls
        self.handshake_timeout_ms = handshake_timeout_ms
        self.on_established = on_established
        self.started = False  # the inner endpoint has been told connection_made
        self.reason = None  # why TLS ended the connection, when it did
        self.error = None  # ... as the TlsError
        self._failed = False
        self._deadline = None
        self._closed_sent = False
        self._lost = False
        self._now = 0  # the latest time we were given (output() is not given one)

    @property
    def finished(self):
        return self._failed or (self.started and self.inner.finished)

    @property
    def state(self):
        return getattr(self.inner, "state", None)

    def connection_made(self, now):
        self._now = now
        self._deadline = ticks_add(now, self.handshake_timeout_ms)
        self._pump(now)

    def data_received(self, data, now):
        self._now = now
        if self._failed:
            return
        try:
            self.tls.receive(data, now)
        except PeerError as e:
            self._fail(now, e)
            return
        except MemoryError:
            self._fail(now, TlsError("memory", "TLS: out of memory while receiving"))
            return
        self._pump(now)

    def connection_lost(self, now):
        self._now = now
        if self._lost:
            return
        self._lost = True
        if self._failed:
            return
        if self.started:
            try:
                self.tls.receive_eof(now)
            except PeerError:
                pass  # the session learns of the end below either way
            self.inner.connection_lost(now)
        else:
            self._fail(now, TlsError("handshake", "TLS: the connection closed during the handshake"))
        self.tls.close()

    def on_timer(self, now):
        self._now = now
        if self._failed:
            return
        if not self.started:
            if self._deadline is not None and ticks_diff(now, self._deadline) >= 0:
                self._fail(now, TlsError("timeout", "TLS: handshake not complete within %d ms"
                                         % self.handshake_timeout_ms))
            return
        self.inner.on_timer(now)

    def next_deadline(self):
        if self._failed:
            return None
        if not self.started:
            return self._deadline
        return self.inner.next_deadline()

    def output(self):
        if self.started and not self._failed:
            try:
                for data in self.inner.output():
                    self.tls.write(data)
                if self.inner.finished and not self._closed_sent:
                    self._closed_sent = True
                    self.tls.close()
            except PeerError as e:
                self._fail(self._now, e)
            except MemoryError:
                self._fail(self._now, TlsError("memory", "TLS: out of memory while sending"))
        out = self.tls.data_to_send()
        return [out] if out else []

    # -- inside --

    def _pump(self, now):
        if not self.started and self.tls.handshake_complete:
            self.started = True
            if self.on_established is not None:
                self.on_established(self.tls)
            self.inner.connection_made(now)
        if not self.started:
            return
        data = self.tls.read()  # what was decrypted before the sink was set
        if data:
            self.inner.data_received(data, now)
        if self.tls.sink is None:
            self.tls.sink = self._plaintext
        if self.tls.at_eof and not self._lost:
            self._lost = True
            self.inner.connection_lost(now)

    def _plaintext(self, chunk):
        self.inner.data_received(chunk, self._now)

    def _fail(self, now, error):
        if not isinstance(error, TlsError):
            error = TlsError("protocol", str(error))
        reason = error.message if error.message.startswith("TLS") else "TLS: " + error.message
        self._failed = True
        self.error = error
        self.reason = reason
        self.tls.close()  # frees the backend's buffers; the fatal alert, if any, is already queued
        if self.started:
            abort = getattr(self.inner, "abort", None)
            if abort is not None:
                abort(now, reason)
            elif not self._lost:
                self._lost = True
                self.inner.connection_lost(now)
