# SLAC on a virtual clock: evpilot.slac.ev.SlacEv against evpilot_sim.slac_evse.SlacEvse (one or several, at
# different attenuations) and the simulated local modem, on one broadcast medium. The success path, the
# selection of the lowest attenuation, and every failure path ending with its reason within the standard's
# timers (ISO 15118-3 Table A.1, evpilot.slac.timers).

from evpilot.slac import ev as slac_ev
from evpilot.slac import mme
from evpilot.slac import timers as T
from evpilot.slac.ev import SlacEv
from evpilot_sim.slac_evse import Medium, SimModem, SlacEvse

EV = bytes.fromhex("020000000001")
NMK = bytes.fromhex("00112233445566778899aabbccddeeff")

# One SLAC attempt at most: PARM (3 x 200 ms) .. or sounding + TT_EV_atten_results + MATCH (3 x 200 ms).
ATTEMPT_MAX = T.TT_EV_ATTEN_RESULTS + (T.C_EV_MATCH_RETRY + 1) * T.TT_MATCH_RESPONSE * 2 + 50


class _Counter:
    def __init__(self):
        self.n = 0

    def __call__(self, size):
        self.n += 1
        return bytes([self.n & 0xFF]) * size


def _evse(i, attenuation, **kw):
    return SlacEvse(bytes([2, 0, 0, 0, 0, 0xA0 + i]), nmk=bytes([i + 1]) * 16, attenuation=attenuation, **kw)


def _run(evses, modem=None, drop=None, **ev_kw):
    kw = {"settle": 200, "random": _Counter()}
    kw.update(ev_kw)
    ev = SlacEv(EV, **kw)
    modem = modem or SimModem(EV, join_delay=100)
    log = []
    medium = Medium([ev, modem] + evses, drop=drop, log=log)
    medium.send(0, ev.start(0), 0)
    end = medium.run(0, ev.done, limit=60000)
    events = ev.events()
    return ev, end, events, log


def _names(log, sender=None):
    return [mme.name(mme.mmtype(f)) for _, s, f in log if sender is None or s == sender]


def test_one_evse_matches():
    evse = _evse(0, 20)
    ev, end, events, log = _run([evse])
    assert ev.state == slac_ev.MATCHED
    kinds = [e[0] for e in events]
    assert kinds == ["matched"]
    r = events[0][1]
    assert r["evse_mac"] == evse.mac and r["nid"] == evse.nid and r["nmk"] == evse.nmk
    assert r["attenuation"] == 20 and r["attempts"] == 1
    assert evse.matched is not None and evse.matched["ev_mac"] == EV
    sent = _names(log, 0)
    assert sent[:1] == ["CM_SLAC_PARM.REQ"]
    assert sent.count("CM_START_ATTEN_CHAR.IND") == 3 and sent.count("CM_MNBC_SOUND.IND") == 10
    assert "CM_ATTEN_CHAR.RSP" in sent and "CM_SLAC_MATCH.REQ" in sent and "CM_SET_KEY.REQ" in sent
    assert end < T.TT_EV_ATTEN_RESULTS + T.TT_MATCH_JOIN


def test_sounding_pacing_and_counts():
    ev, end, events, log = _run([_evse(0, 10)])
    batch = [(t, f) for t, s, f in log if s == 0 and mme.mmtype(f) in (0x606A, 0x6076)]
    assert len(batch) == 13
    for i in range(1, 13):
        assert batch[i][0] - batch[i - 1][0] == T.TP_EV_BATCH_MSG_INTERVAL
    counts = [mme.parse_mnbc_sound_ind(f)["count"] for t, f in batch[3:]]
    assert counts == list(range(9, -1, -1))
    # the first START_ATTEN goes out with the PARM.CNF's arrival, not a timer later
    cnf_time = [t for t, s, f in log if mme.mmtype(f) == 0x6065][0]
    assert batch[0][0] - cnf_time <= 2 * 2


def test_lowest_attenuation_wins_among_three():
    evses = [_evse(0, 30), _evse(1, 12), _evse(2, 21)]
    ev, end, events, log = _run(evses)
    r = events[-1][1]
    assert events[-1][0] == "matched"
    assert r["evse_mac"] == evses[1].mac and r["attenuation"] == 12 and r["nmk"] == evses[1].nmk
    assert sorted(c[1] for c in r["candidates"]) == [12, 21, 30]
    assert evses[1].matched is not None
    assert evses[0].matched is None and evses[2].matched is None
    matches = [f for t, s, f in log if s == 0 and mme.mmtype(f) == 0x607C]
    assert matches and all(mme.destination(f) == evses[1].mac for f in matches)


def test_lowest_wins_even_when_it_answers_last():
    # the nearest EVSE's ATTEN_CHAR.IND comes last (a slow host): the EV still waits the whole window
    evses = [_evse(0, 25), _evse(1, 8)]
    slow = {"n": 0}

    def drop(frame, sender):
        # lose the near EVSE's first two INDs: its third (after 2 x TT_match_response) is the last to come
        if sender == 3 and mme.mmtype(frame) == 0x606E and slow["n"] < 2:
            slow["n"] += 1
            return True
        return False

    ev, end, events, log = _run(evses, drop=drop)
    assert events[-1][0] == "matched" and events[-1][1]["evse_mac"] == evses[1].mac
    assert evses[0].matched is None


def test_limit_refuses_far_evse_and_takes_near_one():
    evses = [_evse(0, 50), _evse(1, 35)]
    ev, end, events, log = _run(evses, attenuation_limit=40)
    assert events[-1][0] == "matched" and events[-1][1]["attenuation"] == 35


def test_every_evse_over_the_limit_fails():
    evses = [_evse(0, 50), _evse(1, 45)]
    ev, end, events, log = _run(evses, attenuation_limit=40)
    assert events[-1] == ("failed", {"reason": slac_ev.OVER_LIMIT, "attempts": T.C_CONN_MAX_MATCH})
    assert [e[0] for e in events] == ["restart", "restart", "failed"]
    assert evses[0].matched is None and evses[1].matched is None
    assert "CM_SLAC_MATCH.REQ" not in _names(log, 0)
    assert end <= T.C_CONN_MAX_MATCH * ATTEMPT_MAX + (T.C_CONN_MAX_MATCH - 1) * T.TT_MATCHING_RATE
    assert end <= T.TT_MATCHING_REPETITION + ATTEMPT_MAX


def test_no_parm_cnf():
    ev, end, events, log = _run([_evse(0, 10, answer_parm=False)], attempts=1)
    assert events == [("failed", {"reason": slac_ev.NO_PARM_CNF, "attempts": 1})]
    assert _names(log, 0) == ["CM_SLAC_PARM.REQ"] * (1 + T.C_EV_MATCH_RETRY)
    assert end == (1 + T.C_EV_MATCH_RETRY) * T.TT_MATCH_RESPONSE


def test_no_parm_cnf_restarts_with_new_run_ids():
    ev, end, events, log = _run([], attempts=3)
    assert [e[0] for e in events] == ["restart", "restart", "failed"]
    assert events[-1][1]["reason"] == slac_ev.NO_PARM_CNF
    runs = set(mme.parse_slac_parm_req(f)["run_id"] for t, s, f in log if s == 0)
    assert len(runs) == 3
    assert end == 3 * 3 * T.TT_MATCH_RESPONSE + 2 * T.TT_MATCHING_RATE


def test_no_atten_char():
    evse = _evse(0, 10, send_atten=False)
    ev, end, events, log = _run([evse], attempts=1)
    assert events == [("failed", {"reason": slac_ev.NO_ATTEN_CHAR, "attempts": 1})]
    cnf_time = [t for t, s, f in log if mme.mmtype(f) == 0x6065][0]
    assert end - cnf_time <= T.TT_EV_ATTEN_RESULTS + 2


def test_match_refused():
    evse = _evse(0, 10, answer_match=False)
    ev, end, events, log = _run([evse], attempts=1)
    assert events == [("failed", {"reason": slac_ev.NO_MATCH_CNF, "attempts": 1})]
    assert _names(log, 0).count("CM_SLAC_MATCH.REQ") == 1 + T.C_EV_MATCH_RETRY
    assert end <= ATTEMPT_MAX
    assert evse.matched is None


def test_match_cnf_lost_once_is_repeated():
    state = {"lost": 0}

    def drop(frame, sender):
        if mme.mmtype(frame) == 0x607D and state["lost"] == 0:
            state["lost"] = 1
            return True
        return False

    ev, end, events, log = _run([_evse(0, 10)], drop=drop)
    assert events[-1][0] == "matched"
    assert _names(log, 0).count("CM_SLAC_MATCH.REQ") == 2


def test_set_key_lost():
    modem = SimModem(EV, lose_set_key=-1)
    ev, end, events, log = _run([_evse(0, 10)], modem=modem)
    assert events == [("failed", {"reason": slac_ev.NO_SET_KEY_CNF, "attempts": 1})]
    assert modem.set_keys == 1 + T.C_EV_MATCH_RETRY
    match_cnf = [t for t, s, f in log if mme.mmtype(f) == 0x607D][0]
    assert end - match_cnf <= (1 + T.C_EV_MATCH_RETRY) * T.TT_MATCH_RESPONSE + 2


def test_set_key_cnf_lost_once_is_repeated():
    modem = SimModem(EV, lose_set_key=1)
    ev, end, events, log = _run([_evse(0, 10)], modem=modem)
    assert events[-1][0] == "matched" and modem.set_keys == 2


def test_set_key_result_that_lies_is_tolerated():
    modem = SimModem(EV, set_key_result=1)
    ev, end, events, log = _run([_evse(0, 10)], modem=modem)
    assert events[-1][0] == "matched" and events[-1][1]["set_key_result"] == 1


def test_modem_not_joining():
    modem = SimModem(EV, joins=False)
    ev, end, events, log = _run([_evse(0, 10)], modem=modem)
    assert events == [("failed", {"reason": slac_ev.NOT_JOINED, "attempts": 1})]
    match_cnf = [t for t, s, f in log if mme.mmtype(f) == 0x607D][0]
    assert T.TT_MATCH_JOIN <= end - match_cnf <= T.TT_MATCH_JOIN + 2  # from its arrival (2 ms latency)
    assert modem.polls >= (T.TT_MATCH_JOIN - 200) // T.MODEM_POLL_INTERVAL


def test_modem_joins_late_within_tt_match_join():
    modem = SimModem(EV, join_delay=7000)  # one charger needed 7 s (field report)
    ev, end, events, log = _run([_evse(0, 10)], modem=modem)
    assert events[-1][0] == "matched"


def test_modem_needing_reset():
    modem = SimModem(EV, needs_reset=True)
    ev, end, events, log = _run([_evse(0, 10)], modem=modem, reset_after=2000)
    assert events[-1][0] == "matched" and events[-1][1]["modem_reset"] is True
    assert modem.resets == 1
    # without the reset rule the same modem never joins
    modem = SimModem(EV, needs_reset=True)
    ev, end, events, log = _run([_evse(0, 10)], modem=modem)
    assert events[-1][1]["reason"] == slac_ev.NOT_JOINED and modem.resets == 0


def test_validate_optional():
    ev, end, events, log = _run([_evse(0, 10)], validate=True)
    assert events[-1][0] == "matched"
    assert "CM_VALIDATE.REQ" in _names(log, 0)
    ev, end, events, log = _run([_evse(0, 10, validate_result=mme.VALIDATE_FAILURE)], validate=True, attempts=1)
    assert events == [("failed", {"reason": slac_ev.VALIDATE_FAILED, "attempts": 1})]


def test_nid_derived_when_absent():
    evse = _evse(0, 10, nid=bytes(7))
    ev, end, events, log = _run([evse])
    assert events[-1][1]["nid"] == mme.nid_from_nmk(evse.nmk)


def test_frames_of_other_sessions_ignored():
    ev = SlacEv(EV, random=_Counter(), settle=100)
    out = ev.start(0)
    run = ev.run_id
    other = b"\x99" * 8
    evse = bytes.fromhex("02000000aa01")
    assert ev.receive(mme.slac_parm_cnf(evse, EV, other), 5) == []
    assert ev.state == slac_ev.PARM
    assert ev.receive(mme.slac_parm_cnf(evse, b"\x02\x00\x00\x00\x00\x77", run), 5) == []  # another EV
    assert ev.receive(mme.slac_parm_cnf(evse, EV, run), 6)
    assert ev.state == slac_ev.SOUNDING
    # an ATTEN_CHAR for another RunID is no candidate
    assert ev.receive(mme.atten_char_ind(evse, EV, other, bytes(58)), 10) == []
    assert ev.receive(b"\x00" * 3, 10) == [] and ev.receive(mme.slac_parm_req(evse, run)[:40], 10) == []
    bad = bytearray(mme.atten_char_ind(evse, EV, run, bytes(58)))
    bad[70] = 200
    assert ev.receive(bytes(bad), 11) == [] and ev.malformed == 1
    assert out


def test_after_match_cross_talk_is_ignored():
    evse = _evse(0, 10)
    ev, end, events, log = _run([evse])
    assert ev.state == slac_ev.MATCHED
    neighbour = bytes.fromhex("02000000bb01")
    for frame in (mme.slac_parm_cnf(neighbour, EV, ev.run_id), mme.atten_char_ind(neighbour, EV, ev.run_id, bytes(58)),
                  mme.slac_match_cnf(neighbour, EV, ev.run_id, b"\x01" * 7, b"\x02" * 16)):
        assert ev.receive(frame, end + 10) == []
    assert ev.on_timer(end + 100000) == [] and ev.next_deadline() is None
    assert ev.result["evse_mac"] == evse.mac and ev.events() == []


def test_unchosen_evses_time_out_and_stay_unmatched():
    evses = [_evse(0, 15), _evse(1, 30)]
    ev = SlacEv(EV, random=_Counter(), settle=100)
    medium = Medium([ev, SimModem(EV, join_delay=0)] + evses)
    medium.send(0, ev.start(0), 0)
    t = medium.run(0, ev.done)
    assert ev.result["evse_mac"] == evses[0].mac
    medium.run(t, lambda: False, limit=T.TT_EVSE_MATCH_SESSION + 1000)
    kinds = [e[0] for e in evses[1].events()]
    assert "matched" not in kinds and "timeout" in kinds and evses[1].matched is None


def test_evse_refuses_sounds_without_start():
    evse = _evse(0, 10)
    out = evse.receive(mme.slac_parm_req(EV, b"\x05" * 8), 0)
    assert mme.mmtype(out[0]) == 0x6065
    assert evse.on_timer(T.TT_MATCH_SEQUENCE) == []  # no START_ATTEN, no sounds: gives up
    assert evse.events()[-1][0] == "timeout"


def test_start_twice_is_usage_error():
    from evpilot.errors import UsageError

    ev = SlacEv(EV, random=_Counter())
    ev.start(0)
    try:
        ev.start(1)
    except UsageError:
        pass
    else:
        assert False


def test_random_frames_in_every_state_never_raise():
    # a real run records the frames the EV gets; mutated copies go to fresh EVs driven to each state
    evse = _evse(0, 10)
    ev, end, events, log = _run([evse])
    received = [f for t, s, f in log if s != 0]
    x = [0x1234567]

    def rnd():
        v = x[0]
        v ^= (v << 13) & 0xFFFFFFFF
        v ^= v >> 17
        v ^= (v << 5) & 0xFFFFFFFF
        x[0] = v
        return v

    for stop in range(len(received)):
        ev2 = SlacEv(EV, random=_Counter(), settle=200)
        ev2.start(0)
        for f in received[:stop]:
            ev2.receive(f, 10)
        for _ in range(8):
            f = bytearray(received[rnd() % len(received)])
            for _ in range(1 + rnd() % 4):
                f[12 + rnd() % (len(f) - 12)] = rnd() & 0xFF
            ev2.receive(bytes(f), 20)
            ev2.receive(bytes(f[:rnd() % len(f)]), 20)
        ev2.on_timer(100000)
        assert ev2.state in (slac_ev.PARM, slac_ev.SOUNDING, slac_ev.VALIDATE, slac_ev.MATCH, slac_ev.SET_KEY,
                             slac_ev.JOIN, slac_ev.WAIT_RESTART, slac_ev.MATCHED, slac_ev.FAILED)


def test_modem_reset_late_still_fails_at_tt_match_join():
    modem = SimModem(EV, joins=False, reset_time=5000)
    ev, end, events, log = _run([_evse(0, 10)], modem=modem, reset_after=T.TT_MATCH_JOIN - 500, settle=3000)
    assert events[-1][1]["reason"] == slac_ev.NOT_JOINED and modem.resets == 1
    match_cnf = [t for t, s, f in log if mme.mmtype(f) == 0x607D][0]
    assert T.TT_MATCH_JOIN <= end - match_cnf <= T.TT_MATCH_JOIN + 2
