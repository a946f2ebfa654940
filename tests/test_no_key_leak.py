"""Keys stay home (DESIGN principle 6): no private key shows up anywhere a user or a log can see it.

A test PKI is written as `evpilot pki init` would, a store is seeded from it with seed_store, and a whole
ISO 15118-2 Plug&Charge session runs -- certificate installation through the station's CPS, PaymentDetails,
signed Authorization, SalesTariff, signed MeteringReceipt -- with every tracing option on: the readable
trace line and the JSON-lines log of every message on both sides, the store's log, Python logging at DEBUG,
stdout and stderr. Then a session that fails (a CPS response signed with the wrong key), the EV-side error
paths with keys at hand, and seed_store's own errors. Every private key involved (the OEM provisioning key,
the contract key installed in the session, the PKI's contract key, the station's keys) is searched for as
raw bytes, hex (either case, with or without colons), base64 (standard and URL-safe, with or without
padding) and as a decimal integer in every output, log line, repr, summary, error message and in the
store's manifest.
"""

import base64
import json
import logging
import os

from evpilot.errors import EvpilotError, PeerError
from evpilot.ev.client import EvClient
from evpilot.ev.iso2 import Iso2Session
from evpilot.ev.contracts import ContractManager
from evpilot_sim.vehicle import SimVehicle
from evpilot.store import certs
from evpilot.store.keystore import OEM, Store
from evpilot.v2g.timers import msg_timeout
from evpilot_sim import pipe
from evpilot_host import pki, trace
from evpilot_host import pki_material
from evpilot_host.pki_material import seed_store
from evpilot_sim.station import secc
from evpilot_sim.evse import EVSE
from evpilot_sim.station.iso2 import Iso2StationSession

import pytest


def forms(key):
    """Every text and byte form of a 32-byte private scalar worth searching for."""
    h = key.hex()
    b64 = base64.b64encode(key).decode()
    url = base64.urlsafe_b64encode(key).decode()
    texts = {h, h.upper(), ":".join(h[i:i + 2] for i in range(0, 64, 2)), b64, b64.rstrip("="), url,
             url.rstrip("="), str(int.from_bytes(key, "big")), repr(key)}
    return texts, {key} | {t.encode() for t in texts}


class Leaks:
    def __init__(self, keys):
        self.keys = [k for k in keys if k is not None]
        self.texts = []
        self.blobs = []

    def text(self, where, value):
        self.texts.append((where, value if isinstance(value, str) else repr(value)))

    def blob(self, where, value):
        self.blobs.append((where, bytes(value)))

    def check(self):
        assert self.keys and (self.texts or self.blobs)
        for key in self.keys:
            texts, blobs = forms(key)
            for where, value in self.texts:
                for t in texts:
                    assert t not in value, "a private key appears in %s" % where
            for where, value in self.blobs:
                for b in blobs:
                    assert b not in value, "a private key appears in %s" % where


def scalar(item):
    return item.key.private_numbers().private_value.to_bytes(32, "big")


@pytest.fixture
def pki_dir(tmp_path):
    issued = pki.build_pki()
    directory = tmp_path / "pki"
    pki.write_pki(directory, issued)
    return directory, issued


def run_session(store, station, leaks, tag, ev_log_path, st_log_path):
    """One PnC AC session with all tracing on; returns (client, secc connection, EV session)."""
    made = {}
    ev_json = trace.JsonLog(str(ev_log_path))
    st_json = trace.JsonLog(str(st_log_path))

    def ev_log(direction, name, doc, data, now):
        leaks.text(tag + " trace", trace.line("ev" if direction == "tx" else "secc", name, doc, now))
        leaks.blob(tag + " EXI", data)
        ev_json.write("ev" if direction == "tx" else "secc", name, doc, data, now)
        print(trace.line("ev" if direction == "tx" else "secc", name, doc, now))

    def st_log(direction, name, doc, data, now):
        st_json.write("secc" if direction == "tx" else "ev", name, doc, data, now)

    manager = ContractManager(store, now_s=None)

    def make_ev(protocol):
        made["ev"] = Iso2Session(SimVehicle(capacity_wh=1000, soc=20, target_soc=22, modes=("AC_three_phase_core",)),
                                 pnc=manager, tls=True)
        return made["ev"]

    def make_st(protocol):
        made["st"] = Iso2StationSession(EVSE(), seed=3, energy_modes=("AC_three_phase_core",), pnc=station, tls=True,
                                        receipt_required=3)
        return made["st"]

    client = EvClient(make_ev, [("iso2", 1)], msg_timeout, log=ev_log)
    conn = secc.SeccConnection(("iso2",), make_st, log=st_log)
    pipe.run(client, conn, latency_ms=20)
    ev_json.close()
    st_json.close()
    leaks.blob(tag + " EV JSON log", ev_log_path.read_bytes())
    leaks.blob(tag + " station JSON log", st_log_path.read_bytes())
    ev = made.get("ev")
    for label, obj in (("client reason", client.reason), ("station reason", conn.reason), ("EV session", ev),
                       ("contract manager", manager), ("store", store), ("contract", manager.contract()),
                       ("station refusal", getattr(made.get("st"), "refusal", None))):
        leaks.text(tag + " " + label, repr(obj))
        leaks.text(tag + " " + label + " str", str(obj))
    if ev is not None:
        leaks.text(tag + " summary", json.dumps(ev.summary()))
        leaks.text(tag + " session attributes", repr(vars(ev)))
    leaks.text(tag + " manager attributes", repr(vars(manager)))
    return client, conn, ev


def test_no_private_key_in_any_output(pki_dir, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    directory, issued = pki_dir
    store_lines = []
    store_dir = tmp_path / "store"
    summary = seed_store(store_dir, directory)
    store = Store(str(store_dir), log=store_lines.append)
    station = pki_material.station_pnc(str(directory), clock=None)
    leaks = Leaks([scalar(item) for item in issued.values()])
    leaks.text("seed_store summary", repr(summary))

    # 1. A session that installs a contract and charges with it.
    client, conn, ev = run_session(store, station, leaks, "session", tmp_path / "ev1.jsonl", tmp_path / "st1.jsonl")
    s = ev.summary()
    assert client.state == 2 and s["identification"] == "PnC" and s["contract_installed"], (client.reason, s)
    assert ev.receipts > 0
    new_key = store.private_key(ev.contracts.contract().name)
    leaks.keys.append(new_key)

    # 2. A session whose CPS signs with a key that is not the CPS leaf's: the EV refuses the response.
    bad_station = pki_material.station_pnc(str(directory), clock=None)
    bad_station.cps.cps_key = scalar(issued["cps_sub_ca2"])
    bad_store_dir = tmp_path / "store2"
    seed_store(bad_store_dir, directory)
    bad_store = Store(str(bad_store_dir), log=store_lines.append)
    client2, _, ev2 = run_session(bad_store, bad_station, leaks, "failed session", tmp_path / "ev2.jsonl",
                                  tmp_path / "st2.jsonl")
    assert client2.state == 3 and "signature" in client2.reason and bad_store.contracts() == []

    # 3. Error paths with keys at hand.
    oem = issued["oem_prov_leaf"]
    errors = []
    for fn, args in (
        (certs.install_contract_chain, (store, [issued["contract_leaf"].der], scalar(oem))),
        (certs.set_oem_chain, (store, [oem.der], scalar(issued["contract_leaf"]))),
        (store.install_contract, ([issued["contract_leaf"].der], b"\xff" * 32, pki.DEFAULT_EMAID, 0, 1)),
        (store.private_key, ("nobody",)),
    ):
        try:
            fn(*args)
        except EvpilotError as e:
            errors.append(e)
    (directory / "oem_prov_leaf.key").write_text("not a key")
    try:
        seed_store(tmp_path / "store3", directory)
    except EvpilotError as e:
        errors.append(e)
    assert len(errors) == 5
    for e in errors:
        leaks.text("error " + type(e).__name__, str(e))
        leaks.text("error repr", repr(e))
        leaks.text("error args", repr(e.args))

    # 4. Everything the run printed or logged, and what the store wrote beside the key files.
    out = capsys.readouterr()
    leaks.text("stdout", out.out)
    leaks.text("stderr", out.err)
    leaks.text("logging", caplog.text)
    for line in store_lines:
        leaks.text("store log", line)
    for d in (store_dir, bad_store_dir):
        leaks.blob("manifest", (d / "manifest.json").read_bytes())
        for name in os.listdir(d):
            if not name.endswith(".key"):
                leaks.blob("store file " + name, (d / name).read_bytes())
    assert out.out.count("CertificateInstallationReq") == 2 and store_lines
    leaks.check()

    # The keys are where they belong, and only there.
    assert store.private_key(OEM) == scalar(oem)
    key_files = [n for n in os.listdir(store_dir) if n.endswith(".key")]
    assert any((store_dir / n).read_bytes() == new_key for n in key_files)


def test_the_search_finds_a_planted_key():
    # The checker itself: a key in any of its forms is found.
    key = bytes(range(1, 33))
    texts, blobs = forms(key)
    for t in texts:
        leaks = Leaks([key])
        leaks.text("planted", "before " + t + " after")
        with pytest.raises(AssertionError):
            leaks.check()
    leaks = Leaks([key])
    leaks.blob("planted", b"x" + key + b"y")
    with pytest.raises(AssertionError):
        leaks.check()
    leaks = Leaks([key])
    leaks.text("clean", "nothing here")
    leaks.check()


def test_seed_store_loads_the_pki(pki_dir, tmp_path):
    directory, issued = pki_dir
    out = seed_store(tmp_path / "s", directory, contract=True)
    store = Store(out["store"])
    assert out["pcid"] == pki.DEFAULT_PCID and out["emaid"] == pki.DEFAULT_EMAID and len(out["roots"]) == 2
    assert sorted(r.subject.split(",")[-1] for r in store.roots()) == ["DC=MO", "DC=V2G"]
    assert store.oem().chain == [issued[r].der for r in ("oem_prov_leaf", "oem_sub_ca2", "oem_sub_ca1")]
    c = store.contract()
    assert c.chain == [issued[r].der for r in ("contract_leaf", "mo_sub_ca2", "mo_sub_ca1")]
    assert store.private_key(c.name) == scalar(issued["contract_leaf"])
    # Seeding again replaces rather than adds.
    seed_store(tmp_path / "s", directory, contract=True)
    store = Store(out["store"])
    assert len(store.roots()) == 2 and len(store.contracts()) == 1
    # Errors are one clear line naming the file.
    with pytest.raises(EvpilotError, match="v2g_root.der"):
        seed_store(tmp_path / "t", tmp_path / "s")
    with pytest.raises(EvpilotError, match="not a directory"):
        seed_store(tmp_path / "t", tmp_path / "nowhere")
    assert isinstance(PeerError("x"), EvpilotError)
