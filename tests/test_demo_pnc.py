"""`evpilot demo --pnc`: two Plug&Charge sessions over TLS in one process, a contract installed in the first
and used by the second; with --store/--db kept, a second run pays with the stored contract at once, and the
station's database holds every session."""

import json
import sqlite3

from evpilot.store.keystore import Store
from evpilot_host import pki
from evpilot_host.commands import demo


def _run(capsys, *args):
    code = demo.main(["--pnc", "--json", "--soc", "40", "45"] + list(args))
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


def test_demo_pnc_installs_then_uses_the_contract(capsys):
    code, s = _run(capsys)
    assert code == 0 and s["result"] == "ok"
    first, second = s["sessions"]
    assert first["contract_installed"] and not second["contract_installed"]
    assert first["identification"] == second["identification"] == "PnC"
    assert first["emaid"] == second["emaid"] == "DEABCC123ABC56"
    assert first["tls"] == "TLSv1.2 ECDHE-ECDSA-AES128-SHA256"
    assert "CertificateInstallationReq" in first["requests"]
    assert "CertificateInstallationReq" not in second["requests"]
    for r in (first, second):
        assert r["requests"].index("PaymentDetailsReq") < r["requests"].index("AuthorizationReq")
        assert r["energy_wh"] > 0 and r["sales_tariff_ignored"] in (None, False, "")
    assert s["contracts"] == [{"emaid": "DEABCC123ABC56", "sessions": 2, "energy_kwh": s["contracts"][0]["energy_kwh"],
                               "cost": s["contracts"][0]["cost"], "currency": "EUR"}]
    assert s["contracts"][0]["energy_kwh"] > 0 and s["contracts"][0]["cost"] > 0


def test_demo_pnc_keeps_store_and_database(capsys, tmp_path):
    store, db, pki_dir = tmp_path / "store", tmp_path / "sessions.sqlite3", tmp_path / "pki"
    pki.write_pki(pki_dir, pki.build_pki())
    kept = ("--pki", str(pki_dir), "--store", str(store), "--db", str(db))
    code, s = _run(capsys, *kept)
    assert code == 0 and s["sessions"][0]["contract_installed"]
    installed = Store(str(store)).contracts()
    assert [c.emaid for c in installed] == ["DEABCC123ABC56"]
    # The next run starts with that contract: no installation in either session.
    code, s = _run(capsys, *kept)
    assert code == 0
    assert [r["contract_installed"] for r in s["sessions"]] == [False, False]
    with sqlite3.connect(str(db)) as conn:
        rows = conn.execute("SELECT emaid, payment, outcome FROM sessions").fetchall()
    assert rows == [("DEABCC123ABC56", "Contract", "completed")] * 4


def test_demo_pnc_refuses_din(capsys):
    assert demo.main(["--pnc", "--standard", "din"]) == 2
    assert "ISO 15118-2" in capsys.readouterr().err


def test_demo_pnc_contract_of_another_pki_is_refused_by_the_station(capsys, tmp_path):
    # A store whose contract chains to another PKI's MO root: the station's PaymentDetails check refuses it
    # and the demo says so instead of pretending.
    store = tmp_path / "store"
    code, s = _run(capsys, "--store", str(store))
    assert code == 0
    code, s = _run(capsys, "--store", str(store))
    assert code == 1 and s["result"] == "failed"
    first = s["sessions"][0]
    assert first["result"] == "failed" and "PaymentDetails" in (first["ev_end"] or "")


def test_demo_pnc_trace_shows_what_plug_and_charge_sends(capsys):
    assert demo.main(["--pnc", "--soc", "40", "42"]) == 0
    out = capsys.readouterr().out
    lines = {}  # the first line of each message name: session 1's
    for ln in out.splitlines():
        if " s  EV -> SECC  " in ln or " s  SECC -> EV  " in ln:
            lines.setdefault(ln.split()[5], ln)
    assert "payment Contract  services 1/2" in lines["PaymentServiceSelectionReq"]
    assert lines["CertificateInstallationReq"].endswith("signed (1 ref)")
    assert "eMAID DEABCC123ABC56" in lines["CertificateInstallationRes"]
    assert lines["CertificateInstallationRes"].endswith("signed (4 refs)")
    challenge = lines["PaymentDetailsRes"].split("challenge ")[1].split()[0]
    assert len(challenge) == 32 and ("challenge " + challenge) in lines["AuthorizationReq"]
    assert "Plug&Charge demo: ok" in out and "station report   DEABCC123ABC56: 2 sessions" in out
