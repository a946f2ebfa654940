"""Session records of the station simulator in SQLite, and the usage report built from them (CPython only).

How this works: after a connection ends, the station adapter calls
    Records(path).record(connection_or_session, started_s, ended_s, reason=None)
which reads what it needs from the session object (ISO-2: station/iso2.py; DIN: station/din.py) or from a
SeccConnection (then its protocol session and its end reason are used), prices the energy at the configured
tariff and appends one row. Rows are never changed afterwards; each keeps the price it was charged at, so a
later tariff change does not rewrite history. report(db) reads the rows back as per-session summaries and a
usage report per contract (eMAID): sessions, kWh and cost per currency. commands/report.py prints it.

The database: `path`, else $EVPILOT_SESSIONS_DB, else DEFAULT_DB (evpilot-sessions.sqlite3 in the current
directory). One table, `sessions`; PRAGMA user_version is the schema version. Times are epoch seconds (UTC).
What a row holds:
    session_id   SessionID as lowercase hex        emaid        eMAID (Contract), NULL for EIM
    evcc_id      EVCCID as lowercase hex           protocol     "iso2" / "din"
    payment      "Contract" / "ExternalPayment"    energy_mode  e.g. "DC_extended"
    started_s, ended_s                             energy_wh    metered energy of the session
    price_per_kwh, currency, cost                  outcome      "completed", "paused" or "failed"
    reason       why the connection ended (the connection's reason or the caller's text), with the session's
                 Plug&Charge refusal text when there is one
"""

import os
import sqlite3

DEFAULT_DB = "evpilot-sessions.sqlite3"
DB_ENV = "EVPILOT_SESSIONS_DB"
DEFAULT_PRICE_PER_KWH = 0.40
DEFAULT_CURRENCY = "EUR"
SCHEMA_VERSION = 1

_COLUMNS = ("session_id", "emaid", "evcc_id", "protocol", "payment", "energy_mode", "started_s", "ended_s",
            "energy_wh", "price_per_kwh", "currency", "cost", "outcome", "reason")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    emaid TEXT,
    evcc_id TEXT,
    protocol TEXT,
    payment TEXT,
    energy_mode TEXT,
    started_s REAL NOT NULL,
    ended_s REAL NOT NULL,
    energy_wh REAL NOT NULL,
    price_per_kwh REAL NOT NULL,
    currency TEXT NOT NULL,
    cost REAL NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS sessions_emaid ON sessions (emaid);
"""


class RecordsError(Exception):
    """The database cannot be used (missing, not a session database, newer schema)."""


def default_db_path():
    return os.environ.get(DB_ENV) or DEFAULT_DB


def _hex(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return value


def _session_facts(obj):
    """(protocol session, the connection's end reason, whether the connection ended cleanly or None)."""
    if hasattr(obj, "make_session") and hasattr(obj, "session"):  # a SeccConnection
        return obj.session, getattr(obj, "reason", None), getattr(obj, "state", None) == 2  # secc.DONE
    return obj, None, None


def _energy_wh(session):
    wh = getattr(session, "energy_wh", None)
    if wh is None:  # DIN sessions: the EVSE model is made per connection, so its meter is the session's
        wh = getattr(getattr(session, "evse", None), "meter_wh", None)
    return max(0.0, float(wh or 0.0))


def _outcome(session, clean):
    if session is None or clean is False or not getattr(session, "finished", False):
        return "failed"
    if getattr(session, "stopped_with", None) == "Pause":
        return "paused"
    return "completed"


class Records:
    def __init__(self, path=None, price_per_kwh=DEFAULT_PRICE_PER_KWH, currency=DEFAULT_CURRENCY):
        """Open (and create when missing) the session database at path (see the module comment)."""
        if price_per_kwh < 0:
            raise ValueError("price per kWh must not be negative")
        if not currency or len(currency) > 8:
            raise ValueError("currency must be a short code such as EUR")
        self.path = path or default_db_path()
        self.price_per_kwh = float(price_per_kwh)
        self.currency = currency
        self._db = _connect(self.path, create=True)

    def close(self):
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def record(self, session, started_s, ended_s, reason=None, outcome=None):
        """Append one row for a finished session (or SeccConnection); returns the row as a dict."""
        session, conn_reason, clean = _session_facts(session)
        reason = reason if reason is not None else conn_reason
        refusal = getattr(session, "refusal", None)  # why a Plug&Charge check refused (station/iso2.py)
        if refusal and reason and refusal not in reason:
            reason = reason + ": " + refusal
        elif refusal and not reason:
            reason = refusal
        energy = _energy_wh(session)
        row = {
            "session_id": _hex(getattr(session, "session_id", b"")) or "",
            "emaid": getattr(session, "emaid", None),
            "evcc_id": _hex(getattr(session, "evcc_id", None) or getattr(session, "ev_id", None)),
            "protocol": getattr(session, "schema", None),
            # DIN stations here are EIM only; an ISO-2 session that ended before PaymentServiceSelection has None
            "payment": getattr(session, "payment", "ExternalPayment" if session is not None else None),
            "energy_mode": getattr(session, "mode", None) or getattr(session, "energy_transfer_type", None),
            "started_s": float(started_s),
            "ended_s": float(ended_s),
            "energy_wh": round(energy, 3),
            "price_per_kwh": self.price_per_kwh,
            "currency": self.currency,
            "cost": round(energy / 1000.0 * self.price_per_kwh, 4),
            "outcome": outcome or _outcome(session, clean),
            "reason": reason,
        }
        with self._db:
            cur = self._db.execute(
                "INSERT INTO sessions (%s) VALUES (%s)" % (", ".join(_COLUMNS), ", ".join("?" * len(_COLUMNS))),
                [row[c] for c in _COLUMNS])
        row["id"] = cur.lastrowid
        return row

    def rows(self):
        """Every row as a dict, oldest first."""
        return _rows(self._db)


def _rows(db):
    cur = db.execute("SELECT id, %s FROM sessions ORDER BY started_s, id" % ", ".join(_COLUMNS))
    return [dict(zip(("id",) + _COLUMNS, r)) for r in cur.fetchall()]


def _connect(path, create):
    if not create and not os.path.exists(path):
        raise RecordsError("no session database at %s" % path)
    try:
        db = sqlite3.connect(path)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            db.close()
            raise RecordsError("%s has session schema %d; this evpilot knows %d" % (path, version, SCHEMA_VERSION))
        if create:
            with db:
                db.executescript(_SCHEMA)
                db.execute("PRAGMA user_version = %d" % SCHEMA_VERSION)
        elif db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'sessions'").fetchone() is None:
            db.close()
            raise RecordsError("%s is not an evpilot session database (no sessions table)" % path)
        return db
    except sqlite3.DatabaseError as e:
        raise RecordsError("%s: %s" % (path, e))


def report(db=None):
    """{"database", "sessions": [row dicts with energy_kwh and duration_s], "contracts": [per eMAID and
    currency: emaid, sessions, energy_kwh, cost, currency], "totals": [per currency: sessions, energy_kwh,
    cost, currency]} from a database path (default: default_db_path()) or an open Records. Reading never
    creates a database."""
    if isinstance(db, Records):
        rows, path = db.rows(), db.path
    else:
        path = db or default_db_path()
        conn = _connect(path, create=False)
        try:
            rows = _rows(conn)
        except sqlite3.DatabaseError as e:
            raise RecordsError("%s: %s" % (path, e))
        finally:
            conn.close()
    sessions = []
    contracts = {}
    totals = {}
    for r in rows:
        s = dict(r)
        s["energy_kwh"] = round(r["energy_wh"] / 1000.0, 3)
        s["duration_s"] = round(r["ended_s"] - r["started_s"], 3)
        s["cost"] = round(r["cost"], 2)
        sessions.append(s)
        keys = [(totals, r["currency"])]
        if r["emaid"] is not None:  # EIM sessions have no contract
            keys.append((contracts, (r["emaid"], r["currency"])))
        for table, key in keys:
            t = table.setdefault(key, {"sessions": 0, "energy_wh": 0.0, "cost": 0.0})
            t["sessions"] += 1
            t["energy_wh"] += r["energy_wh"]
            t["cost"] += r["cost"]
    return {
        "database": path,
        "sessions": sessions,
        "contracts": [{"emaid": k[0], "sessions": v["sessions"], "energy_kwh": round(v["energy_wh"] / 1000.0, 3),
                       "cost": round(v["cost"], 2), "currency": k[1]} for k, v in sorted(contracts.items())],
        "totals": [{"currency": k, "sessions": v["sessions"], "energy_kwh": round(v["energy_wh"] / 1000.0, 3),
                    "cost": round(v["cost"], 2)} for k, v in sorted(totals.items())],
    }
