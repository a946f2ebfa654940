"""tests/vectors, the project's own EXI vectors: every message of every schema set, each record with its
provenance; and, where ../shared has the full corpus, that each record is a corpus record unchanged and that
the file is what tests/make_vectors.py picks from it."""

import collections
import json
import os
import xml.etree.ElementTree as ET

from vectors import EXI_JSONL, SCHEMAS, VECTORS, need_shared, records

import make_vectors

XS = "{http://www.w3.org/2001/XMLSchema}"
# Messages DIN SPEC 70121 defines for AC and Plug&Charge, which its DC-only deployments never send: no stream
# of the full corpus has them either.
DIN_WITHOUT_VECTORS = {
    "CertificateInstallationReq", "CertificateInstallationRes", "CertificateUpdateReq", "CertificateUpdateRes",
    "ChargingStatusReq", "ChargingStatusRes", "MeteringReceiptReq", "MeteringReceiptRes", "PaymentDetailsReq",
    "PaymentDetailsRes", "ServiceDetailReq", "ServiceDetailRes",
}
# ISO-2 messages that no real capture of the full corpus holds (Plug&Charge and ServiceDetail: test data only).
ONLY_FROM_TEST_DATA = {
    "CertificateInstallationReq", "CertificateInstallationRes", "CertificateUpdateReq", "CertificateUpdateRes",
    "MeteringReceiptReq", "MeteringReceiptRes", "PaymentDetailsReq", "PaymentDetailsRes", "ServiceDetailReq",
    "ServiceDetailRes", "AuthorizationReq (fragment)", "MeteringReceiptReq (fragment)", "SalesTariff (fragment)",
    "SignedInfo (fragment)",
}


def _body_elements(folder):
    """The message names of a schema set: the members of its BodyElement substitution group."""
    tree = ET.parse(os.path.join(SCHEMAS, folder, "V2G_CI_MsgBody.xsd"))
    return {e.get("name") for e in tree.getroot().iter(XS + "element")
            if (e.get("substitutionGroup") or "").split(":")[-1] == "BodyElement"}


def _messages(recs, standard):
    return {r["message"] for r in recs if r["standard"] == standard}


ALL = list(records())


def test_every_message_of_every_schema_set():
    apphand = ET.parse(os.path.join(SCHEMAS, "apphand", "V2G_CI_AppProtocol.xsd")).getroot()
    assert _messages(ALL, "apphand") == {e.get("name") for e in apphand.findall(XS + "element")}
    iso2 = _body_elements("iso15118-2")
    assert len(iso2) == 34
    fragments = {"AuthorizationReq (fragment)", "MeteringReceiptReq (fragment)", "SalesTariff (fragment)",
                 "SignedInfo (fragment)"}
    assert _messages(ALL, "iso15118-2") == iso2 | fragments
    din = _body_elements("din70121")
    assert DIN_WITHOUT_VECTORS < din and _messages(ALL, "din70121") == din - DIN_WITHOUT_VECTORS


def test_real_chargers_and_cars_first():
    by_message = collections.defaultdict(list)
    for r in ALL:
        by_message[r["standard"], r["message"]].append(r)
    for (standard, message), recs in by_message.items():
        # Every message some real car or charger sent is there as a real capture.
        real = any(r["origin"] == "real_capture" for r in recs)
        assert real or message in ONLY_FROM_TEST_DATA, (standard, message)
    chargers = {d for r in ALL for d in make_vectors.devices(r) if r.get("real_charger") and d in r["real_charger"]}
    cars = {d for r in ALL for d in make_vectors.devices(r)} - chargers
    assert {"Compleo", "Tesla Supercharger", "ABB Triple", "Alpitronic HYC150"} <= chargers
    assert len(cars) >= 30 and sum(r["origin"] == "real_capture" for r in ALL) > len(ALL) * 2 // 3


def test_provenance_and_size():
    fields = {"standard", "message", "hex", "source", "origin", "libcbv2g"}
    for r in ALL:
        assert fields <= set(r) and r["source"] and r["origin"], r
        assert r["libcbv2g"]["doc"] and set(r["hex"]) <= set("0123456789abcdef"), r["source"]
    assert len({(r["source"], r["hex"]) for r in ALL}) == len(ALL)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(VECTORS) for f in fs)
    assert total < 400 * 1024, total


def test_records_are_the_full_corpus_records_unchanged():
    corpus = need_shared()
    with open(corpus, encoding="utf-8") as f:
        lines = set(f)
    with open(EXI_JSONL, encoding="utf-8") as f:
        mine = f.readlines()
    assert all(line in lines for line in mine)
    full = [r for r in (json.loads(line) for line in lines) if r["standard"] in make_vectors.STANDARDS]
    for standard in make_vectors.STANDARDS:
        assert _messages(ALL, standard) == _messages(full, standard), standard
    # every real car and charger of the corpus, and every message a real device sent as a real capture
    assert {d for r in full for d in make_vectors.devices(r)} == {d for r in ALL for d in make_vectors.devices(r)}
    real = {(r["standard"], r["message"]) for r in full if r["origin"] == "real_capture"}
    assert real == {(r["standard"], r["message"]) for r in ALL if r["origin"] == "real_capture"}


def test_make_vectors_reproduces_the_file():
    corpus = need_shared()
    with open(EXI_JSONL, encoding="utf-8") as f:
        assert make_vectors.subset_text(corpus) == f.read()
    shared_vectors = os.path.dirname(corpus)
    for name in make_vectors.COPIED:
        with open(os.path.join(shared_vectors, name), "rb") as a, open(os.path.join(VECTORS, name), "rb") as b:
            assert a.read() == b.read(), name
