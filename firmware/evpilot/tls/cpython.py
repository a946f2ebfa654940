# The CPython backend of evpilot.tls: ssl.SSLObject between two ssl.MemoryBIOs.
#
# How this works: client_context() / server_context() build the ssl.SSLContext: TLS 1.2 minimum and maximum,
# cipher list "ECDHE-ECDSA-AES128-SHA256", group prime256v1, no renegotiation; the client verifies the chain
# against the V2G roots (CERT_REQUIRED, check_hostname off: ISO 15118-2 has no hostname check), so OpenSSL
# refuses a bad chain during the handshake with an alert; the leaf's DC is checked by the connection right
# after the handshake. keylog=path sets SSLContext.keylog_filename: OpenSSL appends NSS key log lines
# ("CLIENT_RANDOM <client random> <master secret>" for TLS 1.2) that Wireshark reads. Backend is what
# evpilot.tls.connection.TlsConnection drives: feed/feed_eof/take_output, handshake() -> bool, read() ->
# bytes (b"" at the end) or None (wants input), write, close_notify, release, and what was negotiated.

import ssl

from evpilot.errors import UsageError
from evpilot.tls import records
from evpilot.tls.connection import CIPHER, CURVE, TlsContext, TlsError

_READ_CHUNK = 16384  # one TLS record at most


def _tls12_only(ctx):
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHER)
    ctx.set_ecdh_curve(CURVE)
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)


def client_context(roots, keylog, expected_dc, clock):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _tls12_only(ctx)
    ctx.check_hostname = False  # ISO 15118-2: no hostname check; the DC check replaces it
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=b"".join(roots))
    if keylog is not None:
        _keylog_file(keylog)
        ctx.keylog_filename = str(keylog)
    return TlsContext(ctx, False, expected_dc, roots, clock)


def server_context(chain, key, keylog, password):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _tls12_only(ctx)
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(chain), str(key), password)
    if keylog is not None:
        _keylog_file(keylog)
        ctx.keylog_filename = str(keylog)
    return TlsContext(ctx, True)


def _keylog_file(path):
    """Create the key log readable by its owner only (it decrypts every session) before OpenSSL appends."""
    import os

    try:
        fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)  # a key log left by an older run keeps its mode otherwise
        finally:
            os.close(fd)
    except OSError as e:
        raise UsageError("TLS key log %s: %s" % (path, e.strerror or e))


def _reason(e):
    text = getattr(e, "reason", None) or ""
    return text.lower().replace("_", " ") if text else str(e)


class Backend:
    def __init__(self, context):
        self.context = context
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.ssl_context.wrap_bio(self.incoming, self.outgoing, server_side=context.server_side)
        self.close_notify_seen = False
        self.hello = records.HelloWatcher() if not context.server_side else None

    def feed(self, data):
        self.incoming.write(data)
        return len(data)

    def feed_eof(self):
        self.incoming.write_eof()

    def take_output(self):
        out = self.outgoing.read()
        if self.hello is not None and out:
            self.hello.feed(out)
        return out

    def client_random(self):
        return self.hello.random if self.hello is not None else None

    def handshake(self):
        try:
            self.obj.do_handshake()
            return True
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLCertVerificationError as e:
            raise TlsError("verify", "TLS: the SECC certificate chain does not verify against the V2G roots: %s"
                           % (e.verify_message or _reason(e),))
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            raise TlsError("handshake", "TLS: the peer closed the connection during the handshake")
        except ssl.SSLError as e:
            raise TlsError("handshake", "TLS handshake failed: %s" % (_reason(e),))

    def peer_certificate(self):
        return self.obj.getpeercert(binary_form=True)

    def read(self):
        try:
            got = self.obj.read(_READ_CHUNK)
            if not got:  # CPython returns b"" (not SSLZeroReturnError) once close_notify arrived
                self.close_notify_seen = True
            return got
        except ssl.SSLWantReadError:
            return None
        except ssl.SSLZeroReturnError:
            self.close_notify_seen = True
            return b""
        except ssl.SSLEOFError:  # transport EOF without close_notify
            return b""
        except ssl.SSLError as e:
            raise TlsError("protocol", "TLS: bad data from the peer: %s" % (_reason(e),))

    def saw_close_notify(self):
        return self.close_notify_seen

    def write(self, data):
        try:
            self.obj.write(data)
        except ssl.SSLError as e:
            raise TlsError("protocol", "TLS: cannot send: %s" % (_reason(e),))

    def close_notify(self):
        try:
            self.obj.unwrap()
        except ssl.SSLError:
            pass  # our close_notify is out; the peer's may come later or not at all

    def release(self):
        pass  # nothing held outside Python's own objects

    def cipher(self):
        c = self.obj.cipher()
        return c[0] if c else None

    def version(self):
        return self.obj.version()
