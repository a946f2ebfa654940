"""Either end of a session, built from command-line choices: the one place where `evpilot demo`, `demo --pnc`,
`ev`, `ev --on micropython`, `station`, the tests and the benchmarks wire a vehicle or a station.

How this works: an EV end (ev_end -> EvEnd) is a simulated vehicle (evpilot_sim.vehicle) behind the
firmware's EvClient (evpilot.ev.client), which makes the DIN or ISO-2 EV session for the protocol that
SupportedAppProtocol agreed on; with a certificate store it pays with Plug&Charge (an
evpilot.ev.contracts.ContractManager on that Store), and with a TLS context it runs inside a TlsEndpoint. A station
end (station_end -> StationEnd) is a simulated EVSE (evpilot_sim.evse) behind a SeccConnection
(evpilot_sim.station.secc) making the DIN or ISO-2 station session, with the station's Plug&Charge (built from a
test PKI by evpilot_host.pki_material) and TLS when asked for. Each end's `outer` is what a driver runs
(evpilot_sim.pipe on a virtual clock, evpilot.aio.stream over sockets), `tick` advances its physical model,
and `session` is the protocol session the connection made (None before SupportedAppProtocol is done).

The material around the ends is made here too: the EV's V2G roots (a file, a PKI directory or the store) and
TLS context, the station's TLS context from a PKI directory, the EV's store (seeded from a PKI), the station's
Plug&Charge and its session records. What the user can fix fails with one EvpilotError line naming the
option (the commands' flags: --roots, --store, --pki).
"""

import os
import time

from evpilot import tls
from evpilot.errors import EvpilotError
from evpilot.ev.client import EvClient
from evpilot.ev.vehicle import AC_THREE_PHASE_CORE, DC_EXTENDED
from evpilot.v2g import timers
from evpilot_sim.evse import EVSE
from evpilot_sim.station import secc
from evpilot_sim.vehicle import SimVehicle

PROTOCOLS = ("iso2", "din")
SECC_CHAIN = "secc_chain.pem"  # the station's server chain and key in a PKI directory (`evpilot pki init`)
SECC_KEY = "secc_leaf.key"


# --- the parts -------------------------------------------------------------------------------------------


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


def new_evse(**settings):
    return EVSE(**settings)


def ev_client(standard, veh, log=None, pnc=None, tls=False, msg_timeouts=None):
    """An EvClient offering `standard` (ISO-2 also offers DIN as second choice); its `session` is the DIN or
    ISO-2 session it made. pnc: an evpilot.ev.contracts.ContractManager for Plug&Charge (used only over TLS, `tls`
    True). msg_timeouts: {request name: ms} replacing the standard's V2G_EVCC_Msg_Timeout for those requests
    (a bench knob for slow stations; the standard's values otherwise)."""

    def make(protocol):
        if protocol == "din":
            from evpilot.ev.din import DinSession

            return DinSession(veh)
        from evpilot.ev.iso2 import Iso2Session

        return Iso2Session(veh, pnc=pnc, tls=tls)

    offers = [("din", 1)] if standard == "din" else [("iso2", 1), ("din", 2)]
    timeout = timers.msg_timeout
    if msg_timeouts:
        relaxed = dict(msg_timeouts)

        def timeout(protocol, name):
            return relaxed.get(name) or timers.msg_timeout(protocol, name)

    return EvClient(make, offers, timeout, log=log)


def station_connection(protocols, mode, evse, seed=None, faults=(), log=None, paused=None, pnc=None,
                       tls=False):
    """A SeccConnection speaking `protocols` with a station session on `evse` for `mode`; its `session` is the
    station session it made. pnc: a station.contracts.StationPnc (Contract and the Certificate service are offered
    only when `tls` is True)."""
    dc = mode == "dc"

    def make(protocol):
        if protocol == "din":
            from evpilot_sim.station.din import DinStationSession

            return DinStationSession(evse, seed=seed)
        from evpilot_sim.station.iso2 import Iso2StationSession

        kwargs = {"seed": seed, "energy_modes": ("DC_extended",) if dc else ("AC_three_phase_core",)}
        if paused is not None:
            kwargs["paused"] = paused
        if pnc is not None:
            kwargs["pnc"] = pnc
            kwargs["tls"] = tls
        return Iso2StationSession(evse, **kwargs)

    return secc.SeccConnection(tuple(protocols), make, faults=faults, log=log)


# --- whole ends ------------------------------------------------------------------------------------------


def _over_tls(inner, context, on_established):
    if context is None:
        return inner, None
    connection = tls.TlsConnection(context)
    if on_established is None:
        return tls.TlsEndpoint(inner, connection), connection
    return tls.TlsEndpoint(inner, connection, on_established=on_established), connection


class EvEnd:
    """The EV's end of a session: `vehicle`, `client` (the EvClient), `store` and `contracts` (Plug&Charge, or
    None), `tls` (the TlsConnection, or None) and `outer` (what a driver runs: the TlsEndpoint, or the client)."""

    def __init__(self, vehicle, client, outer, tls=None, store=None, contracts=None):
        self.vehicle = vehicle
        self.client = client
        self.outer = outer
        self.tls = tls
        self.store = store
        self.contracts = contracts

    @property
    def session(self):
        return self.client.session

    def tick(self, now):
        self.vehicle.advance(now)


def ev_end(standard="iso2", mode="dc", soc=(20.0, 80.0), capacity_wh=None, plugged=False, log=None, store=None,
           now_s=None, tls_context=None, on_established=None, msg_timeouts=None):
    """An EvEnd. plugged: the vehicle has a control pilot, plugged in with digital communication (the demos
    follow its states). store: the EV's certificate Store for Plug&Charge, its contracts judged at now_s
    (default: the laptop's clock, the EV's trusted time). tls_context: from ev_tls_context (the session then
    runs over TLS); on_established(connection) is called when the handshake completes."""
    veh = vehicle(mode, soc[0], soc[1], capacity_wh, pilot=plugged_pilot() if plugged else None)
    contracts = None
    if store is not None:
        from evpilot.ev.contracts import ContractManager

        contracts = ContractManager(store, now_s=int(time.time()) if now_s is None else now_s)
    client = ev_client(standard, veh, log=log, pnc=contracts, tls=tls_context is not None,
                       msg_timeouts=msg_timeouts)
    outer, connection = _over_tls(client, tls_context, on_established)
    return EvEnd(veh, client, outer, connection, store, contracts)


class StationEnd:
    """The station's end of a session: `evse`, `connection` (the SeccConnection), `pnc` (the station's
    Plug&Charge, or None), `tls` (the TlsConnection, or None) and `outer` (the TlsEndpoint, or the connection)."""

    def __init__(self, evse, connection, outer, tls=None, pnc=None):
        self.evse = evse
        self.connection = connection
        self.outer = outer
        self.tls = tls
        self.pnc = pnc

    @property
    def session(self):
        return self.connection.session

    def tick(self, now):
        self.evse.advance(now)


def station_end(protocols=("iso2",), mode="dc", evse_settings=None, seed=None, faults=(), log=None, paused=None,
                pnc=None, tls_context=None, on_established=None):
    """A StationEnd on a new EVSE (evse_settings: its ratings and behaviour). pnc: from station_pnc (offered
    over TLS only). tls_context: from station_tls_context; on_established(connection) as for ev_end."""
    evse = new_evse(**(evse_settings or {}))
    connection = station_connection(protocols, mode, evse, seed=seed, faults=faults, log=log, paused=paused, pnc=pnc,
                                    tls=tls_context is not None)
    outer, tls_connection = _over_tls(connection, tls_context, on_established)
    return StationEnd(evse, connection, outer, tls_connection, pnc)


# --- the material around them ----------------------------------------------------------------------------


def _is_v2g_root(file_path):
    """A self-signed CA certificate with the domain component V2G (ISO 15118-2: the EV trusts only V2G roots
    for TLS; the MO and OEM roots of a PKI directory are for other chains)."""
    from evpilot.pnc import x509

    try:
        with open(file_path, "rb") as f:
            cert = x509.parse(f.read())
    except (OSError, EvpilotError):
        return False
    return cert.ca and cert.subject_string == cert.issuer_string and "V2G" in [d.upper() for d in cert.dc]


def load_roots(path):
    """The V2G roots for the EV's TLS: the bytes of a .der/.pem file, or of every V2G root certificate (.der)
    in a directory (sorted by name), as a list. EvpilotError if there are none."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.endswith(".der")
                       and _is_v2g_root(os.path.join(path, n)))
        if not names:
            raise EvpilotError("--roots %s: no V2G root certificate (.der, DC=V2G) in that directory" % path)
        paths = [os.path.join(path, n) for n in names]
    elif os.path.isfile(path):
        paths = [path]
    else:
        raise EvpilotError("--roots %s: no such file or directory" % path)
    roots = []
    for p in paths:
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError as e:
            raise EvpilotError("--roots %s: %s" % (p, e.strerror or e))
        if not data:
            raise EvpilotError("--roots %s: empty file" % p)
        roots.append(data)
    return roots


def store_v2g_roots(store):
    """The V2G root certificates (DER) in the EV's store."""
    from evpilot.store import certs

    return [c.der for c in certs.root_certificates(store, ("V2G",))]


def ev_roots(roots_path=None, store=None, store_dir=None):
    """The roots the EV's TLS verifies the station against: those of `roots_path` (load_roots), else the V2G
    roots of `store` (kept at store_dir); EvpilotError when there are none."""
    if roots_path:
        return load_roots(roots_path)
    if store is not None:
        roots = store_v2g_roots(store)
        if not roots:
            raise EvpilotError("--store %s holds no V2G root for TLS (seed it with --pki DIR, or give --roots)"
                               % store_dir)
        return roots
    raise EvpilotError("--tls needs --roots FILE_OR_DIR (the V2G root certificates)")


def ev_tls_context(roots, keylog=None, roots_path=None):
    """The EV's TLS client context verifying against `roots` (DER or PEM bytes, a list of them); keylog: a
    file to append the NSS key log to. Errors name roots_path (where the roots came from)."""
    try:
        return tls.client_context(roots, keylog=keylog)
    except (EvpilotError, ValueError) as e:  # ssl.SSLError is an OSError; a bad certificate raises one
        raise EvpilotError("--roots %s: %s" % (roots_path, e))
    except OSError as e:
        raise EvpilotError("--roots %s: not usable as root certificates (%s)" % (roots_path, e))


def station_tls_context(pki_dir, keylog=None):
    """The station's TLS server context with a PKI directory's SECC_CHAIN and SECC_KEY."""
    pki_dir = str(pki_dir)
    chain, key = os.path.join(pki_dir, SECC_CHAIN), os.path.join(pki_dir, SECC_KEY)
    missing = [n for n, p in ((SECC_CHAIN, chain), (SECC_KEY, key)) if not os.path.isfile(p)]
    if missing:
        raise EvpilotError("--pki %s: missing %s (write a test PKI with `evpilot pki init DIR`)"
                           % (pki_dir, " and ".join(missing)))
    try:
        return tls.server_context(chain, key, keylog=keylog)
    except (EvpilotError, ValueError) as e:
        raise EvpilotError("--pki %s: %s" % (pki_dir, e))
    except OSError as e:  # ssl.SSLError: not a certificate chain, or the key does not match
        raise EvpilotError("--pki %s: cannot use %s with %s: %s" % (pki_dir, SECC_CHAIN, SECC_KEY, e))


def tls_failure_text(error):
    """One line for a failed TLS connection (a tls.TlsError, or anything with its reason and message): the
    reason (verify, dc, handshake, protocol, timeout) and why."""
    message = error.message
    for prefix in ("TLS: ", "TLS handshake failed: "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    return "TLS %s failure: %s" % (error.reason, message)


def ev_store(store_dir, pki_dir=None, with_contract=False):
    """(the EV's certificate Store at store_dir, what seeding stored or None). With pki_dir the store is made
    when missing and seeded from that test PKI first (its V2G and MO roots, the OEM provisioning chain and key;
    with_contract: its contract too); without it the store must exist."""
    from evpilot.store.keystore import Store

    seeded = None
    store_dir = str(store_dir)
    if pki_dir:
        from evpilot_host import pki_material

        os.makedirs(store_dir, exist_ok=True)
        seeded = pki_material.seed_store(store_dir, pki_dir, contract=with_contract)
    elif not os.path.isdir(store_dir):
        raise EvpilotError("--store %s: no such directory (seed one with --pki DIR)" % store_dir)
    return Store(store_dir), seeded


def station_pnc(pki_dir):
    """The station's Plug&Charge (CPS, MO Sub-CA 2, roots) from a test PKI; trusted time is the laptop's."""
    from evpilot_host import pki_material

    try:
        return pki_material.station_pnc(str(pki_dir), clock=time.time)
    except (OSError, ValueError) as e:
        raise EvpilotError("--pki %s: cannot load the Plug&Charge material: %s" % (pki_dir, e))


def station_records(db=None, **tariff):
    """The station's session records (evpilot_host.station.records.Records at db, priced by tariff:
    price_per_kwh, currency)."""
    from evpilot_host.station import records

    try:
        return records.Records(db, **tariff)
    except (ValueError, records.RecordsError) as e:
        raise EvpilotError("session records: %s" % e)
