# TLS for ISO 15118-2: TLS 1.2 only, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 (0xC023) on secp256r1, server
# authentication only (ISO 15118-2 [V2G2-600] ff.). The EV verifies the SECC chain against its V2G roots and
# requires DC=CPO on the leaf; there is no hostname check (an SECC's name is not known in advance).
#
# How this works
# --------------
# TlsConnection is sans-I/O like the other cores: receive(ciphertext, now) / receive_eof(now) take what the
# transport delivered, read() returns decrypted plaintext, write(plaintext) queues application data (held
# until the handshake is complete), data_to_send() returns ciphertext for the transport, close() queues
# close_notify where the backend can send one. start(now) arms the handshake deadline: next_deadline() and
# on_timer(now) end a handshake that takes too long. next_event() hands out what happened, in order:
#   ("established", None)  the handshake is complete (version, cipher, peer_certificate, peer_dc are set)
#   ("closed", how)        no more plaintext will come: how is "close_notify", "eof" or "truncated"
#   ("failed", TlsError)   the connection failed; nothing more happens
# Any failure also raises TlsError (a PeerError) from the call that met it, with `reason` "verify" (the
# chain does not verify against the roots, or a certificate is outside its validity), "dc" (the leaf's DC is
# not the expected one), "handshake" (no agreement: version, suite, curve, an alert from the peer, the peer
# closed), "timeout" (no handshake by the deadline), "protocol" (a bad record after the handshake),
# "memory" (the TLS library ran out of memory). Ciphertext queued by the failure (the fatal alert) is still
# in data_to_send() so the caller can deliver it before closing.
#
# Two backends behind one interface (feed/take_output/pump/...), chosen at import time:
#   evpilot.tls.cpython      ssl.SSLObject over two MemoryBIOs; OpenSSL checks the chain during the
#                            handshake, the DC is checked right after it; NSS key log for Wireshark.
#   evpilot.tls.micropython  the port's mbedTLS `tls` module over a user stream with one preallocated input
#                            buffer; our own chain check runs inside mbedTLS's verify callback, so a bad
#                            chain ends the handshake with an alert; handshake completion is read off the
#                            record layer (evpilot.tls.records), since the port has no way to ask.

from evpilot import compat
from evpilot.errors import PeerError, UsageError

CIPHER = "ECDHE-ECDSA-AES128-SHA256"  # OpenSSL's name for 0xC023; what `cipher` reports on both backends
CIPHER_IANA = "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"
CIPHER_MBEDTLS = "TLS-ECDHE-ECDSA-WITH-AES-128-CBC-SHA256"
CIPHER_ID = 0xC023
CURVE = "prime256v1"  # secp256r1
VERSION = "TLSv1.2"
EXPECTED_DC = "CPO"

# Undelivered plaintext beyond this means the reader is not keeping up (a V2G message is at most a few KB;
# CertificateInstallationRes, the largest, is handled up to 8 KB).
MAX_PLAINTEXT = 65536


class TlsError(PeerError):
    """TLS failed. `reason`: "verify", "dc", "handshake", "timeout", "protocol", "memory"."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
        self.message = message


# --- roots and the leaf's domain component (both interpreters) -------------------------------------------


def roots_der(cadata):
    """The V2G roots as a list of DER certificates, from DER bytes, PEM (str or bytes, one or more
    certificates), or a list/tuple of those."""
    if isinstance(cadata, (list, tuple)):
        found = []
        for item in cadata:
            found.extend(roots_der(item))
        return found
    if isinstance(cadata, str):
        cadata = cadata.encode()
    if not isinstance(cadata, (bytes, bytearray, memoryview)):
        raise UsageError("TLS roots: DER or PEM bytes (or a list of them) expected, got %s" % type(cadata))
    cadata = bytes(cadata)
    if not cadata:
        raise UsageError("TLS roots: empty")
    if b"-----BEGIN" in cadata:
        from evpilot.pnc import x509

        return x509.pem_to_ders(cadata)
    return [cadata]


def leaf_dc(der):
    """The domain component values of a certificate's subject (the firmware's own parser)."""
    from evpilot.pnc import x509

    return list(x509.parse(der).dc)


def check_leaf_dc(der, expected=EXPECTED_DC):
    """Raise TlsError("dc") unless the leaf's subject carries DC=`expected` (case-insensitive, as
    evpilot.pnc.chain compares)."""
    if der is None:
        raise TlsError("dc", "TLS: the SECC sent no certificate")
    try:
        dcs = leaf_dc(der)
    except PeerError as e:
        raise TlsError("dc", "TLS: the SECC leaf certificate cannot be parsed: %s" % (e,))
    for v in dcs:
        if v.upper() == expected.upper():
            return dcs
    raise TlsError("dc", "TLS: the SECC leaf certificate has domain component %s, expected %s"
                   % (dcs or "none", expected))


def wall_clock_s():
    """Seconds since 1970 from the platform's clock, or None when the clock is evidently not set (before
    2024: a board without a real-time clock counts from its epoch at power-up). Used as trusted time for
    certificate validity when the caller gives none."""
    import time

    now = int(time.time())
    try:
        if time.gmtime(0)[0] == 2000:  # bare-metal MicroPython ports count from 2000-01-01
            now += 946684800
    except (AttributeError, OverflowError, ValueError):
        pass
    return now if now >= 1704067200 else None  # 2024-01-01T00:00:00Z


# --- contexts ---------------------------------------------------------------------------------------------


class TlsContext:
    """What a TlsConnection needs: the backend's context object, which side, the leaf DC to require (client
    only; None: no DC check), the roots as DER (the MicroPython backend validates with them) and the trusted
    time (a function returning seconds since 1970 or None). Build it with client_context()/server_context();
    tests may wrap an ssl.SSLContext of their own to play a misconfigured peer."""

    def __init__(self, ssl_context, server_side, expected_dc=None, roots=None, clock=None):
        self.ssl_context = ssl_context
        self.server_side = server_side
        self.expected_dc = expected_dc
        self.roots = roots
        self.clock = clock


def _backend():
    if compat.MICROPYTHON:
        from evpilot.tls import micropython as backend
    else:
        from evpilot.tls import cpython as backend
    return backend


def client_context(cadata, keylog=None, expected_dc=EXPECTED_DC, clock=wall_clock_s):
    """The EV's context: verify the SECC against `cadata` (the V2G roots: DER, PEM or a list), then require
    DC=`expected_dc` on the leaf. `keylog`: path of an NSS key log file to append to (CPython only).
    `clock`: trusted time for certificate validity (seconds since 1970, or None for "unknown"; the MicroPython
    backend checks validity with it, OpenSSL uses the system clock)."""
    return _backend().client_context(roots_der(cadata), keylog, expected_dc, clock)


def server_context(chain, key, keylog=None, password=None):
    """The station's context: `chain` a PEM file with the SECC leaf first, then its Sub-CAs (secc_chain.pem),
    `key` the leaf's private key file. No client certificate is asked for."""
    return _backend().server_context(chain, key, keylog, password)


# --- the connection ---------------------------------------------------------------------------------------


class TlsConnection:
    """One TLS connection, either side, sans-I/O (see the module comment)."""

    def __init__(self, context, handshake_timeout_ms=None):
        if not isinstance(context, TlsContext):
            raise UsageError("TlsConnection needs a TlsContext (client_context() or server_context())")
        self.context = context
        self.server_side = context.server_side
        self.handshake_timeout_ms = handshake_timeout_ms
        self.handshake_complete = False
        self.peer_closed = False  # close_notify received
        self.eof = False  # the transport ended
        self.truncated = False  # ... without close_notify
        self.closing = False  # close() was called
        self.failed = None  # the TlsError, once failed
        self.peer_certificate = None  # the peer's leaf DER (client side)
        self.peer_dc = None
        self.version = None
        self.cipher = None
        self.client_random = None  # from our ClientHello (client side), for matching the key log
        self._plain_in = bytearray()
        self._plain_out = []
        # sink(chunk), when set, takes each piece of plaintext as it is decrypted instead of read(): a view
        # of the backend's read buffer, valid during the call (no plaintext buffer grows to a message's size)
        self.sink = None
        self._events = []
        self._deadline = None
        self._closed_event = False
        self._impl = _backend().Backend(context)
        self._progress()

    # -- time --

    def start(self, now):
        """Arm the handshake deadline (handshake_timeout_ms from `now`), if one was given."""
        if self.handshake_timeout_ms is not None and not self.handshake_complete:
            self._deadline = compat.ticks_add(now, self.handshake_timeout_ms)

    def next_deadline(self):
        if self.failed is not None or self.handshake_complete:
            return None
        return self._deadline

    def on_timer(self, now):
        """Raises TlsError("timeout") once the handshake deadline has passed without a complete handshake."""
        if self.failed is not None or self.handshake_complete or self._deadline is None:
            return
        if compat.ticks_diff(now, self._deadline) >= 0:
            self._fail(TlsError("timeout", "TLS: handshake not complete within %d ms" % self.handshake_timeout_ms))

    # -- transport side --

    def receive(self, data, now=None):
        """Ciphertext from the transport. Raises TlsError."""
        if self.failed is not None:
            raise self.failed
        view = memoryview(data)
        while len(view):
            n = self._impl.feed(view)
            view = view[n:]
            self._progress()
            if n == 0 and self.failed is None:
                # The backend could not take more although we pumped it: the reader is not keeping up.
                self._fail(TlsError("protocol", "TLS: more than %d bytes of plaintext not read" % MAX_PLAINTEXT))

    def receive_eof(self, now=None):
        """The transport ended. Before the handshake is complete that is a failure (TlsError)."""
        if self.eof:
            return
        self.eof = True
        self._impl.feed_eof()
        if self.failed is not None:
            return
        self._progress()
        if not self.handshake_complete and self.failed is None:
            self._fail(TlsError("handshake", "TLS: the peer closed the connection during the handshake"))
        if self.handshake_complete and not self.peer_closed and self.failed is None:
            self.truncated = True
            self._closed("truncated")

    def data_to_send(self):
        """Ciphertext for the transport (b"" when there is none)."""
        out = self._impl.take_output()
        if self.client_random is None and not self.server_side:
            self.client_random = self._impl.client_random()
        return out

    # -- application side --

    def read(self, n=-1):
        """Decrypted plaintext, at most `n` bytes (all with -1); b"" when none is waiting. Reading all hands
        over the buffer itself (a bytearray, no copy: a CertificateInstallationRes is several KB, and on a
        board every contiguous copy of it counts)."""
        if not self._plain_in:
            return b""
        if n < 0 or n >= len(self._plain_in):
            data = self._plain_in
            self._plain_in = bytearray()
        else:
            data = bytes(memoryview(self._plain_in)[:n])
            self._plain_in = self._plain_in[n:]
        if not self.handshake_complete or self.failed is not None:
            return data
        self._progress()  # the backend may hold records it stopped decrypting while we were full
        return data

    @property
    def at_eof(self):
        """True once no more plaintext will come: close_notify or the transport's end, all read."""
        return (self.peer_closed or self.eof) and not self._plain_in

    def write(self, data):
        """Queue plaintext; it is encrypted now, or as soon as the handshake is complete."""
        if self.failed is not None:
            raise self.failed
        if self.closing:
            raise UsageError("TLS: write after close()")
        if data and self.handshake_complete and not self._plain_out:
            try:
                self._impl.write(data)  # encrypted at once: no copy of the plaintext is queued
            except TlsError as e:
                self._fail(e)
        elif data:
            self._plain_out.append(bytes(data))
        self._progress()

    def close(self):
        """Queue close_notify where the backend can send one (no more writes). Safe to call more than once or
        after a failure."""
        if self.closing:
            return
        self.closing = True
        if self.failed is not None or not self.handshake_complete:
            self._impl.release()
            return
        try:
            self._flush_writes()
        except TlsError:
            return
        self._impl.close_notify()

    def next_event(self):
        """The next event (see the module comment), or None."""
        if self._events:
            return self._events.pop(0)
        return None

    # -- inside --

    def _closed(self, how):
        if not self._closed_event:
            self._closed_event = True
            self._events.append(("closed", how))

    def _fail(self, error):
        self.failed = error
        self._events.append(("failed", error))
        self._impl.release()
        raise error

    def _progress(self):
        if self.failed is not None:
            return
        if not self.handshake_complete:
            try:
                done = self._impl.handshake()
            except TlsError as e:
                self._fail(e)
            if not done:
                return
            self._established()
        self._flush_writes()
        while len(self._plain_in) < MAX_PLAINTEXT:
            try:
                chunk = self._impl.read()
            except TlsError as e:
                self._fail(e)
            if chunk is None:  # needs more ciphertext
                break
            if not chunk:  # close_notify, or the transport's end without one
                self.peer_closed = self._impl.saw_close_notify()
                self.truncated = not self.peer_closed
                self._closed("close_notify" if self.peer_closed else "truncated")
                break
            if self.sink is not None and not self._plain_in:
                self.sink(chunk)
            else:
                self._plain_in += chunk

    def _established(self):
        impl = self._impl
        self.handshake_complete = True
        self._deadline = None
        self.version = impl.version()
        self.cipher = impl.cipher()
        if self.version != VERSION or self.cipher != CIPHER:
            self._fail(TlsError("handshake", "TLS: negotiated %s %s, ISO 15118-2 needs %s %s"
                                % (self.version, self.cipher, VERSION, CIPHER)))
        if not self.server_side:
            self.peer_certificate = impl.peer_certificate()
            expected = self.context.expected_dc
            try:
                if expected is None:
                    self.peer_dc = leaf_dc(self.peer_certificate) if self.peer_certificate else None
                else:
                    self.peer_dc = check_leaf_dc(self.peer_certificate, expected)
            except PeerError as e:
                if not isinstance(e, TlsError):
                    e = TlsError("dc", "TLS: the SECC leaf certificate cannot be parsed: %s" % (e,))
                impl.close_notify()  # a clean close: the handshake is over, so no alert can name the fault
                self._fail(e)
        self._events.append(("established", None))

    def _flush_writes(self):
        if not self.handshake_complete:
            return
        while self._plain_out:
            try:
                self._impl.write(self._plain_out[0])
            except TlsError as e:
                self._fail(e)
            self._plain_out.pop(0)
