"""`evpilot demo --pnc`: Plug&Charge end to end in one process: a contract installed through the cable, then a
second session paid with it.

How this works: a test PKI (fresh from evpilot_host.pki in a temporary directory, or --pki DIR) gives the
station its SECC chain, the certificate provisioning service (CPS chain and key, MO Sub-CA 2 issuing the
contract) and the MO Sub-CA 2 key that signs the SalesTariff; the EV's certificate store (a fresh directory,
or --store DIR) is seeded with the V2G and MO roots and the OEM provisioning chain and key, nothing else.
Session 1 (when the store holds no usable contract yet): TLS (evpilot.tls.endpoint over the virtual-clock pipe), the EV selects Contract and the
Certificate service, installs the contract the station's CPS issues (every check of ev/pnc.py), then pays
with it (PaymentDetails, signed Authorization, signed SalesTariff). Session 2: a new connection, the contract
from the store, no installation. Both sessions are recorded in the station's SQLite database (a temporary
one, or --db FILE) and the per-contract usage report is printed at the end. Trusted time is the laptop's
clock. Exit status 0 when both sessions end cleanly with Plug&Charge, the first installed a contract (or found one in
--store) and the second used it without installing.
"""

import json
import shutil
import tempfile
import time
from pathlib import Path

from evpilot.ev import client as ev_client
from evpilot.ev.pnc import ContractManager
from evpilot import tls
from evpilot.tls import TlsEndpoint
from evpilot.store import certs
from evpilot.store.store import Store
from evpilot_sim import pipe
from evpilot_host import pki, pnc_store, sessions, trace
from evpilot_host.station import records
from evpilot_sim.station import secc


def _session(number, args, pki_dir, store_dir, station, db, printer):
    """One TLS + Plug&Charge session on the pipe; returns its summary dict."""
    made = {}
    veh = sessions.vehicle(args.mode, args.soc[0], args.soc[1], args.capacity_wh, pilot=sessions.plugged_pilot())
    evse = sessions.new_evse()
    store = Store(str(store_dir))
    contracts = ContractManager(store, now_s=int(time.time()))
    ev = sessions.ev_client_for("iso2", veh, made=made, pnc=contracts, tls=True)
    st = sessions.station_connection(("iso2",), args.mode, evse, seed=number, made=made, pnc=station, tls=True)
    ev.log = printer
    client = tls.TlsConnection(tls.client_context([c.der for c in certs.root_certificates(store, ("V2G",))]))
    server = tls.TlsConnection(tls.server_context(pki_dir / "secc_chain.pem", pki_dir / "secc_leaf.key"))
    ev_end, st_end = TlsEndpoint(ev, client), TlsEndpoint(st, server)

    def tick(now):
        veh.advance(now)
        evse.advance(now)

    started = time.time()
    t0 = time.perf_counter()
    end_ms = pipe.run(ev_end, st_end, latency_ms=args.latency_ms, tick=tick)
    wall = time.perf_counter() - t0
    db.record(st, started, started + end_ms / 1000.0)
    ev_summary = made["ev"].summary() if "ev" in made else {}
    ok = ev.state == ev_client.DONE and st.state == secc.DONE
    return {
        "session": number,
        "result": "ok" if ok else "failed",
        "identification": ev_summary.get("identification"),
        "emaid": ev_summary.get("emaid"),
        "contract_installed": ev_summary.get("contract_installed"),
        "sales_tariff_ignored": ev_summary.get("sales_tariff_ignored"),
        "tls": "%s %s" % (client.version, client.cipher) if client.handshake_complete else None,
        "energy_wh": ev_summary.get("energy_wh"),
        "session_s": round(end_ms / 1000.0, 1),
        "wall_s": round(wall, 2),
        "requests": _names(made),
        "ev_end": ev_end.reason or ev.reason,
        "station_end": st_end.reason or st.reason,
        "stored_contracts": [c.emaid for c in store.contracts()],
    }


def _names(made):
    st = made.get("station")
    if st is None:
        return []
    out = []
    for name in st.requests:  # the charge loop collapsed to one entry
        if out and out[-1].startswith(name):
            continue
        out.append(name)
    return out


def run(args):
    tmp = Path(tempfile.mkdtemp(prefix="evpilot-demo-pnc-"))
    try:
        pki_dir = Path(args.pki) if args.pki else tmp / "pki"
        if not args.pki:
            pki.write_pki(pki_dir, pki.build_pki())
        store_dir = Path(args.store) if args.store else tmp / "store"
        store_dir.mkdir(parents=True, exist_ok=True)
        seeded = pnc_store.seed_store(store_dir, pki_dir)
        seeded_contracts = [c.emaid for c in Store(str(store_dir)).contracts()]
        station = pnc_store.station_pnc(str(pki_dir), clock=time.time)
        db = records.Records(args.db or str(tmp / "sessions.sqlite3"))
        sampler = trace.LoopSampler(args.every * 1000, args.verbose)

        def printer(direction, name, doc, data, now):
            if not args.json and sampler.show(name, now):
                print(trace.line("ev" if direction == "tx" else "secc", name, doc, now))

        results = []
        for number in (1, 2):
            if not args.json:
                print("--- session %d: %s" % (number, "certificate installation, then charging" if number == 1
                                             else "the installed contract"))
            results.append(_session(number, args, pki_dir, store_dir, station, db, printer))
            if results[-1]["result"] != "ok":
                break
        report = records.report(db)
        db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # Session 1 installs a contract, unless --store already held a usable one; session 2 pays with the
    # stored contract and installs nothing.
    ok = (len(results) == 2 and all(r["result"] == "ok" and r["identification"] == "PnC" for r in results)
          and (results[0]["contract_installed"] or seeded_contracts)
          and not results[1]["contract_installed"] and results[1]["emaid"] == results[0]["emaid"])
    summary = {"result": "ok" if ok else "failed", "pki": args.pki or "fresh (temporary)",
               "store_roots": seeded["roots"], "pcid": seeded["pcid"], "sessions": results,
               "contracts": report["contracts"]}
    if args.json:
        print(json.dumps(summary))
    else:
        _print(summary)
    return 0 if ok else 1


def _print(summary):
    print()
    print("Plug&Charge demo: %s" % summary["result"])
    print("  PKI              %s; the EV starts with the V2G and MO roots and OEM provisioning (PCID %s)"
          % (summary["pki"], summary["pcid"]))
    for r in summary["sessions"]:
        print("  session %d        %s, %s, eMAID %s%s" % (
            r["session"], r["result"], r["identification"], r["emaid"],
            ", contract installed" if r["contract_installed"] else ""))
        print("                   %s; %s Wh in %.1f s (ran in %.2f s)" % (r["tls"], r["energy_wh"], r["session_s"],
                                                                        r["wall_s"]))
        print("                   %s" % " -> ".join(r["requests"]))
        if r["sales_tariff_ignored"]:
            print("                   SalesTariff ignored: %s" % r["sales_tariff_ignored"])
        if r["result"] != "ok":
            print("                   ended: EV: %s; station: %s" % (r["ev_end"], r["station_end"]))
    for c in summary["contracts"]:
        print("  station report   %s: %d sessions, %.3f kWh, %.2f %s" % (c["emaid"], c["sessions"], c["energy_kwh"],
                                                                     c["cost"], c["currency"]))
