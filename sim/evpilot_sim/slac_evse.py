# The EVSE side of SLAC (ISO 15118-3) for the station simulator, a simulated Qualcomm modem, and a
# virtual-clock medium that carries frames between them and evpilot.slac.ev.SlacEv. MicroPython-clean.
#
# How this works:
#   SlacEvse   answers CM_SLAC_PARM.REQ, takes the sounds (CM_START_ATTEN_CHAR / CM_MNBC_SOUND), sums an
#              attenuation profile per sound and reports the average in CM_ATTEN_CHAR.IND (repeated until
#              the RSP), answers CM_VALIDATE and CM_SLAC_MATCH.REQ with its NID and NMK. The profile is
#              configurable (`attenuation`: dB for all 58 groups, or the groups as bytes), so tests can place
#              several EVSEs at different distances; without one, it sums the CM_ATTEN_PROFILE.IND a real
#              modem would send its host. Faults for tests: answer_parm, send_atten, answer_match = False.
#   SimModem   what a QCA7000 answers its own host on the local link (a veth has no modem): CM_SET_KEY.CNF
#              (with a Result that may lie, or lost), VS_NW_INFO.CNF (joined once the key is set and
#              `join_delay` has passed; never, or only after a VS_RS_DEV reset, for the quirk tests),
#              VS_SW_VER.CNF, VS_RS_DEV.CNF.
#   Medium     nodes on one broadcast domain on a virtual clock: every frame a node returns reaches every
#              other node `latency` ms later; time jumps to the next delivery or deadline.
# Every node has receive(frame, now) -> frames, on_timer(now) -> frames, next_deadline().

from evpilot.compat import const, ticks_add, ticks_diff
from evpilot.errors import PeerError
from evpilot.slac import mme, qca
from evpilot.slac import timers as T

IDLE = const(0)
WAIT_SOUNDS = const(1)
WAIT_RSP = const(2)
WAIT_MATCH = const(3)
MATCHED = const(4)
STATE_NAMES = ("idle", "wait_sounds", "wait_rsp", "wait_match", "matched")


def _profile(attenuation):
    if attenuation is None:
        return None
    if isinstance(attenuation, int):
        return bytes([attenuation]) * mme.AAG_GROUPS
    return bytes(attenuation)


class SlacEvse:
    def __init__(self, mac, nid=None, nmk=None, attenuation=None, evse_id=None, answer_parm=True,
                 send_atten=True, answer_match=True, validate_result=mme.VALIDATE_NOT_REQUIRED, random=None):
        self.mac = bytes(mac)
        if nmk is None:
            import os

            nmk = (random or os.urandom)(mme.NMK_LEN)
        self.nmk = bytes(nmk)
        self.nid = bytes(nid) if nid is not None else mme.nid_from_nmk(self.nmk)
        self.profile = _profile(attenuation)
        self.evse_id = evse_id
        self.answer_parm = answer_parm
        self.send_atten = send_atten
        self.answer_match = answer_match
        self.validate_result = validate_result
        self.state = IDLE
        self.ev_mac = None
        self.run_id = None
        self.sounds = 0
        self.matched = None  # {"ev_mac", "run_id"} once matched
        self.malformed = 0
        self._sums = [0] * mme.AAG_GROUPS
        self._groups = 0
        self._deadline = None
        self._tries = 0
        self._out = None
        self._events = []

    def events(self):
        ev = self._events
        self._events = []
        return ev

    def next_deadline(self):
        return self._deadline

    def on_timer(self, now):
        if self._deadline is None or ticks_diff(now, self._deadline) < 0:
            return []
        st = self.state
        if st == WAIT_SOUNDS:
            return self._report(now)
        if st == WAIT_RSP:
            if self._tries <= T.C_EV_MATCH_RETRY:  # the EVSE repeats its IND as the EV repeats a REQ
                self._tries += 1
                self._deadline = ticks_add(now, T.TT_MATCH_RESPONSE)
                return [self._out]
            return self._give_up("no CM_ATTEN_CHAR.RSP")
        if st == WAIT_MATCH:
            return self._give_up("no CM_SLAC_MATCH.REQ")  # TT_EVSE_match_session passed
        self._deadline = None
        return []

    def _give_up(self, reason):
        self._events.append(("timeout", {"reason": reason, "ev_mac": self.ev_mac}))
        self.state = IDLE
        self._deadline = None
        return []

    def receive(self, frame, now):
        t = mme.mmtype(frame)
        if t is None or bytes(frame[6:12]) == self.mac:
            return []
        dst = bytes(frame[0:6])
        if dst != self.mac and dst != mme.BROADCAST:
            return []
        try:
            return self._receive(t, frame, now)
        except PeerError:
            self.malformed += 1
            return []

    def _receive(self, t, frame, now):
        src = bytes(frame[6:12])
        st = self.state
        if t == mme.CM_SLAC_PARM | mme.REQ:
            if st == MATCHED or not self.answer_parm:
                return []
            d = mme.parse_slac_parm_req(frame)
            self.state = WAIT_SOUNDS
            self.ev_mac = src
            self.run_id = d["run_id"]
            self.sounds = 0
            self._sums = [0] * mme.AAG_GROUPS
            self._groups = 0
            # TT_match_sequence: the EV's START_ATTEN must come within this time
            self._deadline = ticks_add(now, T.TT_MATCH_SEQUENCE)
            self._events.append(("parm", {"ev_mac": src, "run_id": self.run_id}))
            return [mme.slac_parm_cnf(self.mac, src, self.run_id, T.C_EV_MATCH_MNBC, T.TIME_OUT_MNBC)]
        if src != self.ev_mac:
            return []
        if st == WAIT_SOUNDS:
            if t == mme.CM_START_ATTEN_CHAR | mme.IND:
                d = mme.parse_start_atten_char_ind(frame)
                if d["run_id"] == self.run_id and self.sounds == 0:
                    # TT_EVSE_match_MNBC (TIME_OUT x 100 ms) from the START_ATTEN for the sounds
                    self._deadline = ticks_add(now, 100 * (d["time_out"] or T.TIME_OUT_MNBC))
                return []
            if t == mme.CM_MNBC_SOUND | mme.IND:
                d = mme.parse_mnbc_sound_ind(frame)
                if d["run_id"] != self.run_id:
                    return []
                self.sounds += 1
                if self.profile is not None:
                    self._add(self.profile)
                if d["count"] == 0:
                    return self._report(now)
                return []
            if t == mme.CM_ATTEN_PROFILE | mme.IND:
                d = mme.parse_atten_profile_ind(frame)
                if d["pev_mac"] == self.ev_mac and self.profile is None:
                    self._add(d["aag"])
                return []
            return []
        if st == WAIT_RSP and t == mme.CM_ATTEN_CHAR | mme.RSP:
            d = mme.parse_atten_char_rsp(frame)
            if d["run_id"] == self.run_id:
                self.state = WAIT_MATCH
                self._deadline = ticks_add(now, T.TT_EVSE_MATCH_SESSION)
            return []
        if (st == WAIT_MATCH or st == WAIT_RSP) and t == mme.CM_VALIDATE | mme.REQ:
            mme.parse_validate(frame)
            return [mme.validate_cnf(self.mac, src, 0, self.validate_result)]
        if (st == WAIT_MATCH or st == WAIT_RSP or st == MATCHED) and t == mme.CM_SLAC_MATCH | mme.REQ:
            d = mme.parse_slac_match_req(frame)
            if d["run_id"] != self.run_id or not self.answer_match:
                return []
            if st != MATCHED:
                self.state = MATCHED
                self._deadline = None
                self.matched = {"ev_mac": src, "run_id": self.run_id, "nid": self.nid}
                self._events.append(("matched", self.matched))
            # a repeated REQ (our CNF was lost) gets the same CNF again
            return [mme.slac_match_cnf(self.mac, src, self.run_id, self.nid, self.nmk, d["pev_id"],
                                       self.evse_id)]
        return []

    def _add(self, aag):
        n = len(aag)
        if n > self._groups:
            self._groups = n
        sums = self._sums
        for i in range(n):
            sums[i] += aag[i]

    def _report(self, now):
        if self.sounds == 0 or self._groups == 0 or not self.send_atten:
            return self._give_up("no CM_MNBC_SOUND.IND")
        n = self._groups
        avg = bytearray(n)
        for i in range(n):
            avg[i] = self._sums[i] // self.sounds
        self.state = WAIT_RSP
        self._tries = 1
        self._deadline = ticks_add(now, T.TT_MATCH_RESPONSE)
        self._out = mme.atten_char_ind(self.mac, self.ev_mac, self.run_id, bytes(avg), self.sounds, None,
                                       self.evse_id)
        return [self._out]


class SimModem:
    """The local modem of `host` (a MAC): answers only what its host sends to it."""

    def __init__(self, host, mac=b"\x00\xb0\x52\x00\x00\x10", join_delay=500, set_key_result=0, lose_set_key=0,
                 joins=True, needs_reset=False, reset_time=300, version="MAC-QCA7000-1.2.5.3207-00-20170206-CS"):
        self.host = bytes(host)
        self.mac = bytes(mac)
        self.join_delay = join_delay
        self.set_key_result = set_key_result
        self.lose_set_key = lose_set_key  # SET_KEY.CNFs to drop (-1: all)
        self.joins = joins
        self.needs_reset = needs_reset
        self.reset_time = reset_time
        self.version = version
        self.nid = None
        self.key_time = None
        self.resets = 0
        self.set_keys = 0
        self.polls = 0
        self._up_at = None

    def next_deadline(self):
        return None

    def on_timer(self, now):
        return []

    def joined(self, now):
        if not self.joins or self.nid is None or (self.needs_reset and self.resets == 0):
            return False
        if self._up_at is not None and ticks_diff(now, self._up_at) < 0:
            return False
        return ticks_diff(now, ticks_add(self.key_time, self.join_delay)) >= 0

    def receive(self, frame, now):
        t = mme.mmtype(frame)
        if t is None or bytes(frame[6:12]) != self.host:
            return []
        dst = bytes(frame[0:6])
        if dst != mme.QCA_LOCAL and dst != self.mac:
            return []
        if self._up_at is not None and ticks_diff(now, self._up_at) < 0:
            return []  # restarting after a reset: deaf
        try:
            if t == mme.CM_SET_KEY | mme.REQ:
                d = mme.parse_set_key_req(frame)
                self.set_keys += 1
                self.nid = d["nid"]
                self.key_time = now
                if self.lose_set_key:
                    if self.lose_set_key > 0:
                        self.lose_set_key -= 1
                    return []
                return [mme.set_key_cnf(self.mac, self.host, self.set_key_result, b"\x11\x22\x33\x44",
                                        d["my_nonce"])]
            if t == mme.VS_NW_INFO | mme.REQ:
                self.polls += 1
                nets = []
                if self.joined(now):
                    peer = b"\x00\xb0\x52\x00\x00\x20"
                    nets.append((self.nid, 1, 2, 0, peer, [(peer, 1, b"\xff" * 6, 9, 9)]))
                return [qca.nw_info_cnf(self.mac, self.host, nets)]
            if t == mme.VS_SW_VER | mme.REQ:
                return [qca.sw_ver_cnf(self.mac, self.host, self.version)]
            if t == mme.VS_RS_DEV | mme.REQ:
                self.resets += 1
                self._up_at = ticks_add(now, self.reset_time)
                return [qca.rs_dev_cnf(self.mac, self.host, 0)]
        except PeerError:
            return []
        return []


class Medium:
    """Nodes on one broadcast domain on a virtual clock. `drop(frame, sender_index)` may return True to lose
    a frame (fault tests). `log` collects (time, sender index, frame) when a list is given."""

    def __init__(self, nodes, latency=2, drop=None, log=None):
        self.nodes = nodes
        self.latency = latency
        self.drop = drop
        self.log = log
        self._flight = []  # [due, sender, frame]

    def send(self, sender, frames, now):
        for f in frames:
            if self.log is not None:
                self.log.append((now, sender, f))
            if self.drop is not None and self.drop(f, sender):
                continue
            self._flight.append((ticks_add(now, self.latency), sender, f))

    def run(self, now, until, limit=600000, max_steps=200000):
        """Step until `until()` is true or nothing is left to do or `limit` ms passed; returns the time."""
        end = ticks_add(now, limit)
        for _ in range(max_steps):
            if until():
                return now
            best = None
            for f in self._flight:
                if best is None or ticks_diff(f[0], best) < 0:
                    best = f[0]
            for n in self.nodes:
                d = n.next_deadline()
                if d is not None and (best is None or ticks_diff(d, best) < 0):
                    best = d
            if best is None or ticks_diff(best, end) > 0:
                return now
            if ticks_diff(best, now) > 0:
                now = best
            due = [f for f in self._flight if ticks_diff(f[0], now) <= 0]
            if due:
                self._flight = [f for f in self._flight if ticks_diff(f[0], now) > 0]
                for _, sender, frame in due:
                    for i in range(len(self.nodes)):
                        if i != sender:
                            self.send(i, self.nodes[i].receive(frame, now), now)
            for i in range(len(self.nodes)):
                d = self.nodes[i].next_deadline()
                if d is not None and ticks_diff(d, now) <= 0:
                    self.send(i, self.nodes[i].on_timer(now), now)
        return now
