"""`evpilot station report [--db FILE] [--json]`: the station simulator's session records and the usage per
contract (evpilot_host.station.records).

How this works: cli.py dispatches `evpilot station report` here; main(argv) parses the arguments after
`report`, reads the database (never creating one), and prints either a JSON document (records.report's
dict; --json, for machines) or two tables for people: the sessions, then sessions / kWh / cost per eMAID and
the totals. Problems (no database, not a session database) are one line on stderr and exit status 1; bad
arguments exit 2 (argparse).
"""

import datetime
import json
import sys

from evpilot.errors import EvpilotError
from evpilot_host.commands import options
from evpilot_host.station import records


def _parser():
    p = options.parser("evpilot station report", "Session records of the station simulator and the usage per "
                       "contract.")
    p.add_argument("--db", metavar="FILE", default=None,
                   help="session database (default: $%s or ./%s)" % (records.DB_ENV, records.DEFAULT_DB))
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def _time(s):
    return datetime.datetime.fromtimestamp(s, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _table(headers, rows):
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return lines


def format_report(rep):
    """The human-readable report (a list of lines)."""
    lines = ["Session records: %s" % rep["database"]]
    if not rep["sessions"]:
        return lines + ["no sessions recorded"]
    rows = []
    for s in rep["sessions"]:
        rows.append([_time(s["started_s"]), s["session_id"] or "-", s["protocol"] or "-",
                     "PnC" if s["payment"] == "Contract" else ("EIM" if s["payment"] else "-"), s["emaid"] or "-",
                     "%.3f" % s["energy_kwh"], "%.2f %s" % (s["cost"], s["currency"]),
                     "%ds" % s["duration_s"], s["outcome"] + (" (%s)" % s["reason"] if s["reason"] else "")])
    lines += [""] + _table(["started (UTC)", "session", "protocol", "auth", "eMAID", "kWh", "cost", "duration",
                            "outcome"], rows)
    lines += ["", "Usage per contract:"]
    if rep["contracts"]:
        lines += _table(["eMAID", "sessions", "kWh", "cost"],
                        [[c["emaid"], str(c["sessions"]), "%.3f" % c["energy_kwh"],
                          "%.2f %s" % (c["cost"], c["currency"])] for c in rep["contracts"]])
    else:
        lines.append("no Plug&Charge sessions")
    for t in rep["totals"]:
        lines.append("Total: %d session(s), %.3f kWh, %.2f %s" % (t["sessions"], t["energy_kwh"], t["cost"],
                                                                  t["currency"]))
    return lines


def main(argv=None, out=None, err=None):
    """Run `evpilot station report` with argv (the arguments after `report`); returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    try:
        options.sqlite_file(args.db, "--db")
        rep = records.report(args.db)
    except (records.RecordsError, EvpilotError) as e:
        err.write("evpilot station report: error: %s\n" % e)
        return 1
    if args.json:
        out.write(json.dumps(rep, indent=2, sort_keys=True) + "\n")
    else:
        out.write("\n".join(format_report(rep)) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
