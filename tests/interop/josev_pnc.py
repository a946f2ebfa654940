"""Test-only harness for Plug&Charge over TLS between evpilot and Josev (PyPI ``iso15118``), ISO 15118-2.

Josev's PKI layout (iso15118 0.31.2, shared/security.py CertPath/KeyPath/KeyPasswordPath): everything lives
under ``$PKI_PATH/iso15118_2/``, certificates in ``certs/`` and keys in ``private_keys/``, under fixed names::

    certs/v2gRootCACert.der|.pem    cpoSubCA1Cert.der  cpoSubCA2Cert.der  seccLeafCert.der|.pem
    certs/cpoCertChain.pem          (SECC leaf, CPO Sub-CA 2, CPO Sub-CA 1: the TLS server chain)
    certs/cpsSubCA1Cert.der  cpsSubCA2Cert.der  cpsLeafCert.der
    certs/moRootCACert.der  moSubCA1Cert.der  moSubCA2Cert.der  contractLeafCert.der
    certs/oemRootCACert.der|.pem  oemSubCA1Cert.der  oemSubCA2Cert.der  oemLeafCert.der
    certs/oemCertChain.pem          (OEM leaf, Sub-CA 2, Sub-CA 1: only for TLS 1.3 mutual authentication)
    private_keys/seccLeaf.key  cpsLeaf.key  contractLeaf.key  moSubCA2.key  oemLeaf.key   (PEM)
    private_keys/seccLeafPassword.txt  cpsLeafPassword.txt  contractLeafPassword.txt
                 moSubCA2LeafPassword.txt  oemLeafPassword.txt

Josev reads a key's password from the first line of its password file (load_priv_key_pass); an empty line
means "not encrypted", a missing file fails the key (and, for the SECC leaf, TLS: the server then starts
without it). Josev's own create_certs.sh encrypts every key (AES-128-CBC, password 12345). ``layout()``
writes the keys as encrypted PKCS#8 PEM under a random password written to the password files (the way Josev
is meant to be deployed), or unencrypted with empty password files (``password=""``).

What reads what (ISO 15118-2):
- SECC, TLS server: cpoCertChain.pem + seccLeaf.key (ssl.SSLContext.load_cert_chain), TLS 1.2 only unless
  ENABLE_TLS_1_3, ciphers "ECDH-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA256" (the TLS 1.3 names in its list
  do not apply to 1.2; OpenSSL 3 no longer has the static-ECDH suite), curve prime256v1, no client
  certificate.
- SECC, CertificateInstallationReq: checks the request signature with the OEM leaf the request carries and
  the chain oemSubCA2Cert.der, oemSubCA1Cert.der, oemRootCACert.der; then builds the response itself (no
  backend unless USE_CPO_BACKEND): it does not issue a contract, it sends contractLeafCert.der with
  moSubCA2/moSubCA1 and the eMAID from its CN, encrypts contractLeaf.key for the public key of
  **its own oemLeafCert.der** (not the certificate in the request), and signs the four elements with
  cpsLeaf.key, sending cpsLeafCert/cpsSubCA2/cpsSubCA1. ListOfRootCertificateIDs is ignored.
- SECC, PaymentDetailsReq: contract chain checked against moRootCACert.der (a chain that does not verify is
  only logged and passed on); AuthorizationReq signature checked with the contract certificate.
- SECC, ChargeParameterDiscoveryRes: a SalesTariff (only when FREE_CHARGING_SERVICE is False) signed with
  moSubCA2.key.
- EVCC, TLS client: verifies the SECC chain against v2gRootCACert.pem (CERT_REQUIRED, no hostname check),
  cipher ECDHE-ECDSA-AES128-SHA256 only.
- EVCC, CertificateInstallationReq (sent right after PaymentServiceSelection whenever it pays with Contract
  and its config says isCertInstallNeeded, even if the SECC offered no Certificate service): oemLeafCert.der,
  signed with oemLeaf.key; ListOfRootCertificateIDs names v2gRootCACert.der by serial and by an
  X509IssuerName that is Python's repr of a cryptography Name, "<Name(DC=V2G,O=...,CN=...)>"
  (get_cert_issuer_serial: der_cert.issuer.__str__()), not an RFC 4514 string (see _RFC4514_EVCC).
- EVCC, CertificateInstallationRes: CPS signature and chain checked against v2gRootCACert.der, the key
  decrypted with oemLeaf.key -- then thrown away (SimEVController.store_contract_cert_and_priv_key is a stub):
  its PaymentDetailsReq and AuthorizationReq always use contractLeafCert.der, moSubCA2/1 and contractLeaf.key
  from the PKI directory, installed contract or not. So the EVCC directory needs a contract even for an
  installation run.

Settings (environment, or .env in the working directory): SECC -- PKI_PATH, PROTOCOLS, AUTH_MODES
("EIM,PNC"; PnC is only offered over TLS), SECC_ENFORCE_TLS (TLS whatever the SDP request asks),
ALLOW_CERT_INSTALL_SERVICE (offer ServiceID 2 "Certificate", only over TLS), FREE_CERT_INSTALL_SERVICE,
FREE_CHARGING_SERVICE (False: SAScheduleTuples carry a signed SalesTariff), USE_CPO_BACKEND, ENABLE_TLS_1_3.
EVCC -- PKI_PATH from the environment, the rest from its JSON config: useTls (SDP security byte), enforceTls,
isCertInstallNeeded, supportedProtocols, energyTransferMode, chargeLoopCycle. The EVCC selects Contract
whenever the SECC offers it over TLS (iso15118_2_states.py select_auth_mode).

Our side runs as the `evpilot` command (`evpilot ev --tls --pnc --store DIR --pki DIR [--with-contract]`,
`evpilot station --tls --pki DIR --pnc --once`), with the test's interpreter, inside the namespaces.

Command line (by hand)::

    python3 tests/interop/josev_pnc.py layout PKI_DIR DEST [--side secc|evcc|both] [--password TEXT]
    python3 tests/interop/josev_pnc.py pair PKI_DIR [--mode dc|ac] [--contract]   # Josev EVCC vs SECC
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import josev  # noqa: E402

# Our role (file stem in a directory from `evpilot pki init`) -> Josev's certificate file stem.
CERT_NAMES = {
    "v2g_root": "v2gRootCACert",
    "cpo_sub_ca1": "cpoSubCA1Cert",
    "cpo_sub_ca2": "cpoSubCA2Cert",
    "secc_leaf": "seccLeafCert",
    "cps_sub_ca1": "cpsSubCA1Cert",
    "cps_sub_ca2": "cpsSubCA2Cert",
    "cps_leaf": "cpsLeafCert",
    "mo_root": "moRootCACert",
    "mo_sub_ca1": "moSubCA1Cert",
    "mo_sub_ca2": "moSubCA2Cert",
    "contract_leaf": "contractLeafCert",
    "oem_root": "oemRootCACert",
    "oem_sub_ca1": "oemSubCA1Cert",
    "oem_sub_ca2": "oemSubCA2Cert",
    "oem_prov_leaf": "oemLeafCert",
}
# Our role -> (Josev's key file, its password file). Only the keys Josev reads; the CAs' keys stay out.
KEY_NAMES = {
    "secc_leaf": ("seccLeaf.key", "seccLeafPassword.txt"),
    "cps_leaf": ("cpsLeaf.key", "cpsLeafPassword.txt"),
    "contract_leaf": ("contractLeaf.key", "contractLeafPassword.txt"),
    "mo_sub_ca2": ("moSubCA2.key", "moSubCA2LeafPassword.txt"),
    "oem_prov_leaf": ("oemLeaf.key", "oemLeafPassword.txt"),
}
# The PEM chain files Josev loads with ssl (leaf first).
CHAIN_FILES = {
    "cpoCertChain.pem": ("secc_leaf", "cpo_sub_ca2", "cpo_sub_ca1"),
    "oemCertChain.pem": ("oem_prov_leaf", "oem_sub_ca2", "oem_sub_ca1"),
}
# What each side of Josev needs. The SECC needs the OEM leaf certificate (it encrypts the contract key for
# it) and the contract with its key (it "installs" that one); the EVCC needs a contract even when it
# installs one (see the module docstring).
SIDES = {
    "secc": {"certs": ("v2g_root", "cpo_sub_ca1", "cpo_sub_ca2", "secc_leaf", "cps_sub_ca1", "cps_sub_ca2",
                       "cps_leaf", "mo_root", "mo_sub_ca1", "mo_sub_ca2", "contract_leaf", "oem_root",
                       "oem_sub_ca1", "oem_sub_ca2", "oem_prov_leaf"),
             "keys": ("secc_leaf", "cps_leaf", "contract_leaf", "mo_sub_ca2"),
             "chains": ("cpoCertChain.pem",)},
    "evcc": {"certs": ("v2g_root", "mo_root", "mo_sub_ca1", "mo_sub_ca2", "contract_leaf", "oem_root",
                       "oem_sub_ca1", "oem_sub_ca2", "oem_prov_leaf"),
             "keys": ("oem_prov_leaf", "contract_leaf"),
             "chains": ("oemCertChain.pem",)},
}
SIDES["both"] = {k: tuple(dict.fromkeys(SIDES["secc"][k] + SIDES["evcc"][k])) for k in SIDES["secc"]}

SUBDIR = "iso15118_2"


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _write(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _pem_key(pem, password):
    """An unencrypted PKCS#8 PEM key re-written as encrypted PKCS#8 PEM (or returned as is for no password)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise josev.HarnessError("not a P-256 private key")
    enc = (serialization.BestAvailableEncryption(password.encode("utf-8")) if password
           else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def layout(pki_dir, dest, side="both", password=None):
    """Lay out a test PKI written by `evpilot pki init` (`pki_dir`) the way Josev reads it: `dest` becomes the
    PKI_PATH (dest/iso15118_2/certs, dest/iso15118_2/private_keys). `side` ("secc", "evcc" or "both") picks
    the files that side reads, so a Josev EVCC never holds the station's keys and vice versa. `password`: the
    key password (None: a random one; "": keys unencrypted, empty password files). Returns `dest`."""
    spec = SIDES[side]
    password = secrets.token_hex(12) if password is None else password
    sources = {}
    for role in spec["certs"]:
        sources[role] = os.path.join(pki_dir, role + ".der")
    for role in spec["keys"]:
        sources[role + ".key"] = os.path.join(pki_dir, role + ".key")
    missing = sorted(p for p in sources.values() if not os.path.isfile(p))
    if missing:
        raise josev.HarnessError("%s is not a complete test PKI (from `evpilot pki init DIR`): missing %s"
                                 % (pki_dir, ", ".join(os.path.basename(p) for p in missing)))
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    certs_dir = os.path.join(dest, SUBDIR, "certs")
    keys_dir = os.path.join(dest, SUBDIR, "private_keys")
    for d in (certs_dir, keys_dir):
        os.makedirs(d, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    der = {}
    for role in spec["certs"]:
        der[role] = _read(sources[role])
        try:
            cert = x509.load_der_x509_certificate(der[role])
        except ValueError as e:
            raise josev.HarnessError("%s: not a DER certificate (%s)" % (sources[role], e))
        stem = os.path.join(certs_dir, CERT_NAMES[role])
        _write(stem + ".der", der[role])
        _write(stem + ".pem", cert.public_bytes(serialization.Encoding.PEM))
    for name in spec["chains"]:
        pem = b"".join(_read(os.path.join(certs_dir, CERT_NAMES[r] + ".pem")) for r in CHAIN_FILES[name])
        _write(os.path.join(certs_dir, name), pem)
    for role in spec["keys"]:
        key_name, pass_name = KEY_NAMES[role]
        try:
            data = _pem_key(_read(sources[role + ".key"]), password)
        except (ValueError, TypeError, josev.HarnessError) as e:
            raise josev.HarnessError("%s: not an unencrypted P-256 PKCS#8 key (%s)" % (sources[role + ".key"], e))
        _write(os.path.join(keys_dir, key_name), data, 0o600)
        _write(os.path.join(keys_dir, pass_name), (password + "\n").encode("utf-8"), 0o600)
    return dest


def cert_file(pki_path, role, ext="der"):
    """Path of `role`'s certificate in a Josev layout."""
    return os.path.join(pki_path, SUBDIR, "certs", "%s.%s" % (CERT_NAMES[role], ext))


# --------------------------------------------------------------------------- Josev with TLS + PnC


def secc_settings(pki_path, cert_install=True, auth_modes="EIM,PNC"):
    """Josev SECC settings for ISO-2 Plug&Charge over TLS (environment variables)."""
    return {
        "PKI_PATH": pki_path,
        "AUTH_MODES": auth_modes,
        "SECC_ENFORCE_TLS": "True",
        "ALLOW_CERT_INSTALL_SERVICE": str(bool(cert_install)),
        "FREE_CERT_INSTALL_SERVICE": "True",
        # Not free: the SAScheduleTuple carries a SalesTariff signed with the MO Sub-CA 2 key.
        "FREE_CHARGING_SERVICE": "False",
        "USE_CPO_BACKEND": "False",
        "ENABLE_TLS_1_3": "False",
    }


def evcc_config(cert_install=True):
    """Josev EVCC config entries for ISO-2 Plug&Charge over TLS."""
    return {"useTls": True, "enforceTls": True, "isCertInstallNeeded": bool(cert_install)}


def start_secc(link, workdir, pki_path, python=None, mode="dc", cert_install=True, supply=True):
    """Josev's SECC, ISO 15118-2 only, TLS only, EIM and PnC offered (PnC only over TLS), certificate
    installation offered; reads its PKI from `pki_path` (a layout() directory)."""
    return josev.start_josev_secc(link, "iso2", workdir, python, supply=supply,
                                  settings=secc_settings(pki_path, cert_install))


# Josev's EVCC main with one change: ListOfRootCertificateIDs names the V2G root by an RFC 4514 string.
# Stock Josev sends Python's repr of a cryptography Name, "<Name(DC=V2G,O=...,CN=...)>" (shared/security.py
# get_cert_issuer_serial returns der_cert.issuer.__str__()), which is no X509IssuerName a CPS can match to a
# root (xmldsig: a distinguished name string per RFC 2253/4514).
_RFC4514_EVCC = """
import sys
from cryptography.x509 import load_der_x509_certificate
from iso15118.evcc.main import run
from iso15118.evcc.states import iso15118_2_states
from iso15118.shared.security import load_cert


def get_cert_issuer_serial(cert_path):
    cert = load_der_x509_certificate(load_cert(cert_path))
    return cert.issuer.rfc4514_string(), cert.serial_number


iso15118_2_states.get_cert_issuer_serial = get_cert_issuer_serial
run()
"""


def start_evcc(link, workdir, pki_path, mode, python=None, cert_install=True, loop_cycles=3, rfc4514=False):
    """Josev's EVCC, ISO 15118-2 only, asking for TLS and refusing a session without it, Plug&Charge (it picks
    Contract when offered over TLS), with CertificateInstallationReq when `cert_install`. With `rfc4514` its
    X509IssuerName is an RFC 4514 string (see _RFC4514_EVCC), else it is Josev's main module unchanged."""
    return josev.start_josev_evcc(link, "iso2", mode, workdir, python, loop_cycles=loop_cycles,
                                  config=evcc_config(cert_install), env={"PKI_PATH": pki_path},
                                  main=_RFC4514_EVCC if rfc4514 else None)


def run_josev_pair(mode, pki_dir, cert_install=True, timeout=90, workdir=None, python=None, loop_cycles=3):
    """Josev's EVCC against Josev's SECC with TLS and Plug&Charge, both reading `pki_dir` (from
    `evpilot pki init`) through layout(). The baseline proving the layout and the settings. Returns a
    josev.Run with `josev` (the EVCC's messages) and `secc` (the SECC's)."""
    python = python or josev.ensure_venv()
    workdir = workdir or tempfile.mkdtemp(prefix="evpilot-josev-pnc-")
    secc_pki = layout(pki_dir, os.path.join(workdir, "josev-secc-pki"), "secc")
    evcc_pki = layout(pki_dir, os.path.join(workdir, "josev-evcc-pki"), "evcc")
    run = josev.Run(workdir)
    with josev.Link() as link:
        secc = start_secc(link, workdir, secc_pki, python, mode, cert_install)
        ev = None
        try:
            if not secc.wait_for(r"UDP server started", 60):
                raise josev.HarnessError("Josev's SECC did not start its SDP server within 60 s")
            ev = start_evcc(link, workdir, evcc_pki, mode, python, cert_install, loop_cycles)
            ev.wait_for(r"Decoded message .*SessionStopRes|EVCC terminated|Security mismatch", timeout)
        finally:
            for p in (ev, secc):
                if p is not None:
                    p.stop()
                    run.logs[p.name] = p.text()
    run.josev = josev.josev_messages(run.logs["josev-evcc"])
    run.secc = josev.josev_messages(run.logs["josev-secc"])
    return run


# --------------------------------------------------------------------------- our side (the `evpilot` command)

# Requests in order for ISO-2 Plug&Charge ("X*" repeats; ServiceDetail, WeldingDetection optional). The
# CertificateInstallation step is taken out for a run with an existing contract.
PNC_SEQUENCES = {
    "dc": ("supportedAppProtocol", "SessionSetup", "ServiceDiscovery", "PaymentServiceSelection",
           "CertificateInstallation", "PaymentDetails", "Authorization*", "ChargeParameterDiscovery*",
           "CableCheck*", "PreCharge*", "PowerDelivery", "CurrentDemand*", "PowerDelivery", "WeldingDetection*",
           "SessionStop"),
    "ac": ("supportedAppProtocol", "SessionSetup", "ServiceDiscovery", "PaymentServiceSelection",
           "CertificateInstallation", "PaymentDetails", "Authorization*", "ChargeParameterDiscovery*",
           "PowerDelivery", "ChargingStatus*", "PowerDelivery", "SessionStop"),
}


def pnc_sequence(mode, install):
    return tuple(s for s in PNC_SEQUENCES[mode] if install or s != "CertificateInstallation")


EVPILOT = (sys.executable, "-m", "evpilot_host.cli")
_help_cache = {}


def cli_help(command):
    """`evpilot COMMAND --help` as text ("" when the command fails)."""
    if command not in _help_cache:
        r = subprocess.run(EVPILOT + (command, "--help"), capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, COLUMNS="200"))
        _help_cache[command] = r.stdout if r.returncode == 0 else ""
    return _help_cache[command]


def has_flag(command, flag):
    return re.search(r"(^|[\s\[,])%s([\s\],=]|$)" % re.escape(flag), cli_help(command)) is not None


def missing_flags(command, flags):
    """The flags of `flags` that `evpilot COMMAND --help` does not list."""
    return [f for f in flags if not has_flag(command, f)]


EV_FLAGS = ("--tls", "--pnc", "--store", "--pki", "--with-contract")
STATION_FLAGS = ("--tls", "--pki", "--pnc")


def _protocol_args(command):
    # The ISO-2 selection: `evpilot ev --protocol iso2` (older: --standard), `evpilot station --protocols iso2`.
    for flag in (("--protocol", "--standard") if command == "ev" else ("--protocols", "--protocol")):
        if has_flag(command, flag):
            return [flag, "iso2"]
    return []


def start_our_ev(link, workdir, pki_dir, store_dir, mode, with_contract=False, soc=(20, 21), extra=(),
                 relax=None, keylog=True):
    """`evpilot ev` with TLS and Plug&Charge on the EV end of `link`: its store `store_dir` seeded from
    `pki_dir` (V2G root, OEM provisioning chain and key, and with `with_contract` the PKI's contract), every
    message to evpilot-ev-log.jsonl, the TLS key log to evpilot-ev.keylog, the summary as JSON. `relax`
    {request name: ms} replaces those message timeouts of the EV (`evpilot ev --msg-timeout`); the DC runs
    need it because Josev's SECC answers CurrentDemandReq too slowly for the standard's 250 ms. `keylog`
    False leaves out --keylog (the firmware under MicroPython, `extra=("--on", "micropython")`, has none)."""
    argv = list(EVPILOT) + ["ev", "--iface", link.ev_if] + _protocol_args("ev") + [
        "--mode", mode, "--soc", str(soc[0]), str(soc[1]), "--tls", "--pnc", "--store", store_dir,
        "--pki", pki_dir, "--log", os.path.join(workdir, "evpilot-ev-log.jsonl"), "--json"]
    if keylog:
        argv += ["--keylog", os.path.join(workdir, "evpilot-ev.keylog")]
    if with_contract:
        argv.append("--with-contract")
    for name, ms in sorted((relax or {}).items()):
        argv += ["--msg-timeout", "%s=%d" % (name, ms)]
    if mode == "dc" and has_flag("ev", "--capacity-wh"):
        argv += ["--capacity-wh", "1000"]  # 1 % in about 3 s at the power Josev's supply gives
    argv += list(extra)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return josev.Proc("evpilot-ev", link.ev_ns, argv, workdir, env, os.path.join(workdir, "evpilot-ev.out"))


def start_our_station(link, workdir, pki_dir, mode, extra=()):
    """`evpilot station` with TLS and Plug&Charge on the SECC end of `link`, one session (--once), every
    message to evpilot-station-log.jsonl."""
    argv = list(EVPILOT) + ["station", "--iface", link.secc_if] + _protocol_args("station") + [
        "--mode", mode, "--tls", "--pki", pki_dir, "--pnc", "--once", "--seed", "1",
        "--keylog", os.path.join(workdir, "evpilot-station.keylog"),
        "--log", os.path.join(workdir, "evpilot-station-log.jsonl")]
    if has_flag("station", "--db"):
        argv += ["--db", os.path.join(workdir, "evpilot-sessions.sqlite3")]  # the station's records
    argv += list(extra)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return josev.Proc("evpilot-station", link.secc_ns, argv, workdir, env,
                      os.path.join(workdir, "evpilot-station.out"))


def our_log(path):
    """Our --log FILE as records {"name", "dir" ("tx"/"rx" from our side), "code", "body", "t_ms"}."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        name, doc = rec.get("message"), rec.get("doc") or {}
        body = doc.get(name) if isinstance(doc, dict) and name in doc else \
            (doc.get("V2G_Message", {}).get("Body", {}).get(name) if isinstance(doc, dict) else None)
        out.append({"name": name, "sender": rec.get("dir"), "t_ms": rec.get("t_ms"), "body": body,
                    "code": josev.response_code(body)})
    return out


def _summary(text):
    """The last JSON object line with a "result" in our command's output, or None."""
    result = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "result" in rec:
                result = rec
    return result


def run_ours_ev(mode, pki_dir, with_contract=False, timeout=90, workdir=None, python=None, extra=(), relax=None,
                keylog=True):
    """Our EV (`evpilot ev --tls --pnc`) against Josev's SECC (TLS + PnC, reading `pki_dir` through layout()).
    Returns a josev.Run with `ours` (our log records), `ours_result` (our JSON summary), `josev` (the SECC's
    messages), `store` (our EV's store directory) and `secc_pki` (Josev's layout)."""
    python = python or josev.ensure_venv()
    workdir = workdir or tempfile.mkdtemp(prefix="evpilot-josev-pnc-")
    run = josev.Run(workdir)
    run.secc_pki = layout(pki_dir, os.path.join(workdir, "josev-secc-pki"), "secc")
    run.store = os.path.join(workdir, "ev-store")
    with josev.Link() as link:
        secc = start_secc(link, workdir, run.secc_pki, python, mode)
        ev = None
        try:
            if not secc.wait_for(r"UDP server started", 60):
                raise josev.HarnessError("Josev's SECC did not start its SDP server within 60 s")
            ev = start_our_ev(link, workdir, pki_dir, run.store, mode, with_contract, extra=extra,
                              relax=josev.slack("iso2", relax), keylog=keylog)
            ev.wait(timeout)
            secc.wait_for(r"Message to encode .*SessionStopRes", 3)
        finally:
            for p in (ev, secc):
                if p is not None:
                    p.stop()
                    run.logs[p.name] = p.text()
    run.ours = our_log(os.path.join(workdir, "evpilot-ev-log.jsonl"))
    run.ours_result = _summary(run.logs.get("evpilot-ev", ""))
    run.exit_code = ev.popen.returncode if ev is not None else None
    run.josev = josev.josev_messages(run.logs["josev-secc"])
    return run


def run_josev_ev(mode, pki_dir, cert_install=True, timeout=90, workdir=None, python=None, loop_cycles=3,
                 extra=(), rfc4514=False):
    """Josev's EVCC (TLS + PnC, certificate installation when `cert_install`, reading `pki_dir` through
    layout()) against our station (`evpilot station --tls --pnc`). Returns a josev.Run (`josev`: the EVCC's
    messages, `ours`: our station's log records, `ours_result`: {"result", "line", "exit"})."""
    python = python or josev.ensure_venv()
    workdir = workdir or tempfile.mkdtemp(prefix="evpilot-josev-pnc-")
    run = josev.Run(workdir)
    run.evcc_pki = layout(pki_dir, os.path.join(workdir, "josev-evcc-pki"), "evcc")
    with josev.Link() as link:
        st = start_our_station(link, workdir, pki_dir, mode, extra=extra)
        ev = None
        try:
            if not st.wait_for(r"^station: SECC ", 30):
                raise josev.HarnessError("our station did not come up within 30 s:\n" + st.text()[-2000:])
            ev = start_evcc(link, workdir, run.evcc_pki, mode, python, cert_install, loop_cycles, rfc4514)
            st.wait(timeout)  # --once: the station ends after the one session
            ev.wait_for(r"Decoded message .*SessionStopRes", 3)
        finally:
            for p in (ev, st):
                if p is not None:
                    p.stop()
                    run.logs[p.name] = p.text()
    run.ours = our_log(os.path.join(workdir, "evpilot-station-log.jsonl"))
    text = run.logs.get("evpilot-station", "")
    m = re.search(r"^station: session (ok|failed) \((.*)\)$", text, re.M)
    run.ours_result = {"result": m.group(1) if m else "none", "line": m.group(0) if m else None,
                       "exit": st.popen.returncode}
    run.josev = josev.josev_messages(run.logs["josev-evcc"])
    return run


def first_body(messages, name, direction=None):
    """The body of the first Josev message `name` (optionally only "rx" or "tx"), or None."""
    for _, d, n, body in messages:
        if n == name and (direction is None or d == direction):
            return body
    return None


def b64(value):
    """Josev logs binary fields as base64."""
    return base64.b64decode(value) if isinstance(value, str) else None


def decrypt_contract_key(oem_key_pem, dh_public_key, encrypted):
    """ISO 15118-2 contract key transport, receiving side (ECDH with the OEM provisioning key, ConcatKDF
    SHA-256 with OtherInfo 01 'U' 'V', AES-128-CBC with the first 16 bytes as IV): the 32-byte scalar."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = serialization.load_pem_private_key(oem_key_pem, password=None)
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), dh_public_key)
    z = key.exchange(ec.ECDH(), peer)
    k = hashes.Hash(hashes.SHA256())
    k.update(b"\x00\x00\x00\x01" + z + b"\x01\x55\x56")
    aes_key = k.finalize()[:16]
    dec = Cipher(algorithms.AES(aes_key), modes.CBC(encrypted[:16])).decryptor()
    return dec.update(encrypted[16:]) + dec.finalize()


def key_matches_certificate(d, cert_der):
    """Whether the scalar `d` (bytes) is the private key of the certificate's public key."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    n = int.from_bytes(d, "big")
    if not 0 < n < 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551:
        return False
    pub = ec.derive_private_key(n, ec.SECP256R1()).public_key().public_numbers()
    return pub == x509.load_der_x509_certificate(cert_der).public_key().public_numbers()


def main(argv=None):
    p = argparse.ArgumentParser(prog="josev_pnc.py", description="Josev Plug&Charge helpers")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("layout", help="lay out an `evpilot pki init` directory the way Josev reads it")
    s.add_argument("pki_dir")
    s.add_argument("dest")
    s.add_argument("--side", choices=sorted(SIDES), default="both")
    s.add_argument("--password", default=None, help="key password (default random; '' for none)")
    s = sub.add_parser("pair", help="Josev EVCC against Josev SECC, TLS + PnC (the baseline)")
    s.add_argument("pki_dir")
    s.add_argument("--mode", choices=("ac", "dc"), default="dc")
    s.add_argument("--contract", action="store_true", help="the EVCC has a contract (no installation)")
    args = p.parse_args(argv)
    if args.cmd == "layout":
        print(layout(args.pki_dir, args.dest, args.side, args.password))
        return 0
    run = run_josev_pair(args.mode, args.pki_dir, cert_install=not args.contract)
    for t, d, name, body in run.josev:
        if name != "?":
            print("evcc %s %s %s" % (d, name, josev.response_code(body) or ""))
    print("logs in", run.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
