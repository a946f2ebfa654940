# The board's IPv6 host on one Ethernet link, sans-I/O: frames and `now` in; frames, events and the next
# deadline out.
#
# How this works
# --------------
# receive(frame, now) takes one Ethernet frame. IPv6 frames addressed to our link-local address, ff02::1
# or our solicited-node group have their upper-layer checksum checked and go to ICMPv6 (neighbour
# solicitation answered, advertisement learnt, echo answered), UDP (a bound UdpEndpoint's queue) or TCP
# (the TcpConnection of that address and port pair; a segment for none is answered with RST, RFC 9293
# 3.10.7.1). Anything malformed is counted in `dropped` and otherwise ignored: a PLC link carries other
# hosts' traffic, and nothing a peer sends may end the stack.
# output(now) returns the frames to send: answers, UDP datagrams, and every connection's TCP segments.
# Unicast needs the neighbour's MAC: the first packet to an unknown address is held (MAX_QUEUED per
# address) while a neighbour solicitation goes to its solicited-node group, repeated every RETRANS_TIMER
# up to MAX_MULTICAST_SOLICIT times (RFC 4861 section 10); then the held packets are dropped and an
# ("unreachable", address) event is queued. Events (a bounded list the caller takes with events()):
# ("neighbour", address, mac), ("unreachable", address), ("echo_reply", address, ident, seq).
# next_deadline() is the earliest of the solicitation timers and the connections' timers; on_timer(now)
# runs whatever is due and forgets connections that have closed.
# `address` replaces the EUI-64 address (aio.netstack picks one beside the kernel's when the kernel has
# IPv6 on the same interface); `partial_checksums` accepts frames whose checksum is still the offload
# placeholder (ipv6.partial: a veth peer; a real link's frames come off the wire complete).
# Not done (a single-link PLC client does not need them): DAD for our address, router discovery, MLD
# reports, neighbour unreachability detection (a cache entry lives until the cache is full), extension
# headers (a packet with one is dropped), fragments.

import struct

from evpilot.compat import const, ticks_add, ticks_diff
from evpilot.errors import PeerError, UsageError
from evpilot.net import icmpv6, ipv6, udp
from evpilot.net.tcp import RST, ACK, SYN, TcpConnection

RETRANS_TIMER = const(1000)  # RFC 4861 section 10
MAX_MULTICAST_SOLICIT = const(3)
MAX_NEIGHBOURS = const(8)
MAX_QUEUED = const(3)  # packets held per address while its MAC is asked for
MAX_EVENTS = const(16)
MAX_CONNECTIONS = const(4)
EPHEMERAL_FIRST = const(49152)  # RFC 6335 section 6: the dynamic port range

_TCP_HEADER = const(20)


def parse_tcp(seg):
    """(sport, dport, seq, ack, flags, window, mss or 0, payload) of a TCP segment (checksum checked)."""
    n = len(seg)
    if n < _TCP_HEADER:
        raise PeerError("TCP: segment of %d bytes" % n)
    sport, dport, seq, ack, off, flags, window = struct.unpack_from(">HHIIBBH", seg, 0)
    hlen = (off >> 4) * 4
    if hlen < _TCP_HEADER or hlen > n:
        raise PeerError("TCP: data offset %d, segment has %d" % (hlen, n))
    mss = 0
    i = _TCP_HEADER
    while i < hlen:  # options (RFC 9293 3.1): end, no-op, or kind-length-value inside the header
        kind = seg[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= hlen or seg[i + 1] < 2 or i + seg[i + 1] > hlen:
            raise PeerError("TCP: option %d at %d runs past the header" % (kind, i))
        if kind == 2:
            if seg[i + 1] != 4:
                raise PeerError("TCP: MSS option of length %d" % seg[i + 1])
            mss = (seg[i + 2] << 8) | seg[i + 3]
        i += seg[i + 1]
    return sport, dport, seq, ack, flags, window, mss, seg[hlen:]


def build_tcp(sport, dport, seq, ack, flags, window, mss, payload):
    hlen = _TCP_HEADER + (4 if mss else 0)
    m = bytearray(hlen + len(payload))
    struct.pack_into(">HHIIBBH", m, 0, sport, dport, seq, ack, (hlen // 4) << 4, flags, window)
    if mss:
        m[20] = 2
        m[21] = 4
        m[22] = mss >> 8
        m[23] = mss & 0xFF
    m[hlen:] = payload
    return m


class Stack:
    def __init__(self, mac, now=0, seed=1, mss=None, rx_size=4096, tx_size=4096, address=None,
                 partial_checksums=False):
        """mac: our 6-byte MAC; seed: an integer to pick ports and initial sequence numbers from (the
        adapter passes random bytes: RFC 6528 wants the ISS unpredictable)."""
        self.mac = bytes(mac)
        self.address = ipv6.link_local(self.mac) if address is None else bytes(address)
        self.partial_checksums = partial_checksums
        self._solicited = ipv6.solicited_node(self.address)
        self.mss = mss or (ipv6.MTU - ipv6.IP_HEADER - _TCP_HEADER)  # 1440 on Ethernet
        self.rx_size = rx_size
        self.tx_size = tx_size
        self._now = now
        self._rand = (seed ^ 0x5DEECE66D) & 0xFFFFFFFF or 1
        self._neighbours = {}  # address -> MAC
        self._asking = {}  # address -> [deadline, solicitations sent, [held packets (proto, segment)]]
        self._udp = {}  # port -> UdpEndpoint
        self.connections = []
        self._out = []
        self._events = []
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0  # malformed, bad checksum, not for us
        self.last_error = None  # the message of the last malformed frame (for logs)

    # -- helpers --

    def _random(self):
        # xorshift32: ports and ISS differ per connection; unpredictability comes from the seed
        x = self._rand
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rand = x
        return x

    def _event(self, item):
        if len(self._events) >= MAX_EVENTS:
            self._events.pop(0)
        self._events.append(item)

    def events(self):
        """The events since the last call (oldest first)."""
        out = self._events
        self._events = []
        return out

    def neighbour(self, address):
        return self._neighbours.get(bytes(address))

    def _learn(self, address, mac):
        if address == ipv6.UNSPECIFIED or ipv6.is_multicast(address) or mac is None:
            return
        known = self._neighbours.get(address)
        if known is None and len(self._neighbours) >= MAX_NEIGHBOURS:
            for k in self._neighbours:
                del self._neighbours[k]
                break
        self._neighbours[address] = mac
        if known != mac:
            self._event(("neighbour", address, mac))
        asking = self._asking.pop(address, None)
        if asking is not None:
            for proto, seg, hop in asking[2]:
                self._frame(mac, address, proto, seg, hop)

    def _frame(self, dst_mac, dst, proto, seg, hop):
        frame = bytearray(ipv6.L4 + len(seg))
        ipv6.header(frame, dst_mac, self.mac, self.address, dst, proto, len(seg), hop)
        frame[ipv6.L4:] = seg
        self._out.append(frame)
        self.frames_out += 1

    def _send(self, dst, proto, seg, hop=64):
        """Checksum `seg` (its field zero) and send it to `dst`, asking for the MAC first if needed."""
        at = 16 if proto == ipv6.PROTO_TCP else (6 if proto == ipv6.PROTO_UDP else 2)
        c = ipv6.checksum(self.address, dst, proto, seg)
        if proto == ipv6.PROTO_UDP and c == 0:
            c = 0xFFFF  # RFC 768: a computed zero is sent as all ones
        seg[at] = c >> 8
        seg[at + 1] = c & 0xFF
        if ipv6.is_multicast(dst):
            self._frame(ipv6.multicast_mac(dst), dst, proto, seg, hop)
            return
        mac = self._neighbours.get(dst)
        if mac is not None:
            self._frame(mac, dst, proto, seg, hop)
            return
        asking = self._asking.get(dst)
        if asking is None:
            if len(self._asking) >= MAX_NEIGHBOURS:
                return  # too many unknown neighbours at once: the protocols above retry
            asking = [self._now, 0, []]
            self._asking[dst] = asking
        if len(asking[2]) < MAX_QUEUED:
            asking[2].append((proto, seg, hop))
        if asking[1] == 0:
            self._solicit(dst, asking)

    def _solicit(self, target, asking):
        asking[1] += 1
        asking[0] = ticks_add(self._now, RETRANS_TIMER)
        group = ipv6.solicited_node(target)
        self._send(group, ipv6.PROTO_ICMPV6, icmpv6.ns(target, self.mac), 255)

    # -- frames in --

    def receive(self, frame, now):
        """One Ethernet frame (bytes, bytearray or memoryview; not kept after the call)."""
        self._now = now
        self.frames_in += 1
        try:
            self._receive(frame, now)
        except PeerError as e:
            self.dropped += 1
            self.last_error = str(e)
        except (IndexError, ValueError, KeyError, TypeError) as e:  # only our errors leave a parser
            self.dropped += 1
            self.last_error = "malformed frame: %s" % (e,)

    def _receive(self, frame, now):
        head = ipv6.parse(frame)
        if head is None:
            self.dropped += 1
            return
        src_mac, proto, hop, src, dst, plen = head
        if dst != self.address and dst != ipv6.ALL_NODES and dst != self._solicited:
            self.dropped += 1
            return
        seg = memoryview(frame)[ipv6.L4:ipv6.L4 + plen]
        if proto not in (ipv6.PROTO_TCP, ipv6.PROTO_UDP, ipv6.PROTO_ICMPV6):
            self.dropped += 1  # extension headers, other protocols
            return
        if ipv6.checksum(src, dst, proto, seg) != 0 and not (
                self.partial_checksums and ipv6.partial(src, dst, proto, seg, 16 if proto == 6 else
                                                        (6 if proto == 17 else 2))):
            raise PeerError("IPv6: bad %s checksum" % ("TCP" if proto == 6 else "UDP" if proto == 17 else "ICMPv6"))
        if proto == ipv6.PROTO_ICMPV6:
            self._icmp(src_mac, hop, src, dst, seg)
        elif proto == ipv6.PROTO_UDP:
            if len(seg) >= 8 and seg[6] == 0 and seg[7] == 0:
                raise PeerError("UDP: checksum zero over IPv6")
            sport, dport, payload = udp.parse(seg)
            ep = self._udp.get(dport)
            if ep is None:
                self.dropped += 1
                return
            ep.deliver(src, sport, payload)
        else:
            self._tcp(src, seg, now)

    def _icmp(self, src_mac, hop, src, dst, msg):
        if len(msg) < 4:
            raise PeerError("ICMPv6: message of %d bytes" % len(msg))
        kind = msg[0]
        if kind == icmpv6.NEIGHBOR_SOLICITATION:
            if hop != 255:
                raise PeerError("NDP: hop limit %d (RFC 4861 7.1.1: 255)" % hop)
            target, mac = icmpv6.parse_ns(msg)
            if target != self.address:
                return
            if src == ipv6.UNSPECIFIED:  # someone's DAD for our address: answer to all nodes (7.2.4)
                self._send(ipv6.ALL_NODES, ipv6.PROTO_ICMPV6, icmpv6.na(self.address, self.mac,
                                                                       icmpv6.NA_OVERRIDE), 255)
                return
            self._learn(src, mac)
            flags = icmpv6.NA_SOLICITED | icmpv6.NA_OVERRIDE
            na = icmpv6.na(self.address, self.mac, flags)
            if mac is None:  # no option: answer the frame's sender
                self._frame_checked(src_mac, src, na)
            else:
                self._send(src, ipv6.PROTO_ICMPV6, na, 255)
        elif kind == icmpv6.NEIGHBOR_ADVERTISEMENT:
            if hop != 255:
                raise PeerError("NDP: hop limit %d (RFC 4861 7.1.2: 255)" % hop)
            flags, target, mac = icmpv6.parse_na(msg)
            if target in self._asking or target in self._neighbours:
                self._learn(target, mac or src_mac)
        elif kind == icmpv6.ECHO_REQUEST:
            if ipv6.is_multicast(dst) or len(msg) > icmpv6.MAX_ECHO + 8:
                return
            self._send(src, ipv6.PROTO_ICMPV6, icmpv6.echo_reply(msg))
        elif kind == icmpv6.ECHO_REPLY:
            if len(msg) >= 8:
                self._event(("echo_reply", src, (msg[4] << 8) | msg[5], (msg[6] << 8) | msg[7]))

    def _frame_checked(self, dst_mac, dst, seg):
        c = ipv6.checksum(self.address, dst, ipv6.PROTO_ICMPV6, seg)
        seg[2] = c >> 8
        seg[3] = c & 0xFF
        self._frame(dst_mac, dst, ipv6.PROTO_ICMPV6, seg, 255)

    def _tcp(self, src, seg, now):
        sport, dport, seq, ack, flags, window, mss, payload = parse_tcp(seg)
        for conn in self.connections:
            if conn.local_port == dport and conn.port == sport and conn.address == src:
                conn.segment(seq, ack, flags, window, mss, payload, now)
                return
        self.dropped += 1
        if flags & RST:
            return
        # RFC 9293 3.10.7.1: a segment for no connection is answered with a reset
        if flags & ACK:
            rst = build_tcp(dport, sport, ack, 0, RST, 0, 0, b"")
        else:
            n = len(payload) + (1 if flags & SYN else 0) + (flags & 1)
            rst = build_tcp(dport, sport, 0, (seq + n) & 0xFFFFFFFF, RST | ACK, 0, 0, b"")
        self._send(src, ipv6.PROTO_TCP, rst)

    # -- what the application asks --

    def udp_open(self, port=0):
        """A UdpEndpoint bound to `port` (0: a free ephemeral port)."""
        if not port:
            for _ in range(64):
                port = EPHEMERAL_FIRST + self._random() % (65536 - EPHEMERAL_FIRST)
                if port not in self._udp:
                    break
        if port in self._udp:
            raise UsageError("UDP port %d is in use" % port)
        ep = udp.UdpEndpoint(self, port)
        self._udp[port] = ep
        return ep

    def udp_close(self, port):
        self._udp.pop(port, None)

    def send_udp(self, sport, address, port, data, now=None):
        if now is not None:
            self._now = now
        if len(data) > ipv6.MTU - ipv6.IP_HEADER - udp.HEADER:
            raise UsageError("UDP: %d bytes do not fit one frame" % len(data))
        self._send(bytes(address), ipv6.PROTO_UDP, udp.build(sport, port, data))

    def ping(self, address, ident, seq, data=b"", now=None):
        if now is not None:
            self._now = now
        self._send(bytes(address), ipv6.PROTO_ICMPV6, icmpv6.echo_request(ident, seq, data))

    def tcp_connect(self, address, port, now):
        """A new TcpConnection to [address]:port; its SYN goes out with the next output()."""
        self._now = now
        live = [c for c in self.connections if not c.finished]
        if len(live) >= MAX_CONNECTIONS:
            raise UsageError("TCP: %d connections open already" % len(live))
        address = bytes(address)
        if len(address) != 16:
            raise UsageError("TCP: an IPv6 address has 16 bytes")
        used = [c.local_port for c in self.connections]
        local = 0
        for _ in range(64):
            local = EPHEMERAL_FIRST + self._random() % (65536 - EPHEMERAL_FIRST)
            if local not in used:
                break
        conn = TcpConnection(local, address, port, self._random(), now, self.mss, self.rx_size, self.tx_size)
        self.connections.append(conn)
        return conn

    # -- frames out, time --

    def output(self, now=None):
        """The frames to send now (bytearrays), oldest first."""
        if now is not None:
            self._now = now
        for conn in self.connections:
            for seq, ack, flags, window, mss, payload in conn.segments(self._now):
                self._send(conn.address, ipv6.PROTO_TCP,
                           build_tcp(conn.local_port, conn.port, seq, ack, flags, window, mss, payload))
        out = self._out
        self._out = []
        return out

    def next_deadline(self):
        best = None
        for asking in self._asking.values():
            if best is None or ticks_diff(asking[0], best) < 0:
                best = asking[0]
        for conn in self.connections:
            d = conn.next_deadline()
            if d is not None and (best is None or ticks_diff(d, best) < 0):
                best = d
        return best

    def on_timer(self, now):
        self._now = now
        for target in list(self._asking):
            asking = self._asking[target]
            if ticks_diff(now, asking[0]) < 0:
                continue
            if asking[1] >= MAX_MULTICAST_SOLICIT:
                del self._asking[target]
                self._event(("unreachable", target))
            else:
                self._solicit(target, asking)
        for conn in self.connections:
            conn.on_timer(now)
        # a closed connection whose last segment (RST, final ACK) has been output is forgotten
        self.connections = [c for c in self.connections if not c.finished or c._rst_due is not None]
