"""Message traces: one readable line per V2G message, a JSON-lines log of every message, and the printer that
every command hands its connections (`evpilot demo`, `demo --pnc`, `ev`, `ev --on micropython`, `station`).

describe(name, body) picks the values a bench tester looks at first (response codes, processing state,
state of charge, targets and present values, notifications) wherever they sit in the message, physical
values shown with their unit ("400.5 V"). JsonLog writes one JSON object per message: virtual time in
milliseconds, direction, V2G transfer protocol payload type, the EXI bytes as hex, and the decoded document
in the JSON view (binary as hex). Printer is a connection's log callback (direction, name, doc, data, now):
it writes every message to the JsonLog, prints the lines a LoopSampler lets through, and prints the faults a
station injects; times are from the connection's first message (real-time runs) or the virtual clock itself
(the demos' sessions start at 0).
"""

import json

from evpilot.compat import ticks_diff
from evpilot.v2g import v2gtp
from evpilot_host import jsonview

# (key, label) in the order they are shown; found at any depth of the message body.
_KEYS = (
    ("ResponseCode", ""),
    ("EVSEProcessing", ""),
    ("SchemaID", "schema"),
    ("EVCCID", "EVCCID"),
    ("EVSEID", "EVSEID"),
    ("SelectedPaymentOption", "payment"),
    ("RequestedEnergyTransferMode", "mode"),
    ("EVRequestedEnergyTransferType", "mode"),
    ("EnergyTransferMode", "modes"),
    ("EnergyTransferType", "mode"),
    ("ChargeProgress", ""),
    ("ReadyToChargeState", "ready"),
    ("ChargingSession", ""),
    ("EVRESSSOC", "SoC %"),
    ("EVTargetVoltage", "target"),
    ("EVTargetCurrent", "target"),
    ("EVMaxCurrent", "EV max"),
    ("EVSEPresentVoltage", "present"),
    ("EVSEPresentCurrent", "present"),
    ("EVSEMaxCurrent", "EVSE max"),
    ("EVSEIsolationStatus", "isolation"),
    ("EVSEStatusCode", ""),
    ("EVSENotification", "notification"),
    ("MeterReading", "meter Wh"),
    ("ReceiptRequired", "receipt"),
    ("ServiceID", "services"),
    ("eMAID", "eMAID"),
    ("GenChallenge", "challenge"),
    ("RetryCounter", "retry"),
)
_QUIET = ("None", "EVSE_Ready", "OK")


def _find(body, key, out):
    if isinstance(body, dict):
        for k, v in body.items():
            if k == key:
                out.append(v)
            else:
                _find(v, key, out)
    elif isinstance(body, list):
        for v in body:
            _find(v, key, out)


def _show(v):
    if isinstance(v, dict) and "CONTENT" in v:  # a simple-content element with attributes (eMAID with its Id)
        return _show(v["CONTENT"])
    if isinstance(v, dict) and "Value" in v and "Multiplier" in v:
        x = v["Value"] * 10 ** v["Multiplier"]
        return ("%.1f" % x).rstrip("0").rstrip(".") + (" " + v["Unit"] if v.get("Unit") else "")
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return "/".join(_show(x) for x in v)
    if isinstance(v, dict):
        return "/".join(_show(x) for x in v.values())
    return str(v)


def describe(name, body):
    """A short readable summary of one message's key values."""
    parts = []
    for key, label in _KEYS:
        found = []
        _find(body, key, found)
        if key == "ServiceID" and name.startswith("PaymentServiceSelection"):
            found = [found] if found else []  # every selected service, not the first only
        for v in found[:1]:
            text = _show(v)
            if key in ("EVSEStatusCode", "EVSENotification", "ResponseCode") and text in _QUIET:
                continue
            parts.append((label + " " + text) if label else text)
    return "  ".join(parts)


def line(direction, name, doc, now_ms):
    """'  12.345 s  EV -> SECC  CurrentDemandReq   SoC % 55  target 400 V ...'"""
    signed = ""
    if "V2G_Message" in doc:
        body = doc["V2G_Message"]["Body"].get(name, {})
        header = doc["V2G_Message"].get("Header") or {}
        if header.get("Signature"):  # an XMLDSig signature in the header (Plug&Charge)
            refs = header["Signature"].get("SignedInfo", {}).get("Reference") or []
            signed = "  signed (%d ref%s)" % (len(refs), "" if len(refs) == 1 else "s")
    else:
        body = doc.get(name, {})
    arrow = "EV -> SECC" if direction == "ev" else "SECC -> EV"
    text = "  ".join(t for t in (describe(name, body), signed.strip()) if t)
    return ("%9.3f s  %s  %-28s %s" % (now_ms / 1000.0, arrow, name, text)).rstrip()


# Messages of the charging loops, which a readable trace samples.
LOOPS = ("CurrentDemand", "ChargingStatus", "PreCharge", "CableCheck", "WeldingDetection", "Authorization",
         "ContractAuthentication", "ChargeParameterDiscovery")


class LoopSampler:
    """Decides which charge-loop messages a readable trace shows: the first two of each loop, then one
    request (with its response) every `every_ms`; every other message always. `counts` has the requests."""

    def __init__(self, every_ms, verbose=False):
        self.every_ms = every_ms
        self.verbose = verbose
        self.counts = {}
        self._last = {}
        self._showing = {}

    def show(self, name, now):
        base = name[:-3]
        if base not in LOOPS:
            return True
        if name.endswith("Req"):
            n = self.counts[base] = self.counts.get(base, 0) + 1
            show = self.verbose or n <= 2 or base not in self._last or now - self._last[base] >= self.every_ms
            self._showing[base] = show
            if show:
                self._last[base] = now
        return self._showing.get(base, True)


def open_log(path):
    """The JsonLog for `--log FILE`, or None without one; EvpilotError naming the file it cannot create."""
    return None if not path else JsonLog(path)


class JsonLog:
    """Writes one JSON object per message to a file (`--log FILE`)."""

    def __init__(self, path):
        try:
            self.f = open(path, "w", encoding="utf-8")
        except OSError as e:
            from evpilot.errors import EvpilotError

            raise EvpilotError("--log %s: %s" % (path, e.strerror or e)) from None
        self.count = 0

    def write(self, sender, name, doc, data, now_ms, payload_type=v2gtp.EXI):
        rec = {
            "t_ms": now_ms,
            "dir": "EV->SECC" if sender == "ev" else "SECC->EV",
            "payload_type": "0x%04x" % payload_type,
            "exi": bytes(data).hex() if data is not None else None,
            "message": name,
            "doc": jsonview.to_json(doc),
        }
        self.f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.count += 1

    def close(self):
        self.f.close()


class Printer:
    """A connection's log callback: a line per message on stdout (charge loops sampled every `every_s` of
    session time unless verbose; nothing with quiet; on `stream` when given) and every message in `log` (a JsonLog, or None). side is
    the end whose connection logs ("ev" or "secc"): what it sends is "tx", what it receives "rx". relative:
    times from the first message (ticks of a real clock), else `now` as it is (a virtual clock from 0).
    `count` is the messages seen, `sampler.counts` the charge-loop requests."""

    def __init__(self, side, log=None, every_s=5.0, verbose=False, relative=True, quiet=False, stream=None):
        self.side = side
        self.stream = stream  # None: stdout; sys.stderr under --json, whose stdout is the JSON alone
        self.peer = "secc" if side == "ev" else "ev"
        self.log = log
        self.sampler = LoopSampler(every_s * 1000, verbose)
        self.relative = relative
        self.quiet = quiet
        self.count = 0
        self._start = None

    def __call__(self, direction, name, doc, data, now):
        if self.relative:
            if self._start is None:
                self._start = now
            now = ticks_diff(now, self._start)
        if direction == "fault":
            print("%9.3f s  station fault: %s %s" % (now / 1000.0, name, json.dumps(doc)), file=self.stream,
                  flush=True)
            return
        self.count += 1
        sender = self.side if direction == "tx" else self.peer
        if self.log is not None:
            self.log.write(sender, name, doc, data, now)
        if not self.quiet and self.sampler.show(name, now):
            print(line(sender, name, doc, now), file=self.stream, flush=True)
