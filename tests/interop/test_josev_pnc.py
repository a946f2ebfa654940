"""Plug&Charge over TLS between evpilot and Josev (PyPI ``iso15118`` 0.31.2, in its own venv), ISO 15118-2,
over a veth pair between two network namespaces, with a test PKI from `evpilot pki init` laid out for Josev
by tests/interop/josev_pnc.py:

- the baseline: Josev's EVCC against Josev's SECC, TLS, PnC with certificate installation (proves the layout
  and the settings before anything of ours is involved);
- (a) our EV (`evpilot ev --tls --pnc --store --pki`) against Josev's SECC, DC and AC, once installing a
  contract (the EV has none) and once with the PKI's contract already in its store;
- (b) Josev's EVCC, installing a contract, against our station (`evpilot station --tls --pki --pnc`), DC and
  AC, with one defect of Josev's EVCC worked around in the open (its X509IssuerName, below); stock Josev's
  EVCC is kept on record as a strict xfail (test_stock_josev_ev_root_certificate_ids).

Each run must reach SessionStop with positive response codes on both sides; the request sequence (the same
from both sides) must hold CertificateInstallationReq (installation runs), PaymentDetailsReq and
AuthorizationReq. After (a) our EV's store must hold the contract Josev's SECC sent, with a key that belongs
to it; after (b) the contract key our station sent must decrypt, with the PKI's OEM provisioning key, to the
key of the certificate it sent (checked here independently of both implementations).

What Josev does that matters here (details in josev_pnc.py):
- Its SECC does not issue contracts: CertificateInstallationRes always carries the PKI's contract
  (contractLeafCert.der), its key encrypted for the SECC's own copy of the OEM provisioning certificate.
- Its EVCC throws the installed contract away (SimEVController.store_contract_cert_and_priv_key is a stub)
  and authorises with the PKI's contract (contractLeafCert.der / contractLeaf.key) whatever it installed.
- Its EVCC sends X509IssuerName in ListOfRootCertificateIDs as Python's repr of a cryptography Name,
  "<Name(DC=V2G,O=...,CN=...)>" (shared/security.py get_cert_issuer_serial: der_cert.issuer.__str__()),
  not an RFC 4514 string.
- Its DC station's supply is replaced by one that follows the EV's targets (josev._SUPPLY_SECC, as in
  test_josev_sessions.py), and its SECC answers CurrentDemandReq close to (over TLS sometimes over) the
  250 ms V2G_EVCC_Msg_Timeout, so the DC runs of (a) give our EV 1 s for it (josev_pnc._RELAXED_EV; the
  command line has no option for it) and test_josev_secc_current_demand_time_tls reports the times.
  Every response gets josev.SLACK times the standard's timeout, at least josev.SLACK_MIN_MS (10 s), which
  takes in RELAX (Josev is slow on a busy machine).

The tests of our side need the Plug&Charge flags of `evpilot ev` (--pnc, --store, --pki, --with-contract)
and `evpilot station` (--pnc); until `--help` lists them those tests are skipped, naming the missing flags.
Needs root, iproute2, Java and, the first time, the package registry (like test_josev_sessions.py); with
CI=true a missing prerequisite fails instead of skipping.
"""

import os
import statistics
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import josev  # noqa: E402
import josev_pnc  # noqa: E402

MODES = ["dc", "ac"]
# Josev's SECC answers CurrentDemandReq in up to 200 ms and more over TLS (JSON -> py4j -> EXIficient per
# message), over the 250 ms V2G_EVCC_Msg_Timeout our EV enforces once transport is added; the DC runs of (a)
# give our EV 1 s for it, as test_josev_sessions.py does. test_josev_secc_current_demand_time_tls reports the
# times measured.
LOOP_TIMEOUT_MS = 250
RELAX = {"CurrentDemandReq": 1000}
# The firmware's EV under MicroPython meets the same SECC with a wider margin: on a 2-core CI machine running
# Josev's Python and Java processes beside the unix port, one CurrentDemandRes in a few dozen came after more
# than 1 s (Josev answers in 35-65 ms otherwise). The run checks the protocol, not Josev's speed.
RELAX_MICROPYTHON = {"CurrentDemandReq": 3000}
_runs = {}


def _unavailable(reason):
    if os.environ.get("CI") == "true":
        pytest.fail("Josev interop cannot run on CI: " + reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def venv_python():
    reason = josev.unavailable()
    if reason:
        _unavailable(reason)
    try:
        return josev.ensure_venv()
    except josev.HarnessError as e:
        _unavailable(str(e))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A fresh test PKI from our own command."""
    path = str(tmp_path_factory.mktemp("pnc") / "pki")
    r = subprocess.run(josev_pnc.EVPILOT + ("pki", "init", path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "evpilot pki init failed: %s%s" % (r.stdout, r.stderr)
    return path


def _need_flags(command, flags):
    missing = josev_pnc.missing_flags(command, flags)
    if missing:
        pytest.skip("`evpilot %s --help` does not list %s yet (the Plug&Charge flags of our command line)"
                    % (command, ", ".join(missing)))


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _positive(code):
    return isinstance(code, str) and code.startswith("OK")


def _where(run):
    return "\n(logs in %s)\n%s" % (run.workdir, run.tail(40))


# --------------------------------------------------------------------------- the layout


def test_layout_for_josev(pki, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    dest = josev_pnc.layout(pki, str(tmp_path / "both"), "both", password="s3cret")
    certs = os.path.join(dest, "iso15118_2", "certs")
    keys = os.path.join(dest, "iso15118_2", "private_keys")
    for role, stem in josev_pnc.CERT_NAMES.items():
        der = _read(os.path.join(certs, stem + ".der"))
        assert der == _read(os.path.join(pki, role + ".der")), role
        assert x509.load_pem_x509_certificate(_read(os.path.join(certs, stem + ".pem"))).public_bytes(
            serialization.Encoding.DER) == der
    # The TLS chains, leaf first.
    for name, roles in josev_pnc.CHAIN_FILES.items():
        chain = x509.load_pem_x509_certificates(_read(os.path.join(certs, name)))
        assert [c.public_bytes(serialization.Encoding.DER) for c in chain] == [
            _read(os.path.join(pki, r + ".der")) for r in roles], name
    # Keys: encrypted PKCS#8 under the password in the password file (Josev reads its first line).
    for role, (key_name, pass_name) in josev_pnc.KEY_NAMES.items():
        pem = _read(os.path.join(keys, key_name))
        assert b"ENCRYPTED PRIVATE KEY" in pem, key_name
        password = _read(os.path.join(keys, pass_name)).splitlines()[0]
        assert password == b"s3cret"
        with pytest.raises(TypeError):
            serialization.load_pem_private_key(pem, password=None)
        key = serialization.load_pem_private_key(pem, password=password)
        cert = x509.load_der_x509_certificate(_read(os.path.join(pki, role + ".der")))
        assert key.public_key().public_numbers() == cert.public_key().public_numbers(), role
        assert os.stat(os.path.join(keys, key_name)).st_mode & 0o077 == 0
    # Each side gets only the keys it uses.
    secc = josev_pnc.layout(pki, str(tmp_path / "secc"), "secc")
    evcc = josev_pnc.layout(pki, str(tmp_path / "evcc"), "evcc", password="")
    secc_keys = set(os.listdir(os.path.join(secc, "iso15118_2", "private_keys")))
    evcc_keys = set(os.listdir(os.path.join(evcc, "iso15118_2", "private_keys")))
    assert "oemLeaf.key" not in secc_keys and {"seccLeaf.key", "cpsLeaf.key", "moSubCA2.key"} <= secc_keys
    assert not {"seccLeaf.key", "cpsLeaf.key", "moSubCA2.key"} & evcc_keys and "oemLeaf.key" in evcc_keys
    # No password: plain PKCS#8 and an empty password file (Josev: no password).
    pem = _read(os.path.join(evcc, "iso15118_2", "private_keys", "oemLeaf.key"))
    assert serialization.load_pem_private_key(pem, password=None)
    assert _read(os.path.join(evcc, "iso15118_2", "private_keys", "oemLeafPassword.txt")).strip() == b""
    # An incomplete PKI is named.
    os.makedirs(str(tmp_path / "partial"))
    with pytest.raises(josev.HarnessError, match="cps_leaf.der"):
        josev_pnc.layout(str(tmp_path / "partial"), str(tmp_path / "x"), "secc")


def test_contract_key_transport_helper(pki):
    """decrypt_contract_key (used on (b)) against a transport made here with cryptography."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    contract = serialization.load_pem_private_key(_read(os.path.join(pki, "contract_leaf.key")), password=None)
    oem = serialization.load_pem_private_key(_read(os.path.join(pki, "oem_prov_leaf.key")), password=None)
    eph = ec.generate_private_key(ec.SECP256R1())
    z = eph.exchange(ec.ECDH(), oem.public_key())
    h = hashes.Hash(hashes.SHA256())
    h.update(b"\x00\x00\x00\x01" + z + b"\x01UV")
    iv = os.urandom(16)
    enc = Cipher(algorithms.AES(h.finalize()[:16]), modes.CBC(iv)).encryptor()
    d = contract.private_numbers().private_value.to_bytes(32, "big")
    blob = iv + enc.update(d) + enc.finalize()
    dh = eph.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    got = josev_pnc.decrypt_contract_key(_read(os.path.join(pki, "oem_prov_leaf.key")), dh, blob)
    assert got == d
    assert josev_pnc.key_matches_certificate(got, _read(os.path.join(pki, "contract_leaf.der")))
    assert not josev_pnc.key_matches_certificate(got, _read(os.path.join(pki, "oem_prov_leaf.der")))


# --------------------------------------------------------------------------- checks shared by the runs


def _check_sequences(run, mode, install, ours_side=True):
    where = _where(run)
    theirs = run.requests("josev")
    expected = josev_pnc.pnc_sequence(mode, install)
    if ours_side:
        ours = run.requests("ours")
        assert ours, "no messages in our log" + where
        assert ours == theirs, "the two sides saw different request sequences:\nours  %s\njosev %s" % (
            josev.collapse(ours), josev.collapse(theirs))
    problems = josev.check_sequence(theirs, "iso2", mode, expected=expected)
    assert not problems, "sequence %s: %s%s" % (josev.collapse(theirs), problems, where)
    for name in (("CertificateInstallation",) if install else ()) + ("PaymentDetails", "Authorization"):
        assert name in theirs, "no %sReq in %s" % (name, josev.collapse(theirs))
    if not install:
        assert "CertificateInstallation" not in theirs
    sides = ("ours", "josev") if ours_side else ("josev",)
    for side in sides:
        responses = run.responses(side)
        assert len(responses) == len(theirs), "%s side: %d requests, %d responses%s" % (
            side, len(theirs), len(responses), where)
        bad = [(n, c) for n, c in responses if not _positive(c)]
        assert not bad, "%s side saw negative response codes: %s%s" % (side, bad, where)
        assert responses[-1] == ("SessionStopRes", "OK"), responses[-1]


def _contract_chain(body):
    chain = body["ContractSignatureCertChain"]
    subs = (chain.get("SubCertificates") or {}).get("Certificate") or []
    return [josev_pnc.b64(chain["Certificate"])] + [josev_pnc.b64(c) for c in subs]


def _cn(der):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


# --------------------------------------------------------------------------- baseline: Josev against Josev


def test_josev_pair_baseline(venv_python, pki):
    """Josev's EVCC against Josev's SECC, TLS, PnC with certificate installation, on our converted PKI."""
    run = josev_pnc.run_josev_pair("dc", pki, cert_install=True, python=venv_python)
    where = _where(run)
    evcc, secc = run.logs["josev-evcc"], run.logs["josev-secc"]
    assert "Starting TLS client" in evcc and "TLS server started" in secc, "no TLS" + where
    names = [m[2][:-3] for m in run.josev if m[1] == "tx" and m[2].endswith("Req")]
    problems = josev.check_sequence(names, "iso2", "dc", expected=josev_pnc.pnc_sequence("dc", True))
    assert not problems, "sequence %s: %s%s" % (josev.collapse(names), problems, where)
    codes = [(m[2], josev.response_code(m[3])) for m in run.josev if m[1] == "rx" and m[2].endswith("Res")]
    assert codes and all(_positive(c) for _, c in codes), codes
    assert codes[-1] == ("SessionStopRes", "OK")
    assert "Signature verification of CertificateInstallationRes failed" not in evcc
    # What Josev's SECC "installs" is the PKI's contract, its key encrypted for the PKI's OEM leaf.
    res = josev_pnc.first_body(run.josev, "CertificateInstallationRes", "rx")
    chain = _contract_chain(res)
    assert chain == [_read(os.path.join(pki, r + ".der")) for r in ("contract_leaf", "mo_sub_ca2", "mo_sub_ca1")]
    d = josev_pnc.decrypt_contract_key(_read(os.path.join(pki, "oem_prov_leaf.key")),
                                       josev_pnc.b64(res["DHpublickey"]["value"]),
                                       josev_pnc.b64(res["ContractSignatureEncryptedPrivateKey"]["value"]))
    assert josev_pnc.key_matches_certificate(d, chain[0])
    assert res["eMAID"]["value"] == _cn(chain[0])


# --------------------------------------------------------------------------- (a) our EV against Josev's SECC


def _ours_ev(mode, install, pki, python):
    key = ("ours", mode, install)
    if key not in _runs:
        _runs[key] = josev_pnc.run_ours_ev(mode, pki, with_contract=not install, python=python,
                                           relax=RELAX if mode == "dc" else None)
    return _runs[key]


@pytest.mark.parametrize("install", [True, False], ids=["install", "contract"])
@pytest.mark.parametrize("mode", MODES)
def test_our_ev_pnc_against_josev_secc(venv_python, pki, mode, install):
    _need_flags("ev", josev_pnc.EV_FLAGS)
    run = _ours_ev(mode, install, pki, venv_python)
    where = _where(run)
    res = run.ours_result
    assert res is not None, "our EV printed no JSON summary (exit %s)%s" % (run.exit_code, where)
    assert res["result"] == "ok", "our EV: %s%s" % (res, where)
    assert res.get("protocol") == "iso2", res
    tls = res.get("tls") or {}
    assert tls.get("version") == "TLSv1.2" and "ECDHE-ECDSA-AES128" in str(tls.get("cipher")), tls
    with open(os.path.join(run.workdir, "evpilot-ev.keylog")) as f:
        assert "CLIENT_RANDOM " in f.read(), "no TLS key log"
    _check_sequences(run, mode, install)
    selection = josev_pnc.first_body(run.josev, "PaymentServiceSelectionReq", "rx")
    assert selection["SelectedPaymentOption"] == "Contract", selection

    pki_contract = _read(os.path.join(pki, "contract_leaf.der"))
    if install:
        sent = _contract_chain(josev_pnc.first_body(run.josev, "CertificateInstallationRes", "tx"))
        assert sent[0] == pki_contract  # Josev's SECC always "issues" the PKI's contract
    details = josev_pnc.first_body(run.josev, "PaymentDetailsReq", "rx")
    used = _contract_chain(details)
    assert used[0] == pki_contract, "our EV authorised with another contract than Josev's"
    assert details["eMAID"] == _cn(pki_contract).replace("-", "")

    from evpilot.store.keystore import Store

    store = Store(run.store)
    contract = store.contract()
    assert contract is not None, "our EV's store holds no contract after the run: %r" % store
    assert contract.certificate == pki_contract, "the stored contract is not the one Josev's SECC sent"
    assert josev_pnc.key_matches_certificate(store.private_key(contract.name), contract.certificate), \
        "the stored contract key does not belong to the stored contract certificate"


@pytest.mark.parametrize("install", [True, False], ids=["install", "contract"])
def test_our_ev_on_micropython_pnc_against_josev_secc(venv_python, pki, install, micropython_unix):
    """The same, DC, with the firmware's EV under the MicroPython unix port (`evpilot ev --on micropython`):
    TLS on mbedTLS, our chain check in its verify callback, P-256 and the store on the real interpreter."""
    _need_flags("ev", josev_pnc.EV_FLAGS + ("--on",))
    run = josev_pnc.run_ours_ev("dc", pki, with_contract=not install, python=venv_python,
                                relax=RELAX_MICROPYTHON, extra=("--on", "micropython"), keylog=False)
    where = _where(run)
    res = run.ours_result
    assert res is not None, "our EV printed no JSON summary (exit %s)%s" % (run.exit_code, where)
    assert res["result"] == "ok", "our EV: %s%s" % (res, where)
    assert res.get("protocol") == "iso2", res
    tls = res.get("tls") or {}
    assert tls.get("version") == "TLSv1.2" and tls.get("cipher") == "ECDHE-ECDSA-AES128-SHA256", tls
    assert tls.get("secc_dc") == ["CPO"], tls
    _check_sequences(run, "dc", install)
    details = josev_pnc.first_body(run.josev, "PaymentDetailsReq", "rx")
    pki_contract = _read(os.path.join(pki, "contract_leaf.der"))
    assert _contract_chain(details)[0] == pki_contract
    from evpilot.store.keystore import Store

    contract = Store(run.store).contract()
    assert contract is not None and contract.certificate == pki_contract, "the stored contract is not Josev's"


def test_josev_secc_current_demand_time_tls(venv_python, pki):
    """How fast Josev's SECC answers CurrentDemandReq over TLS, from our EV's side of the DC installation run."""
    _need_flags("ev", josev_pnc.EV_FLAGS)
    run = _ours_ev("dc", True, pki, venv_python)
    times, sent = [], None
    for rec in run.ours:
        if rec["name"] == "CurrentDemandReq":
            sent = rec["t_ms"]
        elif rec["name"] == "CurrentDemandRes" and sent is not None:
            times.append(rec["t_ms"] - sent)
            sent = None
    assert times, "no CurrentDemand round trips in the run" + _where(run)
    late = sum(1 for t in times if t > LOOP_TIMEOUT_MS)
    if late:
        pytest.xfail("Josev defect: over TLS its SECC answered %d of %d CurrentDemandReq later than the %d ms "
                     "V2G_EVCC_Msg_Timeout (median %.0f ms, worst %.0f ms)" % (
                         late, len(times), LOOP_TIMEOUT_MS, statistics.median(times), max(times)))


# --------------------------------------------------------------------------- (b) Josev's EVCC against our station


class JosevIssuerNameDefect(Exception):
    """Stock Josev's X509IssuerName made our station refuse the installation (and nothing else went wrong)."""


ISSUER_NAME_DEFECT = (
    "Josev defect: its EVCC names the V2G root in CertificateInstallationReq.ListOfRootCertificateIDs with "
    "X509IssuerName = Python's repr of a cryptography Name, '<Name(DC=V2G,O=...,CN=...)>' (iso15118 0.31.2 "
    "shared/security.py get_cert_issuer_serial returns der_cert.issuer.__str__()), not an RFC 4514 name, so "
    "our station finds none of its V2G roots named and answers FAILED_NoCertificateAvailable")


def _josev_ev(mode, pki, python, rfc4514=True):
    key = ("josev", mode, rfc4514)
    if key not in _runs:
        _runs[key] = josev_pnc.run_josev_ev(mode, pki, cert_install=True, python=python, rfc4514=rfc4514)
    return _runs[key]


@pytest.mark.parametrize("mode", MODES)
def test_josev_ev_pnc_against_our_station(venv_python, pki, mode):
    """Josev's EVCC with its X509IssuerName as an RFC 4514 string (josev_pnc._RFC4514_EVCC; stock Josev:
    test_stock_josev_ev_root_certificate_ids below), installing a contract from our station's CPS."""
    _need_flags("station", josev_pnc.STATION_FLAGS)
    run = _josev_ev(mode, pki, venv_python)
    where = _where(run)
    evcc = run.logs["josev-evcc"]
    assert "Starting TLS client" in evcc, "Josev's EVCC did not run TLS" + where
    assert "Signature verification of CertificateInstallationRes failed" not in evcc, \
        "Josev's EVCC refused the signature of our CertificateInstallationRes" + where
    ids = josev_pnc.first_body(run.josev, "CertificateInstallationReq", "tx")["ListOfRootCertificateIDs"]
    assert not str(ids).count("<Name("), ids  # the workaround is in place
    _check_sequences(run, mode, install=True)
    assert run.ours_result["result"] == "ok", "our station: %s%s" % (run.ours_result, where)
    sent = josev_pnc.first_body(run.josev, "ChargeParameterDiscoveryReq", "tx")
    assert sent["RequestedEnergyTransferMode"] == josev.ENERGY_MODE[mode]
    # What our station sent, checked independently: the CPS chain is the PKI's, the contract chain ends in
    # the PKI's MO Sub-CAs, the eMAID is the contract's CN, and the contract key decrypts with the PKI's OEM
    # provisioning key to the key of that contract.
    res = josev_pnc.first_body(run.josev, "CertificateInstallationRes", "rx")
    chain = _contract_chain(res)
    assert chain[1:] == [_read(os.path.join(pki, r + ".der")) for r in ("mo_sub_ca2", "mo_sub_ca1")]
    cps = res["SAProvisioningCertificateChain"]
    assert josev_pnc.b64(cps["Certificate"]) == _read(os.path.join(pki, "cps_leaf.der"))
    assert res["eMAID"]["value"] == _cn(chain[0]).replace("-", "")
    d = josev_pnc.decrypt_contract_key(_read(os.path.join(pki, "oem_prov_leaf.key")),
                                       josev_pnc.b64(res["DHpublickey"]["value"]),
                                       josev_pnc.b64(res["ContractSignatureEncryptedPrivateKey"]["value"]))
    assert josev_pnc.key_matches_certificate(d, chain[0]), "the contract key our station sent does not decrypt " \
        "to the key of the contract it sent"
    # Josev's EVCC then authorises with its PKI's contract, not the one it installed (see the docstring).
    details = josev_pnc.first_body(run.josev, "PaymentDetailsReq", "tx")
    assert josev_pnc.b64(details["ContractSignatureCertChain"]["Certificate"]) == \
        _read(os.path.join(pki, "contract_leaf.der"))


@pytest.mark.xfail(strict=True, raises=JosevIssuerNameDefect, reason=ISSUER_NAME_DEFECT)
def test_stock_josev_ev_root_certificate_ids(venv_python, pki):
    """Stock Josev's EVCC installing a contract from our station (DC)."""
    _need_flags("station", josev_pnc.STATION_FLAGS)
    run = _josev_ev("dc", pki, venv_python, rfc4514=False)
    req = josev_pnc.first_body(run.josev, "CertificateInstallationReq", "tx")
    res = josev_pnc.first_body(run.josev, "CertificateInstallationRes", "rx")
    names = [i.get("X509IssuerName") for i in req["ListOfRootCertificateIDs"]["RootCertificateID"]]
    if res and res["ResponseCode"] == "FAILED_NoCertificateAvailable" and all(
            str(n).startswith("<Name(") for n in names):
        raise JosevIssuerNameDefect("%s; X509IssuerName sent: %s" % (run.ours_result, names))
    _check_sequences(run, "dc", install=True)
    assert run.ours_result["result"] == "ok", "our station: %s%s" % (run.ours_result, _where(run))
