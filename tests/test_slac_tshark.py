"""Our HomePlug MME frames decoded by an independent decoder: Wireshark's HomePlug AV dissector (Debian's
`tshark`). The frames evpilot.slac.mme builds are written to a pcap (Ethernet link type) and read back with
`tshark -T json`; the dissector's field values must be the ones we put in. Skips without tshark (fails in CI,
where .ci/run installs it).
"""

import json
import os
import shutil
import struct
import subprocess

import pytest

from evpilot.slac import mme, qca

EV = bytes.fromhex("0211223344aa")
EVSE = bytes.fromhex("02aabbccdd01")
RUN = bytes(range(1, 9))
NMK = bytes.fromhex("50d3e4933f855b7040784df815aa8db7")
NID = bytes.fromhex("b0f2e695666b03")
AAG = bytes(range(10, 68))


def _colons(b):
    return ":".join("%02x" % x for x in b)


def _write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # LINKTYPE_ETHERNET
        for i, frame in enumerate(frames):
            f.write(struct.pack("<IIII", 1000 + i, 0, len(frame), len(frame)))
            f.write(frame)


def _fields(tree, out):
    """Flatten tshark's JSON tree: field name -> list of values, in order."""
    # --no-duplicate-keys turns a repeated field (the 58 AAG groups) into a list of its values
    for key, value in tree.items():
        if isinstance(value, dict):
            _fields(value, out)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _fields(item, out)
                else:
                    out.setdefault(key, []).append(item)
        else:
            out.setdefault(key, []).append(value)
    return out


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    if shutil.which("tshark") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tshark is not installed")
        pytest.skip("tshark is not installed (Debian package tshark)")
    frames = [
        mme.slac_parm_req(EV, RUN),
        mme.slac_parm_cnf(EVSE, EV, RUN),
        mme.start_atten_char_ind(EV, RUN),
        mme.mnbc_sound_ind(EV, RUN, 7, bytes(range(16))),
        mme.atten_char_ind(EVSE, EV, RUN, AAG, 10),
        mme.atten_char_rsp(EV, EVSE, RUN),
        mme.validate_req(EV, EVSE, 3, mme.VALIDATE_READY),
        mme.validate_cnf(EVSE, EV, 5, mme.VALIDATE_SUCCESS),
        mme.slac_match_req(EV, EVSE, RUN),
        mme.slac_match_cnf(EVSE, EV, RUN, NID, NMK),
        mme.set_key_req(EV, NID, NMK, b"\x01\x02\x03\x04"),
        mme.set_key_cnf(EVSE, EV, 1, b"\x05\x06\x07\x08", b"\x01\x02\x03\x04"),
        mme.atten_profile_ind(EVSE, EVSE, EV, AAG),
        qca.sw_ver_cnf(EVSE, EV, "MAC-QCA7000-1.2.5"),
        qca.nw_info_cnf(EVSE, EV, [(NID, 3, 2, 0, EVSE, [(EVSE, 1, b"\xff" * 6, 10, 11)])]),
        qca.rs_dev_cnf(EVSE, EV, 0),
    ]
    path = str(tmp_path_factory.mktemp("slac") / "mme.pcap")
    _write_pcap(path, frames)
    proc = subprocess.run(["tshark", "-n", "-r", path, "-T", "json", "--no-duplicate-keys"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    packets = json.loads(proc.stdout)
    assert len(packets) == len(frames)
    out = []
    for p in packets:
        layers = p["_source"]["layers"]
        assert "homeplug-av" in layers, sorted(layers)
        fields = _fields(layers["homeplug-av"], {})
        fields["layers"] = sorted(layers)  # a frame the dissector finds malformed gets a _ws.malformed layer
        out.append(fields)
    return out


def _one(fields, name):
    assert name in fields, (name, sorted(fields))
    return fields[name][0]


def _mmtype(fields):
    return int(fields.get("homeplug_av.mmhdr.mmtype", fields.get("homeplug_av.mmhdr.mmtype.qualcomm"))[0], 16)


def test_no_frame_is_malformed(decoded):
    for fields in decoded:
        assert "_ws.malformed" not in fields["layers"] and "_ws.malformed" not in fields, fields
        assert "_ws.expert" not in fields, fields


def test_mmtypes(decoded):
    assert [_mmtype(f) for f in decoded] == [0x6064, 0x6065, 0x606A, 0x6076, 0x606E, 0x606F, 0x6078, 0x6079,
                                             0x607C, 0x607D, 0x6008, 0x6009, 0x6086, 0xA001, 0xA039, 0xA01D]


def test_slac_parm(decoded):
    req, cnf = decoded[0], decoded[1]
    assert _one(req, "homeplug_av.gp.cm_slac_parm.runid") == _colons(RUN)
    assert int(_one(req, "homeplug_av.gp.cm_slac_parm.apptype"), 16) == 0
    assert _one(cnf, "homeplug_av.gp.cm_slac_parm.sound_target") == "ff:ff:ff:ff:ff:ff"
    assert int(_one(cnf, "homeplug_av.gp.cm_slac_parm.sound_count"), 0) == 10
    assert int(_one(cnf, "homeplug_av.gp.cm_slac_parm.time_out")) == 6
    assert int(_one(cnf, "homeplug_av.gp.cm_slac_parm.resptype"), 0) == 1
    assert _one(cnf, "homeplug_av.gp.cm_slac_parm.forwarding_sta") == _colons(EV)
    assert _one(cnf, "homeplug_av.gp.cm_slac_parm.runid") == _colons(RUN)


def test_start_atten_and_sound(decoded):
    start, sound = decoded[2], decoded[3]
    assert _one(start, "homeplug_av.gp.cm_start_atten_char.runid") == _colons(RUN)
    assert int(_one(start, "homeplug_av.gp.cm_start_atten_char.sounds_count"), 0) == 10
    assert int(_one(start, "homeplug_av.gp.cm_start_atten_char.time_out")) == 6
    assert _one(start, "homeplug_av.gp.cm_start_atten_char.sound_forwarding_sta") == _colons(EV)
    assert int(_one(sound, "homeplug_av.gp.cm_mnbc_sound.countdown")) == 7
    assert _one(sound, "homeplug_av.gp.cm_mnbc_sound.runid") == _colons(RUN)
    assert _one(sound, "homeplug_av.gp.cm_mnbc_sound.rnd").replace(":", "").replace(" ", "") == bytes(range(16)).hex()


def test_atten_char(decoded):
    ind, rsp = decoded[4], decoded[5]
    assert _one(ind, "homeplug_av.gp.cm_atten_char.source_mac") == _colons(EV)
    assert _one(ind, "homeplug_av.gp.cm_atten_char.runid") == _colons(RUN)
    assert int(_one(ind, "homeplug_av.gp.cm_atten_char.sounds_count")) == 10
    assert int(_one(ind, "homeplug_av.gp.cm_atten_char.groups_count")) == 58
    assert [int(v) for v in ind["homeplug_av.gp.cm_atten_char.aag"]] == list(AAG)
    assert _one(rsp, "homeplug_av.gp.cm_atten_char.runid") == _colons(RUN)
    assert int(_one(rsp, "homeplug_av.gp.cm_atten_char.result"), 0) == 0
    profile = decoded[12]
    assert _one(profile, "homeplug_av.gp.cm_atten_profile_ind.pev_mac") == _colons(EV)
    assert [int(v) for v in profile["homeplug_av.gp.cm_atten_profile_ind.aag"]] == list(AAG)


def test_validate(decoded):
    req, cnf = decoded[6], decoded[7]
    assert int(_one(req, "homeplug_av.gp.cm_validate.timer")) == 3
    assert int(_one(req, "homeplug_av.gp.cm_validate.result"), 0) == mme.VALIDATE_READY
    assert int(_one(cnf, "homeplug_av.gp.cm_validate.togglenum")) == 5
    assert int(_one(cnf, "homeplug_av.gp.cm_validate.result"), 0) == mme.VALIDATE_SUCCESS


def test_slac_match(decoded):
    req, cnf = decoded[8], decoded[9]
    assert int(_one(req, "homeplug_av.gp.cm_slac_match.length"), 16) == 0x3E
    assert _one(req, "homeplug_av.gp.cm_slac_match.pev_mac") == _colons(EV)
    assert _one(req, "homeplug_av.gp.cm_slac_match.evse_mac") == _colons(EVSE)
    assert _one(req, "homeplug_av.gp.cm_slac_match.runid") == _colons(RUN)
    assert int(_one(cnf, "homeplug_av.gp.cm_slac_match.length"), 16) == 0x56
    assert _one(cnf, "homeplug_av.gp.cm_slac_match.nid") == _colons(NID)
    assert _one(cnf, "homeplug_av.gp.cm_slac_match.nmk").replace(":", "") == NMK.hex()


def test_set_key(decoded):
    req, cnf = decoded[10], decoded[11]
    assert _one(req, "homeplug_av.nw_info.nid").replace(":", "") == NID.hex()
    assert _one(req, "homeplug_av.cm_set_key_req.nw_key").replace(":", "") == NMK.hex()
    assert int(_one(req, "homeplug_av.nw_info.my_nonce"), 16) == 0x04030201  # the dissector reads it LE
    assert int(_one(req, "homeplug_av.nw_info.key_type"), 0) == mme.KEY_TYPE_NMK
    assert int(_one(req, "homeplug_av.nw_info.pid"), 0) == 4
    assert int(_one(cnf, "homeplug_av.cm_set_key_cnf.result"), 0) == 1
    assert int(_one(cnf, "homeplug_av.nw_info.your_nonce"), 16) == 0x04030201


def test_qualcomm_vendor(decoded):
    sw, nw, rs = decoded[13], decoded[14], decoded[15]
    assert _one(sw, "homeplug_av.vendor.oui") == "0x00b052"
    assert int(_one(sw, "homeplug_av.get_sw_cnf.ver_len")) == len("MAC-QCA7000-1.2.5") + 1
    assert _one(sw, "homeplug_av.get_sw_cnf.ver_str") == "MAC-QCA7000-1.2.5"
    assert int(_one(nw, "homeplug_av.nw_info.num_avlns")) == 1
    assert _one(nw, "homeplug_av.nw_info.nid").replace(":", "") == NID.hex()
    assert int(_one(nw, "homeplug_av.nw_info.snid"), 0) == 3
    assert int(_one(nw, "homeplug_av.nw_info_cnf.num_stas")) == 1
    assert _one(nw, "homeplug_av.nw_info_cnf.sta_info.da") == _colons(EVSE)
    assert int(_one(rs, "homeplug_av.rs_dev_cnf.status"), 0) == 0
