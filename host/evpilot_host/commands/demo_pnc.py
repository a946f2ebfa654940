"""`evpilot demo --pnc`: Plug&Charge end to end in one process: a contract installed through the cable, then a
second session paid with it.

How this works: a test PKI (fresh from evpilot_host.pki in a temporary directory, or --pki DIR) gives the
station its SECC chain, the certificate provisioning service (CPS chain and key, MO Sub-CA 2 issuing the
contract) and the MO Sub-CA 2 key that signs the SalesTariff; the EV's certificate store (a fresh directory,
or --store DIR) is seeded with the V2G and MO roots and the OEM provisioning chain and key, nothing else. Both
ends, their TLS contexts, the store and the station's Plug&Charge come from evpilot_host.ends, and one
evpilot_host.trace.Printer prints both sessions. Session 1 (when the store holds no usable contract yet): TLS
(evpilot.tls.endpoint over the virtual-clock pipe), the EV selects Contract and the Certificate service,
installs the contract the station's CPS issues (every check of ev/contracts.py), then pays with it (PaymentDetails,
signed Authorization, signed SalesTariff). Session 2: a new connection, the contract from the store, no
installation. Both sessions are recorded in the station's SQLite database (a temporary one, or --db FILE)
and the per-contract usage report is printed at the end. Trusted time is the laptop's clock. Exit status 0
when both sessions end cleanly with Plug&Charge, the first installed a contract (or found one in --store)
and the second used it without installing.
"""

import json
import shutil
import tempfile
import time
from pathlib import Path

from evpilot.ev import client as ev_client
from evpilot_host import ends, pki
from evpilot_host.station import records
from evpilot_host.trace import Printer, open_log
from evpilot_sim import pipe
from evpilot_sim.station import secc


def _session(number, args, pki_dir, store_dir, station, db, printer):
    """One TLS + Plug&Charge session on the pipe; returns its summary dict."""
    store, _ = ends.ev_store(store_dir)
    ev = ends.ev_end("iso2", args.mode, args.soc, args.capacity_wh, plugged=True, log=printer, store=store,
                     tls_context=ends.ev_tls_context(ends.store_v2g_roots(store)))
    st = ends.station_end(("iso2",), args.mode, seed=number, pnc=station,
                          tls_context=ends.station_tls_context(pki_dir))

    def tick(now):
        ev.tick(now)
        st.tick(now)

    started = time.time()
    t0 = time.perf_counter()
    end_ms = pipe.run(ev.outer, st.outer, latency_ms=args.latency_ms, tick=tick)
    wall = time.perf_counter() - t0
    db.record(st.connection, started, started + end_ms / 1000.0)
    ev_summary = ev.session.summary() if ev.session is not None else {}
    ok = ev.client.state == ev_client.DONE and st.connection.state == secc.DONE
    return {
        "session": number,
        "result": "ok" if ok else "failed",
        "identification": ev_summary.get("identification"),
        "emaid": ev_summary.get("emaid"),
        "contract_installed": ev_summary.get("contract_installed"),
        "sales_tariff_ignored": ev_summary.get("sales_tariff_ignored"),
        "tls": "%s %s" % (ev.tls.version, ev.tls.cipher) if ev.tls.handshake_complete else None,
        "energy_wh": ev_summary.get("energy_wh"),
        "session_s": round(end_ms / 1000.0, 1),
        "wall_s": round(wall, 2),
        "requests": _names(st.session),
        "ev_end": ev.outer.reason or ev.client.reason,
        "station_end": st.outer.reason or st.connection.reason,
        "stored_contracts": [c.emaid for c in store.contracts()],
    }


def _names(station_session):
    if station_session is None:
        return []
    out = []
    for name in station_session.requests:  # the charge loop collapsed to one entry
        if out and out[-1].startswith(name):
            continue
        out.append(name)
    return out


def run(args):
    tmp = Path(tempfile.mkdtemp(prefix="evpilot-demo-pnc-"))
    log = None
    try:
        pki_dir = Path(args.pki) if args.pki else tmp / "pki"
        if not args.pki:
            pki.write_pki(pki_dir, pki.build_pki())
        store_dir = Path(args.store) if args.store else tmp / "store"
        store, seeded = ends.ev_store(store_dir, pki_dir)
        seeded_contracts = [c.emaid for c in store.contracts()]
        station = ends.station_pnc(pki_dir)
        db = ends.station_records(args.db or str(tmp / "sessions.sqlite3"))
        log = open_log(args.log)
        printer = Printer("ev", log, args.every, args.verbose, relative=False, quiet=args.json)

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
        if log is not None:
            log.close()
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
