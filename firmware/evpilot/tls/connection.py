# TLS for ISO 15118-2: TLS 1.2 only, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 (0xC023) on secp256r1, server
# authentication only (reference/plug-and-charge.md 5). The EV verifies the SECC chain against its V2G roots
# and then checks that the leaf's domain component is CPO; there is no hostname check.
#
# How this works
# --------------
# TlsConnection is sans-I/O like the other cores: receive(ciphertext) / receive_eof() take what the transport
# delivered, read() returns decrypted plaintext, write(plaintext) queues application data (held until the
# handshake is complete), data_to_send() returns ciphertext for the transport, close() queues close_notify.
# Any failure raises TlsError (a PeerError) with `reason` "verify" (the chain does not verify against the
# roots), "dc" (the leaf's DC is not the expected one), "handshake" (no agreement: version, suite, curve, an
# alert from the peer, the peer closed), "protocol" (a bad record after the handshake); ciphertext queued by
# the failure (the fatal alert) is still in data_to_send() so the caller can deliver it before closing.
#
# CPython: ssl.SSLObject over two ssl.MemoryBIOs, so the same connection can run over an asyncio stream
# (wrap() below) or, later, over the board's own sans-I/O TCP. client_context(cadata) / server_context(chain,
# key) build the ssl.SSLContext: TLS 1.2 minimum and maximum, cipher list "ECDHE-ECDSA-AES128-SHA256",
# group prime256v1, client CERT_REQUIRED against the roots with check_hostname off. keylog=path sets
# SSLContext.keylog_filename: OpenSSL appends NSS key log lines ("CLIENT_RANDOM <client random> <master
# secret>" for TLS 1.2) that Wireshark reads. The leaf's DC is read with evpilot.pnc.x509 (pure Python, the
# firmware's own parser), or with cryptography when the firmware parser is not importable.
#
# MicroPython (compat.MICROPYTHON): the mbedTLS `ssl`/`tls` module wraps a user stream, _BioStream (an
# io.IOBase with readinto/write/ioctl; readinto returns None for "try again", ioctl answers close (4) and
# poll (3)), which plays the part of the memory BIOs, so TlsConnection keeps the same interface there. The
# handshake advances inside the wrapped socket's read()/write(), which return None while it needs more input.
# mbedTLS insists on server_hostname when verification is CERT_REQUIRED and matches it against the leaf's
# name; an SECC's name is its SECC ID, not known in advance. So: with expected_name given, CERT_REQUIRED with
# that name; without it, CERT_OPTIONAL, the chain collected through SSLContext.verify_callback (where the
# port has it) and validated after the handshake with evpilot.pnc.chain (purpose "secc": DC CPO, V2G root)
# and evpilot.pnc.p256. There is no key log on MicroPython, and no server side.
# THE MICROPYTHON PATH IS UNTESTED: the webassembly port the test suite runs has no ssl module, and no board
# was at hand. It compiles with mpy-cross; treat it as a first draft to be tried on a board.

from evpilot import compat
from evpilot.errors import PeerError, UsageError

CIPHER = "ECDHE-ECDSA-AES128-SHA256"  # OpenSSL's name for 0xC023
CIPHER_IANA = "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"
CIPHER_MBEDTLS = "TLS-ECDHE-ECDSA-WITH-AES-128-CBC-SHA256"
CIPHER_ID = 0xC023
CURVE = "prime256v1"  # secp256r1
VERSION = "TLSv1.2"
EXPECTED_DC = "CPO"

_READ_CHUNK = 16384  # one TLS record at most
_MAX_PLAINTEXT = 65536  # more undelivered plaintext than this means the reader is not keeping up


class TlsError(PeerError):
    """TLS failed. `reason`: "verify", "dc", "handshake", "protocol"."""

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
    """The domain component values of a certificate's subject (the firmware parser when importable)."""
    try:
        from evpilot.pnc import x509
    except ImportError:  # pragma: no cover - a build without pnc
        x509 = None
    if x509 is not None:
        return list(x509.parse(der).dc)
    from cryptography import x509 as cx509  # pragma: no cover - host fallback
    from cryptography.x509.oid import NameOID  # pragma: no cover

    cert = cx509.load_der_x509_certificate(der)  # pragma: no cover
    return [a.value for a in cert.subject.get_attributes_for_oid(NameOID.DOMAIN_COMPONENT)]  # pragma: no cover


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


# --- CPython: ssl over memory BIOs -----------------------------------------------------------------------

_ssl = None
if not compat.MICROPYTHON:
    try:
        import ssl as _ssl
    except ImportError:  # pragma: no cover - CPython built without ssl
        _ssl = None


class TlsContext:
    """What a TlsConnection needs: the platform's SSL context, which side, and the leaf DC to require
    (client only; None: no DC check). Build it with client_context()/server_context(); tests may wrap an
    ssl.SSLContext of their own to play a misconfigured peer."""

    def __init__(self, ssl_context, server_side, expected_dc=None, roots=None, expected_name=None):
        self.ssl_context = ssl_context
        self.server_side = server_side
        self.expected_dc = expected_dc
        self.roots = roots  # DER list (MicroPython's own validation needs them)
        self.expected_name = expected_name


def _need_cpython_ssl():
    if _ssl is None:
        raise UsageError("TLS: this interpreter has no ssl module")


def _tls12_only(ctx):
    ctx.minimum_version = _ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = _ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHER)
    ctx.set_ecdh_curve(CURVE)
    ctx.options |= getattr(_ssl, "OP_NO_RENEGOTIATION", 0)


def client_context(cadata, keylog=None, expected_dc=EXPECTED_DC, expected_name=None):
    """The EV's context: verify the SECC against `cadata` (the V2G roots: DER, PEM or a list), then require
    DC=`expected_dc` on the leaf. `keylog`: path of an NSS key log file to append to (CPython only).
    `expected_name`: the SECC's certificate name when known (used on MicroPython only, see above)."""
    roots = roots_der(cadata)
    if compat.MICROPYTHON:
        return _mp_client_context(roots, keylog, expected_dc, expected_name)
    _need_cpython_ssl()
    ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    _tls12_only(ctx)
    ctx.check_hostname = False  # ISO 15118-2: no hostname check; the DC check replaces it
    ctx.verify_mode = _ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=b"".join(roots))
    if keylog is not None:
        ctx.keylog_filename = str(keylog)
    return TlsContext(ctx, False, expected_dc, roots, expected_name)


def server_context(chain, key, keylog=None, password=None):
    """The station's context (CPython only): `chain` a PEM file with the SECC leaf first, then its Sub-CAs
    (secc_chain.pem), `key` the leaf's private key file. No client certificate is asked for."""
    if compat.MICROPYTHON:
        raise UsageError("TLS server side: CPython only")
    _need_cpython_ssl()
    ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_SERVER)
    _tls12_only(ctx)
    ctx.verify_mode = _ssl.CERT_NONE
    ctx.load_cert_chain(str(chain), str(key), password)
    if keylog is not None:
        ctx.keylog_filename = str(keylog)
    return TlsContext(ctx, True)


def _reason(e):
    text = getattr(e, "reason", None) or ""
    text = text.lower().replace("_", " ") if text else str(e)
    return text


class TlsConnection:
    """One TLS connection, either side, sans-I/O (see the module comment)."""

    def __init__(self, context):
        if not isinstance(context, TlsContext):
            raise UsageError("TlsConnection needs a TlsContext (client_context() or server_context())")
        self.context = context
        self.server_side = context.server_side
        self.handshake_complete = False
        self.peer_closed = False  # close_notify received
        self.eof = False  # the transport ended
        self.truncated = False  # ... without close_notify
        self.closing = False  # our close_notify is queued
        self.failed = None  # the TlsError, once failed
        self.peer_certificate = None  # the peer's leaf DER (client side)
        self.peer_dc = None
        self.client_random = None  # from our ClientHello (client side), for matching the key log
        self._plain_in = b""
        self._plain_out = []
        self._out = b""
        if compat.MICROPYTHON:
            self._impl = _MpImpl(context)
        else:
            _need_cpython_ssl()
            self._impl = _CpImpl(context)
        self._progress()

    # -- transport side --

    def receive(self, data):
        """Ciphertext from the transport. Raises TlsError."""
        if self.failed is not None:
            raise self.failed
        if data:
            self._impl.feed(data)
        self._progress()

    def receive_eof(self):
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

    def data_to_send(self):
        """Ciphertext for the transport (b"" when there is none)."""
        out = self._out + self._impl.take_output()
        self._out = b""
        if self.client_random is None and not self.server_side and len(out) >= 43 and out[0] == 0x16 \
                and out[5] == 0x01:
            # record header (5) + handshake header (4) + client_version (2), then the 32-byte random
            self.client_random = bytes(out[11:43])
        return out

    # -- application side --

    def read(self, n=-1):
        """Decrypted plaintext, at most `n` bytes (all with -1); b"" when none is waiting."""
        if n < 0 or n >= len(self._plain_in):
            data, self._plain_in = self._plain_in, b""
        else:
            data, self._plain_in = self._plain_in[:n], self._plain_in[n:]
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
        if data:
            self._plain_out.append(bytes(data))
        self._progress()

    def close(self):
        """Queue close_notify (no more writes). Safe to call more than once or after a failure."""
        if self.closing:
            return
        self.closing = True
        if self.failed is not None or not self.handshake_complete:
            return
        self._flush_writes()
        self._impl.close_notify()

    # -- what was negotiated --

    @property
    def cipher(self):
        return self._impl.cipher() if self.handshake_complete else None

    @property
    def version(self):
        return self._impl.version() if self.handshake_complete else None

    # -- inside --

    def _fail(self, error):
        self.failed = error
        self._out += self._impl.take_output()  # the fatal alert, if any
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
            self.handshake_complete = True
            if not self.server_side:
                self.peer_certificate = self._impl.peer_certificate()
                try:
                    self.peer_dc = self._impl.after_handshake(self.peer_certificate)
                except TlsError as e:
                    self._fail(e)
        self._flush_writes()
        while len(self._plain_in) < _MAX_PLAINTEXT:
            try:
                chunk = self._impl.read(_READ_CHUNK)
            except TlsError as e:
                self._fail(e)
            if chunk is None:  # needs more ciphertext
                break
            if not chunk:  # close_notify, or the transport's end without one
                self.peer_closed = self._impl.saw_close_notify()
                self.truncated = not self.peer_closed
                break
            self._plain_in += chunk

    def _flush_writes(self):
        if not self.handshake_complete:
            return
        while self._plain_out:
            try:
                self._impl.write(self._plain_out[0])
            except TlsError as e:
                self._fail(e)
            self._plain_out.pop(0)


class _CpImpl:
    """CPython: SSLObject between two MemoryBIOs."""

    def __init__(self, context):
        self.context = context
        self.incoming = _ssl.MemoryBIO()
        self.outgoing = _ssl.MemoryBIO()
        self.obj = context.ssl_context.wrap_bio(self.incoming, self.outgoing, server_side=context.server_side)
        self.close_notify_seen = False

    def feed(self, data):
        self.incoming.write(data)

    def feed_eof(self):
        self.incoming.write_eof()

    def take_output(self):
        return self.outgoing.read()

    def handshake(self):
        try:
            self.obj.do_handshake()
            return True
        except _ssl.SSLWantReadError:
            return False
        except _ssl.SSLCertVerificationError as e:
            raise TlsError("verify", "TLS: the SECC certificate chain does not verify against the V2G roots: %s"
                           % (e.verify_message or _reason(e),))
        except _ssl.SSLZeroReturnError:
            raise TlsError("handshake", "TLS: the peer closed the connection during the handshake")
        except _ssl.SSLEOFError:
            raise TlsError("handshake", "TLS: the peer closed the connection during the handshake")
        except _ssl.SSLError as e:
            raise TlsError("handshake", "TLS handshake failed: %s" % (_reason(e),))

    def peer_certificate(self):
        return self.obj.getpeercert(binary_form=True)

    def after_handshake(self, leaf):
        if self.context.expected_dc is None:
            return leaf_dc(leaf) if leaf else None
        return check_leaf_dc(leaf, self.context.expected_dc)

    def read(self, n):
        try:
            got = self.obj.read(n)
            if not got:  # CPython returns b"" (not SSLZeroReturnError) once close_notify arrived
                self.close_notify_seen = True
            return got
        except _ssl.SSLWantReadError:
            return None
        except _ssl.SSLZeroReturnError:
            self.close_notify_seen = True
            return b""
        except _ssl.SSLEOFError:  # transport EOF without close_notify
            return b""
        except _ssl.SSLError as e:
            raise TlsError("protocol", "TLS: bad data from the peer: %s" % (_reason(e),))

    def saw_close_notify(self):
        return self.close_notify_seen

    def write(self, data):
        try:
            self.obj.write(data)
        except _ssl.SSLError as e:
            raise TlsError("protocol", "TLS: cannot send: %s" % (_reason(e),))

    def close_notify(self):
        try:
            self.obj.unwrap()
        except (_ssl.SSLWantReadError, _ssl.SSLZeroReturnError, _ssl.SSLEOFError):
            pass  # our close_notify is out; the peer's may come later or not at all
        except _ssl.SSLError:
            pass

    def cipher(self):
        c = self.obj.cipher()
        return c[0] if c else None

    def version(self):
        return self.obj.version()


# --- MicroPython: mbedTLS over a user stream (UNTESTED, see the module comment) ---------------------------

_MP_POLL = 3  # MP_STREAM_POLL
_MP_CLOSE = 4  # MP_STREAM_CLOSE
_MP_POLL_RD = 0x0001
_MP_POLL_WR = 0x0004


def _mp_ssl():
    try:
        import tls as mod  # MicroPython 1.23+
    except ImportError:
        try:
            import ssl as mod
        except ImportError:
            raise UsageError("TLS: this MicroPython build has no ssl/tls module")
    return mod


def _mp_client_context(roots, keylog, expected_dc, expected_name):
    if keylog is not None:
        raise UsageError("TLS key log: CPython only (mbedTLS in MicroPython has no key log hook)")
    mod = _mp_ssl()
    ctx = mod.SSLContext(mod.PROTOCOL_TLS_CLIENT)
    try:
        ctx.set_ciphers([CIPHER_MBEDTLS])
    except (AttributeError, ValueError, OSError):
        pass  # older builds: mbedTLS's defaults include 0xC023; cipher() is checked after the handshake
    if expected_name is not None:
        ctx.verify_mode = mod.CERT_REQUIRED
    else:
        ctx.verify_mode = mod.CERT_OPTIONAL  # verified by evpilot.pnc.chain after the handshake
    for der in roots:
        ctx.load_verify_locations(cadata=der)
    return TlsContext(ctx, False, expected_dc, roots, expected_name)


try:
    import io as _io

    _IOBase = _io.IOBase
except (ImportError, AttributeError):  # pragma: no cover
    _IOBase = object


class _BioStream(_IOBase):
    """The transport as mbedTLS sees it on MicroPython: bytes fed in, bytes taken out."""

    def __init__(self):
        self.incoming = b""
        self.outgoing = b""
        self.eof = False

    def readinto(self, buf):
        if not self.incoming:
            return 0 if self.eof else None  # None: try again
        n = min(len(buf), len(self.incoming))
        buf[:n] = self.incoming[:n]
        self.incoming = self.incoming[n:]
        return n

    def write(self, buf):
        self.outgoing += bytes(buf)
        return len(buf)

    def ioctl(self, req, arg):
        if req == _MP_CLOSE:
            return 0
        if req == _MP_POLL:
            ready = _MP_POLL_WR
            if self.incoming or self.eof:
                ready |= _MP_POLL_RD
            return ready & arg
        return -1


class _MpImpl:
    """MicroPython: the port's SSLSocket over _BioStream. Handshake progress is seen through read()/write()
    returning None (wants more input) and getpeercert() turning non-None once the session is established."""

    def __init__(self, context):
        if context.server_side:
            raise UsageError("TLS server side: CPython only")
        self.context = context
        self.bio = _BioStream()
        self.chain = {}  # depth -> DER, from verify_callback (CERT_OPTIONAL mode)
        ctx = context.ssl_context
        if context.expected_name is None:
            try:
                ctx.verify_callback = self._collect
            except (AttributeError, TypeError):
                raise UsageError("TLS on this MicroPython build needs expected_name (the SECC's certificate "
                                 "name): it cannot hand the chain over for our own validation")
        self.sock = ctx.wrap_socket(self.bio, server_side=False, do_handshake_on_connect=False,
                                    server_hostname=context.expected_name)
        self.pending = None  # one plaintext chunk read while probing the handshake
        self.done = False
        self.closed_seen = False

    def _collect(self, cert, depth):
        self.chain[depth] = bytes(cert)
        return 0

    def feed(self, data):
        self.bio.incoming += bytes(data)

    def feed_eof(self):
        self.bio.eof = True

    def take_output(self):
        out, self.bio.outgoing = self.bio.outgoing, b""
        return out

    def _call(self, fn, arg):
        try:
            return fn(arg)
        except ValueError as e:  # the port raises ValueError with mbedTLS's verify text
            raise TlsError("verify", "TLS: the SECC certificate chain does not verify against the V2G roots: %s"
                           % (e,))
        except OSError as e:
            if self.done:
                raise TlsError("protocol", "TLS: bad data from the peer: %s" % (e,))
            raise TlsError("handshake", "TLS handshake failed: %s" % (e,))

    def handshake(self):
        if self.done:
            return True
        got = self._call(self.sock.read, _READ_CHUNK)  # drives the handshake; None: wants input
        if got:
            self.pending = got
        elif got is not None and got == b"":
            raise TlsError("handshake", "TLS: the peer closed the connection during the handshake")
        try:
            self.done = self.sock.getpeercert(True) is not None
        except (AttributeError, NotImplementedError, OSError):
            self.done = bool(got)  # no getpeercert: the first application data proves it
        return self.done

    def peer_certificate(self):
        try:
            return self.sock.getpeercert(True)
        except (AttributeError, NotImplementedError, OSError):
            return self.chain.get(0)

    def after_handshake(self, leaf):
        ctx = self.context
        name, version = self.cipher(), self.version()
        if name is not None and name != CIPHER_MBEDTLS:
            raise TlsError("handshake", "TLS: negotiated %s, ISO 15118-2 needs %s" % (name, CIPHER_MBEDTLS))
        if version is not None and version != VERSION:
            raise TlsError("handshake", "TLS: negotiated %s, ISO 15118-2 needs %s" % (version, VERSION))
        if ctx.expected_name is None:
            self._validate_chain(leaf)
        if ctx.expected_dc is None:
            return leaf_dc(leaf) if leaf else None
        return check_leaf_dc(leaf, ctx.expected_dc)

    def _validate_chain(self, leaf):
        from evpilot.pnc import chain, p256

        leaf = leaf or self.chain.get(0)
        if leaf is None:
            raise TlsError("verify", "TLS: the SECC certificate chain was not seen (no verify_callback)")
        subs = []
        depth = 1
        while depth in self.chain:
            der = self.chain[depth]
            if der not in self.context.roots:
                subs.append(der)
            depth += 1
        try:
            # now_s None: the EV has no trusted time here; mbedTLS already checked validity on its clock.
            chain.validate(leaf, subs, self.context.roots, None, "secc", p256.verify)
        except PeerError as e:
            reason = getattr(e, "reason", "")
            if reason == "wrong_dc":
                raise TlsError("dc", "TLS: %s" % (e,))
            raise TlsError("verify", "TLS: the SECC certificate chain does not verify against the V2G roots: %s"
                           % (e,))

    def read(self, n):
        if self.pending:
            got, self.pending = self.pending, None
            return got
        try:
            got = self._call(self.sock.read, n)
        except TlsError:
            if self.bio.eof and not self.bio.incoming:
                return b""  # the transport ended without close_notify (mbedTLS: connection EOF)
            raise
        if got == b"":  # the port's read returns b"" on close_notify
            self.closed_seen = True
        return got

    def saw_close_notify(self):
        return self.closed_seen

    def write(self, data):
        view = memoryview(data)
        while len(view):
            n = self._call(self.sock.write, view)
            if n is None:  # would block: impossible with _BioStream after the handshake
                raise TlsError("protocol", "TLS: could not send (the session wants input)")
            view = view[n:]

    def close_notify(self):
        # The port sends no close_notify on close(); closing frees the session.
        try:
            self.sock.close()
        except OSError:
            pass

    def cipher(self):
        try:
            return self.sock.cipher()[0]
        except (AttributeError, OSError, TypeError):
            return None

    def version(self):
        try:
            return self.sock.cipher()[1]
        except (AttributeError, OSError, TypeError):
            return None


# --- asyncio: a (reader, writer) pair carrying plaintext --------------------------------------------------


class TlsReader:
    """Reads plaintext; what evpilot.net.stream.drive needs of a StreamReader (read)."""

    def __init__(self, tls, reader, writer, chunk=4096):
        self.tls = tls
        self._reader = reader
        self._writer = writer
        self._chunk = chunk

    async def read(self, n=-1):
        # Cancellation-safe: the only await is the transport's read, and nothing is lost while waiting there.
        while True:
            data = self.tls.read(n)
            if data:
                return data
            if self.tls.at_eof or self.tls.failed is not None:
                return b""
            chunk = await self._reader.read(self._chunk)
            try:
                if chunk:
                    self.tls.receive(chunk)
                else:
                    self.tls.receive_eof()
            finally:
                out = self.tls.data_to_send()
                if out:
                    self._writer.write(out)

    def at_eof(self):
        return self.tls.at_eof


class TlsWriter:
    """Writes plaintext; what evpilot.net.stream.drive needs of a StreamWriter (write, drain, close)."""

    def __init__(self, tls, writer):
        self.tls = tls
        self._writer = writer
        self.transport = getattr(writer, "transport", None)

    def write(self, data):
        self.tls.write(data)
        out = self.tls.data_to_send()
        if out:
            self._writer.write(out)

    async def drain(self):
        await self._writer.drain()

    def close(self):
        try:
            self.tls.close()
            out = self.tls.data_to_send()
            if out:
                self._writer.write(out)
        finally:
            self._writer.close()

    async def wait_closed(self):
        if hasattr(self._writer, "wait_closed"):
            await self._writer.wait_closed()

    def get_extra_info(self, name, default=None):
        if name == "cipher":
            return self.tls.cipher
        if name == "tls_version":
            return self.tls.version
        if name == "peercert":
            return self.tls.peer_certificate
        if name == "tls":
            return self.tls
        if hasattr(self._writer, "get_extra_info"):
            return self._writer.get_extra_info(name, default)
        return default


async def wrap(reader, writer, context, timeout_ms=None, chunk=4096):
    """Run the TLS handshake over an asyncio (reader, writer) pair and return a (TlsReader, TlsWriter) pair
    carrying plaintext, usable with evpilot.net.stream.drive. On failure (TlsError, or asyncio.TimeoutError
    after `timeout_ms`) the fatal alert, if any, is sent and the transport is closed."""
    try:
        import asyncio
    except ImportError:  # pragma: no cover - older MicroPython
        import uasyncio as asyncio

    tls = TlsConnection(context)

    async def run():
        while True:
            out = tls.data_to_send()
            if out:
                writer.write(out)
                await writer.drain()
            if tls.handshake_complete:
                return
            data = await reader.read(chunk)
            if data:
                tls.receive(data)
            else:
                tls.receive_eof()

    try:
        if timeout_ms is None:
            await run()
        else:
            await asyncio.wait_for(run(), timeout_ms / 1000)
    except BaseException:
        try:
            out = tls.data_to_send()
            if out:
                writer.write(out)
                await writer.drain()
        except Exception:  # the peer may be gone already
            pass
        writer.close()
        raise
    return TlsReader(tls, reader, writer, chunk), TlsWriter(tls, writer)
