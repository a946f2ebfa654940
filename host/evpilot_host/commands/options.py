"""Command-line options that several commands share, and the parsers of their NAME=VALUE-style arguments.

How this works: add_vehicle_options puts the simulated vehicle's options (--standard, --mode, --soc,
--capacity-wh) on a command's parser (`evpilot demo`, `evpilot ev`); the parse_* functions turn the text of
repeatable options into what evpilot_host.ends takes (EVSE settings, message timeouts, station faults),
raising ValueError with a message that shows the expected form; the commands turn it into one error line.

Checking up front (so a careless invocation ends at once with one line naming what is wrong, never later
with a traceback or a silent default): `parser(prog, description)` is an argparse parser whose errors are
one line (EvpilotError, printed by cli.py) instead of a usage block; `number(kind, lo, hi)` is an argparse
`type=` that refuses values out of range; check_vehicle() checks --soc/--capacity-wh/--standard/--mode
together; output_file(), input_file(), directory(), sqlite_file() and iface() check what a user names
before anything is run, each error naming the option and the path.
"""

import argparse
import os

from evpilot.errors import EvpilotError
from evpilot_host.ends import PROTOCOLS
from evpilot_sim.station import secc


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise EvpilotError("%s: %s (see %s --help)" % (self.prog, message, self.prog))


def parser(prog, description=None, **kw):
    """An ArgumentParser whose errors are one line (EvpilotError) instead of usage and an error."""
    return _Parser(prog=prog, description=description, **kw)


def number(kind, lo=None, hi=None, what=None):
    """argparse type=: an int or float within [lo, hi] (None: open)."""

    def convert(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not %s" % (text, "an integer" if kind is int else "a number"))
        if v != v or (lo is not None and v < lo) or (hi is not None and v > hi):
            if hi is None:
                raise argparse.ArgumentTypeError("%s is out of range: at least %s" % (text, lo))
            if lo is None:
                raise argparse.ArgumentTypeError("%s is out of range: at most %s" % (text, hi))
            raise argparse.ArgumentTypeError("%s is out of range: %s to %s" % (text, lo, hi))
        return v

    convert.__name__ = what or ("integer" if kind is int else "number")
    return convert


def check_vehicle(args):
    """--soc FROM TO (0 <= FROM < TO <= 100), --capacity-wh, DIN is DC only; EvpilotError naming the option."""
    lo, hi = args.soc
    if not (0 <= lo <= 100 and 0 <= hi <= 100):
        raise EvpilotError("--soc %g %g: both must be 0 to 100 %%" % (lo, hi))
    if lo >= hi:
        raise EvpilotError("--soc %g %g: the target must be above the start (nothing to charge)" % (lo, hi))
    if args.capacity_wh is not None and not 0 < args.capacity_wh <= 1000000:
        raise EvpilotError("--capacity-wh %d: must be 1 to 1000000 Wh" % args.capacity_wh)
    if args.standard == "din" and args.mode == "ac":
        raise EvpilotError("DIN SPEC 70121 is DC only: use --mode dc (or --standard iso2)")


def output_file(path, option):
    """A file the command will write (--log, --keylog): its directory must exist and it must not be one."""
    if path is None:
        return None
    path = str(path)
    if os.path.isdir(path):
        raise EvpilotError("%s %s: is a directory (give a file name)" % (option, path))
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        what = "not a directory" if os.path.exists(parent) else "no such directory"
        raise EvpilotError("%s %s: %s: %s" % (option, path, parent, what))
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise EvpilotError("%s %s: not writable" % (option, path))
    return path


def input_file(path, option):
    path = str(path)
    if os.path.isdir(path):
        raise EvpilotError("%s %s: is a directory, not a file" % (option, path))
    if not os.path.isfile(path):
        raise EvpilotError("%s %s: no such file" % (option, path))
    if not os.access(path, os.R_OK):
        raise EvpilotError("%s %s: not readable" % (option, path))
    return path


def directory(path, option, create=False):
    """A directory the user names: it must be one (create: or be missing, with an existing parent)."""
    if path is None:
        return None
    path = str(path)
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise EvpilotError("%s %s: not a directory" % (option, path))
    parent = os.path.dirname(os.path.abspath(path))
    if not create:
        raise EvpilotError("%s %s: no such directory" % (option, path))
    if not os.path.isdir(parent):
        raise EvpilotError("%s %s: %s: %s" % (option, path, parent,
                                              "not a directory" if os.path.exists(parent) else "no such directory"))
    return path


SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database file (its file format doc)


def sqlite_file(path, option="--db"):
    """A session database the user names: a file that is an SQLite database, or none yet in a directory."""
    if path is None:
        return None
    path = output_file(path, option)
    if os.path.exists(path) and os.path.getsize(path) > 0:
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError as e:
            raise EvpilotError("%s %s: %s" % (option, path, e.strerror or e))
        if head != SQLITE_MAGIC:
            raise EvpilotError("%s %s: not an SQLite database" % (option, path))
    return path


def iface(name, option="--iface"):
    """A network interface that exists (Linux and macOS name them; socket.if_nametoindex)."""
    import socket

    try:
        socket.if_nametoindex(name)
    except OSError:
        raise EvpilotError("%s %s: no network interface named %r" % (option, name, name))
    except (AttributeError, TypeError):  # a platform without if_nametoindex: the adapter will say
        pass
    return name


def add_vehicle_options(p, default_capacity=None):
    p.add_argument("--standard", choices=PROTOCOLS, default="iso2", help="protocol (default iso2)")
    p.add_argument("--mode", choices=("ac", "dc"), default="dc", help="energy transfer (DIN: dc only)")
    p.add_argument("--soc", type=number(float, 0, 100, "percentage"), nargs=2, default=(20.0, 80.0), metavar=("FROM", "TO"),
                   help="state of charge at the start and the target (default 20 80)")
    p.add_argument("--capacity-wh", type=number(int, 1, 1000000), default=default_capacity,
                   help="battery capacity in Wh (default: a small pack, 4000 DC, 1500 AC)")


def parse_settings(items):
    """['dc_max_power=50000', 'isolation_result=Fault'] -> {'dc_max_power': 50000.0, ...} (numbers where they
    parse as numbers, else text)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError("a setting is NAME=VALUE, not %r" % item)
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    return out


def parse_msg_timeouts(items):
    """['CurrentDemandReq=1000'] -> {'CurrentDemandReq': 1000}; ValueError naming a bad item."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.endswith("Req") or not value.isdigit() or not 0 < int(value) <= 600000:
            raise ValueError("a message timeout is REQUEST=MS (1 to 600000), e.g. CurrentDemandReq=1000, not %r"
                             % item)
        out[name] = int(value)
    return out


def parse_fault(text):
    """'CurrentDemandRes:withhold[:nth[:delay_ms]]' -> secc.Fault."""
    form = "a fault is RESPONSE:ACTION[:NTH[:DELAY_MS]], e.g. CurrentDemandRes:withhold:3"
    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 4 or not parts[0].endswith("Res"):
        raise ValueError("--fault %s: %s" % (text, form))
    if parts[1] not in secc.Fault.ACTIONS:
        raise ValueError("--fault %s: unknown action %r (known: %s)" % (text, parts[1], ", ".join(secc.Fault.ACTIONS)))
    if len(parts) > 2 and not (parts[2].isdigit() and int(parts[2]) >= 1):
        raise ValueError("--fault %s: NTH must be a whole number from 1 (the n-th response)" % text)
    if len(parts) > 3 and not (parts[3].isdigit() and int(parts[3]) <= 3600000):
        raise ValueError("--fault %s: DELAY_MS must be a whole number of milliseconds, 0 to 3600000" % text)
    nth = int(parts[2]) if len(parts) > 2 else 1
    delay = int(parts[3]) if len(parts) > 3 else 0
    return secc.Fault(parts[0], parts[1], nth=nth, delay_ms=delay)
