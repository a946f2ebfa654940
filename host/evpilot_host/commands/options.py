"""Command-line options that several commands share, and the parsers of their NAME=VALUE-style arguments.

How this works: add_vehicle_options puts the simulated vehicle's options (--standard, --mode, --soc,
--capacity-wh) on a command's parser (`evpilot demo`, `evpilot ev`); the parse_* functions turn the text of
repeatable options into what evpilot_host.ends takes (EVSE settings, message timeouts, station faults),
raising ValueError with a message that shows the expected form; the commands turn it into one error line.
"""

from evpilot_host.ends import PROTOCOLS
from evpilot_sim.station import secc


def add_vehicle_options(p, default_capacity=None):
    p.add_argument("--standard", choices=PROTOCOLS, default="iso2", help="protocol (default iso2)")
    p.add_argument("--mode", choices=("ac", "dc"), default="dc", help="energy transfer (DIN: dc only)")
    p.add_argument("--soc", type=float, nargs=2, default=(20.0, 80.0), metavar=("FROM", "TO"),
                   help="state of charge at the start and the target (default 20 80)")
    p.add_argument("--capacity-wh", type=int, default=default_capacity,
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
    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 4:
        raise ValueError("a fault is RESPONSE:ACTION[:NTH[:DELAY_MS]], e.g. CurrentDemandRes:withhold:3")
    nth = int(parts[2]) if len(parts) > 2 else 1
    delay = int(parts[3]) if len(parts) > 3 else 0
    return secc.Fault(parts[0], parts[1], nth=nth, delay_ms=delay)
