# HomePlug MME codecs (evpilot.slac.mme): byte offsets of ISO 15118-3 Annex A, round trips, bounded parsing
# (every truncation and random bytes raise PeerError only, naming the field), the NID derivation.

from evpilot.errors import PeerError, UsageError
from evpilot.slac import mme, qca

EV = bytes.fromhex("0211223344aa")
EVSE = bytes.fromhex("02aabbccdd01")
RUN = bytes.fromhex("0102030405060708")
NMK = bytes.fromhex("50d3e4933f855b7040784df815aa8db7")
NID = bytes.fromhex("b0f2e695666b03")


def _peer_error(fn, frame):
    try:
        fn(frame)
    except PeerError as e:
        return str(e)
    assert False, "no PeerError"


class _Rng:
    def __init__(self, seed):
        self.x = seed

    def next(self):
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.x = x
        return x

    def bytes(self, n):
        return bytes(self.next() & 0xFF for _ in range(n))


def test_header_and_padding():
    f = mme.slac_parm_req(EV, RUN)
    assert len(f) == 60
    assert f[0:6] == mme.BROADCAST and f[6:12] == EV
    assert f[12:14] == b"\x88\xe1" and f[14] == 1
    assert f[15:17] == b"\x64\x60"  # MMTYPE 0x6064 little-endian
    assert f[17:19] == b"\x00\x00"  # FMI
    assert f[19] == 0 and f[20] == 0 and f[21:29] == RUN
    assert mme.mmtype(f) == mme.CM_SLAC_PARM | mme.REQ
    assert mme.name(mme.mmtype(f)) == "CM_SLAC_PARM.REQ"
    assert mme.name(0x1234) == "MMTYPE 0x1234"
    assert mme.mmtype(b"\x00" * 30) is None
    assert mme.mmtype(b"\x00" * 5) is None


def test_parm_cnf_offsets():
    f = mme.slac_parm_cnf(EVSE, EV, RUN)
    assert f[15:17] == b"\x65\x60"
    assert f[19:25] == mme.BROADCAST and f[25] == 10 and f[26] == 6 and f[27] == 1
    assert f[28:34] == EV and f[36:44] == RUN
    d = mme.parse_slac_parm_cnf(f)
    assert d["num_sounds"] == 10 and d["time_out"] == 6 and d["run_id"] == RUN and d["forwarding_sta"] == EV
    assert mme.parse_slac_parm_req(mme.slac_parm_req(EV, RUN))["run_id"] == RUN


def test_start_atten_and_sound_offsets():
    f = mme.start_atten_char_ind(EV, RUN)
    assert f[15:17] == b"\x6a\x60" and f[21] == 10 and f[22] == 6 and f[23] == 1
    assert f[24:30] == EV and f[30:38] == RUN
    d = mme.parse_start_atten_char_ind(f)
    assert d["run_id"] == RUN and d["num_sounds"] == 10
    rnd = bytes(range(16))
    s = mme.mnbc_sound_ind(EV, RUN, 7, rnd)
    assert len(s) == 71 and s[15:17] == b"\x76\x60" and s[38] == 7 and s[39:47] == RUN and s[55:71] == rnd
    d = mme.parse_mnbc_sound_ind(s)
    assert d["count"] == 7 and d["random"] == rnd and d["sender_id"] == bytes(17)


def test_atten_char_and_profile():
    aag = bytes(range(10, 68))
    f = mme.atten_char_ind(EVSE, EV, RUN, aag, 10)
    assert len(f) == 129 and f[15:17] == b"\x6e\x60"
    assert f[21:27] == EV and f[27:35] == RUN and f[69] == 10 and f[70] == 58 and f[71:129] == aag
    d = mme.parse_atten_char_ind(f)
    assert d["aag"] == aag and d["source_address"] == EV and d["num_sounds"] == 10
    assert mme.average_attenuation(aag) == sum(aag) // 58
    assert mme.average_attenuation(b"") is None
    r = mme.atten_char_rsp(EV, EVSE, RUN)
    assert len(r) == 70 and r[15:17] == b"\x6f\x60" and r[21:27] == EV and r[69] == 0
    assert mme.parse_atten_char_rsp(r)["run_id"] == RUN
    p = mme.atten_profile_ind(EVSE, EVSE, EV, aag)
    assert p[15:17] == b"\x86\x60" and p[19:25] == EV and p[25] == 58 and p[27:85] == aag
    assert mme.parse_atten_profile_ind(p)["aag"] == aag


def test_atten_char_bounds():
    f = bytearray(mme.atten_char_ind(EVSE, EV, RUN, bytes(58)))
    f[70] = 59
    assert "NumGroups" in _peer_error(mme.parse_atten_char_ind, bytes(f))
    f[70] = 58
    assert "AAG" in _peer_error(mme.parse_atten_char_ind, bytes(f[:100]))
    try:
        mme.atten_char_ind(EVSE, EV, RUN, bytes(59))
    except UsageError:
        pass
    else:
        assert False


def test_validate_and_match():
    v = mme.validate_req(EV, EVSE, 3, mme.VALIDATE_READY)
    assert v[15:17] == b"\x78\x60"
    d = mme.parse_validate(v)
    assert d["req"] and d["timer"] == 3 and d["result"] == 1
    c = mme.parse_validate(mme.validate_cnf(EVSE, EV, 2, mme.VALIDATE_SUCCESS))
    assert not c["req"] and c["toggle_num"] == 2 and c["result"] == 2
    m = mme.slac_match_req(EV, EVSE, RUN)
    assert len(m) == 85 and m[15:17] == b"\x7c\x60" and m[21:23] == b"\x3e\x00"
    assert m[40:46] == EV and m[63:69] == EVSE and m[69:77] == RUN
    d = mme.parse_slac_match_req(m)
    assert d["mvf_length"] == 0x3E and d["pev_mac"] == EV and d["evse_mac"] == EVSE
    c = mme.slac_match_cnf(EVSE, EV, RUN, NID, NMK)
    assert len(c) == 109 and c[21:23] == b"\x56\x00" and c[85:92] == NID and c[93:109] == NMK
    d = mme.parse_slac_match_cnf(c)
    assert d["nid"] == NID and d["nmk"] == NMK and d["run_id"] == RUN and d["pev_mac"] == EV
    assert "NMK" in _peer_error(mme.parse_slac_match_cnf, c[:100])


def test_set_key_and_amp_map():
    k = mme.set_key_req(EV, NID, NMK, b"\x01\x02\x03\x04")
    assert k[0:6] == mme.QCA_LOCAL and k[15:17] == b"\x08\x60"
    assert k[19] == 1 and k[20:24] == b"\x01\x02\x03\x04" and k[28] == 4 and k[33:40] == NID and k[40] == 1
    assert k[41:57] == NMK
    d = mme.parse_set_key_req(k)
    assert d["nid"] == NID and d["nmk"] == NMK and d["pid"] == 4
    c = mme.parse_set_key_cnf(mme.set_key_cnf(EVSE, EV, 1, b"\x09\x09\x09\x09", b"\x01\x02\x03\x04"))
    assert c["result"] == 1 and c["your_nonce"] == b"\x01\x02\x03\x04"
    entries = bytes([1, 2, 3, 15, 0])
    a = mme.amp_map_req(EV, EVSE, entries)
    assert a[15:17] == b"\x1c\x60" and a[19:21] == b"\x05\x00" and a[21] == 0x21 and a[22] == 0xF3
    assert mme.parse_amp_map_req(a)["entries"] == entries
    assert mme.parse_amp_map_cnf(mme.amp_map_cnf(EVSE, EV, 0))["result"] == 0
    big = bytearray(a)
    big[19] = 0xFF
    big[20] = 0x0F
    assert "AMLEN" in _peer_error(mme.parse_amp_map_req, bytes(big))


def test_vendor_messages():
    r = qca.sw_ver_req(EV)
    assert r[14] == 0 and r[15:17] == b"\x00\xa0" and r[17:20] == b"\x00\xb0\x52"
    c = qca.sw_ver_cnf(EVSE, EV, "MAC-QCA7000-1.2.5")
    d = qca.parse_sw_ver_cnf(c)
    assert d["version"] == "MAC-QCA7000-1.2.5" and d["status"] == 0
    bad = bytearray(c)
    bad[22] = 200
    assert "MVERLENGTH" in _peer_error(qca.parse_sw_ver_cnf, bytes(bad))
    bad = bytearray(c)
    bad[17] = 0x11
    assert "OUI" in _peer_error(qca.parse_sw_ver_cnf, bytes(bad))
    assert qca.parse_rs_dev_cnf(qca.rs_dev_cnf(EVSE, EV, 0))["status"] == 0
    assert qca.rs_dev_req(EV)[15:17] == b"\x1c\xa0"
    sta = (EVSE, 1, b"\xff" * 6, 10, 11)
    n = qca.nw_info_cnf(EVSE, EV, [(NID, 3, 2, 0, EVSE, [sta])])
    d = qca.parse_nw_info_cnf(n)
    net = d["networks"][0]
    assert net["nid"] == NID and net["snid"] == 3 and net["cco_mac"] == EVSE
    assert net["stations"][0]["mac"] == EVSE and net["stations"][0]["rx_rate"] == 11
    assert qca.parse_nw_info_cnf(qca.nw_info_cnf(EVSE, EV, []))["networks"] == []
    bad = bytearray(n)
    bad[20] = 9
    assert "NUMAVLNS" in _peer_error(qca.parse_nw_info_cnf, bytes(bad))


def test_wrong_type_and_names_in_errors():
    f = mme.slac_parm_req(EV, RUN)
    assert "CM_SLAC_PARM.CNF" in _peer_error(mme.parse_slac_parm_cnf, f)
    assert "not a HomePlug" in _peer_error(mme.parse_slac_parm_cnf, b"\x00" * 60)


def _all_frames():
    aag = bytes(range(58))
    sta = (EVSE, 1, b"\xff" * 6, 10, 11)
    return [
        (mme.parse_slac_parm_req, mme.slac_parm_req(EV, RUN)),
        (mme.parse_slac_parm_cnf, mme.slac_parm_cnf(EVSE, EV, RUN)),
        (mme.parse_start_atten_char_ind, mme.start_atten_char_ind(EV, RUN)),
        (mme.parse_mnbc_sound_ind, mme.mnbc_sound_ind(EV, RUN, 9, bytes(16))),
        (mme.parse_atten_profile_ind, mme.atten_profile_ind(EVSE, EVSE, EV, aag)),
        (mme.parse_atten_char_ind, mme.atten_char_ind(EVSE, EV, RUN, aag)),
        (mme.parse_atten_char_rsp, mme.atten_char_rsp(EV, EVSE, RUN)),
        (mme.parse_validate, mme.validate_req(EV, EVSE)),
        (mme.parse_slac_match_req, mme.slac_match_req(EV, EVSE, RUN)),
        (mme.parse_slac_match_cnf, mme.slac_match_cnf(EVSE, EV, RUN, NID, NMK)),
        (mme.parse_set_key_req, mme.set_key_req(EV, NID, NMK, b"\x01\x02\x03\x04")),
        (mme.parse_set_key_cnf, mme.set_key_cnf(EVSE, EV, 0, b"\x01\x02\x03\x04")),
        (mme.parse_amp_map_req, mme.amp_map_req(EV, EVSE, bytes(200))),
        (mme.parse_amp_map_cnf, mme.amp_map_cnf(EVSE, EV)),
        (qca.parse_sw_ver_cnf, qca.sw_ver_cnf(EVSE, EV, "v1")),
        (qca.parse_rs_dev_cnf, qca.rs_dev_cnf(EVSE, EV)),
        (qca.parse_nw_info_cnf, qca.nw_info_cnf(EVSE, EV, [(NID, 3, 2, 0, EVSE, [sta, sta])])),
    ]


def test_every_truncation_raises_peer_error_only():
    for parse, frame in _all_frames():
        parse(frame)  # whole: fine
        parse(frame + b"\x00" * 7)  # trailing padding: fine
        for n in range(len(frame)):
            try:
                parse(frame[:n])
            except PeerError:
                pass


def test_random_bytes_raise_peer_error_only():
    rng = _Rng(0x5EED)
    frames = _all_frames()
    for i in range(600):
        parse, frame = frames[i % len(frames)]
        mutated = bytearray(frame)
        for _ in range(1 + rng.next() % 6):
            mutated[19 + rng.next() % (len(frame) - 19)] = rng.next() & 0xFF
        try:
            parse(bytes(mutated))
        except PeerError:
            pass


def test_nid_from_nmk():
    # the default NMK ("HomePlugAV") and its NID as open-plc-utils prints them
    assert mme.nid_from_nmk(NMK) == NID
    assert mme.nid_from_nmk(NMK, 1)[6] == 0x10 | (NID[6] & 0x0F)
    try:
        mme.nid_from_nmk(b"short")
    except UsageError:
        pass
    else:
        assert False


def test_builders_refuse_bad_arguments():
    for fn in (lambda: mme.slac_parm_req(b"\x01", RUN), lambda: mme.slac_parm_req(EV, b"\x01"),
               lambda: mme.amp_map_req(EV, EVSE, bytes([16]))):
        try:
            fn()
        except UsageError:
            pass
        else:
            assert False
