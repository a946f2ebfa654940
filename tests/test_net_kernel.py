"""The firmware's own IPv6/TCP (evpilot.net over evpilot.aio.ether, AF_PACKET) on one end of a veth pair,
the Linux kernel's IPv6 and TCP on the other, in two network namespaces: the kernel pings our address (and
so asks for our MAC), we ping it and ask for its MAC, a TCP echo transfer with the kernel as server; then
whole ISO-2 DC sessions (EIM, EIM over TLS, Plug&Charge over TLS with certificate installation) of the
firmware EV over our stack against `evpilot station` on the kernel's sockets; each on CPython and under the
MicroPython unix port, and with `tc netem` loss, jitter, reordering and duplication on both ends.

Two settings make the EV's end a plain wire for our stack: IPv6 is disabled on it (the kernel would else
answer our peer's segments itself, with RST), and transmit checksum offload is off on both ends (a veth
hands frames to a packet socket before the checksum is filled in; a real HomePlug adapter's frames come
off the wire complete). Needs root; skipped with the reason otherwise, failing in CI. Nothing waits a fixed
time: each side says when it is ready."""

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

import evpilot_mp_unix as mp_unix
from test_link_cli import Station, pki  # noqa: F401 (fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETEM = ("loss", "5%", "delay", "10ms", "10ms", "reorder", "10%", "50%", "duplicate", "2%")


def _need_root():
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the network-namespace tests as root")
        pytest.skip("needs root for ip netns and veth")


def _ip(*args):
    subprocess.run(("ip",) + args, check=True, capture_output=True, timeout=20)


_TX_CSUM_OFF = """
import array, fcntl, socket, struct, sys
# SIOCETHTOOL (0x8946) with ETHTOOL_STXCSUM (0x17, <linux/ethtool.h>): struct ethtool_value {u32 cmd, data}
value = array.array("I", [0x17, 0])
ifreq = struct.pack("16sP16x", sys.argv[1].encode(), value.buffer_info()[0])
with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
    fcntl.ioctl(s.fileno(), 0x8946, ifreq)
"""


@pytest.fixture(params=["clean", "netem", "lossy", "beside"])
def link(request):
    """(station ns, station if, EV ns, EV if, impairment): a veth pair; "netem": netem on both ends;
    "lossy": the EV's adapter loses, duplicates and reorders frames both ways (_LOSSY), for kernels
    without netem; "beside": the kernel keeps IPv6 on the EV's end and both ends keep checksum offload
    (how `evpilot ev --slac` finds an interface): our stack takes an address beside the kernel's and
    accepts the offload placeholder (aio.netstack.open_stack)."""
    _need_root()
    tag = uuid.uuid4().hex[:6]
    st, ev = "nkst" + tag, "nkev" + tag
    a, b = "ks" + tag, "ke" + tag
    _ip("netns", "add", st)
    _ip("netns", "add", ev)
    try:
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        _ip("link", "set", a, "netns", st)
        _ip("link", "set", b, "netns", ev)
        _ip("netns", "exec", st, "sysctl", "-qw", "net.ipv6.conf.%s.accept_dad=0" % a)
        beside = request.param == "beside"
        if beside:
            _ip("netns", "exec", ev, "sysctl", "-qw", "net.ipv6.conf.%s.accept_dad=0" % b)
        else:
            _ip("netns", "exec", ev, "sysctl", "-qw", "net.ipv6.conf.%s.disable_ipv6=1" % b)
        for ns, dev in ((st, a), (ev, b)):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", dev, "up")
            if not beside:
                _ip("netns", "exec", ns, sys.executable, "-c", _TX_CSUM_OFF, dev)
            if request.param == "netem":
                tc = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "netem"]
                                    + list(NETEM), capture_output=True, text=True, timeout=20)
                if tc.returncode and "unknown" in tc.stderr:
                    pytest.skip("this kernel has no netem qdisc (sch_netem); the 'lossy' case impairs the link "
                                "in the EV's adapter instead")
                assert tc.returncode == 0, tc.stderr
        for _ in range(50):
            out = subprocess.run(["ip", "-n", st, "-6", "addr", "show", "dev", a, "scope", "link"],
                                 capture_output=True, text=True, timeout=10).stdout
            if "fe80" in out and "tentative" not in out:
                break
            time.sleep(0.1)
        yield st, a, ev, b, request.param
    finally:
        subprocess.run(["ip", "netns", "del", st], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", ev], capture_output=True, timeout=20)


def _kernel_address(ns, dev):
    out = subprocess.run(["ip", "-n", ns, "-6", "-o", "addr", "show", "dev", dev, "scope", "link"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return out.split("inet6 ")[1].split("/")[0]


def _ev_command(interp, ns, script, *args, impairment="clean"):
    extra = {"EVPILOT_TEST_LINK": impairment}
    if interp == "micropython":
        if mp_unix.micropython_path() is None:
            if os.environ.get("CI") == "true":
                pytest.fail("CI must have the MicroPython unix port")
            pytest.skip("the MicroPython unix port is not installed")
        return ["ip", "netns", "exec", ns] + mp_unix.command(script, *args), mp_unix.script_env(extra)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((os.path.join(ROOT, "firmware"), os.path.join(ROOT, "sim"))),
               **extra)
    return ["ip", "netns", "exec", ns, sys.executable, str(script)] + [str(x) for x in args], env


class _Lines:
    """A process's stdout, line by line, read on a thread (waiting with a timeout, never a fixed sleep)."""

    def __init__(self, proc):
        self.proc = proc
        self.q = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.q.put(line)
        self.q.put(None)

    def until(self, prefix, timeout=60):
        while True:
            line = self.q.get(timeout=timeout)
            if line is None:
                raise AssertionError("ended before %r: %s" % (prefix, "".join(self.seen)))
            self.seen.append(line)
            if line.startswith(prefix):
                return line


# --- the EV's side: our stack on the raw link, optionally impaired ---------------------------------------

_LOSSY = r"""
import os
from evpilot.aio import ether, netstack


class LossyLink:
    # The EV's link, impaired in both directions from a fixed seed: 5 % of frames lost each way, 2 %
    # duplicated each way, 10 % of those sent held back behind the frames that follow (reordered).

    def __init__(self, link, seed):
        self.link = link
        self.mac = link.mac
        self.seed = seed
        self.held = None
        self.dup = None
        self.lost = 0

    def _r(self):
        self.seed = (self.seed * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.seed >> 8) % 100

    def _release(self):
        if self.held is not None:
            frame = self.held
            self.held = None
            self.link.send(frame)

    def send(self, frame):
        r = self._r()
        if r < 5:
            self.lost += 1
            return True
        frame = bytes(frame)
        if r < 15 and self.held is None:
            self.held = frame
            return True
        self.link.send(frame)
        self._release()
        if self._r() < 2:
            self.link.send(frame)
        return True

    def _keep(self, buf, n):
        r = self._r()
        if r < 5:
            self.lost += 1
            return 0
        if r < 7:
            self.dup = bytes(buf[:n])
        return n

    def recv_nowait_into(self, buf):
        if self.dup is not None:
            n = len(self.dup)
            buf[:n] = self.dup
            self.dup = None
            return n
        while True:
            n = self.link.recv_nowait_into(buf)
            if not n:
                return 0
            n = self._keep(buf, n)
            if n:
                return n

    async def recv_into(self, buf, timeout_ms=None):
        self._release()  # what was held back goes after the frames sent since
        n = self.recv_nowait_into(buf)
        if n:
            return n
        n = await self.link.recv_into(buf, timeout_ms)
        return self._keep(buf, n) if n else 0


LINK = None


async def open_net(iface):
    global LINK
    if os.getenv("EVPILOT_TEST_LINK") == "beside":
        net = await netstack.open_stack(iface)
        assert net.stack.partial_checksums and net.address == netstack.beside_kernel(net.link.mac)
        return net
    LINK = ether.open(iface, ether.ETHERTYPE_IPV6)
    if os.getenv("EVPILOT_TEST_LINK") == "lossy":
        LINK = LossyLink(LINK, 12345)
    return netstack.NetStack(LINK).start()


def lost():
    return getattr(LINK, "lost", 0)
"""

# --- the kernel as peer: echo, NDP, a TCP transfer --------------------------------------------------------

_EV_BASIC = _LOSSY + r"""
import sys
try:
    import asyncio
except ImportError:
    import uasyncio as asyncio
from evpilot.net import ipv6

async def main(iface, peer, port, size, go):
    net = await open_net(iface)
    print("address " + ipv6.text(net.address))
    while True:  # the test pings us from the kernel, then creates `go`
        try:
            open(go).close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    peer_b = ipv6.from_text(peer)
    for i in range(20):  # our echo request (the netem case may lose a few)
        net.stack.ping(peer_b, 0x4242, i, b"evpilot")
        net.flush()
        await asyncio.sleep(0.1)
        if [e for e in net.events if e[0] == "echo_reply"]:
            break
    replies = [e for e in net.events if e[0] == "echo_reply" and e[1] == peer_b]
    mac = net.stack.neighbour(peer_b)
    print("pinged %d %s" % (len(replies), mac.hex() if mac else "-"))
    r, w = await net.open_tcp(peer, port)
    data = bytearray(size)
    for i in range(size):
        data[i] = (i * 31 + 7) & 0xFF
    sent = 0
    got = bytearray()
    while len(got) < size:
        if sent < size:
            w.write(data[sent:sent + 2000])
            sent = min(size, sent + 2000)
            await w.drain()
        try:
            chunk = await asyncio.wait_for(r.read(4096), 0.05)
        except asyncio.TimeoutError:
            continue
        if not chunk:
            break
        got += chunk
    w.close()
    c = r.conn
    for _ in range(100):
        if c.finished or c.state == 8:  # TIME_WAIT
            break
        await asyncio.sleep(0.05)
    print("echo %s %d state %d rtx %d fast %d dropped %d lost %d" % (got == data, len(got), c.state,
                                                                    c.retransmits, c.fast_retransmits,
                                                                    net.stack.dropped, lost()))
    await net.stop()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]))
"""

_KERNEL_ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 0))
s.listen(1)
print("listening %d" % s.getsockname()[1], flush=True)
c, a = s.accept()
n = 0
while True:
    d = c.recv(65536)
    if not d:
        break
    n += len(d)
    c.sendall(d)
c.close()
print("closed %d" % n, flush=True)
"""

_KERNEL_PING = r"""
import socket, struct, sys
addr, dev = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)  # the kernel's checksum
s.settimeout(0.5)
scope = socket.if_nametoindex(dev)
got = 0
for seq in range(20):
    s.sendto(struct.pack(">BBHHH", 128, 0, 0, 0x1234, seq) + b"kernel ping", (addr, 0, 0, scope))
    try:
        while True:
            data, src = s.recvfrom(2048)
            if data[0] == 129 and data[4:8] == struct.pack(">HH", 0x1234, seq) and data[8:] == b"kernel ping":
                got += 1
                break
    except socket.timeout:
        continue
    if got >= 3:
        break
print("replies %d" % got, flush=True)
"""


@pytest.mark.parametrize("interp", ["cpython", "micropython"])
def test_kernel_pings_us_we_ping_it_and_echo_over_tcp(link, interp, tmp_path):
    st_ns, st_if, ev_ns, ev_if, impairment = link
    impaired = impairment in ("netem", "lossy")
    script = tmp_path / "ev_basic.py"
    script.write_text(_EV_BASIC)
    kernel = _kernel_address(st_ns, st_if)
    server = subprocess.Popen(["ip", "netns", "exec", st_ns, sys.executable, "-c", _KERNEL_ECHO],
                              stdout=subprocess.PIPE, text=True)
    ev = None
    try:
        server_lines = _Lines(server)
        port = int(server_lines.until("listening").split()[1])
        size = 60000
        cmd, env = _ev_command(interp, ev_ns, script, ev_if, kernel, port, size, tmp_path / "go",
                               impairment=impairment)
        ev = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        lines = _Lines(ev)
        ours = lines.until("address").split()[1]
        ping = subprocess.run(["ip", "netns", "exec", st_ns, sys.executable, "-c", _KERNEL_PING, ours, st_if],
                              capture_output=True, text=True, timeout=60)
        assert ping.stdout.strip() == "replies 3", ping.stdout + ping.stderr
        neigh = subprocess.run(["ip", "-n", st_ns, "-6", "neigh", "show", "dev", st_if], capture_output=True,
                               text=True, timeout=10).stdout
        (tmp_path / "go").write_text("")
        pinged = lines.until("pinged", timeout=60).split()
        assert int(pinged[1]) >= 1  # the kernel answered our echo request
        kernel_mac = subprocess.run(["ip", "netns", "exec", st_ns, "cat", "/sys/class/net/%s/address" % st_if],
                                    capture_output=True, text=True, timeout=10).stdout.strip().replace(":", "")
        assert pinged[2] == kernel_mac  # we asked the kernel for its MAC and learnt it
        ev_mac = subprocess.run(["ip", "netns", "exec", ev_ns, "cat", "/sys/class/net/%s/address" % ev_if],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        assert ev_mac in neigh, neigh  # the kernel asked for ours and learnt it
        echo = lines.until("echo", timeout=120).split()
        assert echo[1:3] == ["True", str(size)], lines.seen
        assert int(echo[4]) in (4, 8), lines.seen  # FIN_WAIT_2 or TIME_WAIT after our close
        if impaired:
            assert int(echo[6]) + int(echo[8]) > 0, lines.seen  # losses were recovered by retransmission
        if impairment == "lossy":
            assert int(echo[12]) > 0, lines.seen
        assert ev.wait(30) == 0, lines.seen
        assert server_lines.until("closed", timeout=30).split()[1] == str(size)
    finally:
        for proc in (server, ev):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)


# --- whole ISO-2 DC sessions: the firmware EV over our stack, `evpilot station` on OS sockets -------------

_EV_SESSION = _LOSSY + r"""
# evpilot_sim.ev_run with SDP and TCP over the firmware's own stack instead of the platform's sockets
import sys
from evpilot.aio import sockets
from evpilot.ev import run as ev_session
from evpilot_sim import ev_run


class OwnStack:
    address_text = staticmethod(sockets.address_text)

    def __init__(self):
        self.net = None

    async def discover(self, iface, security, *args, **kwargs):
        self.net = await open_net(iface)
        return await self.net.discover(iface, security, *args, **kwargs)

    async def open_tcp(self, address, port, iface, timeout_ms=5000):
        return await self.net.open_tcp(address, port, iface, timeout_ms)


ev_session.sockets = OwnStack()
ev_run.main()
sys.stderr.write("lost %d\n" % lost())
"""

# The impaired link loses frames both ways: the station's answer can come after one kernel retransmission
# (its RTO is at least 200 ms), so the EV gives each request more than ISO 15118-2's 250 ms / 2 s here.
_SLOW = {name: 5000 for name in ("SessionSetupReq", "ServiceDiscoveryReq", "PaymentServiceSelectionReq",
                                 "AuthorizationReq", "ChargeParameterDiscoveryReq", "CableCheckReq", "PreChargeReq",
                                 "PowerDeliveryReq", "CurrentDemandReq", "WeldingDetectionReq", "SessionStopReq",
                                 "PaymentDetailsReq", "CertificateInstallationReq")}


def _config(ev_if, kind, pki, store, impaired):
    config = {"iface": ev_if, "standard": "iso2", "mode": "dc", "soc": [20, 21], "capacity_wh": None,
              "msg_timeouts": _SLOW if impaired else {}, "tls": kind != "eim", "roots": [], "pnc": kind == "pnc",
              "store": None, "now_s": int(time.time())}
    if kind != "eim":
        from evpilot import tls
        from evpilot_host import ends

        config["roots"] = [bytes(r).hex() for r in tls.roots_der(ends.ev_roots(str(pki)))]
    if kind == "pnc":
        store.mkdir()
        ends.ev_store(str(store), str(pki), False)  # roots and OEM provisioning: the contract is installed
        config["store"] = str(store)
    return config


# "pnc" is Plug&Charge over TLS with installation: TLS over our stack is in it (EIM over TLS, the third
# kind the helpers below know, adds little and costs a CI minute across the links).
@pytest.mark.parametrize("kind", ["eim", "pnc"])
@pytest.mark.parametrize("interp", ["cpython", "micropython"])
def test_iso2_dc_session_over_our_stack(link, interp, kind, tmp_path, pki):
    st_ns, st_if, ev_ns, ev_if, impairment = link
    impaired = impairment in ("netem", "lossy")
    script = tmp_path / "ev_session.py"
    script.write_text(_EV_SESSION)
    args = ["--protocols", "iso2"]
    if kind != "eim":
        args += ["--tls", "--pki", str(pki)]
    if kind == "pnc":
        args += ["--pnc", "--db", str(tmp_path / "records.sqlite3")]
    station = Station(st_ns, st_if, args, None if kind == "pnc" else tmp_path / "sessions.sqlite3")
    try:
        station.started()
        cmd, env = _ev_command(interp, ev_ns, script, impairment=impairment)
        config = _config(ev_if, kind, pki, tmp_path / "store", impaired)
        ev = subprocess.run(cmd, input=json.dumps(config) + "\n", capture_output=True, text=True, timeout=180,
                            env=env, cwd=ROOT)
    finally:
        try:
            st_rc, st_out = station.finish(60)
        except subprocess.TimeoutExpired:  # the EV ended without a session: its output says why
            st_rc, st_out = None, "".join(station.output)
    reports = [json.loads(line) for line in ev.stdout.splitlines() if line.startswith("{")]
    summary = [r["summary"] for r in reports if "summary" in r]
    assert summary, ev.stdout[-3000:] + ev.stderr[-2000:] + st_out[-2000:]
    summary = summary[0]
    assert summary["result"] == "ok" and summary["protocol"] == "iso2", summary
    sent = [r["name"] for r in reports if r.get("m") == "tx"]
    assert sent[-1] == "SessionStopReq" and "CurrentDemandReq" in sent, sent
    assert st_rc == 0 and "station: session ok" in st_out, st_out
    if kind != "eim":
        assert summary["tls"]["secc_dc"] == ["CPO"], summary
    if kind == "pnc":
        assert summary["identification"] == "PnC" and summary["contract_installed"] is True, summary
        assert "CertificateInstallationReq" in sent
    if impairment == "lossy":
        assert int(ev.stderr.split("lost ")[-1].split()[0]) > 0, ev.stderr


# --- the command line: `evpilot ev --slac` runs SDP and the session over our stack ------------------------


def _cli(ns, *args):
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "evpilot_host.cli"] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


@pytest.mark.parametrize("link", ["beside"], indirect=True)
@pytest.mark.parametrize("on", ["cpython", "micropython"])
def test_cli_ev_slac_then_iso2_session_over_our_stack(link, on, tmp_path):
    # With --on micropython, SLAC runs in the command (the firmware's SLAC core on CPython) and SDP and the
    # session under the MicroPython unix port over the firmware's own IPv6/TCP (AF_PACKET).
    from evpilot.aio import netstack

    extra = []
    if on == "micropython":
        if mp_unix.micropython_path() is None:
            pytest.fail("no micropython command") if os.environ.get("CI") else pytest.skip("no micropython")
        extra = ["--on", "micropython"]

    st_ns, st_if, ev_ns, ev_if, _ = link
    station = _cli(st_ns, "station", "--iface", st_if, "--protocols", "iso2", "--once", "--slac",
                   "--db", str(tmp_path / "sessions.sqlite3"))
    try:
        line = station.stdout.readline()
        assert line.startswith("station: SLAC on"), (line, station.stderr.read())
        ev = _cli(ev_ns, "ev", "--iface", ev_if, "--standard", "iso2", "--slac", "--json", "--soc", "20", "21",
                  *extra)
        out, err = ev.communicate(timeout=120)
        st_out, st_err = station.communicate(timeout=60)
    finally:
        for proc in (station,):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert ev.returncode == 0, (out, err, st_out, st_err)
    summary = json.loads([x for x in out.splitlines() if x.startswith("{")][-1])
    assert summary["result"] == "ok" and summary["protocol"] == "iso2" and summary["slac"]["result"] == "matched"
    # the station's kernel talked to our stack's address, not to the EV kernel's own
    ev_mac = subprocess.run(["ip", "netns", "exec", ev_ns, "cat", "/sys/class/net/%s/address" % ev_if],
                            capture_output=True, text=True, timeout=10).stdout.strip()
    ours = socket.inet_ntop(socket.AF_INET6, netstack.beside_kernel(bytes.fromhex(ev_mac.replace(":", ""))))
    neigh = subprocess.run(["ip", "-n", st_ns, "-6", "neigh", "show", "dev", st_if], capture_output=True,
                           text=True, timeout=10).stdout
    assert ours in neigh, (ours, neigh)
