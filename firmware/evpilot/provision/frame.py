# Framing for the provisioning channel: CBOR payloads over a byte stream that the REPL and the log share.
#
# How this works
# --------------
# A frame on the wire is
#     MARKER (3 bytes: 0x1E 'E' 'P') | length (2 bytes, big-endian) | payload | CRC-32 (4 bytes, big-endian)
# The CRC-32 (IEEE 802.3 polynomial, as binascii.crc32 and zlib.crc32 compute it) covers the length and the
# payload. 0x1E (ASCII record separator) does not occur in REPL or log text, so anything between frames is
# skipped as noise. A length over MAX_PAYLOAD or a CRC that does not match means the marker was not a frame
# start (or the frame was damaged): the deframer reports one error and resynchronises by searching for the
# next marker after the false one, so one bad frame never costs the frames after it. A frame started but not
# completed within PARTIAL_TIMEOUT ms (a truncated frame: the sender died or bytes were lost) is dropped
# with an error when more data or a timer arrives after that time, so a later frame is never glued to it.
#
# Deframer is sans-I/O: feed(data, now) returns a list of events, each (FRAME, payload bytes) or
# (ERROR, message); next_deadline() / on_timer(now) expire a partial frame. The buffer is bounded: at most
# one frame's worth (HEADER + MAX_PAYLOAD + 4) is kept.

from evpilot.compat import const, ticks_add, ticks_diff

MARKER = b"\x1eEP"
HEADER = const(5)  # marker + length
TRAILER = const(4)
MAX_PAYLOAD = const(12288)  # an OEM chain of 3 certificates or a contract chain with its key, with room
PARTIAL_TIMEOUT = const(2000)
FRAME = const(1)
ERROR = const(2)

try:
    from binascii import crc32 as _crc32
except ImportError:  # a port built without it
    _crc32 = None


def crc32(data, crc=0):
    """CRC-32 (IEEE) of data, continuing from crc (as binascii.crc32)."""
    if _crc32 is not None:
        return _crc32(data, crc) & 0xFFFFFFFF
    crc = ~crc & 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return ~crc & 0xFFFFFFFF


def encode(payload):
    """The frame that carries payload (bytes of at most MAX_PAYLOAD)."""
    n = len(payload)
    if n > MAX_PAYLOAD:
        from evpilot.errors import UsageError

        raise UsageError("frame payload of %d bytes is over the %d-byte limit" % (n, MAX_PAYLOAD))
    length = n.to_bytes(2, "big")
    crc = crc32(payload, crc32(length))
    return MARKER + length + bytes(payload) + crc.to_bytes(4, "big")


class Deframer:
    def __init__(self, max_payload=MAX_PAYLOAD):
        self.max_payload = min(max_payload, MAX_PAYLOAD)
        self._buf = bytearray()
        self._started = None  # when the partial frame at the buffer's start began, or None

    def next_deadline(self):
        return None if self._started is None else ticks_add(self._started, PARTIAL_TIMEOUT)

    def on_timer(self, now):
        events = []
        self._expire(now, events)
        return events

    def _expire(self, now, events):
        if self._started is not None and ticks_diff(now, self._started) >= PARTIAL_TIMEOUT:
            events.append((ERROR, "truncated frame dropped (%d bytes, nothing more for %d ms)"
                           % (len(self._buf), PARTIAL_TIMEOUT)))
            # drop the false start and look again in what came with it
            self._buf = self._buf[1:]
            self._started = None

    def feed(self, data, now):
        """Events for data (bytes) received at now (ms)."""
        events = []
        self._expire(now, events)
        self._buf.extend(data)
        buf = self._buf  # MicroPython's bytearray has no slice deletion: a slice replaces it
        while True:
            start = buf.find(MARKER)
            if start < 0:
                # keep a tail that may be the beginning of a marker
                keep = 0
                for k in (2, 1):
                    if len(buf) >= k and buf[len(buf) - k:] == MARKER[:k]:
                        keep = k
                        break
                buf = self._buf = buf[len(buf) - keep:]
                self._started = now if keep else None
                return events
            if start:
                buf = self._buf = buf[start:]
                self._started = None
            if len(buf) < HEADER:
                break
            n = int.from_bytes(buf[3:5], "big")
            if n > self.max_payload:
                events.append((ERROR, "frame length %d is over the %d-byte limit" % (n, self.max_payload)))
                buf = self._buf = buf[1:]
                self._started = None
                continue
            if len(buf) < HEADER + n + TRAILER:
                break
            end = HEADER + n
            got = int.from_bytes(buf[end:end + TRAILER], "big")
            if crc32(memoryview(buf)[HEADER:end], crc32(memoryview(buf)[3:HEADER])) != got:
                events.append((ERROR, "frame CRC mismatch (damaged frame, %d bytes)" % n))
                buf = self._buf = buf[1:]
                self._started = None
                continue
            events.append((FRAME, bytes(buf[HEADER:end])))
            buf = self._buf = buf[end + TRAILER:]
            self._started = None
        if self._started is None:
            self._started = now
        return events
