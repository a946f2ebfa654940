"""Our EV next to Josev's EV, each against the same Josev SECC, ISO 15118-2 DC, over a veth pair.

    sudo python3 bench/session_vs_josev.py [--runs N]

Prints one JSON object. For each EV ("evpilot", "josev"): the round-trip time per request type as the EV saw
it (from handing the request to its encoder to having decoded the response: the EV's own EXI work, the
link and the station; count, min, median, max in ms), how many CurrentDemandRes took longer than the 250 ms
V2G_EVCC_Msg_Timeout, the number of requests of each type, and the time from the EV's first SDP request to
its first CurrentDemandReq (the first charge-loop message). Both EVs run as separate processes in their own
network namespace against Josev's SECC (tests/interop/josev.py: Josev's simulator with a DC supply that
follows the EV's targets), one session each per run.

What differs between the two besides the code: the EVs' policies. Ours sends CableCheckReq and PreChargeReq
until the station reports isolation valid / its voltage at the target; Josev's simulated EV sends CableCheck
until the station says Finished and a fixed 5 PreChargeReq whatever the voltage (see the request counts);
ours charges from 20 % to 21 % of a 4 kWh pack, Josev's runs 10 charge-loop cycles. Our EV is given 1 s for
CurrentDemandRes (not 250 ms) so that a slow answer from Josev's station is measured instead of ending the
session. Josev timestamps its log lines in milliseconds; ours are perf_counter readings. Needs root, iproute2,
Java and Josev's venv (created in .cache/josev-venv on first use).
"""

import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))

import josev  # noqa: E402

LOOP_TIMEOUT_MS = 250


def _round_trips(events):
    """events: [(t_seconds, "tx"|"rx", name)] of one EV -> {request: [ms, ...]}, request counts."""
    rtt, counts, pending = {}, {}, None
    for t, direction, name in events:
        if direction == "tx" and name.endswith("Req"):
            pending = (name, t)
            counts[name[:-3]] = counts.get(name[:-3], 0) + 1
        elif direction == "rx" and name.endswith("Res") and pending and pending[0][:-3] == name[:-3]:
            rtt.setdefault(name[:-3], []).append((t - pending[1]) * 1000.0)
            pending = None
    return rtt, counts


def _stats(values):
    return {"n": len(values), "min": round(min(values), 1), "median": round(statistics.median(values), 1),
            "max": round(max(values), 1)}


def _summary(all_rtt, all_counts, sdp_to_loop, ok):
    return {
        "sessions_ok": ok,
        "rtt_ms": {name: _stats(v) for name, v in all_rtt.items()},
        "current_demand_over_250ms": sum(1 for v in all_rtt.get("CurrentDemand", []) if v > LOOP_TIMEOUT_MS),
        "requests": all_counts,
        "sdp_to_first_current_demand_s": [round(x, 3) for x in sdp_to_loop],
    }


def _merge(into_rtt, into_counts, rtt, counts):
    for k, v in rtt.items():
        into_rtt.setdefault(k, []).extend(v)
    for k, v in counts.items():
        into_counts[k] = into_counts.get(k, 0) + v


def ours(python, runs):
    all_rtt, all_counts, loop, ok = {}, {}, [], 0
    for _ in range(runs):
        run = josev.run_ours_ev("iso2", "dc", python=python, relax={"CurrentDemandReq": 1000})
        ok += bool(run.ours_result and run.ours_result["result"] == "ok")
        events = [(r["t"], r["dir"], r["name"]) for r in run.ours]
        rtt, counts = _round_trips(events)
        _merge(all_rtt, all_counts, rtt, counts)
        sdp = [json.loads(line)["t"] for line in run.logs["evpilot-ev"].splitlines() if '"event": "sdp"' in line]
        first = next((t for t, d, n in events if d == "tx" and n == "CurrentDemandReq"), None)
        if sdp and first:
            loop.append(first - sdp[0])
    return _summary(all_rtt, all_counts, loop, ok)


def theirs(python, runs):
    all_rtt, all_counts, loop, ok = {}, {}, [], 0
    for _ in range(runs):
        run = josev.run_josev_pair("iso2", "dc", python=python)
        events = [(t, d, n) for t, d, n, _ in run.josev]
        ok += any(n == "SessionStopRes" and d == "rx" for _, d, n in events)
        rtt, counts = _round_trips(events)
        _merge(all_rtt, all_counts, rtt, counts)
        sdp = josev.josev_line_time(run.logs["josev-evcc"], r"Sending SDPRequest")
        first = next((t for t, d, n in events if d == "tx" and n == "CurrentDemandReq"), None)
        if sdp and first:
            loop.append(first - sdp)
    return _summary(all_rtt, all_counts, loop, ok)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=1, help="sessions per EV (default 1)")
    args = p.parse_args(argv)
    reason = josev.unavailable()
    if reason:
        print(json.dumps({"bench": "session_vs_josev", "error": reason}))
        return 1
    python = josev.ensure_venv()
    out = {
        "bench": "session_vs_josev",
        "protocol": "ISO 15118-2 DC, EIM, no TLS",
        "station": "Josev %s SECC (simulated EVSE with a DC supply following the EV's targets)" % josev.JOSEV_VERSION,
        "link": "veth pair between two network namespaces",
        "runs": args.runs,
        "evpilot": ours(python, args.runs),
        "josev": theirs(python, args.runs),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
