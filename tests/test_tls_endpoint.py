"""evpilot.tls.endpoint: the EV client and the station connection, unchanged, behind TLS in memory on the
virtual-clock pipe (evpilot_sim.pipe): a whole ISO 15118-2 session over TLS, and the ways TLS ends it (an
unknown root, a station chain with the wrong DC, a handshake that never completes, a corrupted record)."""

import datetime
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "firmware"))

from evpilot.ev import client as ev_client  # noqa: E402
from evpilot import tls  # noqa: E402
from evpilot_sim import pipe  # noqa: E402
from evpilot_host import ends, pki  # noqa: E402
from evpilot_sim.station import secc  # noqa: E402


@pytest.fixture(scope="module")
def pkidir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tlsep") / "pki"
    pki.write_pki(d, pki.build_pki())
    return d


def _pair(pkidir, root="v2g_root.der", chain="secc_chain.pem", key="secc_leaf.key", mode="dc"):
    """(the EV's TlsEndpoint, the station's, the EV end, the station end)."""
    ev = ends.ev_end("iso2", mode, (40, 42), plugged=True,
                     tls_context=tls.client_context((pkidir / root).read_bytes()))
    st = ends.station_end(("iso2",), mode, seed=3, tls_context=tls.server_context(pkidir / chain, pkidir / key))
    return ev.outer, st.outer, ev, st


def _tick(ev_end, st_end):
    def tick(now):
        ev_end.tick(now)
        st_end.tick(now)
    return tick


@pytest.mark.parametrize("mode", ["dc", "ac"])
def test_whole_session_over_tls(pkidir, mode):
    ev, st, ev_end, st_end = _pair(pkidir, mode=mode)
    pipe.run(ev, st, latency_ms=20, tick=_tick(ev_end, st_end))
    assert ev.inner.state == ev_client.DONE, ev.inner.reason
    assert st.inner.state == secc.DONE, st.inner.reason
    assert ev.tls.version == "TLSv1.2" and ev.tls.cipher == tls.CIPHER
    assert ev.tls.peer_dc == ["CPO"]
    assert ev_end.session.summary()["state"] == "Done"
    assert st_end.session.requests[0] == "SessionSetupReq" and st_end.session.requests[-1] == "SessionStopReq"
    assert ev.reason is None and st.reason is None


def test_unknown_root_ends_before_any_v2g_message(pkidir, tmp_path):
    other = tmp_path / "other"
    pki.write_pki(other, pki.build_pki())
    ev, st, ev_end, st_end = _pair(other)  # the EV trusts another PKI's root
    # ...but the station serves the chain of the module's PKI
    st.tls = tls.TlsConnection(tls.server_context(pkidir / "secc_chain.pem", pkidir / "secc_leaf.key"))
    pipe.run(ev, st, latency_ms=20, tick=_tick(ev_end, st_end))
    assert ev.finished and not ev.started
    assert ev.reason.startswith("TLS: ") and "verif" in ev.reason.lower(), ev.reason
    assert ev_end.session is None  # no protocol session was ever created
    assert st.finished and not st.started


def test_station_chain_with_wrong_dc_is_refused(pkidir):
    # The CPS chain verifies against the same V2G root, but its leaf is DC=CPS, not CPO.
    ev, st, ev_end, st_end = _pair(pkidir, chain="cps_chain.pem", key="cps_leaf.key")
    pipe.run(ev, st, latency_ms=20, tick=_tick(ev_end, st_end))
    assert ev.finished and not ev.started
    assert "CPO" in ev.reason and "CPS" in ev.reason, ev.reason
    assert ev_end.session is None


def test_handshake_that_never_completes_times_out(pkidir):
    ev, st, ev_end, st_end = _pair(pkidir)
    ev.connection_made(0)
    assert ev.output()  # the ClientHello
    assert ev.next_deadline() == ev.handshake_timeout_ms
    ev.on_timer(ev.handshake_timeout_ms - 1)
    assert not ev.finished
    ev.on_timer(ev.handshake_timeout_ms)
    assert ev.finished and "handshake not complete" in ev.reason
    assert ev.next_deadline() is None


def test_corrupted_record_after_handshake_puts_the_ev_in_its_safe_state(pkidir):
    ev, st, ev_end, st_end = _pair(pkidir)
    now = 0
    ev.connection_made(now)
    st.connection_made(now)
    for _ in range(10):  # shuttle until the EV's session is running
        for d in ev.output():
            st.data_received(d, now)
        for d in st.output():
            ev.data_received(d, now)
        if ev_end.session is not None:
            break
    assert ev.started and ev_end.session is not None
    ev.data_received(b"\x17\x03\x03\x00\x20" + b"\x00" * 32, now + 5)  # application data that won't decrypt
    assert ev.finished and ev.inner.state == ev_client.FAILED
    assert ev.reason.startswith("TLS: ")
    assert ev_end.session.summary()["state"] == "Failed"
    assert not ev_end.vehicle.contactors_closed() and ev_end.vehicle.pilot.name().startswith("B")
