# The raw Ethernet adapter's pieces that need no interface: struct sockaddr_ll as the MicroPython path binds
# with it, interface lookups that fail with our error, and frame length checks. Its traffic is tested in
# tests/test_net_kernel.py (root, a veth pair).

import sys

from evpilot.aio import ether
from evpilot.errors import UsageError

MICROPYTHON_PORTS = ("unix",)  # a socket module with AF_PACKET's numbers; the webassembly port has none


def test_sockaddr_ll_layout():
    raw = ether.sockaddr_ll(7, 0x86DD)
    assert len(raw) == 20  # sizeof(struct sockaddr_ll) on Linux
    native = sys.byteorder
    assert raw[0:2] == (17).to_bytes(2, native)  # AF_PACKET, host order
    assert raw[2:4] == b"\x86\xdd"  # the protocol in network order
    assert raw[4:8] == (7).to_bytes(4, native)
    assert raw[8:] == bytes(12)
    assert ether.sockaddr_ll(1, ether.ETH_P_ALL)[2:4] == b"\x00\x03"


def test_missing_or_bad_interface_names_are_usage_errors():
    for name in ("evpilot-no-such-if", "", "../lo", "a/b", ".."):
        try:
            ether.interface_index(name)
            assert False, name
        except UsageError as e:
            assert "interface" in str(e)
        try:
            ether.open(name, ether.ETHERTYPE_IPV6)
            assert False, name
        except UsageError:
            pass


class _Link(ether.EtherSocket):
    """The adapter over a stand-in socket: no interface needed."""

    def __init__(self, mac=b"\x02\x00\x00\x00\x00\x01"):
        self.sock = _FakeSocket()
        self.mac = mac
        self.drop_own = True
        self.sent = self.send_errors = self.received = 0


class _FakeSocket:
    def __init__(self):
        self.sent = []

    def send(self, frame):
        self.sent.append(bytes(frame))


def test_send_pads_short_frames_and_refuses_bad_lengths():
    link = _Link()
    frame = bytes(range(14)) + b"hi"
    assert link.send(frame)
    assert link.sock.sent == [frame + bytes(44)] and link.sent == 1
    for bad in (b"x" * 13, b"x" * 1519):
        try:
            link.send(bad)
            assert False
        except UsageError:
            pass


def test_own_frames_are_recognised_by_source_mac():
    link = _Link(bytes.fromhex("020000000001"))
    ours = b"\xff" * 6 + link.mac + b"\x86\xdd"
    theirs = b"\xff" * 6 + bytes.fromhex("020000000002") + b"\x86\xdd"
    assert link._own(ours, 14) and not link._own(theirs, 14)
    link.drop_own = False
    assert not link._own(ours, 14)


class _Wire:
    """A link for NetStack that keeps what is sent (no interface, no event loop needed here)."""

    def __init__(self):
        self.mac = bytes.fromhex("020000000001")
        self.frames = []

    def send(self, frame):
        self.frames.append(bytes(frame))
        return True


def test_stream_writes_are_bounded_until_drained():
    from evpilot.aio import netstack
    from evpilot.net import ipv6

    wire = _Wire()
    net = netstack.NetStack(wire, seed=5)
    peer = ipv6.link_local(bytes.fromhex("020000000002"))
    net.stack._neighbours[peer] = bytes.fromhex("020000000002")
    conn = net.stack.tcp_connect(peer, 15000, 0)
    net.flush()
    assert len(wire.frames) == 1  # the SYN went out at once
    stream = netstack.TcpStream(net, conn)
    stream.write(b"a" * 4096)  # the send ring takes it
    stream.write(b"b" * netstack.MAX_PENDING)  # held for drain()
    try:
        stream.write(b"c")
        assert False
    except UsageError as e:
        assert "drain" in str(e)
    beside, eui64 = netstack.beside_kernel(wire.mac), ipv6.link_local(wire.mac)
    assert beside != eui64 and beside[:12] == eui64[:12] and beside[12] == 0xFD and beside[13:] == eui64[13:]
    assert ipv6.solicited_node(beside) == ipv6.solicited_node(eui64)  # the group the interface accepts
