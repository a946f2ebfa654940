# The EV side of SLAC (ISO 15118-3 clause 9 / Annex A), sans-I/O.
#
# How this works: SlacEv takes received frames and the time (`receive(frame, now)`, `on_timer(now)`) and
# returns the frames to send; `next_deadline()` says when to call on_timer next; `events()` hands over what
# happened: ("restart", {"reason"}), then one of ("matched", {"evse_mac", "nid", "nmk", "attenuation",
# "candidates", ...}) or ("failed", {"reason"}). The sequence, with the standard's names:
#
#   PARM      CM_SLAC_PARM.REQ broadcast with a fresh RunID, repeated every TT_match_response up to
#             C_EV_match_retry times until a CNF for our RunID comes
#   SOUNDING  3 CM_START_ATTEN_CHAR.IND, then 10 CM_MNBC_SOUND.IND, TP_EV_batch_msg_interval apart; every
#             CM_ATTEN_CHAR.IND for our RunID that comes within TT_EV_atten_results of the first
#             START_ATTEN is answered with a CM_ATTEN_CHAR.RSP and kept
#   (select)  the EVSE with the lowest average attenuation wins; every EVSE above `attenuation_limit` dB is
#             refused. On a shared medium (neighbouring connectors' modems hear each other) the first answer
#             can come from the wrong charger, which is why the EV waits for the whole window.
#   VALIDATE  optional CM_VALIDATE.REQ/CNF with the winner (a CNF saying failure ends the attempt)
#   MATCH     CM_SLAC_MATCH.REQ unicast to the winner, repeated as PARM; the CNF carries NID and NMK (an
#             all-zero NID is derived from the NMK)
#   SET_KEY   CM_SET_KEY.REQ to the local modem (Qualcomm's local management address), repeated as PARM. The
#             CNF's Result is not trusted: modems report failure and use the key anyway (field reports)
#   JOIN      after MODEM_SETTLE, VS_NW_INFO.REQ every MODEM_POLL_INTERVAL until the modem reports our NID
#             with at least one other station in it, within TT_match_join of the MATCH.CNF. A modem that has
#             not joined after `reset_after` ms is reset once (VS_RS_DEV; some QCA modems need it after
#             SET_KEY) and polled again.
#
# Restarts: a failure before the match (no PARM.CNF, no ATTEN_CHAR.IND, all EVSEs over the limit, no MATCH
# or VALIDATE.CNF) restarts the whole sequence with a new RunID after TT_matching_rate, up to
# C_conn_max_match attempts and within TT_matching_repetition; the last attempt's reason is the failure's.
# A modem failure (SET_KEY lost, not joined) is final: repeating SLAC does not mend the local modem.
# Frames from other sessions (another RunID, another EV's MAC, another EVSE than the chosen one) are
# ignored all along, and every SLAC frame once matched (a neighbouring connector's cross-talk).
# receive() never raises on what it is given: a malformed frame is counted in `malformed` and dropped.

from evpilot.compat import const, ticks_add, ticks_diff
from evpilot.errors import PeerError, UsageError
from evpilot.slac import mme, qca
from evpilot.slac import timers as T

IDLE = const(0)
PARM = const(1)
SOUNDING = const(2)
VALIDATE = const(3)
MATCH = const(4)
SET_KEY = const(5)
JOIN = const(6)
WAIT_RESTART = const(7)
MATCHED = const(8)
FAILED = const(9)
STATE_NAMES = ("idle", "parm", "sounding", "validate", "match", "set_key", "join", "wait_restart", "matched",
               "failed")

# failure reasons (the text of the "failed" event)
NO_PARM_CNF = "no CM_SLAC_PARM.CNF"
NO_ATTEN_CHAR = "no CM_ATTEN_CHAR.IND"
OVER_LIMIT = "every EVSE over the attenuation limit"
NO_VALIDATE_CNF = "no CM_VALIDATE.CNF"
VALIDATE_FAILED = "CM_VALIDATE failed"
NO_MATCH_CNF = "no CM_SLAC_MATCH.CNF"
NO_SET_KEY_CNF = "no CM_SET_KEY.CNF from the local modem"
NOT_JOINED = "modem did not join the EVSE's network"

_ZERO_NID = bytes(mme.NID_LEN)
_MAX_CANDIDATES = const(8)


def _urandom(n):
    import os

    return os.urandom(n)


class SlacEv:
    def __init__(self, mac, random=None, attenuation_limit=None, validate=False, attempts=T.C_CONN_MAX_MATCH,
                 pev_id=None, batch_interval=T.TP_EV_BATCH_MSG_INTERVAL, modem=mme.QCA_LOCAL,
                 settle=T.MODEM_SETTLE, poll_interval=T.MODEM_POLL_INTERVAL, join_timeout=T.TT_MATCH_JOIN,
                 reset_after=None):
        if len(mac) != 6:
            raise UsageError("the EV's MAC must be 6 bytes")
        if attempts < 1:
            raise UsageError("attempts must be at least 1")
        self.mac = bytes(mac)
        self._random = random or _urandom
        self.attenuation_limit = attenuation_limit
        self.validate = validate
        self.attempts = attempts
        self.pev_id = pev_id
        self.batch_interval = batch_interval
        self.modem = modem
        self.settle = settle
        self.poll_interval = poll_interval
        self.join_timeout = join_timeout
        self.reset_after = reset_after
        self.state = IDLE
        self.attempt = 0
        self.run_id = None
        self.result = None
        self.reason = None
        self.malformed = 0
        self.set_key_result = None
        self.modem_reset = False
        self._events = []
        self._deadline = None
        self._tries = 0
        self._first_start = 0
        self._candidates = []  # [mac, average dB, aag, frame fields]
        self._chosen = None
        self._nid = None
        self._nmk = None
        self._nonce = None
        self._join_deadline = 0
        self._key_time = 0
        self._batch = 0
        self._batch_due = 0
        self._atten_deadline = 0
        self._num_sounds = T.C_EV_MATCH_MNBC
        self._batch_total = T.C_EV_START_ATTEN_CHAR_INDS + T.C_EV_MATCH_MNBC

    # --- the interface --------------------------------------------------------------------------------

    def start(self, now):
        if self.state != IDLE:
            raise UsageError("SLAC already started (state %s)" % STATE_NAMES[self.state])
        self._first_start = now
        return self._begin(now)

    def done(self):
        return self.state == MATCHED or self.state == FAILED

    def next_deadline(self):
        if self.state == SOUNDING:
            if self._batch < self._batch_total and ticks_diff(self._batch_due, self._atten_deadline) < 0:
                return self._batch_due
            return self._atten_deadline
        return self._deadline

    def events(self):
        ev = self._events
        self._events = []
        return ev

    def on_timer(self, now):
        st = self.state
        if st == SOUNDING:
            out = []
            while self._batch < self._batch_total and ticks_diff(now, self._batch_due) >= 0:
                out.append(self._batch_frame())
            if ticks_diff(now, self._atten_deadline) >= 0:
                out.extend(self._select(now))
            return out
        if self._deadline is None or ticks_diff(now, self._deadline) < 0:
            return []
        if st == PARM:
            return self._repeat(now, NO_PARM_CNF)
        if st == VALIDATE:
            return self._repeat(now, NO_VALIDATE_CNF)
        if st == MATCH:
            return self._repeat(now, NO_MATCH_CNF)
        if st == SET_KEY:
            return self._repeat(now, NO_SET_KEY_CNF)
        if st == JOIN:
            if ticks_diff(now, self._join_deadline) >= 0:
                return self._fail(NOT_JOINED)
            out = []
            if (self.reset_after is not None and not self.modem_reset
                    and ticks_diff(now, ticks_add(self._key_time, self.reset_after)) >= 0):
                self.modem_reset = True
                out.append(qca.rs_dev_req(self.mac, self.modem))
                self._deadline = ticks_add(now, self.settle)  # the modem restarts: ask again after settling
                if ticks_diff(self._deadline, self._join_deadline) > 0:
                    self._deadline = self._join_deadline
                return out
            out.append(qca.nw_info_req(self.mac, self.modem))
            self._deadline = ticks_add(now, self.poll_interval)
            if ticks_diff(self._deadline, self._join_deadline) > 0:
                self._deadline = self._join_deadline
            return out
        if st == WAIT_RESTART:
            return self._begin(now)
        return []

    def receive(self, frame, now):
        if self.state == IDLE or self.state == MATCHED or self.state == FAILED:
            return []
        t = mme.mmtype(frame)
        if t is None or len(frame) < 12 or bytes(frame[6:12]) == self.mac:
            return []  # not HomePlug, or our own frame echoed by the interface
        dst = bytes(frame[0:6])
        if dst != self.mac and dst != mme.BROADCAST:
            return []  # addressed to another EV
        try:
            return self._receive(t, frame, now)
        except PeerError:
            self.malformed += 1
            return []

    # --- the steps ------------------------------------------------------------------------------------

    def _begin(self, now):
        self.attempt += 1
        self.run_id = bytes(self._random(mme.RUN_ID_LEN))
        self._candidates = []
        self._chosen = None
        self.state = PARM
        self._tries = 1
        self._deadline = ticks_add(now, T.TT_MATCH_RESPONSE)
        self._out = mme.slac_parm_req(self.mac, self.run_id)
        return [self._out]

    def _repeat(self, now, reason):
        # TT_match_response passed without the CNF: send the REQ again, C_EV_match_retry times
        if self._tries <= T.C_EV_MATCH_RETRY:
            self._tries += 1
            self._deadline = ticks_add(now, T.TT_MATCH_RESPONSE)
            return [self._out]
        if self.state == SET_KEY:
            return self._fail(reason)
        return self._attempt_failed(now, reason)

    def _attempt_failed(self, now, reason):
        if (self.attempt < self.attempts
                and ticks_diff(ticks_add(now, T.TT_MATCHING_RATE), self._first_start) < T.TT_MATCHING_REPETITION):
            self._events.append(("restart", {"reason": reason, "attempt": self.attempt}))
            self.state = WAIT_RESTART
            self._deadline = ticks_add(now, T.TT_MATCHING_RATE)
            return []
        return self._fail(reason)

    def _fail(self, reason):
        self.state = FAILED
        self.reason = reason
        self._deadline = None
        self._events.append(("failed", {"reason": reason, "attempts": self.attempt}))
        return []

    def _batch_frame(self):
        i = self._batch
        self._batch = i + 1
        self._batch_due = ticks_add(self._batch_due, self.batch_interval)
        if i < T.C_EV_START_ATTEN_CHAR_INDS:
            return mme.start_atten_char_ind(self.mac, self.run_id, self._num_sounds, T.TIME_OUT_MNBC)
        count = self._batch_total - 1 - i  # sounds still to come after this one: 9 .. 0
        return mme.mnbc_sound_ind(self.mac, self.run_id, count, self._random(16), self.pev_id)

    def _select(self, now):
        self._deadline = None
        cands = self._candidates
        if not cands:
            return self._attempt_failed(now, NO_ATTEN_CHAR)
        best = None
        for c in cands:
            if self.attenuation_limit is not None and c[1] > self.attenuation_limit:
                continue
            if best is None or c[1] < best[1]:
                best = c  # ties: the first to answer stays
        if best is None:
            return self._attempt_failed(now, OVER_LIMIT)
        self._chosen = best
        self._tries = 1
        self._deadline = ticks_add(now, T.TT_MATCH_RESPONSE)
        if self.validate:
            self.state = VALIDATE
            self._out = mme.validate_req(self.mac, best[0])
        else:
            self.state = MATCH
            self._out = mme.slac_match_req(self.mac, best[0], self.run_id, self.pev_id, best[3])
        return [self._out]

    def _to_match(self, now):
        self.state = MATCH
        self._tries = 1
        self._deadline = ticks_add(now, T.TT_MATCH_RESPONSE)
        best = self._chosen
        self._out = mme.slac_match_req(self.mac, best[0], self.run_id, self.pev_id, best[3])
        return [self._out]

    def _receive(self, t, frame, now):
        st = self.state
        src = bytes(frame[6:12])
        if st == PARM and t == mme.CM_SLAC_PARM | mme.CNF:
            d = mme.parse_slac_parm_cnf(frame)
            if d["run_id"] != self.run_id:
                return []
            n = d["num_sounds"]
            self._num_sounds = n if 1 <= n <= T.C_EV_MATCH_MNBC else T.C_EV_MATCH_MNBC
            self._batch_total = T.C_EV_START_ATTEN_CHAR_INDS + self._num_sounds
            # START_ATTEN follows the CNF at once (about 250 ms late made real chargers stop answering)
            self.state = SOUNDING
            self._deadline = None
            self._batch = 0
            self._batch_due = now
            self._atten_deadline = ticks_add(now, T.TT_EV_ATTEN_RESULTS)
            return [self._batch_frame()]
        if st == SOUNDING and t == mme.CM_ATTEN_CHAR | mme.IND:
            d = mme.parse_atten_char_ind(frame)
            if d["run_id"] != self.run_id or d["source_address"] != self.mac:
                return []
            att = mme.average_attenuation(d["aag"])
            if att is None:
                raise PeerError("CM_ATTEN_CHAR.IND: empty attenuation profile")
            for c in self._candidates:
                if c[0] == src:  # a repeated IND (our RSP was lost): answer again, keep the first
                    break
            else:
                if len(self._candidates) >= _MAX_CANDIDATES:
                    return []
                self._candidates.append((src, att, d["aag"], d["resp_id"]))
            return [mme.atten_char_rsp(self.mac, src, self.run_id, 0, d["source_id"], d["resp_id"])]
        chosen = self._chosen[0] if self._chosen is not None else None
        if st == VALIDATE and t == mme.CM_VALIDATE | mme.CNF and src == chosen:
            d = mme.parse_validate(frame)
            if d["result"] == mme.VALIDATE_FAILURE:
                return self._attempt_failed(now, VALIDATE_FAILED)
            return self._to_match(now)
        if st == MATCH and t == mme.CM_SLAC_MATCH | mme.CNF and src == chosen:
            d = mme.parse_slac_match_cnf(frame)
            if d["run_id"] != self.run_id or d["pev_mac"] != self.mac:
                return []
            self._nmk = d["nmk"]
            self._nid = d["nid"] if d["nid"] != _ZERO_NID else mme.nid_from_nmk(d["nmk"])
            self._join_deadline = ticks_add(now, self.join_timeout)  # TT_match_join from the MATCH.CNF
            self.state = SET_KEY
            self._tries = 1
            self._deadline = ticks_add(now, T.TT_MATCH_RESPONSE)
            self._nonce = bytes(self._random(4))
            self._out = mme.set_key_req(self.mac, self._nid, self._nmk, self._nonce, self.modem)
            return [self._out]
        if st == SET_KEY and t == mme.CM_SET_KEY | mme.CNF:
            d = mme.parse_set_key_cnf(frame)
            self.set_key_result = d["result"]  # kept for the log only: modems lie about it
            self.state = JOIN
            self._key_time = now
            self._deadline = ticks_add(now, self.settle)
            if ticks_diff(self._deadline, self._join_deadline) > 0:
                self._deadline = self._join_deadline
            return []
        if st == JOIN and t == mme.VS_NW_INFO | mme.CNF:
            d = qca.parse_nw_info_cnf(frame)
            for net in d["networks"]:
                if net["nid"] == self._nid and net["stations"]:
                    return self._matched(now)
            return []
        return []

    def _matched(self, now):
        self.state = MATCHED
        self._deadline = None
        best = self._chosen
        self.result = {"evse_mac": best[0], "nid": self._nid, "nmk": self._nmk, "attenuation": best[1],
                       "run_id": self.run_id, "attempts": self.attempt, "set_key_result": self.set_key_result,
                       "modem_reset": self.modem_reset,
                       "candidates": [(c[0], c[1]) for c in self._candidates]}
        self._events.append(("matched", self.result))
        return []

