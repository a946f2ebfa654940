# The board's IPv6 layer (evpilot.net): checksums against frames the Linux kernel built, EUI-64 addresses,
# neighbour discovery both ways, echo, UDP, and bounded parsing (only our errors escape, fuzzed).

from evpilot.errors import PeerError
from evpilot.net import icmpv6, ipv6, stack, udp

# Captured on a veth pair (transmit checksum offload off): the kernel's neighbour advertisement and its
# SYN-ACK with an MSS option, to our EV at 52:e7:26:e7:9c:e2.
KERNEL_NA = bytes.fromhex(
    "52e726e79ce29eb7bc6c990486dd6000000000203afffe800000000000009cb7bcfffe6c9904fe80000000000000"
    "50e726fffee79ce288002ff560000000fe800000000000009cb7bcfffe6c990402019eb7bc6c9904")
KERNEL_SYNACK = bytes.fromhex(
    "52e726e79ce29eb7bc6c990486dd60053c2f00180640fe800000000000009cb7bcfffe6c9904fe80000000000000"
    "50e726fffee79ce21e63d626e01701b9d24efbc26012fd20f4c10000020405a0")
EV_MAC = bytes.fromhex("52e726e79ce2")
KERNEL_MAC = bytes.fromhex("9eb7bc6c9904")


def _reference_checksum(src, dst, proto, seg):
    # RFC 1071 word by word, with end-around carry: the textbook way, to check the folded one against
    data = bytes(src) + bytes(dst) + len(seg).to_bytes(4, "big") + bytes((0, 0, 0, proto)) + bytes(seg)
    if len(data) & 1:
        data += b"\x00"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def test_rfc1071_fold():
    # RFC 1071 section 3's example: 00 01 f2 03 f4 f5 f6 f7 sums to dd f2
    assert ipv6._fold(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2
    assert ipv6._fold(b"\x01") == 0x100  # an odd byte is the high half of a word


def test_kernel_frames_check_and_our_checksum_matches_theirs():
    for frame, proto, at in ((KERNEL_NA, 58, 2), (KERNEL_SYNACK, 6, 16)):
        head = ipv6.parse(frame)
        src_mac, p, hop, src, dst, plen = head
        assert (src_mac, p) == (KERNEL_MAC, proto)
        seg = bytearray(frame[54:54 + plen])
        assert ipv6.checksum(src, dst, proto, seg) == 0
        want = (seg[at] << 8) | seg[at + 1]
        seg[at] = seg[at + 1] = 0
        assert ipv6.checksum(src, dst, proto, seg) == want
        assert _reference_checksum(src, dst, proto, seg) == want


def test_checksum_agrees_with_the_word_by_word_sum():
    seed = 12345
    for n in (0, 1, 2, 3, 59, 60, 61, 1439, 1440):
        data = bytearray(n)
        for i in range(n):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            data[i] = seed >> 16 & 0xFF
        src = ipv6.link_local(EV_MAC)
        assert ipv6.checksum(src, ipv6.ALL_NODES, 17, data) == _reference_checksum(src, ipv6.ALL_NODES, 17, data)
    # all-ones data: the sum is "negative zero", the checksum 0
    assert ipv6.checksum(bytes(16), bytes(16), 0xFF, b"\xff\x00") == _reference_checksum(bytes(16), bytes(16),
                                                                                         0xFF, b"\xff\x00")


def test_link_local_and_groups():
    assert ipv6.text(ipv6.link_local(EV_MAC)) == "fe80:0:0:0:50e7:26ff:fee7:9ce2"  # what the kernel made
    a = ipv6.link_local(KERNEL_MAC)
    assert ipv6.solicited_node(a) == bytes.fromhex("ff0200000000000000000001ff6c9904")
    assert ipv6.multicast_mac(ipv6.solicited_node(a)) == bytes.fromhex("3333ff6c9904")
    assert ipv6.from_text("fe80::9cb7:bcff:fe6c:9904%eth0") == a
    assert ipv6.from_text("ff02::1") == ipv6.ALL_NODES
    assert ipv6.from_text("::") == bytes(16)
    for bad in ("fe80:::1", "1::2::3", "12345::", "g::1", "1:2:3:4:5:6:7:8:9", ""):
        try:
            ipv6.from_text(bad)
            assert False, bad
        except PeerError:
            pass


def _frame_from(src_mac, src, dst, proto, seg, dst_mac=EV_MAC, hop=255):
    seg = bytearray(seg)
    at = {6: 16, 17: 6, 58: 2}[proto]
    c = ipv6.checksum(src, dst, proto, seg)
    seg[at] = c >> 8
    seg[at + 1] = c & 0xFF
    frame = bytearray(54 + len(seg))
    ipv6.header(frame, dst_mac, src_mac, src, dst, proto, len(seg), hop)
    frame[54:] = seg
    return bytes(frame)


def _upper(frame):
    src_mac, proto, hop, src, dst, plen = ipv6.parse(frame)
    seg = bytes(frame[54:54 + plen])
    assert ipv6.checksum(src, dst, proto, seg) == 0, "our checksum"
    return frame[0:6], proto, hop, src, dst, seg


def test_we_answer_a_solicitation_and_an_echo():
    st = stack.Stack(EV_MAC, 0, seed=3)
    peer = ipv6.link_local(KERNEL_MAC)
    ns = icmpv6.ns(st.address, KERNEL_MAC)
    st.receive(_frame_from(KERNEL_MAC, peer, ipv6.solicited_node(st.address), 58, ns), 0)
    out = st.output(0)
    assert len(out) == 1
    dst_mac, proto, hop, src, dst, msg = _upper(out[0])
    assert (dst_mac, proto, hop, src, dst) == (KERNEL_MAC, 58, 255, st.address, peer)
    flags, target, mac = icmpv6.parse_na(msg)
    assert (flags, target, mac) == (icmpv6.NA_SOLICITED | icmpv6.NA_OVERRIDE, st.address, EV_MAC)
    assert st.neighbour(peer) == KERNEL_MAC  # learnt from the solicitation's source option
    # a solicitation for someone else is not answered; one with a hop limit below 255 is dropped
    st.receive(_frame_from(KERNEL_MAC, peer, ipv6.solicited_node(peer), 58, icmpv6.ns(peer, KERNEL_MAC)), 0)
    st.receive(_frame_from(KERNEL_MAC, peer, st.address, 58, ns, hop=64), 0)
    assert st.output(0) == []
    assert "hop limit" in st.last_error
    st.receive(_frame_from(KERNEL_MAC, peer, st.address, 58, icmpv6.echo_request(7, 9, b"hello"), hop=64), 0)
    dst_mac, proto, hop, src, dst, msg = _upper(st.output(0)[0])
    assert msg[0] == icmpv6.ECHO_REPLY and msg[4:] == bytes((0, 7, 0, 9)) + b"hello"


def test_we_ask_for_a_neighbour_and_give_up_after_three():
    st = stack.Stack(EV_MAC, 0, seed=3)
    peer = ipv6.link_local(KERNEL_MAC)
    ep = st.udp_open(0)
    ep.sendto(b"first", peer, 15118, 0)
    out = st.output(0)
    assert len(out) == 1
    dst_mac, proto, hop, src, dst, msg = _upper(out[0])
    assert dst_mac == bytes.fromhex("3333ff6c9904") and dst == ipv6.solicited_node(peer) and hop == 255
    assert icmpv6.parse_ns(msg) == (peer, EV_MAC)
    assert st.next_deadline() == 1000
    st.receive(KERNEL_NA, 10)  # the kernel's answer (to another EV MAC's address, but for our target)
    assert st.neighbour(peer) == KERNEL_MAC
    dst_mac, proto, hop, src, dst, seg = _upper(st.output(10)[0])
    assert (dst_mac, proto, dst) == (KERNEL_MAC, 17, peer)
    assert udp.parse(seg)[1:] == (15118, b"first")
    assert ("neighbour", peer, KERNEL_MAC) in st.events()
    # an address nobody answers for: 3 solicitations 1 s apart, then "unreachable"
    other = ipv6.from_text("fe80::1")
    ep.sendto(b"x", other, 15118, 20)
    sent = len(st.output(20))
    now = 20
    while st.next_deadline() is not None:
        now = st.next_deadline()
        st.on_timer(now)
        sent += len(st.output(now))
    assert sent == 3 and now == 3020  # the last one is given RETRANS_TIMER too
    assert ("unreachable", other) in st.events()


def test_udp_delivery_is_bounded_and_checked():
    st = stack.Stack(EV_MAC, 0, seed=3)
    peer = ipv6.link_local(KERNEL_MAC)
    ep = st.udp_open(15118)
    for i in range(udp.MAX_QUEUE + 2):
        st.receive(_frame_from(KERNEL_MAC, peer, ipv6.ALL_NODES, 17, udp.build(50000, 15118, bytes((i,)))), 0)
    assert len(ep.queue) == udp.MAX_QUEUE and ep.dropped == 2
    assert ep.receive() == (peer, 50000, b"\x00")
    good = bytearray(_frame_from(KERNEL_MAC, peer, st.address, 17, udp.build(1, 15118, b"abc")))
    good[-1] ^= 1
    st.receive(good, 0)
    assert "checksum" in st.last_error
    zero = bytearray(_frame_from(KERNEL_MAC, peer, st.address, 17, udp.build(1, 15118, b"abc")))
    zero[54 + 6] = zero[54 + 7] = 0
    st.receive(zero, 0)
    assert len(ep.queue) == udp.MAX_QUEUE - 1


def test_every_parser_raises_only_peer_errors():
    samples = [KERNEL_NA, KERNEL_SYNACK,
               _frame_from(KERNEL_MAC, ipv6.link_local(KERNEL_MAC), ipv6.ALL_NODES, 17, udp.build(1, 2, b"x" * 30)),
               _frame_from(KERNEL_MAC, ipv6.link_local(KERNEL_MAC), ipv6.link_local(EV_MAC), 58,
                           icmpv6.ns(ipv6.link_local(EV_MAC), KERNEL_MAC))]
    parsers = (ipv6.parse, icmpv6.parse_ns, icmpv6.parse_na, udp.parse, stack.parse_tcp, icmpv6.echo_reply)
    seed = 99
    for sample in samples:
        for trial in range(300):
            data = bytearray(sample)
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            kind = seed % 3
            if kind == 0:
                data = data[:seed % (len(data) + 1)]
            else:
                for _ in range(1 + seed % 4):
                    seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
                    data[seed % len(data)] = (seed >> 8) & 0xFF
            for parse in parsers:
                for piece in (data, data[54:]):
                    try:
                        parse(piece)
                    except PeerError:
                        pass
            st = stack.Stack(EV_MAC, 0, seed=1)
            st.tcp_connect(ipv6.link_local(KERNEL_MAC), 7779, 0)
            st.output(0)
            st.receive(data, 0)  # never raises: counted and dropped
            st.output(0)


def test_offload_placeholder_is_accepted_only_when_asked():
    # What a veth peer with checksum offload sends: the field holds the pseudo-header's sum only.
    peer = ipv6.link_local(KERNEL_MAC)
    for partial in (False, True):
        st = stack.Stack(EV_MAC, 0, seed=3, partial_checksums=partial)
        ep = st.udp_open(15118)
        seg = bytearray(udp.build(50000, 15118, b"sdp"))
        n = len(seg)
        s = (ipv6._fold(peer) + ipv6._fold(st.address) + n + 17) % 0xFFFF
        seg[6] = s >> 8
        seg[7] = s & 0xFF
        assert ipv6.partial(peer, st.address, 17, seg, 6)
        frame = bytearray(54 + n)
        ipv6.header(frame, EV_MAC, KERNEL_MAC, peer, st.address, 17, n)
        frame[54:] = seg
        st.receive(frame, 0)
        assert len(ep.queue) == (1 if partial else 0)
        seg[7] ^= 0x10  # anything else still fails
        frame[54:] = seg
        st.receive(frame, 0)
        assert len(ep.queue) == (1 if partial else 0) and "checksum" in st.last_error
    # an address of our own choosing (beside a kernel's EUI-64 one)
    other = ipv6.from_text("fe80::50e7:26ff:fde7:9ce2")
    assert stack.Stack(EV_MAC, 0, address=other).address == other
