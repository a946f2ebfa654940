# HomePlug AV / Green PHY management messages (MMEs) for SLAC (ISO 15118-3) and the Qualcomm modem.
#
# How this works: every message is an Ethernet II frame with EtherType 0x88E1. Standard (HomePlug AV 2.0)
# messages carry MMV 0x01, the MMTYPE little-endian at 15-16 and two FMI bytes, so their payload starts at
# byte 19; Qualcomm vendor-specific (VS_*) messages carry MMV 0x00, no FMI and the OUI 00:B0:52 at 17-19, so
# their payload starts at byte 20. The low two bits of an MMTYPE are the variant (REQ 0, CNF 1, IND 2, RSP
# 3). The Qualcomm messages' builders and parsers are in qca.py. builders return the whole frame, padded to the Ethernet minimum of 60 bytes; parse_* functions
# take a whole received frame and return a small dict keyed by the field names of ISO 15118-3 Table A.x /
# the HomePlug AV specification, with bytes for addresses and identifiers. Every parser checks the length it
# needs before it reads and raises PeerError naming the message and the field; nothing else escapes.
#
# Offsets are those of ISO 15118-3 Annex A (SLAC messages) and HomePlug Green PHY 1.1 clause 11.5, as public
# implementations lay them out (pyPLC, EVerest libslac, Qualcomm open-plc-utils) and as Wireshark's HomePlug
# AV dissector decodes them (tests/test_slac_tshark.py checks that).

from evpilot.compat import const
from evpilot.errors import PeerError, UsageError

ETHERTYPE = const(0x88E1)  # HomePlug AV (IEEE 1901)
MIN_FRAME = const(60)  # Ethernet minimum without FCS
MAX_FRAME = const(1514)
BROADCAST = b"\xff\xff\xff\xff\xff\xff"
# Qualcomm's local management address: only the modem attached to this host answers it (open-plc-utils).
QCA_LOCAL = b"\x00\xb0\x52\x00\x00\x01"
QCA_OUI = b"\x00\xb0\x52"

MMV_AV2 = const(0x01)
MMV_VS = const(0x00)

REQ = const(0)
CNF = const(1)
IND = const(2)
RSP = const(3)

# MMTYPE bases (HomePlug Green PHY 1.1 Table 11-x; ISO 15118-3 Table A.1x)
CM_SET_KEY = const(0x6008)
CM_AMP_MAP = const(0x601C)
CM_SLAC_PARM = const(0x6064)
CM_START_ATTEN_CHAR = const(0x6068)
CM_ATTEN_CHAR = const(0x606C)
CM_MNBC_SOUND = const(0x6074)
CM_VALIDATE = const(0x6078)
CM_SLAC_MATCH = const(0x607C)
CM_ATTEN_PROFILE = const(0x6084)
# Qualcomm vendor-specific (open-plc-utils mme/qualcomm.h names)
VS_SW_VER = const(0xA000)  # software version: also how modems are discovered
VS_RS_DEV = const(0xA01C)  # reset device
VS_NW_INFO = const(0xA038)  # network information: the modem's logical networks and the stations in them

PAYLOAD = const(19)  # first payload byte of a standard MME
VS_PAYLOAD = const(20)  # first payload byte of a vendor MME (after the OUI)

RUN_ID_LEN = const(8)
ID_LEN = const(17)  # PEV_ID / EVSE_ID / SOURCE_ID / RESP_ID / SenderID
NID_LEN = const(7)
NMK_LEN = const(16)
AAG_GROUPS = const(58)  # ISO 15118-3: 58 attenuation groups for Green PHY
MAX_AMP_ENTRIES = const(1155)  # one 4-bit entry per carrier of HomePlug AV

_NAMES = {
    CM_SET_KEY: "CM_SET_KEY", CM_AMP_MAP: "CM_AMP_MAP", CM_SLAC_PARM: "CM_SLAC_PARM",
    CM_START_ATTEN_CHAR: "CM_START_ATTEN_CHAR", CM_ATTEN_CHAR: "CM_ATTEN_CHAR", CM_MNBC_SOUND: "CM_MNBC_SOUND",
    CM_VALIDATE: "CM_VALIDATE", CM_SLAC_MATCH: "CM_SLAC_MATCH", CM_ATTEN_PROFILE: "CM_ATTEN_PROFILE",
    VS_SW_VER: "VS_SW_VER", VS_RS_DEV: "VS_RS_DEV", VS_NW_INFO: "VS_NW_INFO",
}
_VARIANTS = (".REQ", ".CNF", ".IND", ".RSP")


def name(mmtype):
    """'CM_SLAC_PARM.CNF' for 0x6065; hex for an unknown type."""
    base = _NAMES.get(mmtype & 0xFFFC)
    if base is None:
        return "MMTYPE 0x%04x" % mmtype
    return base + _VARIANTS[mmtype & 3]


# --- writing ----------------------------------------------------------------------------------------------

def _mac(value, field):
    if value is None or len(value) != 6:
        raise UsageError("%s must be 6 bytes" % field)
    return value


def _fixed(value, size, field):
    if value is None:
        return bytes(size)
    if len(value) != size:
        raise UsageError("%s must be %d bytes" % (field, size))
    return value


def _frame(dst, src, mmtype, size):
    """A zeroed frame of max(size, 60) bytes with the standard MME header written."""
    buf = bytearray(size if size > MIN_FRAME else MIN_FRAME)
    buf[0:6] = _mac(dst, "destination")
    buf[6:12] = _mac(src, "source")
    buf[12] = ETHERTYPE >> 8
    buf[13] = ETHERTYPE & 0xFF
    buf[14] = MMV_AV2
    buf[15] = mmtype & 0xFF
    buf[16] = mmtype >> 8
    return buf  # FMI 17-18 stays 00 00: not fragmented


def slac_parm_req(src, run_id, dst=BROADCAST):
    # ISO 15118-3 Table A.2: APPLICATION_TYPE 0 (PEV-EVSE association), SECURITY_TYPE 0 (none), RunID
    b = _frame(dst, src, CM_SLAC_PARM | REQ, 29)
    b[21:29] = _fixed(run_id, RUN_ID_LEN, "RunID")
    return bytes(b)


def slac_parm_cnf(src, dst, run_id, num_sounds=10, time_out=6, forwarding_sta=None):
    # Table A.3: M-SOUND_TARGET broadcast, NUM_SOUNDS (C_EV_match_MNBC), TIME_OUT in 100 ms
    # (TT_EVSE_match_MNBC 600 ms = 6), RESP_TYPE 1 (other GP station), FORWARDING_STA = the EV's MAC
    b = _frame(dst, src, CM_SLAC_PARM | CNF, 44)
    b[19:25] = BROADCAST
    b[25] = num_sounds
    b[26] = time_out
    b[27] = 1
    b[28:34] = _mac(forwarding_sta or dst, "FORWARDING_STA")
    b[36:44] = _fixed(run_id, RUN_ID_LEN, "RunID")
    return bytes(b)


def start_atten_char_ind(src, run_id, num_sounds=10, time_out=6, dst=BROADCAST):
    # Table A.4: NUM_SOUNDS, TIME_OUT, RESP_TYPE 1, FORWARDING_STA (the EV itself), RunID
    b = _frame(dst, src, CM_START_ATTEN_CHAR | IND, 38)
    b[21] = num_sounds
    b[22] = time_out
    b[23] = 1
    b[24:30] = src
    b[30:38] = _fixed(run_id, RUN_ID_LEN, "RunID")
    return bytes(b)


def mnbc_sound_ind(src, run_id, count, random, sender_id=None, dst=BROADCAST):
    # Table A.5: SenderID (VIN or zeros), CNT = sounds still to come, RunID, 8 reserved, 16 random bytes
    b = _frame(dst, src, CM_MNBC_SOUND | IND, 71)
    b[21:38] = _fixed(sender_id, ID_LEN, "SenderID")
    b[38] = count
    b[39:47] = _fixed(run_id, RUN_ID_LEN, "RunID")
    b[55:71] = _fixed(random, 16, "random")
    return bytes(b)


def atten_profile_ind(src, dst, pev_mac, aag):
    # HomePlug GP 11.5.x: what the EVSE's modem reports to its host for each sound it received
    n = len(aag)
    if n > AAG_GROUPS:
        raise UsageError("AAG has at most %d groups" % AAG_GROUPS)
    b = _frame(dst, src, CM_ATTEN_PROFILE | IND, 27 + n)
    b[19:25] = _mac(pev_mac, "PEV MAC")
    b[25] = n
    b[27:27 + n] = aag
    return bytes(b)


def atten_char_ind(src, dst, run_id, aag, num_sounds=10, source_id=None, resp_id=None):
    # Table A.6: SOURCE_ADDRESS = the EV's MAC, RunID, SOURCE_ID, RESP_ID, NUM_SOUNDS, ATTEN_PROFILE
    # (NumGroups, AAG[] in dB)
    n = len(aag)
    if n > AAG_GROUPS:
        raise UsageError("AAG has at most %d groups" % AAG_GROUPS)
    b = _frame(dst, src, CM_ATTEN_CHAR | IND, 71 + n)
    b[21:27] = dst
    b[27:35] = _fixed(run_id, RUN_ID_LEN, "RunID")
    b[35:52] = _fixed(source_id, ID_LEN, "SOURCE_ID")
    b[52:69] = _fixed(resp_id, ID_LEN, "RESP_ID")
    b[69] = num_sounds
    b[70] = n
    b[71:71 + n] = aag
    return bytes(b)


def atten_char_rsp(src, dst, run_id, result=0, source_id=None, resp_id=None):
    # Table A.7: Result 0 = success
    b = _frame(dst, src, CM_ATTEN_CHAR | RSP, 70)
    b[21:27] = src
    b[27:35] = _fixed(run_id, RUN_ID_LEN, "RunID")
    b[35:52] = _fixed(source_id, ID_LEN, "SOURCE_ID")
    b[52:69] = _fixed(resp_id, ID_LEN, "RESP_ID")
    b[69] = result
    return bytes(b)


VALIDATE_NOT_READY = const(0)
VALIDATE_READY = const(1)
VALIDATE_SUCCESS = const(2)
VALIDATE_FAILURE = const(3)
VALIDATE_NOT_REQUIRED = const(4)


def validate_req(src, dst, timer=0, result=VALIDATE_READY):
    # Table A.8: SignalType 0 (PEV S2 toggles), Timer (x100 ms + 100 ms), Result
    b = _frame(dst, src, CM_VALIDATE | REQ, 22)
    b[20] = timer
    b[21] = result
    return bytes(b)


def validate_cnf(src, dst, toggle_num=0, result=VALIDATE_NOT_REQUIRED):
    b = _frame(dst, src, CM_VALIDATE | CNF, 22)
    b[20] = toggle_num
    b[21] = result
    return bytes(b)


def _match_common(b, pev_id, pev_mac, evse_id, evse_mac, run_id):
    b[23:40] = _fixed(pev_id, ID_LEN, "PEV_ID")
    b[40:46] = _mac(pev_mac, "PEV_MAC")
    b[46:63] = _fixed(evse_id, ID_LEN, "EVSE_ID")
    b[63:69] = _mac(evse_mac, "EVSE_MAC")
    b[69:77] = _fixed(run_id, RUN_ID_LEN, "RunID")


def slac_match_req(src, dst, run_id, pev_id=None, evse_id=None):
    # Table A.9: MVFLength 0x3E (62: the bytes after it)
    b = _frame(dst, src, CM_SLAC_MATCH | REQ, 85)
    b[21] = 0x3E
    _match_common(b, pev_id, src, evse_id, dst, run_id)
    return bytes(b)


def slac_match_cnf(src, dst, run_id, nid, nmk, pev_id=None, evse_id=None):
    # Table A.10: MVFLength 0x56 (86), then as the REQ, NID (7), reserved, NMK (16)
    b = _frame(dst, src, CM_SLAC_MATCH | CNF, 109)
    b[21] = 0x56
    _match_common(b, pev_id, dst, evse_id, src, run_id)
    b[85:92] = _fixed(nid, NID_LEN, "NID")
    b[93:109] = _fixed(nmk, NMK_LEN, "NMK")
    return bytes(b)


KEY_TYPE_NMK = const(1)


def set_key_req(src, nid, nmk, my_nonce, dst=QCA_LOCAL):
    # HomePlug AV 11.5.4: KeyType 1 (NMK), MyNonce, YourNonce 0, PID 4 (HLE protocol), PRN 0, PMN 0,
    # CCoCapability 0, NID, NewEKS 1, NewKey = NMK
    b = _frame(dst, src, CM_SET_KEY | REQ, 57)
    b[19] = KEY_TYPE_NMK
    b[20:24] = _fixed(my_nonce, 4, "MyNonce")
    b[28] = 4
    b[33:40] = _fixed(nid, NID_LEN, "NID")
    b[40] = 1
    b[41:57] = _fixed(nmk, NMK_LEN, "NMK")
    return bytes(b)


def set_key_cnf(src, dst, result, my_nonce, your_nonce=b"\x00\x00\x00\x00"):
    b = _frame(dst, src, CM_SET_KEY | CNF, 33)
    b[19] = result
    b[20:24] = _fixed(my_nonce, 4, "MyNonce")
    b[24:28] = _fixed(your_nonce, 4, "YourNonce")
    b[28] = 4
    return bytes(b)


def amp_map_req(src, dst, entries):
    # HomePlug GP 11.5.x: AMLEN (LE16) then 4-bit amplitude-map entries, two per byte (low nibble first)
    n = len(entries)
    if n > MAX_AMP_ENTRIES:
        raise UsageError("amplitude map has at most %d entries" % MAX_AMP_ENTRIES)
    b = _frame(dst, src, CM_AMP_MAP | REQ, 21 + (n + 1) // 2)
    b[19] = n & 0xFF
    b[20] = n >> 8
    for i in range(n):
        v = entries[i]
        if not 0 <= v <= 15:
            raise UsageError("amplitude-map entries are 4 bits")
        b[21 + (i >> 1)] |= v << (4 * (i & 1))
    return bytes(b)


def amp_map_cnf(src, dst, result=0):
    b = _frame(dst, src, CM_AMP_MAP | CNF, 20)
    b[19] = result
    return bytes(b)


# --- reading ----------------------------------------------------------------------------------------------

def mmtype(frame):
    """The MMTYPE of a HomePlug frame, or None if it is not one (wrong EtherType, too short)."""
    if len(frame) < PAYLOAD or frame[12] != 0x88 or frame[13] != 0xE1:
        return None
    return frame[15] | (frame[16] << 8)


def source(frame):
    return bytes(frame[6:12])


def destination(frame):
    return bytes(frame[0:6])


def _need(frame, size, msg, field):
    if len(frame) < size:
        raise PeerError("%s: frame of %d bytes ends before %s" % (msg, len(frame), field))


def _check(frame, expected):
    t = mmtype(frame)
    if t is None:
        raise PeerError("not a HomePlug AV frame")
    if t != expected:
        raise PeerError("expected %s, got %s" % (name(expected), name(t)))
    if (expected & 0xF000) == 0xA000:
        if frame[14] != MMV_VS or bytes(frame[17:20]) != QCA_OUI:
            raise PeerError("%s: not a Qualcomm vendor message (MMV/OUI)" % name(expected))
    elif frame[14] != MMV_AV2 and frame[14] != 0x00:
        # AV 1.1 stations send MMV 0 with the same layout for these messages; anything else is unknown
        raise PeerError("%s: unknown MMV %d" % (name(expected), frame[14]))


def parse_slac_parm_req(frame):
    _check(frame, CM_SLAC_PARM | REQ)
    _need(frame, 29, "CM_SLAC_PARM.REQ", "RunID")
    return {"application_type": frame[19], "security_type": frame[20], "run_id": bytes(frame[21:29])}


def parse_slac_parm_cnf(frame):
    _check(frame, CM_SLAC_PARM | CNF)
    _need(frame, 44, "CM_SLAC_PARM.CNF", "RunID")
    return {"msound_target": bytes(frame[19:25]), "num_sounds": frame[25], "time_out": frame[26],
            "resp_type": frame[27], "forwarding_sta": bytes(frame[28:34]), "application_type": frame[34],
            "security_type": frame[35], "run_id": bytes(frame[36:44])}


def parse_start_atten_char_ind(frame):
    _check(frame, CM_START_ATTEN_CHAR | IND)
    _need(frame, 38, "CM_START_ATTEN_CHAR.IND", "RunID")
    return {"num_sounds": frame[21], "time_out": frame[22], "resp_type": frame[23],
            "forwarding_sta": bytes(frame[24:30]), "run_id": bytes(frame[30:38])}


def parse_mnbc_sound_ind(frame):
    _check(frame, CM_MNBC_SOUND | IND)
    _need(frame, 71, "CM_MNBC_SOUND.IND", "random")
    return {"sender_id": bytes(frame[21:38]), "count": frame[38], "run_id": bytes(frame[39:47]),
            "random": bytes(frame[55:71])}


def _aag(frame, count_at, start, msg):
    n = frame[count_at]
    if n > AAG_GROUPS:
        raise PeerError("%s: NumGroups %d over %d" % (msg, n, AAG_GROUPS))
    _need(frame, start + n, msg, "AAG[%d]" % n)
    return bytes(frame[start:start + n])


def parse_atten_profile_ind(frame):
    _check(frame, CM_ATTEN_PROFILE | IND)
    _need(frame, 27, "CM_ATTEN_PROFILE.IND", "NumGroups")
    return {"pev_mac": bytes(frame[19:25]), "aag": _aag(frame, 25, 27, "CM_ATTEN_PROFILE.IND")}


def parse_atten_char_ind(frame):
    _check(frame, CM_ATTEN_CHAR | IND)
    _need(frame, 71, "CM_ATTEN_CHAR.IND", "NumGroups")
    return {"application_type": frame[19], "security_type": frame[20], "source_address": bytes(frame[21:27]),
            "run_id": bytes(frame[27:35]), "source_id": bytes(frame[35:52]), "resp_id": bytes(frame[52:69]),
            "num_sounds": frame[69], "aag": _aag(frame, 70, 71, "CM_ATTEN_CHAR.IND")}


def parse_atten_char_rsp(frame):
    _check(frame, CM_ATTEN_CHAR | RSP)
    _need(frame, 70, "CM_ATTEN_CHAR.RSP", "Result")
    return {"source_address": bytes(frame[21:27]), "run_id": bytes(frame[27:35]),
            "source_id": bytes(frame[35:52]), "resp_id": bytes(frame[52:69]), "result": frame[69]}


def parse_validate(frame):
    """CM_VALIDATE.REQ or .CNF: {"req": bool, "signal_type", "timer" (REQ) or "toggle_num" (CNF), "result"}."""
    t = mmtype(frame)
    is_req = t == (CM_VALIDATE | REQ)
    _check(frame, CM_VALIDATE | (REQ if is_req else CNF))
    _need(frame, 22, name(t), "Result")
    d = {"req": is_req, "signal_type": frame[19], "result": frame[21]}
    d["timer" if is_req else "toggle_num"] = frame[20]
    return d


def _parse_match(frame, msg, size):
    _need(frame, size, msg, "RunID" if size == 85 else "NMK")
    return {"application_type": frame[19], "security_type": frame[20], "mvf_length": frame[21] | (frame[22] << 8),
            "pev_id": bytes(frame[23:40]), "pev_mac": bytes(frame[40:46]), "evse_id": bytes(frame[46:63]),
            "evse_mac": bytes(frame[63:69]), "run_id": bytes(frame[69:77])}


def parse_slac_match_req(frame):
    _check(frame, CM_SLAC_MATCH | REQ)
    return _parse_match(frame, "CM_SLAC_MATCH.REQ", 85)


def parse_slac_match_cnf(frame):
    _check(frame, CM_SLAC_MATCH | CNF)
    d = _parse_match(frame, "CM_SLAC_MATCH.CNF", 109)
    d["nid"] = bytes(frame[85:92])
    d["nmk"] = bytes(frame[93:109])
    return d


def parse_set_key_req(frame):
    _check(frame, CM_SET_KEY | REQ)
    _need(frame, 57, "CM_SET_KEY.REQ", "NewKey")
    return {"key_type": frame[19], "my_nonce": bytes(frame[20:24]), "your_nonce": bytes(frame[24:28]),
            "pid": frame[28], "prn": frame[29] | (frame[30] << 8), "pmn": frame[31], "cco_capability": frame[32],
            "nid": bytes(frame[33:40]), "new_eks": frame[40], "nmk": bytes(frame[41:57])}


def parse_set_key_cnf(frame):
    _check(frame, CM_SET_KEY | CNF)
    _need(frame, 33, "CM_SET_KEY.CNF", "CCoCapability")
    return {"result": frame[19], "my_nonce": bytes(frame[20:24]), "your_nonce": bytes(frame[24:28]),
            "pid": frame[28], "prn": frame[29] | (frame[30] << 8), "pmn": frame[31], "cco_capability": frame[32]}


def parse_amp_map_req(frame):
    _check(frame, CM_AMP_MAP | REQ)
    _need(frame, 21, "CM_AMP_MAP.REQ", "AMLEN")
    n = frame[19] | (frame[20] << 8)
    if n > MAX_AMP_ENTRIES:
        raise PeerError("CM_AMP_MAP.REQ: AMLEN %d over %d" % (n, MAX_AMP_ENTRIES))
    _need(frame, 21 + (n + 1) // 2, "CM_AMP_MAP.REQ", "AMDATA[%d]" % n)
    out = bytearray(n)
    for i in range(n):
        out[i] = (frame[21 + (i >> 1)] >> (4 * (i & 1))) & 0x0F
    return {"entries": bytes(out)}


def parse_amp_map_cnf(frame):
    _check(frame, CM_AMP_MAP | CNF)
    _need(frame, 20, "CM_AMP_MAP.CNF", "Result")
    return {"result": frame[19]}


# --- NID from NMK -----------------------------------------------------------------------------------------
# HomePlug AV 1.1 clause 4.4.3.1: the NID is a PBKDF1 of the NMK with SHA-256, no salt and 5 iterations
# (one hash of the key, then 4 more of the digest): NID[0..5] = h[0..5], NID[6] = security level (bits 4-5,
# 0 = simple connect) | the upper nibble of h[6] in bits 0-3. Checked: the default NMK ("HomePlugAV") gives
# NID B0F2E695666B03, as open-plc-utils prints it.

def nid_from_nmk(nmk, security_level=0):
    try:
        from hashlib import sha256
    except ImportError:  # pragma: no cover
        from uhashlib import sha256
    if len(nmk) != NMK_LEN:
        raise UsageError("NMK must be 16 bytes")
    h = sha256(bytes(nmk)).digest()
    for _ in range(4):
        h = sha256(h).digest()
    return bytes(h[0:6]) + bytes(((security_level & 3) << 4 | (h[6] >> 4),))


def average_attenuation(aag):
    """The mean of the attenuation groups in dB (rounded down), or None for an empty profile."""
    n = len(aag)
    if n == 0:
        return None
    total = 0
    for v in aag:
        total += v
    return total // n
