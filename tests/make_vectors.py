"""Regenerate tests/vectors/: the project's own EXI and Plug&Charge test vectors, a subset of the full corpus.

The full corpus (3,664 EXI streams with their provenance and an independent decode, see tests/vectors/README.md)
is not part of the project; the tests read it at ../shared/vectors when it is there (CI has it). This script
picks from it the streams the project's own tests need, and copies the Plug&Charge files they read:

    python3 tests/make_vectors.py [SHARED_VECTORS_DIR]      (default ../shared/vectors beside the repository)

How the EXI streams are chosen (apphand, DIN 70121 and ISO 15118-2; ISO 15118-20 is not in the codec yet), in
this order, each step adding only records not taken yet:

1. every SupportedAppProtocol record and every stream with trailing zero bytes (a real car's quirk); the
   benchmark samples (bench/samples.py: the first real capture that round-trips of each of BENCH_SAMPLES);
2. every response of the two recorded ISO-2 sessions the EV is replayed against (EVerest's lab charger with a
   Mercedes-Benz EQE, AC and DC; tests/test_iso2_station.py);
3. one DIN response per real charger, message and (ResponseCode, EVSEProcessing) (tests/test_din_station.py);
4. two records of every message of every schema set where the corpus has two, and every real car and charger
   at least once;
5. greedy cover of the element paths: until every element path of every decoded document in the corpus (and
   every value of the enumerations that steer a session, such as ResponseCode or EVSEProcessing) occurs in a
   chosen record.

Where several records would do, real captures come first, then other captures, then the rest; then the
earlier line. Records are written as the corpus has them (the same line, every field, provenance included) and
in corpus order, so tests/test_vectors_subset.py can check each against the corpus.
"""

import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "vectors")

STANDARDS = ("apphand", "din70121", "iso15118-2")
REPLAYED_DUMPS = (
    "EVerest/logfiles:Mercedes-Benz/EQE/2023-10-04/iso2-AC.dump",
    "EVerest/logfiles:Mercedes-Benz/EQE/2023-10-04/iso2-DC.dump",
)
BENCH_SAMPLES = (("iso15118-2", "SessionSetupReq"), ("iso15118-2", "CurrentDemandReq"),
                 ("iso15118-2", "CurrentDemandRes"), ("din70121", "CurrentDemandReq"), ("din70121", "CurrentDemandRes"))
# Enumerations whose values change what a session does next: each value seen in the corpus is covered.
STEERING = frozenset((
    "ResponseCode", "EVSEProcessing", "EVErrorCode", "EVSEStatusCode", "EVSENotification", "ChargeProgress",
    "ChargingSession", "Unit", "EnergyTransferMode", "RequestedEnergyTransferMode", "SelectedPaymentOption",
    "PaymentOption", "ServiceCategory", "EVSEIsolationStatus", "ProtocolNamespace", "costKind", "FaultCode",
))
# Files of ../shared/vectors that tests read, copied as they are.
COPIED = (
    "exi-primitives.json",
    "pnc/iso2_key_transport_vector.json",
    "pnc/iso2_certinstallres_signature_vector.json",
    "pnc/rise-v2g-signature-testdata/README.md",
    "pnc/rise-v2g-signature-testdata/contractCert.pem",
    "pnc/rise-v2g-signature-testdata/cpsLeafCert.pem",
    "pnc/rise-v2g-signature-testdata/cpsSubCA1Cert.pem",
    "pnc/rise-v2g-signature-testdata/cpsSubCA2Cert.pem",
    "pnc/rise-v2g-signature-testdata/moSubCA1Cert.pem",
    "pnc/rise-v2g-signature-testdata/moSubCA2Cert.pem",
    "pnc/rise-v2g-signature-testdata/oemProvCert.pem",
    "pnc/rise-v2g-signature-testdata/v2gRootCACert.pem",
)
_ORIGIN_RANK = {"real_capture": 0, "capture": 1, "simulator_capture": 2}


def element_paths(doc, prefix, out):
    """Add to `out` every element path of a libcbv2g document ("a/b/c"; "a/b[]" for a list, "a/b[]*" for one
    of two or more) and "path=value" for the values of the STEERING enumerations."""
    if isinstance(doc, dict):
        out.add(prefix)
        for key, value in doc.items():
            element_paths(value, prefix + "/" + key, out)
    elif isinstance(doc, list):
        out.add(prefix + ("[]*" if len(doc) > 1 else "[]"))
        for value in doc:
            element_paths(value, prefix, out)
    else:
        out.add(prefix)
        if isinstance(doc, str) and prefix.rsplit("/", 1)[-1] in STEERING:
            out.add(prefix + "=" + doc)


def devices(r):
    return [d.strip() for key in ("real_charger", "real_ev") if r.get(key) for d in r[key].split(";")]


def select(records):
    """Indexes into `records` (parsed corpus lines of STANDARDS), in corpus order."""
    order = sorted(range(len(records)), key=lambda i: (_ORIGIN_RANK.get(records[i]["origin"], 3), i))
    chosen = set()

    def take(pred, key=None, per=1):
        seen = {}
        for i in order:
            r = records[i]
            if i in chosen or not pred(r):
                continue
            k = key(r) if key else i
            if seen.get(k, 0) < per:
                seen[k] = seen.get(k, 0) + 1
                chosen.add(i)

    # 1, 2, 3
    take(lambda r: r["standard"] == "apphand" or r["libcbv2g"]["trailing_zero_bytes"])
    for sample in BENCH_SAMPLES:
        chosen.add(next(i for i, r in enumerate(records) if (r["standard"], r["message"]) == sample
                        and r["origin"] == "real_capture" and r["libcbv2g"]["roundtrip_identical"]))
    take(lambda r: r["standard"] == "iso15118-2" and r["message"].endswith("Res") and any(
        s.startswith(REPLAYED_DUMPS) for s in [r["source"]] + (r.get("also_in_first") or [])))
    take(lambda r: r["standard"] == "din70121" and r.get("real_charger") and r["message"].endswith("Res"),
         key=lambda r: (r["real_charger"], r["message"], _body_value(r, "ResponseCode"),
                        _body_value(r, "EVSEProcessing")))
    # 4: two of every message (counting what is chosen already), every device once
    have = {}
    for i in chosen:
        k = (records[i]["standard"], records[i]["message"])
        have[k] = have.get(k, 0) + 1
    for i in order:
        k = (records[i]["standard"], records[i]["message"])
        if i not in chosen and have.get(k, 0) < 2:
            chosen.add(i)
            have[k] = have.get(k, 0) + 1
    seen_devices = {d for i in chosen for d in devices(records[i])}
    for i in order:
        new = [d for d in devices(records[i]) if d not in seen_devices]
        if i not in chosen and new:
            chosen.add(i)
            seen_devices.update(devices(records[i]))
    # 5: element paths
    paths = []
    for r in records:
        p = set()
        element_paths(r["libcbv2g"]["doc"], r["standard"], p)
        paths.append(p)
    covered = set().union(*(paths[i] for i in chosen))
    rank = {i: n for n, i in enumerate(order)}
    while True:
        gain, best = max(((len(paths[i] - covered), -rank[i]), i) for i in range(len(records)) if i not in chosen)
        if gain[0] == 0:
            break
        chosen.add(best)
        covered |= paths[best]
    return sorted(chosen)


def _body_value(r, name):
    doc = r["libcbv2g"]["doc"].get("V2G_Message", {})
    body = doc.get("Body", {}).get(r["message"], {})
    return body.get(name) if isinstance(body, dict) else None


def corpus_lines(path):
    """(line, record) for every corpus record of STANDARDS, in file order."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if r["standard"] in STANDARDS:
                    out.append((line if line.endswith("\n") else line + "\n", r))
    return out


def subset_text(corpus_path):
    lines = corpus_lines(corpus_path)
    return "".join(lines[i][0] for i in select([r for _, r in lines]))


def main(argv):
    src = argv[0] if argv else os.path.join(ROOT, "..", "shared", "vectors")
    corpus = os.path.join(src, "exi.jsonl")
    if not os.path.isfile(corpus):
        sys.exit("make_vectors: no corpus at %s (give the folder that holds exi.jsonl)" % corpus)
    os.makedirs(OUT, exist_ok=True)
    text = subset_text(corpus)
    with open(os.path.join(OUT, "exi.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    for name in COPIED:
        os.makedirs(os.path.dirname(os.path.join(OUT, name)), exist_ok=True)
        shutil.copyfile(os.path.join(src, name), os.path.join(OUT, name))
    print("wrote %s: %d records, %d bytes; copied %d files" % (
        os.path.join(OUT, "exi.jsonl"), text.count("\n"), len(text.encode()), len(COPIED)))


if __name__ == "__main__":
    main(sys.argv[1:])
