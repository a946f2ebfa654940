# The MicroPython backend of evpilot.tls: the port's mbedTLS `tls` module over a user stream.
#
# How this works
# --------------
# mbedTLS reads and writes through a stream object; _Bio is one (an io.IOBase with readinto/write/ioctl):
# its input is one preallocated bytearray that receive() fills a piece at a time, readinto() returning None
# ("try again") when it is empty; what mbedTLS writes is collected for data_to_send(). The handshake
# advances inside the wrapped socket's readinto(), which returns None while it needs more input.
#
# What the port does not give, and what is done instead (MicroPython 1.22+, mbedTLS 3.x):
#   - No way to ask whether the handshake is over (getpeercert needs MBEDTLS_SSL_KEEP_PEER_CERTIFICATE, which
#     the ports leave out): two RecordWatchers follow the record layer, and the handshake is complete once
#     mbedTLS has taken the peer's Finished (the first handshake record after its ChangeCipherSpec) and
#     written its own, without an error.
#   - Chain verification that knows ISO 15118-2: CERT_REQUIRED needs server_hostname, matched against the
#     leaf's name, and an SECC's name is not known in advance. So the context uses CERT_OPTIONAL and a verify
#     callback. mbedTLS calls it for every certificate of the chain it built, from the top down to the leaf
#     (depth 0); there our own evpilot.pnc.chain validation runs (V2G root, profile, signatures with
#     evpilot.pnc.p256, DC=CPO on the leaf, validity against the context's trusted time). A refusal returns
#     MBEDTLS_ERR_X509_FATAL_ERROR, which mbedTLS does not downgrade in OPTIONAL mode: it sends a fatal alert
#     and ends the handshake; the connection then raises TlsError with our reason. The callback never raises
#     (an exception thrown through mbedTLS's C frames would leave it in an undefined state).
#   - cipher() before the handshake is over or after close() reads freed memory in some ports: it is called
#     exactly once, when the handshake has just completed, and its answer kept.
#   - close() frees the session without sending close_notify (the port has no call for it), so closing is
#     the transport's FIN; mbedTLS's own buffers are freed at once by release().
#   - No key log (mbedTLS in MicroPython has no hook for it).

import io

from evpilot.compat import const
from evpilot.errors import PeerError, UsageError
from evpilot.tls import records
from evpilot.tls.connection import CIPHER, CIPHER_MBEDTLS, TlsContext, TlsError

IN_BUFFER = const(1024)  # input bytes held for mbedTLS at once; receive() feeds larger chunks piecewise
READ_BUFFER = const(1024)  # plaintext taken from mbedTLS per call
_X509_FATAL_ERROR = const(-0x3000)  # MBEDTLS_ERR_X509_FATAL_ERROR
_ENOMEM = const(12)
_MP_STREAM_POLL = const(3)
_MP_STREAM_CLOSE = const(4)
_POLL_RD = const(0x0001)
_POLL_WR = const(0x0004)


def _module():
    try:
        import tls as mod  # MicroPython 1.23+
    except ImportError:
        try:
            import ssl as mod
        except ImportError:
            raise UsageError("TLS: this MicroPython build has no tls/ssl module")
    return mod


def client_context(roots, keylog, expected_dc, clock):
    if keylog is not None:
        raise UsageError("TLS key log: CPython only (mbedTLS in MicroPython has no key log hook)")
    mod = _module()
    ctx = mod.SSLContext(mod.PROTOCOL_TLS_CLIENT)
    _restrict(ctx)
    ctx.verify_mode = mod.CERT_OPTIONAL  # our own validation in the verify callback decides, see above
    for der in roots:
        try:
            ctx.load_verify_locations(der)  # positional: the port takes no cadata= keyword
        except (ValueError, OSError) as e:
            raise UsageError("TLS roots: mbedTLS cannot load a root certificate: %s" % (e,))
    if not hasattr(ctx, "verify_callback"):
        raise UsageError("TLS: this MicroPython build has no SSLContext.verify_callback (1.23 or newer needed)")
    return TlsContext(ctx, False, expected_dc, roots, clock)


def server_context(chain, key, keylog, password):
    """A station on MicroPython (for tests of the EV in one interpreter): `chain` and `key` are file paths or
    bytes, PEM or DER. The ports build mbedTLS without PEM parsing and load_cert_chain takes one certificate,
    so the server presents its leaf alone: a chain of one certificate is all it accepts."""
    if keylog is not None:
        raise UsageError("TLS key log: CPython only (mbedTLS in MicroPython has no key log hook)")
    if password is not None:
        raise UsageError("TLS server key password: not supported on MicroPython")
    from evpilot.pnc import x509

    certs = _ders(_bytes_of(chain), x509.pem_to_ders)
    if len(certs) != 1:
        raise UsageError("TLS server on MicroPython: mbedTLS here loads one certificate, the chain has %d"
                         % len(certs))
    keys = _ders(_bytes_of(key), _pem_blocks)
    mod = _module()
    ctx = mod.SSLContext(mod.PROTOCOL_TLS_SERVER)
    _restrict(ctx)
    ctx.verify_mode = mod.CERT_NONE
    try:
        ctx.load_cert_chain(certs[0], keys[0])
    except (ValueError, OSError) as e:
        raise UsageError("TLS server certificate/key: %s" % (e,))
    return TlsContext(ctx, True)


def _bytes_of(thing):
    if isinstance(thing, (bytes, bytearray)):
        return bytes(thing)
    with open(str(thing), "rb") as f:
        return f.read()


def _ders(data, from_pem):
    return from_pem(data) if b"-----BEGIN" in data else [data]


def _pem_blocks(data):
    """DER of each PEM block (a key file: "PRIVATE KEY", "EC PRIVATE KEY")."""
    import binascii

    found = []
    for block in data.split(b"-----BEGIN ")[1:]:
        body = block.split(b"-----", 1)[1].split(b"-----END", 1)[0]
        found.append(binascii.a2b_base64(body.replace(b"\n", b"").replace(b"\r", b"")))
    if not found:
        raise UsageError("TLS server key: no PEM block")
    return found


def _restrict(ctx):
    try:
        ctx.set_ciphers([CIPHER_MBEDTLS])
    except (AttributeError, ValueError, OSError):
        pass  # older builds: mbedTLS's defaults include 0xC023; the negotiated suite is checked afterwards


try:
    _IOBase = io.IOBase
except AttributeError:  # pragma: no cover
    _IOBase = object


class _Bio(_IOBase):
    """The transport as mbedTLS sees it: one fixed input buffer, and what it writes."""

    def __init__(self):
        self.buf = bytearray(IN_BUFFER)
        self.view = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self.eof = False
        self.taken = 0  # bytes handed to mbedTLS so far
        self.out = []
        self.in_watch = records.RecordWatcher()
        self.out_watch = None

    def put(self, data):
        """Copy as much of `data` as fits; returns how much was taken."""
        if self.start == self.end:
            self.start = self.end = 0
        elif self.start and self.end == IN_BUFFER:
            left = self.end - self.start
            self.buf[:left] = self.view[self.start:self.end]
            self.start, self.end = 0, left
        n = min(len(data), IN_BUFFER - self.end)
        if n:
            self.view[self.end:self.end + n] = data[:n]
            self.in_watch.feed(data[:n])
            self.end += n
        return n

    def readinto(self, b, n=-1):
        left = self.end - self.start
        if not left:
            return 0 if self.eof else None  # None: would block
        k = len(b) if n < 0 else min(n, len(b))
        k = min(k, left)
        b[:k] = self.view[self.start:self.start + k]
        self.start += k
        self.taken += k
        return k

    def write(self, b):
        data = bytes(b)
        self.out.append(data)
        if self.out_watch is not None:
            self.out_watch.feed(data)
        return len(data)

    def ioctl(self, req, arg):
        if req == _MP_STREAM_CLOSE:
            return 0
        if req == _MP_STREAM_POLL:
            ready = _POLL_WR
            if self.end > self.start or self.eof:
                ready |= _POLL_RD
            return ready & arg
        return -1


class Backend:
    def __init__(self, context):
        self.context = context
        self.bio = _Bio()
        self.bio.out_watch = records.RecordWatcher(keep_random=not context.server_side)
        self.chain = []  # DER of each certificate the verify callback saw, top first
        self.refusal = None  # our TlsError from the verify callback
        self.leaf = None
        self.done = False
        self.closed_seen = False
        self.released = False
        self.failed = False
        self.pending = None  # plaintext read while driving the handshake
        self.rbuf = bytearray(READ_BUFFER)
        self.rview = memoryview(self.rbuf)
        self._cipher = None
        self._version = None
        ctx = context.ssl_context
        if not context.server_side:
            ctx.verify_callback = self._verify
        try:
            self.sock = ctx.wrap_socket(self.bio, server_side=context.server_side, do_handshake_on_connect=False)
        except (OSError, ValueError) as e:
            raise TlsError(_errno_reason(e), "TLS: cannot start a session: %s" % (_text(e),))

    # -- the verify callback (runs inside mbedTLS: never raises) --

    def _verify(self, cert, depth):
        try:
            self.chain.append(bytes(cert))
            if depth != 0:
                return 0
            self.leaf = self.chain[-1]
            self._validate()
            return 0
        except TlsError as e:
            self.refusal = e
        except PeerError as e:
            self.refusal = TlsError("verify", "TLS: the SECC certificate chain is refused: %s" % (e,))
        except MemoryError:
            self.refusal = TlsError("memory", "TLS: out of memory while checking the SECC certificate chain")
        except Exception as e:  # our own bug must still end the handshake, not cross mbedTLS's C frames
            self.refusal = TlsError("verify", "TLS: the SECC certificate chain cannot be checked: %r" % (e,))
        return _X509_FATAL_ERROR

    def _validate(self):
        from evpilot.pnc import chain, p256

        ctx = self.context
        roots = ctx.roots or ()
        # self.chain is top first; mbedTLS includes the trust anchor it found, which we match ourselves.
        subs = [d for d in self.chain[:-1] if d not in roots]
        subs.reverse()  # leaf's issuer first, as chain.validate takes them
        now_s = ctx.clock() if ctx.clock is not None else None
        try:
            chain.validate(self.leaf, subs, roots, now_s, "secc", p256.verify)
        except PeerError as e:
            reason = getattr(e, "reason", "")
            if reason == "wrong_dc":
                raise TlsError("dc", "TLS: %s" % (e,))
            raise TlsError("verify", "TLS: the SECC certificate chain does not verify against the V2G roots: %s"
                           % (e,))

    # -- what TlsConnection drives --

    def feed(self, data):
        return self.bio.put(data)

    def feed_eof(self):
        self.bio.eof = True

    def take_output(self):
        out = self.bio.out
        if not out:
            return b""
        self.bio.out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def client_random(self):
        return self.bio.out_watch.random

    def _call(self, fn, arg):
        if self.released:
            raise TlsError("protocol", "TLS: the session is closed")
        try:
            return fn(arg)
        except OSError as e:
            self.failed = True
            raise self._error(e)
        except ValueError as e:  # the port raises ValueError with mbedTLS's verify text (CERT_REQUIRED)
            self.failed = True
            raise TlsError("verify", "TLS: the SECC certificate chain does not verify: %s" % (e,))

    def _error(self, e):
        if self.refusal is not None:
            return self.refusal
        peer_alert = self.bio.in_watch.alert
        if not self.done:
            if peer_alert is not None:
                return TlsError("handshake", "TLS: the peer refused the handshake: %s" % records.alert_text(peer_alert))
            if self.bio.eof and self.bio.start == self.bio.end:
                return TlsError("handshake", "TLS: the peer closed the connection during the handshake")
            return TlsError(_errno_reason(e, "handshake"), "TLS handshake failed: %s" % (_text(e),))
        return TlsError(_errno_reason(e, "protocol"), "TLS: bad data from the peer: %s" % (_text(e),))

    def handshake(self):
        if self.done:
            return True
        n = self._call(self.sock.readinto, self.rbuf)
        if n:
            self.pending = bytes(self.rview[:n])
        elif n == 0:
            raise TlsError("handshake", "TLS: the peer closed the connection during the handshake")
        i, o = self.bio.in_watch, self.bio.out_watch
        if i.finished_end is not None and self.bio.taken >= i.finished_end and o.finished_end is not None \
                and o.pos >= o.finished_end:
            self.done = True
            try:
                name, version = self.sock.cipher()
            except (AttributeError, OSError, TypeError, ValueError):
                name, version = None, None
            self._cipher = CIPHER if name == CIPHER_MBEDTLS else name
            self._version = version
        return self.done

    def peer_certificate(self):
        return self.leaf

    def read(self):
        if self.pending is not None:
            got, self.pending = self.pending, None
            return got
        if self.released:  # we closed: the session is freed, and nothing more is read from it
            return b""
        try:
            n = self._call(self.sock.readinto, self.rbuf)
        except TlsError:
            if self.bio.eof and self.bio.start == self.bio.end:
                return b""  # the transport ended without close_notify (mbedTLS: connection EOF)
            raise
        if n is None:
            return None
        if n == 0:  # the port's read gives 0 on close_notify
            self.closed_seen = True
            return b""
        return self.rview[:n]  # a view of the read buffer: the connection appends it before the next read

    def saw_close_notify(self):
        return self.closed_seen

    def write(self, data):
        view = memoryview(data)
        while len(view):
            n = self._call(self.sock.write, view)
            if n is None:  # would block: impossible with _Bio after the handshake
                raise TlsError("protocol", "TLS: could not send (the session wants input)")
            view = view[n:]

    def close_notify(self):
        self.release()  # the port sends no close_notify, see the module comment

    def release(self):
        if self.released:
            return
        self.released = True
        try:
            self.sock.close()  # frees mbedTLS's session and record buffers now, not at the next collection
        except OSError:
            pass
        self.chain = []

    def cipher(self):
        return self._cipher

    def version(self):
        return self._version


def _text(e):
    args = getattr(e, "args", ())
    if len(args) >= 2:
        return "%s (%s)" % (args[1], args[0])
    if args:
        return str(args[0])
    return repr(e)


def _errno_reason(e, default="handshake"):
    args = getattr(e, "args", ())
    if args and args[0] == _ENOMEM:
        return "memory"
    return default
