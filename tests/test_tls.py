"""evpilot.tls on CPython: the ISO 15118-2 TLS profile (TLS 1.2, ECDHE-ECDSA-AES128-SHA256, P-256, server
authentication, leaf DC CPO) through the memory-BIO backend, over loopback TCP and in memory with the
sans-I/O TlsConnection. The PKI is generated once per module with `evpilot pki init`.

The MicroPython (mbedTLS) backend is exercised under the real unix port in tests/test_tls_failures.py and
tests/firmware/test_tls_memory.py."""

import asyncio
import os
import re
import ssl
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "firmware"))

from evpilot.errors import PeerError, UsageError  # noqa: E402
from evpilot.ev import client as C  # noqa: E402
from evpilot import tls  # noqa: E402
from evpilot.aio import stream  # noqa: E402
from evpilot.v2g import v2gtp  # noqa: E402
from evpilot_sim.station import secc as S  # noqa: E402

from test_ev_client import FakeSession, timeouts  # noqa: E402
from test_secc import FakeStationSession  # noqa: E402
from vectors import ROOT  # noqa: E402


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls") / "pki"
    env = dict(os.environ)
    paths = [os.path.join(ROOT, "firmware"), os.path.join(ROOT, "host")]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    done = subprocess.run([sys.executable, "-m", "evpilot_host.cli", "pki", "init", str(directory)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return directory


def _read(pki, name):
    return (pki / name).read_bytes()


def _client(pki, root="v2g_root.der", **kw):
    return tls.client_context(_read(pki, root), **kw)


def _server(pki, chain="secc_chain.pem", key="secc_leaf.key", **kw):
    return tls.server_context(pki / chain, pki / key, **kw)


# --- over loopback TCP -----------------------------------------------------------------------------------


class _Plain:
    """Plaintext over a TlsConnection on an asyncio stream pair: what these tests need of a connection's
    two ends (the product drives TLS with evpilot.tls.TlsEndpoint and evpilot.aio.stream instead)."""

    def __init__(self, conn, reader, writer):
        self.tls = conn
        self.reader = reader
        self.writer = writer

    async def flush(self):
        out = self.tls.data_to_send()
        if out:
            self.writer.write(out)
            await self.writer.drain()

    async def handshake(self):
        try:
            while not self.tls.handshake_complete:
                await self.flush()
                data = await self.reader.read(4096)
                if data:
                    self.tls.receive(data)
                else:
                    self.tls.receive_eof()
        finally:
            await self.flush()  # the last flight, or the fatal alert

    async def read(self, n=-1):
        while True:
            data = self.tls.read(n)
            if data or self.tls.at_eof:
                return data
            chunk = await self.reader.read(4096)
            if chunk:
                self.tls.receive(chunk)
            else:
                self.tls.receive_eof()
            await self.flush()

    async def write(self, data):
        self.tls.write(data)
        await self.flush()

    async def close(self):
        self.tls.close()
        await self.flush()
        self.writer.close()


def _over_tcp(server_ctx, client_ctx, server_job=None, client_job=None, timeout=10):
    """Handshake over ::1; then run the jobs (async f(plain) -> value, plain a _Plain). Returns (client,
    server): each the job's value (or the TlsConnection when there is no job) or the exception raised."""

    async def main():
        got = {}
        done = asyncio.Event()

        async def serve(reader, writer):
            plain = _Plain(tls.TlsConnection(server_ctx), reader, writer)
            try:
                await plain.handshake()
                got["server"] = await server_job(plain) if server_job else plain.tls
            except Exception as e:  # noqa: BLE001 - handed to the test
                got["server"] = e
            finally:
                writer.close()
                done.set()

        server = await asyncio.start_server(serve, "::1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("::1", port)
        plain = _Plain(tls.TlsConnection(client_ctx), reader, writer)
        try:
            await plain.handshake()
            got["client"] = await client_job(plain) if client_job else plain.tls
        except Exception as e:  # noqa: BLE001
            got["client"] = e
        writer.close()
        await asyncio.wait_for(done.wait(), timeout)
        server.close()
        await server.wait_closed()
        return got["client"], got["server"]

    return asyncio.run(main())


def test_handshake_with_the_v2g_root(pki):
    c, s = _over_tcp(_server(pki), _client(pki))
    assert isinstance(c, tls.TlsConnection) and isinstance(s, tls.TlsConnection), (c, s)
    assert c.cipher == "ECDHE-ECDSA-AES128-SHA256" == tls.CIPHER
    assert c.version == "TLSv1.2"
    assert s.cipher == "ECDHE-ECDSA-AES128-SHA256"
    assert c.peer_dc == ["CPO"]
    assert c.peer_certificate == _read(pki, "secc_leaf.der")
    assert c.next_event() == ("established", None) and c.next_event() is None


def test_roots_as_pem_and_as_a_list(pki):
    for cadata in (_read(pki, "v2g_root.pem"), _read(pki, "v2g_root.pem").decode(),
                   [_read(pki, "mo_root.der"), _read(pki, "v2g_root.der")]):
        c, s = _over_tcp(_server(pki), tls.client_context(cadata))
        assert isinstance(c, tls.TlsConnection) and c.handshake_complete, c


def test_unknown_roots_are_refused(pki):
    c, s = _over_tcp(_server(pki), _client(pki, "mo_root.der"))
    assert isinstance(c, tls.TlsError) and isinstance(c, PeerError)
    assert c.reason == "verify"
    assert "does not verify against the V2G roots" in str(c)
    assert "unable to get local issuer certificate" in str(c)
    # The EV sent a fatal alert, so the station learns why.
    assert isinstance(s, tls.TlsError) and "unknown ca" in str(s)


def test_leaf_that_is_not_cpo_is_refused(pki):
    # The CPS chain hangs under the same V2G root, so it verifies; only the DC check refuses it.
    async def station(plain):
        end = await plain.read()
        return end, plain.tls.peer_closed

    c, s = _over_tcp(_server(pki, "cps_chain.pem", "cps_leaf.key"), _client(pki), station)
    assert isinstance(c, tls.TlsError) and c.reason == "dc"
    assert "domain component ['CPS'], expected CPO" in str(c)
    # The station's side of the handshake was complete; the EV then closed cleanly (close_notify), no data.
    assert s == (b"", True)


def test_tls13_only_station_is_refused(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(pki / "secc_chain.pem", pki / "secc_leaf.key")
    c, s = _over_tcp(tls.TlsContext(ctx, True), _client(pki))
    assert isinstance(c, tls.TlsError) and c.reason == "handshake"
    assert "protocol version" in str(c)
    assert isinstance(s, tls.TlsError)


def _rsa_files(directory):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rsa station")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (directory / "rsa.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "rsa.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return directory / "rsa.pem", directory / "rsa.key"


def test_rsa_station_is_refused(pki, tmp_path):
    cert, key = _rsa_files(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-RSA-AES128-SHA256:AES128-SHA256")
    ctx.load_cert_chain(cert, key)
    c, s = _over_tcp(tls.TlsContext(ctx, True), _client(pki))
    assert isinstance(c, tls.TlsError) and c.reason == "handshake"
    assert "handshake failure" in str(c)
    assert isinstance(s, tls.TlsError) and "no shared cipher" in str(s)


def test_v2gtp_frames_both_ways(pki):
    request = v2gtp.build(0x8001, bytes(range(256)) * 20)  # 5 KB: several TLS records' worth of reads
    response = v2gtp.build(0x8001, b"\x80\x98\x02\x10")

    async def read_frame(plain):
        buf = b""
        while True:
            got = v2gtp.parse(buf)
            if got is not None:
                return got
            data = await plain.read(4096)
            assert data, "the stream ended before a whole frame"
            buf += data

    async def ev(plain):
        await plain.write(request)
        got = await read_frame(plain)
        await plain.close()
        return got

    async def station(plain):
        got = await read_frame(plain)
        await plain.write(response)
        end = await plain.read()  # the EV's close_notify
        await plain.close()
        return got, end, plain.tls.peer_closed, plain.tls.truncated

    c, s = _over_tcp(_server(pki), _client(pki), station, ev)
    assert c == (0x8001, b"\x80\x98\x02\x10", len(response))
    assert s == ((0x8001, bytes(range(256)) * 20, len(request)), b"", True, False)


def test_key_log_lines(pki, tmp_path):
    ev_log, station_log = tmp_path / "ev.keys", tmp_path / "station.keys"
    station_log.write_text("")
    station_log.chmod(0o644)  # left by an older run: made private again before a key goes in
    c, s = _over_tcp(_server(pki, keylog=station_log), _client(pki, keylog=ev_log))
    for path in (ev_log, station_log):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert isinstance(c, tls.TlsConnection), c
    random = c.client_random
    assert len(random) == 32
    for path in (ev_log, station_log):
        lines = [x for x in path.read_text().splitlines() if x and not x.startswith("#")]
        assert lines == [lines[0]]
        m = re.fullmatch(r"CLIENT_RANDOM ([0-9a-f]{64}) ([0-9a-f]{96})", lines[0])
        assert m, lines[0]
        assert m.group(1) == random.hex()
    # Both ends derived the same master secret.
    assert ev_log.read_text().split()[-1] == station_log.read_text().split()[-1]


def test_whole_session_over_tls_with_stream_drive(pki):
    async def main():
        stations = []

        async def serve(reader, writer):
            conn = S.SeccConnection(("din",), FakeStationSession)
            endpoint = tls.TlsEndpoint(conn, tls.TlsConnection(_server(pki)))
            stations.append((conn, endpoint))
            await stream.drive(endpoint, reader, writer)

        server = await asyncio.start_server(serve, "::1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("::1", port)
        ev = C.EvClient(FakeSession, [("din", 1)], timeouts)
        endpoint = tls.TlsEndpoint(ev, tls.TlsConnection(_client(pki)))
        await asyncio.wait_for(stream.drive(endpoint, reader, writer, tick=lambda now: None, tick_ms=50), 10)
        for _ in range(100):
            if stations and stations[0][0].finished:
                break
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()
        return ev, stations[0], endpoint

    ev, (st, st_endpoint), endpoint = asyncio.run(main())
    assert ev.state == C.DONE and st.state == S.DONE and ev.session_id == st.session.session_id
    assert endpoint.tls.cipher == tls.CIPHER and endpoint.error is None
    assert st_endpoint.tls.handshake_complete and st_endpoint.error is None


def test_handshake_timeout_closes_the_transport(pki):
    async def main():
        async def serve(reader, writer):  # a station that accepts TCP and never answers
            await reader.read()

        server = await asyncio.start_server(serve, "::1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("::1", port)
        ev = C.EvClient(FakeSession, [("din", 1)], timeouts)
        endpoint = tls.TlsEndpoint(ev, tls.TlsConnection(_client(pki)), handshake_timeout_ms=200)
        await asyncio.wait_for(stream.drive(endpoint, reader, writer), 5)
        closed = writer.is_closing()
        server.close()
        await server.wait_closed()
        return closed, endpoint, ev

    closed, endpoint, ev = asyncio.run(main())
    assert closed is True
    assert endpoint.error.reason == "timeout" and "200 ms" in endpoint.reason
    assert not endpoint.started and ev.session is None  # the EV never started its session


# --- sans-I/O, in memory -----------------------------------------------------------------------------------


def _shuttle(a, b, step=None, rounds=400):
    """Move ciphertext between two TlsConnections until neither has anything to send; `step` bytes at a
    time when given (any split of the byte stream must work)."""
    held = {id(a): b"", id(b): b""}
    for _ in range(rounds):
        moved = False
        for src, dst in ((a, b), (b, a)):
            data = held[id(src)] + src.data_to_send()
            held[id(src)] = b""
            if step:
                held[id(src)] = data[step:]  # the rest goes in the next rounds
                data = data[:step]
            if data:
                dst.receive(data)
                moved = True
        if not moved:
            return
    raise AssertionError("still talking after %d rounds" % rounds)


def test_sans_io_byte_at_a_time(pki):
    ev = tls.TlsConnection(_client(pki))
    st = tls.TlsConnection(_server(pki))
    ev.write(b"queued before the handshake")
    assert not ev.handshake_complete and ev.cipher is None
    _shuttle(ev, st, step=1, rounds=20000)
    assert ev.handshake_complete and st.handshake_complete
    assert (ev.cipher, ev.version) == (tls.CIPHER, tls.VERSION)
    assert st.read() == b"queued before the handshake"
    st.write(b"abc")
    st.write(b"def")
    _shuttle(ev, st, step=7, rounds=2000)
    assert ev.read(4) == b"abcd" and ev.read() == b"ef" and ev.read() == b""


def test_close_notify_and_truncation(pki):
    ev = tls.TlsConnection(_client(pki))
    st = tls.TlsConnection(_server(pki))
    _shuttle(ev, st)
    st.write(b"last words")
    st.close()
    ev.receive(st.data_to_send())
    assert ev.peer_closed and not ev.truncated and not ev.at_eof  # the data is still to be read
    assert ev.read() == b"last words" and ev.at_eof
    with pytest.raises(UsageError):
        st.write(b"more")

    ev = tls.TlsConnection(_client(pki))
    st = tls.TlsConnection(_server(pki))
    _shuttle(ev, st)
    ev.receive_eof()  # TCP ended without close_notify
    assert ev.at_eof and ev.truncated and not ev.peer_closed


def test_eof_during_the_handshake_fails(pki):
    ev = tls.TlsConnection(_client(pki))
    assert ev.data_to_send()[:1] == b"\x16"  # the ClientHello
    with pytest.raises(tls.TlsError) as e:
        ev.receive_eof()
    assert e.value.reason == "handshake" and "closed the connection during the handshake" in str(e.value)


def test_garbage_from_the_station(pki):
    ev = tls.TlsConnection(_client(pki))
    ev.data_to_send()
    with pytest.raises(tls.TlsError) as e:
        ev.receive(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert e.value.reason == "handshake"
    assert ev.failed is e.value
    with pytest.raises(tls.TlsError):  # stays failed
        ev.receive(b"\x16\x03\x03")

    ev = tls.TlsConnection(_client(pki))
    st = tls.TlsConnection(_server(pki))
    _shuttle(ev, st)
    st.write(b"x" * 40)
    record = bytearray(st.data_to_send())
    record[-1] ^= 0x01  # breaks the MAC / padding
    with pytest.raises(tls.TlsError) as e:
        ev.receive(bytes(record))
    assert e.value.reason == "protocol"
    assert ev.data_to_send()[:1] == b"\x15"  # a fatal alert goes out


def test_roots_and_usage_errors(pki):
    der = _read(pki, "v2g_root.der")
    assert tls.roots_der(der) == [der]
    assert tls.roots_der(_read(pki, "v2g_root.pem")) == [der]
    chain = tls.roots_der(_read(pki, "secc_chain.pem"))
    assert chain[0] == _read(pki, "secc_leaf.der") and len(chain) == 3
    for bad in (b"", 42, None):
        with pytest.raises(UsageError):
            tls.roots_der(bad)
    with pytest.raises(UsageError):
        tls.TlsConnection(ssl.create_default_context())
    assert tls.check_leaf_dc(_read(pki, "secc_leaf.der")) == ["CPO"]
    with pytest.raises(tls.TlsError) as e:
        tls.check_leaf_dc(_read(pki, "contract_leaf.der"))
    assert e.value.reason == "dc" and "['MO']" in str(e.value)
    with pytest.raises(tls.TlsError) as e:
        tls.check_leaf_dc(b"\x30\x03\x02\x01\x00")
    assert e.value.reason == "dc" and "cannot be parsed" in str(e.value)


def test_client_context_profile(pki):
    ctx = _client(pki).ssl_context
    assert ctx.minimum_version == ctx.maximum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname is False
    assert [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"] == [tls.CIPHER]
    sctx = _server(pki).ssl_context
    assert sctx.minimum_version == sctx.maximum_version == ssl.TLSVersion.TLSv1_2
    assert sctx.verify_mode == ssl.CERT_NONE
