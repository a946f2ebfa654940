"""Plug&Charge material from a test PKI: seed an EV's certificate store (`evpilot ev --pnc --store DIR --pki
DIR`), and build a station's Plug&Charge (`evpilot station --pnc --pki DIR`).

How this works
--------------
`evpilot pki init` writes <role>.der and <role>.key (PKCS#8 PEM) for every role of certs/profiles.json.
seed_store() opens (or creates) the firmware's Store at store_dir and loads, through evpilot.store.certs so
every descriptive field comes from the certificates themselves:
  - the V2G root (trust anchor for the CPS and SECC chains; ListOfRootCertificateIDs names it) and the MO
    root (anchor for the contract chains the EV receives),
  - the OEM provisioning chain [oem_prov_leaf, oem_sub_ca2, oem_sub_ca1] and its key, which is what a real
    vehicle creates on the device; in a test PKI the generator made it on the laptop,
  - with contract=True, the PKI's contract chain [contract_leaf, mo_sub_ca2, mo_sub_ca1] and its key (the EV
    then starts with a contract; without it the first PnC session installs one).
Seeding again replaces what an earlier seeding stored (roots by SKI, the OEM set, the contract by eMAID),
each step atomic. The returned summary names what was stored and never carries key bytes; neither do
errors, which name the file.
"""

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from evpilot.errors import EvpilotError, UsageError
from evpilot.store import certs
from evpilot.store.keystore import Store

ROOTS = ("v2g_root", "mo_root")
OEM_CHAIN = ("oem_prov_leaf", "oem_sub_ca2", "oem_sub_ca1")
CONTRACT_CHAIN = ("contract_leaf", "mo_sub_ca2", "mo_sub_ca1")


def _der(pki, role):
    path = pki / (role + ".der")
    try:
        return path.read_bytes()
    except OSError as e:
        raise UsageError("%s: cannot read %s (%s); is this a directory written by `evpilot pki init`?"
                         % (pki, path.name, e.strerror)) from None


def _scalar(pki, role):
    """The 32-byte private scalar of <role>.key (PKCS#8 PEM, unencrypted, P-256)."""
    path = pki / (role + ".key")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError("%s: cannot read %s (%s)" % (pki, path.name, e.strerror)) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise UsageError("%s: %s is not an unencrypted PEM private key" % (pki, path.name)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise UsageError("%s: %s is not a P-256 key" % (pki, path.name))
    return key.private_numbers().private_value.to_bytes(32, "big")


def seed_store(store_dir, pki_dir, contract=False, log=None):
    """Load the PKI's roots, OEM provisioning chain and key (and with contract=True its contract) into the
    Store at store_dir. Returns {"store", "roots", "pcid", "emaid"} (no key material)."""
    pki = Path(pki_dir)
    if not pki.is_dir():
        raise UsageError("%s is not a directory (a PKI written by `evpilot pki init`)" % pki)
    try:
        store = Store(str(store_dir), log=log)
        roots = [certs.add_root_certificate(store, _der(pki, role)) for role in ROOTS]
        pcid = certs.set_oem_chain(store, [_der(pki, r) for r in OEM_CHAIN], _scalar(pki, OEM_CHAIN[0]))
        emaid = None
        if contract:
            emaid = certs.install_contract_chain(store, [_der(pki, r) for r in CONTRACT_CHAIN],
                                                 _scalar(pki, CONTRACT_CHAIN[0]))
    except UsageError:
        raise
    except EvpilotError as e:
        raise UsageError("cannot seed the store %s from %s: %s" % (store_dir, pki, e)) from None
    return {"store": str(store_dir), "roots": roots, "pcid": pcid, "emaid": emaid}


def station_pnc(directory, clock=None, rng=None, emaid=None, **options):
    """A StationPnc (evpilot_sim.station.contracts) from a directory made by `evpilot pki init` (role.der and
    role.key files): the CPS chain and key, the V2G and MO roots, MO Sub-CA 2 for SalesTariff, and a
    provisioning service that issues a fresh contract (signed by the directory's MO Sub-CA 2) for `emaid`, by default the eMAID of the
    directory's contract certificate. options go to StationPnc."""
    import datetime
    import os

    from cryptography import x509 as cx509

    from evpilot.pnc import chain, x509
    from evpilot_host import pki
    from evpilot_sim.station import cps
    from evpilot_sim.station.contracts import StationPnc

    def der(role):
        with open(os.path.join(directory, role + ".der"), "rb") as f:
            return f.read()

    def key(role):
        with open(os.path.join(directory, role + ".key"), "rb") as f:
            return serialization.load_pem_private_key(f.read(), password=None)

    def scalar(k):
        return k.private_numbers().private_value.to_bytes(32, "big")

    mo_sub2 = pki.Issued("mo_sub_ca2", cx509.load_der_x509_certificate(der("mo_sub_ca2")), key("mo_sub_ca2"))
    default_emaid = emaid or chain.emaid_from_cn(x509.parse(der("contract_leaf")).cn)

    def issue_contract(requested, now_s):
        when = None if now_s is None else datetime.datetime.fromtimestamp(now_s, datetime.timezone.utc)
        contract_emaid = requested or default_emaid
        issued = pki.issue_contract(mo_sub2, contract_emaid, now=when)
        return [issued.der, der("mo_sub_ca2"), der("mo_sub_ca1")], scalar(issued.key), contract_emaid

    service = cps.ProvisioningService(
        [der("cps_leaf"), der("cps_sub_ca2"), der("cps_sub_ca1")], scalar(key("cps_leaf")), issue_contract,
        v2g_roots=[der("v2g_root")], oem_roots=[der("oem_root"), der("oem_sub_ca2"), der("oem_sub_ca1")],
        rng=rng, mo_roots=[der("mo_root")])
    return StationPnc(cps=service, v2g_roots=[der("v2g_root")], mo_roots=[der("mo_root")],
                      mo_sub_ca2=der("mo_sub_ca2"), mo_sub_ca2_key=scalar(mo_sub2.key), clock=clock, rng=rng,
                      **options)
