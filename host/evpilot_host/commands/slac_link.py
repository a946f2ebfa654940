"""SLAC on a network interface for `evpilot ev --slac` and `evpilot station --slac` (and, for tests and
benches, `python3 -m evpilot_host.commands.slac_link ev|evse --iface IF ...`, which prints one JSON line).

How this works: both sides open a raw HomePlug socket on the interface (evpilot.aio.ether, EtherType 0x88E1)
and run their sans-I/O core over it with evpilot.aio.slac_link.drive: the EV evpilot.slac.ev.SlacEv, the
station evpilot_sim.slac_evse.SlacEvse with a configured attenuation profile. First each side asks its
local modem for its software version (VS_SW_VER to Qualcomm's local management address); a HomePlug Green
PHY adapter answers, a veth has no modem, and then the side runs beside a simulated one
(evpilot_sim.slac_evse.SimModem) that answers SET_KEY and link status as a QCA modem would. The station with
a real modem first sets its own NMK in it. Results are plain dicts; summary() renders bytes as hex.
"""

import argparse
import asyncio
import json
import os
import sys

from evpilot.aio import ether, plc, slac_link
from evpilot.errors import EvpilotError
from evpilot.slac import mme
from evpilot.slac import timers as slac_timers
from evpilot.slac.ev import SlacEv
from evpilot_sim.slac_evse import SimModem, SlacEvse



def add_options(p):
    """The SLAC options `evpilot ev` and `evpilot station` share (with --slac)."""
    p.add_argument("--slac", action="store_true", help="run SLAC (ISO 15118-3) on --iface first")
    p.add_argument("--slac-modem", choices=("auto", "sim", "real"), default="auto",
                   help="with --slac: the local HomePlug modem; auto asks it and simulates one when none "
                   "answers (a veth)")


def add_ev_options(p):
    add_options(p)
    p.add_argument("--slac-limit", type=int, metavar="DB", help="with --slac: refuse EVSEs whose average "
                   "attenuation is above DB")


def add_station_options(p):
    add_options(p)
    p.add_argument("--slac-attenuation", type=int, default=20, metavar="DB",
                   help="with --slac and a simulated modem: the attenuation profile reported (default 20 dB)")


def check(args):
    """EvpilotError for --slac without what it needs."""
    if not getattr(args, "slac", False):
        return


def cli_ev(args):
    """SLAC for `evpilot ev --slac`: prints one line, returns the JSON view {"result": "matched"|"failed",
    ...} that goes into the summary under "slac"."""
    info = asyncio.run(run_ev(args.iface, getattr(args, "slac_limit", None), args.slac_modem))
    view = {"modem": info["modem"], "mac": info["mac"]}
    out = sys.stderr if getattr(args, "json", False) else sys.stdout  # under --json stdout is the JSON alone
    if info["ok"]:
        r = info["result"]
        view.update(result="matched", **summary(r))
        print("SLAC: matched EVSE %s, attenuation %d dB, NID %s (%d candidate%s, modem %s)" % (
            mac_text(r["evse_mac"]), r["attenuation"], r["nid"].hex(), len(r["candidates"]),
            "" if len(r["candidates"]) == 1 else "s", info["modem"]), file=out, flush=True)
    else:
        view.update(result="failed", reason=info["reason"], attempts=info["attempts"])
        print("SLAC: failed (%s)" % info["reason"], file=out, flush=True)
    return view


async def cli_station(args, timeout_ms=slac_timers.TT_EVSE_SLAC_INIT):
    """SLAC for `evpilot station --slac`: waits up to TT_EVSE_SLAC_init for an EV to match, prints one line;
    EvpilotError when none did."""
    print("station: SLAC on %s, attenuation %d dB" % (args.iface, args.slac_attenuation), flush=True)
    info = await run_evse(args.iface, args.slac_attenuation, modem=args.slac_modem, timeout_ms=timeout_ms)
    if not info["ok"]:
        raise EvpilotError("SLAC: %s" % info["reason"])
    m = info["matched"]
    print("station: SLAC matched EV %s, NID %s (modem %s)" % (mac_text(m["ev_mac"]), info["nid"], info["modem"]),
          flush=True)
    return info


def summary(result):
    """A JSON view of a SLAC result (bytes as lowercase hex)."""
    if result is None:
        return None
    out = {}
    for key, value in result.items():
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).hex()
        elif key == "candidates":
            value = [{"evse_mac": bytes(m).hex(), "attenuation": a} for m, a in value]
        out[key] = value
    return out


def mac_text(mac):
    return ":".join("%02x" % b for b in mac)


async def _modem(link, choice, sim):
    if choice == "sim":
        return None, [sim]
    found = await plc.probe_modem(link)
    if found is None and choice == "real":
        raise EvpilotError("no HomePlug modem answered on %s" % link.ifname)
    return found, ([] if found else [sim])


async def run_ev(iface, attenuation_limit=None, modem="auto", validate=False, settle=None, timeout_ms=30000,
                 on_frame=None):
    """SLAC as the EV on `iface`: {"ok", "result" | "reason", "modem"}."""
    with ether.open(iface, mme.ETHERTYPE) as link:
        sim = SimModem(link.mac, join_delay=300)
        found, nodes = await _modem(link, modem, sim)
        if settle is None:
            settle = slac_timers.MODEM_SETTLE if found else 200
        ev = SlacEv(link.mac, attenuation_limit=attenuation_limit, validate=validate, settle=settle)
        first = ev.start(slac_link.now_ms())
        await slac_link.drive(ev, link, ev.done, first, nodes, timeout_ms, on_frame)
        info = {"mac": mac_text(link.mac), "modem": found["version"] if found else "simulated"}
        if ev.result is not None:
            info.update(ok=True, result=ev.result)
        else:
            info.update(ok=False, reason=ev.reason or "SLAC did not finish within %d ms" % timeout_ms,
                        attempts=ev.attempt)
        return info


async def run_evse(iface, attenuation=20, nmk=None, modem="auto", timeout_ms=60000, linger_ms=0,
                   answer_match=True, on_ready=None, on_frame=None):
    """SLAC as the EVSE on `iface` until an EV matched (then `linger_ms` more, answering repeated MATCH.REQs)
    or `timeout_ms` passed: {"ok", "matched" | "reason", "nid", "events"}."""
    with ether.open(iface, mme.ETHERTYPE) as link:
        evse = SlacEvse(link.mac, nmk=nmk, attenuation=attenuation, answer_match=answer_match)
        found, nodes = await _modem(link, modem, SimModem(link.mac, join_delay=0))
        if found:
            # the EVSE's own modem gets the network's key first, as a charger's host does at start-up
            link.send(mme.set_key_req(link.mac, evse.nid, evse.nmk, os.urandom(4)))
        if on_ready is not None:
            on_ready(link)
        await slac_link.drive(evse, link, lambda: evse.matched is not None, (), [], timeout_ms, on_frame)
        if evse.matched is not None and linger_ms > 0:
            await slac_link.drive(evse, link, lambda: False, (), [], linger_ms, on_frame)
        events = [e[0] for e in evse.events()]
        info = {"mac": mac_text(link.mac), "nid": evse.nid.hex(), "events": events,
                "modem": found["version"] if found else "simulated"}
        if evse.matched is not None:
            info.update(ok=True, matched=evse.matched)
        else:
            info.update(ok=False, reason="no EV matched within %d ms" % timeout_ms)
        return info


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m evpilot_host.commands.slac_link")
    p.add_argument("role", choices=("ev", "evse"))
    p.add_argument("--iface", required=True)
    p.add_argument("--attenuation", type=int, default=20, help="evse: the profile reported, dB")
    p.add_argument("--limit", type=int, default=None, help="ev: refuse EVSEs above this attenuation, dB")
    p.add_argument("--modem", choices=("auto", "sim", "real"), default="auto")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds")
    p.add_argument("--linger", type=float, default=0.0, help="evse: seconds to go on after a match")
    args = p.parse_args(argv)
    try:
        if args.role == "ev":
            info = asyncio.run(run_ev(args.iface, args.limit, args.modem, timeout_ms=int(args.timeout * 1000)))
            if info.get("result"):
                info["result"] = summary(info["result"])
        else:
            def ready(link):
                print(json.dumps({"ready": mac_text(link.mac)}), flush=True)

            info = asyncio.run(run_evse(args.iface, args.attenuation, modem=args.modem,
                                        timeout_ms=int(args.timeout * 1000), linger_ms=int(args.linger * 1000),
                                        on_ready=ready))
            if info.get("matched"):
                info["matched"] = summary(info["matched"])
    except EvpilotError as e:
        print(json.dumps({"ok": False, "reason": str(e)}), flush=True)
        return 2
    print(json.dumps(info), flush=True)
    return 0 if info["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
