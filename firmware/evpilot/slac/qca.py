# Qualcomm Atheros vendor-specific MMEs (QCA7000/QCA7005/QCA7420 modems): what the host asks its own modem.
#
# How this works: vendor messages carry MMV 0x00, the MMTYPE little-endian at 15-16 and Qualcomm's OUI
# 00:B0:52 at 17-19; the payload starts at byte 20. Requests go to the local management address
# (mme.QCA_LOCAL), which only the modem attached to this host answers. Layouts as open-plc-utils defines them
# (mme/qualcomm.h names: VS_SW_VER, VS_RS_DEV, VS_NW_INFO) and Wireshark's HomePlug AV dissector decodes them
# (tests/test_slac_tshark.py). Parsers are bounded and raise PeerError naming the field, as in mme.py.

from evpilot.compat import const
from evpilot.errors import PeerError, UsageError
from evpilot.slac import mme
from evpilot.slac.mme import CNF, NID_LEN, QCA_LOCAL, REQ, VS_NW_INFO, VS_RS_DEV, VS_SW_VER, _check, _fixed, _mac, _need

MAX_VERSION = const(128)  # MVERSION is a fixed field of this size (PLC_VERSION_STRING)
MAX_NETWORKS = const(8)
MAX_STATIONS = const(64)


def _vs_frame(dst, src, mmtype, size):
    buf = bytearray(size if size > mme.MIN_FRAME else mme.MIN_FRAME)
    buf[0:6] = _mac(dst, "destination")
    buf[6:12] = _mac(src, "source")
    buf[12] = mme.ETHERTYPE >> 8
    buf[13] = mme.ETHERTYPE & 0xFF
    buf[14] = mme.MMV_VS
    buf[15] = mmtype & 0xFF
    buf[16] = mmtype >> 8
    buf[17:20] = mme.QCA_OUI
    return buf


def sw_ver_req(src, dst=QCA_LOCAL):
    return bytes(_vs_frame(dst, src, VS_SW_VER | REQ, 20))


def sw_ver_cnf(src, dst, version, status=0, device_id=0x20):
    # open-plc-utils VS_SW_VER.CNF: MSTATUS, MDEVICEID, MVERLENGTH, MVERSION (NUL-terminated text)
    # MVERSION is a fixed field of 128 bytes (PLC_VERSION_STRING), then MUPGRADEABLE
    v = version.encode() if isinstance(version, str) else bytes(version)
    if len(v) >= MAX_VERSION:
        raise UsageError("version text too long")
    b = _vs_frame(dst, src, VS_SW_VER | CNF, 24 + MAX_VERSION)
    b[20] = status
    b[21] = device_id
    b[22] = len(v) + 1
    b[23:23 + len(v)] = v
    return bytes(b)


def rs_dev_req(src, dst=QCA_LOCAL):
    return bytes(_vs_frame(dst, src, VS_RS_DEV | REQ, 20))


def rs_dev_cnf(src, dst, status=0):
    b = _vs_frame(dst, src, VS_RS_DEV | CNF, 21)
    b[20] = status
    return bytes(b)


def nw_info_req(src, dst=QCA_LOCAL):
    return bytes(_vs_frame(dst, src, VS_NW_INFO | REQ, 20))


def nw_info_cnf(src, dst, networks):
    """networks: a list of (nid, snid, tei, role, cco_mac, stations), stations a list of (mac, tei, bridged
    mac, tx rate, rx rate)."""
    size = 21
    for net in networks:
        size += 18 + 15 * len(net[5])
    b = _vs_frame(dst, src, VS_NW_INFO | CNF, size)
    b[20] = len(networks)
    p = 21
    for nid, snid, tei, role, cco_mac, stations in networks:
        b[p:p + 7] = _fixed(nid, NID_LEN, "NID")
        b[p + 7] = snid
        b[p + 8] = tei
        b[p + 9] = role
        b[p + 10:p + 16] = _mac(cco_mac, "CCo MAC")
        b[p + 16] = tei
        b[p + 17] = len(stations)
        p += 18
        for mac, stei, bda, tx, rx in stations:
            b[p:p + 6] = _mac(mac, "station MAC")
            b[p + 6] = stei
            b[p + 7:p + 13] = _mac(bda, "bridged MAC")
            b[p + 13] = tx
            b[p + 14] = rx
            p += 15
    return bytes(b)


def parse_sw_ver_cnf(frame):
    _check(frame, VS_SW_VER | CNF)
    _need(frame, 23, "VS_SW_VER.CNF", "MVERLENGTH")
    n = frame[22]
    if n > MAX_VERSION:
        raise PeerError("VS_SW_VER.CNF: MVERLENGTH %d over %d" % (n, MAX_VERSION))
    _need(frame, 23 + n, "VS_SW_VER.CNF", "MVERSION")
    text = bytes(frame[23:23 + n])
    end = text.find(b"\x00")
    if end >= 0:
        text = text[:end]
    try:
        version = text.decode()
    except UnicodeError:
        raise PeerError("VS_SW_VER.CNF: MVERSION is not text")
    return {"status": frame[20], "device_id": frame[21], "version": version}


def parse_rs_dev_cnf(frame):
    _check(frame, VS_RS_DEV | CNF)
    _need(frame, 21, "VS_RS_DEV.CNF", "MSTATUS")
    return {"status": frame[20]}


def parse_nw_info_cnf(frame):
    """{"networks": [{"nid", "snid", "tei", "role", "cco_mac", "stations": [{"mac", "tei", ...}]}]}"""
    _check(frame, VS_NW_INFO | CNF)
    _need(frame, 21, "VS_NW_INFO.CNF", "NUMAVLNS")
    count = frame[20]
    if count > MAX_NETWORKS:
        raise PeerError("VS_NW_INFO.CNF: NUMAVLNS %d over %d" % (count, MAX_NETWORKS))
    nets = []
    p = 21
    for i in range(count):
        _need(frame, p + 18, "VS_NW_INFO.CNF", "network %d" % i)
        stas = frame[p + 17]
        if stas > MAX_STATIONS:
            raise PeerError("VS_NW_INFO.CNF: NUMSTAS %d over %d" % (stas, MAX_STATIONS))
        net = {"nid": bytes(frame[p:p + 7]), "snid": frame[p + 7], "tei": frame[p + 8], "role": frame[p + 9],
               "cco_mac": bytes(frame[p + 10:p + 16]), "stations": []}
        p += 18
        _need(frame, p + 15 * stas, "VS_NW_INFO.CNF", "station list of network %d" % i)
        for _ in range(stas):
            net["stations"].append({"mac": bytes(frame[p:p + 6]), "tei": frame[p + 6],
                                    "bridged_mac": bytes(frame[p + 7:p + 13]), "tx_rate": frame[p + 13],
                                    "rx_rate": frame[p + 14]})
            p += 15
        nets.append(net)
    return {"networks": nets}
