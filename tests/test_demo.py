"""`evpilot demo` completes DIN DC, ISO-2 AC and ISO-2 DC sessions, and its log holds every message."""

import json
import subprocess
import sys

import pytest

from evpilot import exi
from evpilot_host.commands import demo


@pytest.mark.parametrize("standard,mode", [("din", "dc"), ("iso2", "ac"), ("iso2", "dc")])
def test_demo_sessions(standard, mode, tmp_path, capsys):
    log = tmp_path / "session.jsonl"
    rc = demo.main(["--standard", standard, "--mode", mode, "--json", "--log", str(log)])
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert rc == 0 and summary["result"] == "ok"
    assert summary["protocol"] == standard and summary["mode"] == mode.upper()
    assert summary["soc_from"] == 20.0 and summary["soc_to"] >= 80.0
    # The EV closes its S2 switch (state C) to charge and opens it again (B) before the end.
    assert summary["control_pilot"] == "B2 -> C2 -> B2"
    capacity = 4000 if mode == "dc" else 1500
    assert summary["energy_wh"] >= 0.6 * capacity * 0.95
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == summary["messages"]
    assert records[0]["message"] == "supportedAppProtocolReq" and records[-1]["message"] == "SessionStopRes"
    # Each record's EXI bytes decode to the document it shows.
    schema = standard
    for r in records[2::97]:
        doc = exi.decode(schema, bytes.fromhex(r["exi"]))
        assert json.loads(json.dumps(doc, default=lambda b: b.hex())) == r["doc"]
    order = [r["message"] for r in records if r["dir"] == "EV->SECC"]
    first = ["supportedAppProtocolReq", "SessionSetupReq", "ServiceDiscoveryReq"]
    assert order[:3] == first and order[-1] == "SessionStopReq"
    loop = "ChargingStatusReq" if mode == "ac" else "CurrentDemandReq"
    assert order.count(loop) > 100


def test_din_is_dc_only(capsys):
    assert demo.main(["--standard", "din", "--mode", "ac"]) == 2
    assert "DC only" in capsys.readouterr().err


def test_command_line_demo():
    proc = subprocess.run([sys.executable, "-m", "evpilot_host.cli", "demo"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "iso2 DC session: ok" in proc.stdout
    assert "CurrentDemandReq" in proc.stdout
