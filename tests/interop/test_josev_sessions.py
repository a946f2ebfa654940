"""Whole charging sessions between evpilot and Josev (PyPI ``iso15118``, in its own venv) over a veth pair
between two network namespaces: (a) our EV against Josev's SECC, (b) Josev's EVCC against our station, for
ISO 15118-2 DC, ISO 15118-2 AC and DIN SPEC 70121 DC, external identification, no TLS. Each run must reach
SessionStop with positive response codes, and the request sequence is checked from both sides (our log and
Josev's), which must also agree with each other message for message. The harness is tests/interop/josev.py.

Two things about Josev's station, both Josev's and both handled in the open:
- Josev's simulated EVSE (SimEVSEController) has no DC supply model: its output stays at 1 V / 1 A whatever
  the EV asks for, so a DC EV that waits in PreCharge for the target voltage times out (Josev's own EV
  passes PreCharge by counting to 5). The runs use Josev's SECC with a supply that follows the EV's targets
  (josev._SUPPLY_SECC); test_stock_josev_secc_dc_precharge keeps the stock one on record as an xfail.
- Josev's SECC is slow in the DC charge loop: it answers CurrentDemandReq in 70-300 ms here (each message
  goes through py4j into a JSON -> JAXB -> EXIficient path), over V2G_EVCC_Msg_Timeout for CurrentDemandReq
  (250 ms, ISO 15118-2 Table 109, DIN SPEC 70121 Table 75, Josev's own timeouts.py), which our EV enforces.
  So the DC runs of (a) give our EV 1 s for CurrentDemandRes, and test_josev_secc_current_demand_time
  reports the response times measured (an xfail naming them when they exceed 250 ms). On a busy machine
  every response can be late, that one by seconds: our EV gives each josev.SLACK times the standard's
  timeout, at least josev.SLACK_MIN_MS (10 s), which takes in RELAX.

Needs root (namespaces), iproute2, Java and, the first time, the package registry (Josev's venv is cached in
.cache/josev-venv). Skipped with the reason elsewhere; with CI=true a missing prerequisite fails instead.
"""

import os
import statistics
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import josev  # noqa: E402

COMBOS = [("iso2", "dc"), ("iso2", "ac"), ("din", "dc")]
IDS = ["iso2-dc", "iso2-ac", "din-dc"]
LOOP_TIMEOUT_MS = 250  # V2G_EVCC_Msg_Timeout for CurrentDemandReq (ISO 15118-2 Table 109, DIN SPEC 70121 Table 75)
RELAX = {"CurrentDemandReq": 1000}

_runs = {}


def _unavailable(reason):
    if os.environ.get("CI") == "true":
        pytest.fail("Josev interop cannot run on CI: " + reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def venv_python():
    reason = josev.unavailable()
    if reason:
        _unavailable(reason)
    try:
        return josev.ensure_venv()
    except josev.HarnessError as e:
        _unavailable(str(e))


def _run(kind, standard, mode, python):
    key = (kind, standard, mode)
    if key not in _runs:
        if kind == "ours":
            _runs[key] = josev.run_ours_ev(standard, mode, python=python, relax=RELAX if mode == "dc" else None)
        else:
            _runs[key] = josev.run_josev_ev(standard, mode, python=python)
    return _runs[key]


def _positive(code):
    return isinstance(code, str) and code.startswith("OK")


def _check_run(run, standard, mode, josev_side):
    where = "\n(logs in %s)\n%s" % (run.workdir, run.tail(40))
    assert run.ours_result is not None, "our side printed no result" + where
    assert run.ours_result["result"] == "ok", "our side: %s%s" % (run.ours_result, where)
    ours, theirs = run.requests("ours"), run.requests("josev")
    assert ours, "no messages from our side" + where
    assert ours == theirs, "the two sides saw different request sequences:\nours  %s\njosev %s" % (
        josev.collapse(ours), josev.collapse(theirs))
    problems = josev.check_sequence(ours, standard, mode)
    assert not problems, "sequence %s: %s%s" % (josev.collapse(ours), problems, where)
    for side in ("ours", "josev"):
        responses = run.responses(side)
        assert len(responses) == len(ours), "%s side: %d requests, %d responses%s" % (
            side, len(ours), len(responses), where)
        bad = [(n, c) for n, c in responses if not _positive(c)]
        assert not bad, "%s side saw negative response codes: %s" % (side, bad)
        assert responses[-1] == ("SessionStopRes", "OK"), responses[-1]
    assert ours[-1] == "SessionStop"
    # Josev's side is the one we did not write: it must have seen the same end.
    assert any(m[2] == "SessionStopRes" and m[1] == ("rx" if josev_side == "evcc" else "tx") for m in run.josev)


@pytest.mark.parametrize("standard,mode", COMBOS, ids=IDS)
def test_our_ev_against_josev_secc(venv_python, standard, mode):
    run = _run("ours", standard, mode, venv_python)
    _check_run(run, standard, mode, "secc")
    res = run.ours_result
    assert res["protocol"] == standard
    assert res["summary"]["soc_to"] >= 21, res["summary"]


@pytest.mark.parametrize("standard,mode", COMBOS, ids=IDS)
def test_josev_ev_against_our_station(venv_python, standard, mode):
    run = _run("josev", standard, mode, venv_python)
    _check_run(run, standard, mode, "evcc")
    # Josev's EVCC asked for what it was configured for.
    first = {m[2]: m[3] for m in run.josev if m[1] == "tx"}
    if standard == "iso2":
        assert first["ChargeParameterDiscoveryReq"]["RequestedEnergyTransferMode"] == josev.ENERGY_MODE[mode]
    else:
        assert first["ChargeParameterDiscoveryReq"]["EVRequestedEnergyTransferType"] == "DC_extended"


@pytest.mark.parametrize("standard", ["iso2", "din"])
def test_josev_secc_current_demand_time(venv_python, standard):
    """How fast Josev's SECC answers CurrentDemandReq, from our EV's side of the DC run above."""
    run = _run("ours", standard, "dc", venv_python)
    times, sent = [], None
    for rec in run.ours:
        if rec["name"] == "CurrentDemandReq":
            sent = rec["t"]
        elif rec["name"] == "CurrentDemandRes" and sent is not None:
            times.append((rec["t"] - sent) * 1000)
            sent = None
    assert times, "no CurrentDemand round trips in the run"
    worst, median = max(times), statistics.median(times)
    late = sum(1 for t in times if t > LOOP_TIMEOUT_MS)
    if late:
        pytest.xfail("Josev defect: its SECC answered %d of %d CurrentDemandReq later than the %d ms "
                     "V2G_EVCC_Msg_Timeout (median %.0f ms, worst %.0f ms)" % (late, len(times), LOOP_TIMEOUT_MS,
                                                                              median, worst))


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="Josev defect: SimEVSEController (iso15118 0.31.2 secc/controller/"
                   "simulator.py) ignores send_charging_command and reports EVSEPresentVoltage 1 V throughout, "
                   "so PreCharge never reaches the EV's target voltage and our EV stops at "
                   "V2G_EVCC_PreCharge_Timeout (7 s)")
def test_stock_josev_secc_dc_precharge(venv_python):
    run = josev.run_ours_ev("iso2", "dc", python=venv_python, supply=False, relax=RELAX)
    volts = {m[3]["EVSEPresentVoltage"]["Value"] for m in run.josev if m[2] == "PreChargeRes"}
    assert run.ours_result and run.ours_result["result"] == "ok", (
        "%s; Josev's PreChargeRes EVSEPresentVoltage values: %s" % (run.ours_result and run.ours_result["reason"],
                                                                    sorted(volts)))
