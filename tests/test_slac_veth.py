"""SLAC over raw Ethernet between network namespaces (needs root; skipped with the reason elsewhere, failed
in CI): our EV (evpilot.slac.ev over evpilot.aio.ether, beside a simulated local modem since a veth has
none) against our EVSE side (evpilot_sim.slac_evse) across a veth pair, and against two or three EVSE
responders on one Linux bridge at different configured attenuations: the EV matches the lowest and only it,
the other EVSEs see no match. The EV runs under CPython and under the MicroPython unix port.
"""

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

import evpilot_mp_unix as mp_unix

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYPATH = os.pathsep.join(os.path.join(REPO, d) for d in ("firmware", "sim", "host"))

# The EV under MicroPython: the same core, driver and simulated modem as slac_link.run_ev.
MP_EV = r"""
import sys, json, asyncio
from evpilot.aio import ether, slac_link
from evpilot.slac import mme
from evpilot.slac.ev import SlacEv
from evpilot_sim.slac_evse import SimModem

async def main(iface):
    link = ether.open(iface, mme.ETHERTYPE)
    ev = SlacEv(link.mac, settle=200)
    first = ev.start(slac_link.now_ms())
    t0 = slac_link.now_ms()
    await slac_link.drive(ev, link, ev.done, first, [SimModem(link.mac, join_delay=300)], 30000)
    link.close()
    if ev.result:
        r = ev.result
        print(json.dumps({"ok": True, "result": {"evse_mac": r["evse_mac"].hex(), "attenuation": r["attenuation"],
                          "nid": r["nid"].hex()}}))
    else:
        print(json.dumps({"ok": False, "reason": ev.reason}))

asyncio.run(main(sys.argv[1]))
"""


def _in_ci():
    return os.environ.get("CI") == "true"


def _sh(*args):
    subprocess.run(args, check=True, timeout=20, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _need_root():
    if os.geteuid() != 0 or subprocess.run(["which", "ip"], capture_output=True).returncode != 0:
        reason = "needs root and iproute2 to create network namespaces, veth pairs and a bridge"
        if _in_ci():
            pytest.fail(reason)
        pytest.skip(reason)


class Net:
    """Namespaces joined by veth pairs (two ends: a pair) or on one bridge (more)."""

    def __init__(self, parties):
        self.tag = uuid.uuid4().hex[:6]
        self.parties = parties
        self.ns = {}
        self.ifs = {}
        self.made = []

    def __enter__(self):
        tag = self.tag
        try:
            for name in self.parties:
                ns = "sl%s%s" % (name, tag)
                _sh("ip", "netns", "add", ns)
                self.made.append(ns)
                self.ns[name] = ns
            if len(self.parties) == 2:
                a, b = self.parties
                self.ifs[a], self.ifs[b] = "s%s%s" % (a, tag), "s%s%s" % (b, tag)
                _sh("ip", "link", "add", self.ifs[a], "netns", self.ns[a], "type", "veth", "peer", "name",
                    self.ifs[b], "netns", self.ns[b])
            else:
                br = "slbr" + tag
                _sh("ip", "netns", "add", br)
                self.made.append(br)
                _sh("ip", "-n", br, "link", "add", "br0", "type", "bridge")
                _sh("ip", "-n", br, "link", "set", "br0", "up")
                for i, name in enumerate(self.parties):
                    self.ifs[name] = "s%s%s" % (name, tag)
                    port = "p%d%s" % (i, tag)
                    _sh("ip", "link", "add", self.ifs[name], "netns", self.ns[name], "type", "veth", "peer",
                        "name", port, "netns", br)
                    _sh("ip", "-n", br, "link", "set", port, "master", "br0")
                    _sh("ip", "-n", br, "link", "set", port, "up")
            for name in self.parties:
                _sh("ip", "-n", self.ns[name], "link", "set", self.ifs[name], "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], timeout=20, capture_output=True)

    def popen(self, name, argv):
        env = dict(os.environ, PYTHONPATH=PYPATH)
        return subprocess.Popen(["ip", "netns", "exec", self.ns[name]] + argv, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


def _evse(net, name, attenuation, linger=1.5, timeout=6):
    p = net.popen(name, [sys.executable, "-m", "evpilot_host.commands.slac_link", "evse", "--iface",
                         net.ifs[name], "--attenuation", str(attenuation), "--timeout", str(timeout),
                         "--linger", str(linger)])
    line = p.stdout.readline()
    assert '"ready"' in line, (line, p.stderr.read() if p.poll() is not None else "")
    return p


def _result(p, timeout=40):
    out, err = p.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, (out, err)
    return json.loads(lines[-1]), err


def _ev_cpython(net):
    return net.popen("ev", [sys.executable, "-m", "evpilot_host.commands.slac_link", "ev", "--iface",
                            net.ifs["ev"], "--timeout", "20"])


def _mac(net, name):
    out = subprocess.run(["ip", "-n", net.ns[name], "-j", "link", "show", net.ifs[name]], capture_output=True,
                         text=True, timeout=20).stdout
    return json.loads(out)[0]["address"].replace(":", "")


def test_ev_and_evse_across_a_veth_pair():
    _need_root()
    with Net(("ev", "e1")) as net:
        evse = _evse(net, "e1", 17)
        ev = _ev_cpython(net)
        ev_info, ev_err = _result(ev)
        evse_info, _ = _result(evse)
        assert ev_info["ok"], (ev_info, ev_err)
        r = ev_info["result"]
        assert r["evse_mac"] == _mac(net, "e1") and r["attenuation"] == 17
        assert evse_info["ok"] and evse_info["matched"]["ev_mac"] == _mac(net, "ev")
        assert r["nid"] == evse_info["nid"] and ev_info["modem"] == "simulated"


@pytest.mark.parametrize("attenuations", [(28, 14), (33, 9, 21)])
def test_ev_matches_the_lowest_of_several_evses_on_a_bridge(attenuations):
    _need_root()
    names = ["e%d" % i for i in range(len(attenuations))]
    with Net(["ev"] + names) as net:
        evses = [_evse(net, n, a) for n, a in zip(names, attenuations)]
        ev_info, ev_err = _result(_ev_cpython(net))
        infos = [_result(p)[0] for p in evses]
        assert ev_info["ok"], (ev_info, ev_err)
        low = attenuations.index(min(attenuations))
        r = ev_info["result"]
        assert r["evse_mac"] == _mac(net, names[low]) and r["attenuation"] == min(attenuations)
        assert sorted(c["attenuation"] for c in r["candidates"]) == sorted(attenuations)
        for i, info in enumerate(infos):
            if i == low:
                assert info["ok"] and info["matched"]["ev_mac"] == _mac(net, "ev")
            else:
                assert not info["ok"] and "matched" not in info["events"], info


def test_micropython_ev_on_a_bridge(micropython_unix, tmp_path):
    _need_root()
    script = tmp_path / "slac_ev.py"
    script.write_text(MP_EV)
    with Net(("ev", "e0", "e1")) as net:
        evses = [_evse(net, "e0", 26), _evse(net, "e1", 11)]
        argv = mp_unix.command(str(script), net.ifs["ev"], heap="512k")
        env = mp_unix.script_env()
        p = subprocess.Popen(["ip", "netns", "exec", net.ns["ev"]] + argv, env=env, cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        info, err = _result(p)
        others = [_result(e)[0] for e in evses]
        assert info["ok"], (info, err)
        assert info["result"]["evse_mac"] == _mac(net, "e1") and info["result"]["attenuation"] == 11
        assert others[1]["ok"] and not others[0]["ok"]


def _cli(net, name, *args):
    return net.popen(name, [sys.executable, "-m", "evpilot_host.cli"] + list(args))


def test_cli_station_and_ev_with_slac_then_a_session():
    _need_root()
    with Net(("ev", "st")) as net:
        for name in ("ev", "st"):  # link-local addresses at once (no duplicate address detection)
            _sh("ip", "netns", "exec", net.ns[name], "sysctl", "-qw",
                "net.ipv6.conf.%s.accept_dad=0" % net.ifs[name])
            _sh("ip", "-n", net.ns[name], "link", "set", net.ifs[name], "down")
            _sh("ip", "-n", net.ns[name], "link", "set", net.ifs[name], "up")
        for name in ("ev", "st"):
            for _ in range(100):
                out = subprocess.run(["ip", "-n", net.ns[name], "-6", "addr", "show", "dev", net.ifs[name]],
                                     capture_output=True, text=True, timeout=20).stdout
                if "fe80" in out and "tentative" not in out:
                    break
                time.sleep(0.05)
        station = _cli(net, "st", "station", "--iface", net.ifs["st"], "--protocols", "din", "--once", "--slac",
                       "--slac-attenuation", "19")
        line = station.stdout.readline()
        assert line.startswith("station: SLAC on"), (line, station.communicate(timeout=20))
        time.sleep(0.5)  # the station's modem probe (300 ms) before the EV's first PARM.REQ
        ev = _cli(net, "ev", "ev", "--iface", net.ifs["ev"], "--standard", "din", "--slac", "--json",
                  "--soc", "40", "41")
        out, err = ev.communicate(timeout=120)
        st_out, st_err = station.communicate(timeout=60)
        assert ev.returncode == 0, (out, err, st_out, st_err)
        assert "SLAC: matched EVSE" in err  # under --json the status lines go to stderr
        summary = json.loads([x for x in out.splitlines() if x.startswith("{")][-1])
        assert summary["result"] == "ok" and summary["slac"]["result"] == "matched"
        assert summary["slac"]["attenuation"] == 19 and summary["slac"]["evse_mac"] == _mac(net, "st")
        assert "station: SLAC matched EV" in st_out and station.returncode == 0, (st_out, st_err)


def test_cli_ev_slac_fails_with_the_reason_when_no_station_answers():
    _need_root()
    with Net(("ev", "st")) as net:
        ev = _cli(net, "ev", "ev", "--iface", net.ifs["ev"], "--slac", "--json")
        out, err = ev.communicate(timeout=60)
        assert ev.returncode == 1, (out, err)
        summary = json.loads([x for x in out.splitlines() if x.startswith("{")][-1])
        assert summary["end"] == "SLAC: no CM_SLAC_PARM.CNF" and summary["slac"]["attempts"] == 3
