"""Building the two sides of a session from command-line choices: the EV (a SimVehicle behind the DIN or
ISO-2 EV session) and the station (a simulated EVSE behind the DIN or ISO-2 station session). Shared by
`evpilot demo`, `evpilot ev` and `evpilot station`, so the three run the same code the tests run."""

from evpilot.ev import client as ev_client
from evpilot_sim.vehicle import SimVehicle
from evpilot.ev.vehicle import AC_THREE_PHASE_CORE, DC_EXTENDED
from evpilot.v2g import timers
from evpilot_sim.station import secc
from evpilot_sim.evse import EVSE

PROTOCOLS = ("iso2", "din")


def add_vehicle_options(p, default_capacity=None):
    p.add_argument("--standard", choices=PROTOCOLS, default="iso2", help="protocol (default iso2)")
    p.add_argument("--mode", choices=("ac", "dc"), default="dc", help="energy transfer (DIN: dc only)")
    p.add_argument("--soc", type=float, nargs=2, default=(20.0, 80.0), metavar=("FROM", "TO"),
                   help="state of charge at the start and the target (default 20 80)")
    p.add_argument("--capacity-wh", type=int, default=default_capacity,
                   help="battery capacity in Wh (default: a small pack, 4000 DC, 1500 AC)")


def vehicle(mode, soc_from, soc_to, capacity_wh=None, pilot=None):
    dc = mode == "dc"
    capacity = capacity_wh or (4000 if dc else 1500)
    return SimVehicle(capacity_wh=capacity, soc=soc_from, target_soc=soc_to,
                      modes=(DC_EXTENDED,) if dc else (AC_THREE_PHASE_CORE,), pilot=pilot)


def plugged_pilot():
    """A control pilot line with the EV plugged in and the EVSE signalling digital communication (5 % PWM,
    IEC 61851-1 / ISO 15118-3), as at the start of every ISO 15118 session."""
    from evpilot.ev.pilot import DUTY_DIGITAL, Pilot

    line = Pilot()
    line.plug(True)
    line.set_duty(DUTY_DIGITAL)
    line.set_oscillator(True)
    return line


def ev_client_for(standard, veh, log=None, made=None, pnc=None, tls=False, msg_timeouts=None):
    """An EvClient offering `standard` (ISO-2 also offers DIN as second choice). pnc: an
    evpilot.ev.pnc.ContractManager for Plug&Charge (used only over TLS, `tls` True). msg_timeouts: {request
    name: ms} replacing the standard's V2G_EVCC_Msg_Timeout for those requests (a bench knob for slow
    stations; the standard's values otherwise)."""
    made = {} if made is None else made

    def make(protocol):
        if protocol == "din":
            from evpilot.ev.din import DinSession

            made["ev"] = DinSession(veh)
        else:
            from evpilot.ev.iso2 import Iso2Session

            made["ev"] = Iso2Session(veh, pnc=pnc, tls=tls)
        return made["ev"]

    offers = [("din", 1)] if standard == "din" else [("iso2", 1), ("din", 2)]
    timeout = timers.msg_timeout
    if msg_timeouts:
        relaxed = dict(msg_timeouts)

        def timeout(protocol, name):
            return relaxed.get(name) or timers.msg_timeout(protocol, name)

    return ev_client.EvClient(make, offers, timeout, log=log)


def station_connection(protocols, mode, evse, seed=None, faults=(), log=None, made=None, paused=None, pnc=None,
                       tls=False):
    """A SeccConnection speaking `protocols` with a station session on `evse` for `mode`. pnc: a
    station.pnc.StationPnc (Contract and the Certificate service are offered only when `tls` is True)."""
    made = {} if made is None else made
    dc = mode == "dc"

    def make(protocol):
        if protocol == "din":
            from evpilot_sim.station.din import DinStationSession

            made["station"] = DinStationSession(evse, seed=seed)
        else:
            from evpilot_sim.station.iso2 import Iso2StationSession

            kwargs = {"seed": seed, "energy_modes": ("DC_extended",) if dc else ("AC_three_phase_core",)}
            if paused is not None:
                kwargs["paused"] = paused
            if pnc is not None:
                kwargs["pnc"] = pnc
                kwargs["tls"] = tls
            made["station"] = Iso2StationSession(evse, **kwargs)
        return made["station"]

    return secc.SeccConnection(tuple(protocols), make, faults=faults, log=log)


def new_evse(**settings):
    return EVSE(**settings)


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
