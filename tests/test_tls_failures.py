"""TLS failure cases against the firmware's EV on both interpreters: CPython (evpilot.tls.cpython, OpenSSL)
and the real MicroPython unix port (evpilot.tls.micropython, mbedTLS), over loopback TCP.

A misbehaving station (a thread with an ssl.SSLObject over memory BIOs on a raw socket, so that it can stop
half-way or corrupt a record) serves one connection; the EV is tests/firmware/tls_probe.py run as a process
under the interpreter, an ISO-2 session behind evpilot.tls.TlsEndpoint. Each case checks how TLS ended
(the error's reason and text), that the EV is in its safe state (session failed or never started,
contactors open), and what the station saw: a fatal alert, or a clean close."""

import datetime
import json
import os
import socket
import ssl
import subprocess
import sys
import threading

import evpilot_mp_unix as mp_unix
import pytest

from vectors import ROOT

PROBE = os.path.join(ROOT, "tests", "firmware", "tls_probe.py")


def tls_cipher():
    from evpilot import tls

    return tls.CIPHER
INTERPRETERS = ("cpython", "micropython")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tlsfail") / "pki"
    done = subprocess.run([sys.executable, "-m", "evpilot_host.cli", "pki", "init", str(directory)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    _expired_leaf(directory)
    _direct_leaf(directory)
    return directory


def _leaf(directory, issuer_name, not_before, not_after):
    """A copy of the SECC leaf (same name and extensions) for a new key, signed by `issuer_name` (DER and
    key files of that name in `directory`): (certificate, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    leaf = x509.load_der_x509_certificate((directory / "secc_leaf.der").read_bytes())
    issuer = x509.load_der_x509_certificate((directory / (issuer_name + ".der")).read_bytes())
    issuer_key = serialization.load_pem_private_key((directory / (issuer_name + ".key")).read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(leaf.subject).issuer_name(issuer.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after))
    for ext in leaf.extensions:
        if isinstance(ext.value, x509.SubjectKeyIdentifier):
            builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        elif isinstance(ext.value, x509.AuthorityKeyIdentifier):
            ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                                            False)
        else:
            builder = builder.add_extension(ext.value, ext.critical)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _direct_leaf(directory):
    """secc_direct.pem/.key: an SECC leaf signed by the V2G root itself (a chain without Sub-CAs)."""
    import datetime

    from cryptography.hazmat.primitives import serialization

    now = datetime.datetime.now(datetime.timezone.utc)
    cert, key = _leaf(directory, "v2g_root", now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))
    (directory / "secc_direct.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "secc_direct.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _expired_leaf(directory):
    """secc_expired_chain.pem: a copy of the SECC leaf whose validity ended yesterday, signed by the CPO
    Sub-CA 2, with the same Sub-CAs."""
    from cryptography.hazmat.primitives import serialization

    now = datetime.datetime.now(datetime.timezone.utc)
    cert, key = _leaf(directory, "cpo_sub_ca2", now - datetime.timedelta(days=30), now - datetime.timedelta(days=1))
    chain = cert.public_bytes(serialization.Encoding.PEM)
    for name in ("cpo_sub_ca2.pem", "cpo_sub_ca1.pem"):
        chain += (directory / name).read_bytes()
    (directory / "secc_expired_chain.pem").write_bytes(chain)
    (directory / "secc_expired.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class Station(threading.Thread):
    """One connection: the TLS handshake with `chain`/`key`, then `behaviour`:
      "sap_then_close"  read the EV's first record, answer nothing, send close_notify and close
      "corrupt"         read the EV's first record, send an application-data record with one bit flipped
      "stop"            read the ClientHello, send the first 100 bytes of the answer, close (no handshake)
    `saw` ends as what the station observed of the EV: "alert: ...", "eof", "close_notify", or "handshake ok"
    with what followed."""

    def __init__(self, chain, key, behaviour):
        super().__init__(daemon=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA256")
        ctx.load_cert_chain(str(chain), str(key))
        self.ctx = ctx
        self.behaviour = behaviour
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(60)
        self.port = self.listener.getsockname()[1]
        self.saw = None
        self.error = None

    def run(self):
        try:
            self._serve()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = repr(e)
        finally:
            self.listener.close()

    def _serve(self):
        conn, _ = self.listener.accept()
        conn.settimeout(20)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.ctx.wrap_bio(inc, out, server_side=True)

        def flush():
            data = out.read()
            if data:
                conn.sendall(data)

        def pull():
            data = conn.recv(65536)
            if data:
                inc.write(data)
            else:
                inc.write_eof()
            return data

        if self.behaviour == "stop":
            pull()
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            conn.sendall(out.read()[:100])
            conn.close()
            self.saw = "stopped"
            return
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                if not pull():
                    self.saw = "eof during handshake"
                    return
            except ssl.SSLError as e:
                flush()
                self.saw = "alert: " + (e.reason or str(e)).lower()
                return
        flush()
        # The EV's first application data (its SupportedAppProtocolReq), or what it does instead.
        first = self._read_record(obj, pull)
        if not first.startswith("data"):
            self.saw = "handshake ok, then " + first
            return
        if self.behaviour == "corrupt":
            obj.write(b"\x01\xfe\x80\x02" + bytes(60))
            record = bytearray(out.read())
            record[-1] ^= 0x01  # in the padding/MAC of the last block: the record cannot authenticate
            conn.sendall(bytes(record))
        else:
            try:
                obj.unwrap()
            except ssl.SSLWantReadError:
                pass
            flush()
        self.saw = "handshake ok, then " + self._read_record(obj, pull)
        conn.close()

    @staticmethod
    def _read_record(obj, pull):
        while True:
            try:
                data = obj.read(65536)
                return "data" if data else "close_notify"
            except ssl.SSLWantReadError:
                if not pull():
                    return "eof"
            except ssl.SSLZeroReturnError:
                return "close_notify"
            except ssl.SSLEOFError:
                return "eof"
            except ssl.SSLError as e:
                return "alert: " + (e.reason or str(e)).lower()


def _run_probe(interpreter, args, request):
    """tls_probe.py with `args` under `interpreter`; its JSON line."""
    if interpreter == "micropython":
        request.getfixturevalue("micropython_unix")  # skips, or fails in CI, without the unix port
        done = mp_unix.run_script(PROBE, *args, heap="2m", timeout=120)
    else:
        done = subprocess.run([sys.executable, PROBE] + list(args), capture_output=True, text=True, timeout=120,
                              cwd=ROOT)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _case(request, pki, interpreter, chain, key, behaviour, roots="v2g_root.der", clock=None):
    station = Station(pki / chain, pki / key, behaviour)
    station.start()
    args = [str(station.port), str(pki / roots)] + ([str(clock)] if clock is not None else [])
    result = _run_probe(interpreter, args, request)
    station.join(30)
    assert not station.is_alive() and station.error is None, station.error
    return result, station.saw


def _safe(result):
    """The EV's safe state: its session failed or never started, and the contactors are open."""
    assert result["ev_state"] == "failed" or not result["ev_started"], result
    assert result["contactors_closed"] is False, result


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_handshake_then_station_closes(request, pki, interpreter):
    result, saw = _case(request, pki, interpreter, "secc_chain.pem", "secc_leaf.key", "sap_then_close")
    assert result["tls_error"] is None, result
    assert result["handshake_complete"] and result["ev_started"]
    assert (result["version"], result["cipher"], result["secc_dc"]) == ("TLSv1.2", "ECDHE-ECDSA-AES128-SHA256",
                                                                        ["CPO"])
    assert "closed the connection while waiting for supportedAppProtocolRes" in result["ev_reason"], result
    _safe(result)
    assert saw.startswith("handshake ok, then "), saw


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_unknown_root(request, pki, interpreter):
    result, saw = _case(request, pki, interpreter, "secc_chain.pem", "secc_leaf.key", "sap_then_close", roots="mo_root.der")
    assert result["tls_error"] == "verify", result
    assert "does not verify against the V2G roots" in result["tls_reason"], result
    assert not result["handshake_complete"] and not result["ev_started"]
    _safe(result)
    assert saw.startswith("alert: "), saw  # the EV told the station with a fatal alert


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_leaf_without_dc_cpo(request, pki, interpreter):
    # The CPS chain hangs under the same V2G root, so it verifies; only the DC check refuses it.
    result, saw = _case(request, pki, interpreter, "cps_chain.pem", "cps_leaf.key", "sap_then_close")
    assert result["tls_error"] == "dc", result
    assert "CPS" in result["tls_reason"] and "CPO" in result["tls_reason"], result
    assert not result["ev_started"]
    _safe(result)
    if interpreter == "micropython":
        assert saw.startswith("alert: "), saw  # refused inside the handshake
    else:
        # OpenSSL completes the handshake before the DC can be read: a clean close, no data sent.
        assert saw in ("handshake ok, then close_notify", "handshake ok, then eof"), saw


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_expired_leaf(request, pki, interpreter):
    result, saw = _case(request, pki, interpreter, "secc_expired_chain.pem", "secc_expired.key", "sap_then_close")
    assert result["tls_error"] == "verify", result
    assert "expired" in result["tls_reason"], result
    assert not result["ev_started"]
    _safe(result)
    assert saw.startswith("alert: "), saw


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_station_stops_mid_handshake(request, pki, interpreter):
    result, saw = _case(request, pki, interpreter, "secc_chain.pem", "secc_leaf.key", "stop")
    assert result["tls_error"] == "handshake", result
    assert "closed" in result["tls_reason"] and "handshake" in result["tls_reason"], result
    assert not result["ev_started"]
    _safe(result)
    assert saw == "stopped"


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_record_that_fails_to_decrypt(request, pki, interpreter):
    result, saw = _case(request, pki, interpreter, "secc_chain.pem", "secc_leaf.key", "corrupt")
    assert result["handshake_complete"] and result["ev_started"]
    assert result["tls_error"] == "protocol", result
    assert result["ev_state"] == "failed" and "TLS" in result["ev_reason"], result
    _safe(result)
    # OpenSSL answers with a bad_record_mac alert; the port's mbedTLS build closes without one.
    assert saw.startswith("handshake ok, then alert: ") or saw == "handshake ok, then eof", saw


@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize("step", (1, 7, 4096))
def test_both_ends_in_one_interpreter(request, pki, interpreter, step):
    # Our client against our own server backend, the ciphertext moved `step` bytes at a time: any split of
    # the byte stream must work (on MicroPython this is what the record watcher sees).
    # mbedTLS in MicroPython presents one certificate, so the station's leaf here is signed by the root.
    args = ["memory", str(pki / "secc_direct.pem"), str(pki / "secc_direct.key"), str(pki / "v2g_root.der"),
            str(step)]
    result = _run_probe(interpreter, args, request)
    body = 256 * 12
    assert result["station_read"] == len("queued before the handshake") + len("from the EV: ") + body, result
    assert result["station_head"] == "queued before the handshake"
    assert result["ev_read"] == len("from the station: ") + body and result["ev_head"] == "from the station: "
    assert (result["version"], result["cipher"], result["secc_dc"]) == ("TLSv1.2", tls_cipher(), ["CPO"])
    assert result["station_cipher"] == tls_cipher()
    assert result["events"] == ["established"] and result["client_random"] == 32
