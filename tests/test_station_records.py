"""Station session records (evpilot_host.station.records) and `evpilot station report` (commands/report.py):
rows read from ISO-2 Contract and EIM sessions and from whole connections (clean, failed, paused), cost at the
configured tariff, the per-contract usage report, the human and --json output, the default database path and
the one-line errors for a missing or foreign database (which is never created by reading)."""

import io
import json
import os
import sqlite3
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "firmware"))

import pncfix  # noqa: E402
from test_iso2_session import Run  # noqa: E402
from test_station_pnc import Driver, ac_cpd, make_pnc  # noqa: E402

from evpilot_sim.vehicle import SimVehicle  # noqa: E402
from evpilot.ev.vehicle import DC_EXTENDED  # noqa: E402
from evpilot_host.commands import report  # noqa: E402
from evpilot_host.station import records  # noqa: E402
from evpilot_sim.station import secc as S  # noqa: E402


class FakeSession:
    """The attributes Records reads, for report arithmetic without running sessions."""

    def __init__(self, sid, emaid, wh, finished=True, payment="Contract"):
        self.session_id = sid
        self.emaid = emaid
        self.evcc_id = b"\x02\x00\x00\x00\x00\x01"
        self.schema = "iso2"
        self.payment = payment
        self.mode = "DC_extended"
        self.energy_wh = wh
        self.finished = finished
        self.stopped_with = "Terminate"


def contract_session(minutes=10, amps=16):
    d = Driver(pnc=make_pnc())
    d.to_contract_authorized()
    d.send("ChargeParameterDiscoveryReq", ac_cpd())
    d.send("PowerDeliveryReq", {"ChargeProgress": "Start", "SAScheduleTupleID": 1})
    d.evse.ac_request(d.now, amps)
    d.now += minutes * 60000
    d.send("ChargingStatusReq")
    d.send("PowerDeliveryReq", {"ChargeProgress": "Stop", "SAScheduleTupleID": 1})
    d.send("SessionStopReq", {"ChargingSession": "Terminate"})
    return d.st


def test_contract_and_eim_rows(tmp_path):
    st = contract_session()
    expected_wh = 3 * 230 * 16 * 10 / 60  # three phases at the EVSE's nominal voltage for ten minutes
    assert abs(st.energy_wh - expected_wh) < 1
    with records.Records(str(tmp_path / "s.sqlite3"), price_per_kwh=0.5, currency="EUR") as rec:
        row = rec.record(st, 1000, 1600, "session stopped")
        assert row["session_id"] == st.session_id.hex() and len(row["session_id"]) == 16
        assert (row["emaid"], row["payment"], row["protocol"]) == (pncfix.EMAID, "Contract", "iso2")
        assert (row["evcc_id"], row["energy_mode"]) == ("020000000001", "AC_three_phase_core")
        assert row["cost"] == round(row["energy_wh"] / 1000 * 0.5, 4) and row["cost"] > 0
        assert (row["outcome"], row["reason"]) == ("completed", "session stopped")
        eim = Driver(pnc=make_pnc())
        eim.discover()
        eim.select("ExternalPayment")
        eim_row = rec.record(eim.st, 2000, 2100, "the EV closed the connection")
        assert eim_row["emaid"] is None and eim_row["payment"] == "ExternalPayment"
        assert eim_row["outcome"] == "failed"  # the session never reached SessionStop
        assert [r["id"] for r in rec.rows()] == [row["id"], eim_row["id"]]
    # The rows are in the file, with the schema version set.
    db = sqlite3.connect(str(tmp_path / "s.sqlite3"))
    assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 2
    assert db.execute("PRAGMA user_version").fetchone()[0] == records.SCHEMA_VERSION


def test_connections_are_recorded_with_their_end(tmp_path):
    path = str(tmp_path / "c.sqlite3")
    rec = records.Records(path)
    car = SimVehicle(capacity_wh=1000, soc=20, target_soc=25, modes=(DC_EXTENDED,))
    clean = Run(car, modes=("DC_extended",))
    assert clean.secc.state == S.DONE
    row = rec.record(clean.secc, 0, clean.end / 1000.0)
    assert row["outcome"] == "completed" and row["reason"] == clean.secc.reason == "session stopped"
    assert row["energy_wh"] > 0 and row["price_per_kwh"] == records.DEFAULT_PRICE_PER_KWH
    assert row["currency"] == "EUR" and row["protocol"] == "iso2" and row["emaid"] is None
    car = SimVehicle(capacity_wh=1000, soc=20, target_soc=25, modes=(DC_EXTENDED,))
    failed = Run(car, faults=[S.Fault("ServiceDiscoveryRes", "failed")], modes=("DC_extended",))
    row = rec.record(failed.secc, 0, 1)
    assert row["outcome"] == "failed" and "FAILED" in row["reason"]
    paused = FakeSession(b"\x01" * 8, None, 10.0, payment="ExternalPayment")
    paused.stopped_with = "Pause"
    assert rec.record(paused, 0, 1, "paused")["outcome"] == "paused"
    rec.close()


def test_report_per_contract(tmp_path):
    path = str(tmp_path / "r.sqlite3")
    with records.Records(path, price_per_kwh=0.40) as rec:
        rec.record(FakeSession(b"\x01" * 8, "DEABCC123ABC56", 10000.0), 100, 700, "session stopped")
        rec.record(FakeSession(b"\x02" * 8, "DEABCC123ABC56", 5000.0), 800, 900, "session stopped")
        rec.record(FakeSession(b"\x03" * 8, "NLXYZ000000017", 2500.0), 1000, 1100, "session stopped")
        rec.record(FakeSession(b"\x04" * 8, None, 1000.0, payment="ExternalPayment"), 1200, 1300, "ok")
    # A tariff change applies to new rows only.
    with records.Records(path, price_per_kwh=0.60) as rec:
        rec.record(FakeSession(b"\x05" * 8, "NLXYZ000000017", 1000.0), 1400, 1500, "session stopped")
    rep = records.report(path)
    assert [s["session_id"] for s in rep["sessions"]] == [("%02x" % i) * 8 for i in range(1, 6)]
    assert rep["sessions"][0]["energy_kwh"] == 10.0 and rep["sessions"][0]["duration_s"] == 600
    assert rep["contracts"] == [
        {"emaid": "DEABCC123ABC56", "sessions": 2, "energy_kwh": 15.0, "cost": 6.0, "currency": "EUR"},
        {"emaid": "NLXYZ000000017", "sessions": 2, "energy_kwh": 3.5, "cost": 1.6, "currency": "EUR"},
    ]
    assert rep["totals"] == [{"currency": "EUR", "sessions": 5, "energy_kwh": 19.5, "cost": 8.0}]


def test_report_main_text_and_json(tmp_path):
    path = str(tmp_path / "m.sqlite3")
    with records.Records(path) as rec:
        rec.record(contract_session(minutes=30), 1767225600, 1767227400, "session stopped")
        rec.record(FakeSession(b"\x04" * 8, None, 1000.0, payment="ExternalPayment"), 1767230000, 1767230600,
                   "session stopped")
    out = io.StringIO()
    assert report.main(["--db", path], out=out) == 0
    text = out.getvalue()
    assert "2026-01-01 00:00:00" in text and pncfix.EMAID in text and "PnC" in text and "EIM" in text
    assert "Usage per contract:" in text
    usage = text.split("Usage per contract:")[1]
    assert pncfix.EMAID in usage and "Total: 2 session(s)" in usage
    out = io.StringIO()
    assert report.main(["--db", path, "--json"], out=out) == 0
    doc = json.loads(out.getvalue())
    assert doc["database"] == path and len(doc["sessions"]) == 2
    (contract,) = doc["contracts"]
    assert contract["emaid"] == pncfix.EMAID and contract["sessions"] == 1
    assert abs(contract["energy_kwh"] - 3 * 230 * 16 * 0.5 / 1000) < 0.01
    assert contract["cost"] == round(contract["energy_kwh"] * 0.40, 2)


def test_report_main_default_path_and_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(records.DB_ENV, raising=False)
    err = io.StringIO()
    assert report.main([], out=io.StringIO(), err=err) == 1
    assert err.getvalue() == "evpilot station report: error: no session database at %s\n" % records.DEFAULT_DB
    assert not os.path.exists(records.DEFAULT_DB)  # reading never creates a database
    with records.Records() as rec:  # the default: ./evpilot-sessions.sqlite3
        rec.record(FakeSession(b"\x01" * 8, pncfix.EMAID, 2000.0), 0, 60, "session stopped")
    assert os.path.exists(tmp_path / records.DEFAULT_DB)
    out = io.StringIO()
    assert report.main(["--json"], out=out) == 0
    assert json.loads(out.getvalue())["contracts"][0]["cost"] == 0.8
    monkeypatch.setenv(records.DB_ENV, str(tmp_path / "elsewhere.sqlite3"))
    assert records.default_db_path() == str(tmp_path / "elsewhere.sqlite3")
    # Not a session database.
    (tmp_path / "notes.txt").write_text("not sqlite at all, just some text that is long enough" * 20)
    err = io.StringIO()
    assert report.main(["--db", str(tmp_path / "notes.txt")], out=io.StringIO(), err=err) == 1
    assert err.getvalue().startswith("evpilot station report: error: ") and err.getvalue().count("\n") == 1
    other = tmp_path / "other.sqlite3"
    sqlite3.connect(str(other)).execute("CREATE TABLE t (x)").connection.commit()
    err = io.StringIO()
    assert report.main(["--db", str(other)], out=io.StringIO(), err=err) == 1
    assert "no sessions table" in err.getvalue()
    empty = tmp_path / "empty.sqlite3"
    records.Records(str(empty)).close()
    out = io.StringIO()
    assert report.main(["--db", str(empty)], out=out) == 0
    assert "no sessions recorded" in out.getvalue()


def test_bad_tariff_is_refused(tmp_path):
    for kwargs in ({"price_per_kwh": -1}, {"currency": ""}):
        try:
            records.Records(str(tmp_path / "x.sqlite3"), **kwargs)
        except ValueError as e:
            assert "price" in str(e) or "currency" in str(e)
        else:
            raise AssertionError("accepted %r" % (kwargs,))


def test_refused_contract_keeps_the_refusal_in_the_reason(tmp_path):
    d = Driver(pnc=make_pnc())
    d.discover()
    d.select()
    assert d.payment_details(emaid="DEXYZC123ABC56")["ResponseCode"] == "FAILED_CertChainError"
    with records.Records(str(tmp_path / "f.sqlite3")) as rec:
        row = rec.record(d.st, 0, 5, "answered PaymentDetailsReq with FAILED_CertChainError")
    assert row["outcome"] == "failed" and row["emaid"] is None and row["payment"] == "Contract"
    assert row["reason"].startswith("answered PaymentDetailsReq with FAILED_CertChainError: contract certificate CN")
    assert row["energy_wh"] == 0 and row["cost"] == 0
