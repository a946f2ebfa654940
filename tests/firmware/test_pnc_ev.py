# The EV's Plug&Charge contract logic (evpilot.ev.contracts, evpilot.store.certs) on both interpreters, with the
# fixed test PKI (pncfix) and the station's certificate provisioning service (evpilot_sim.station.cps):
# which certificate service the EV asks for, the signed CertificateInstallationReq / UpdateReq, installation
# and update round trips through the CPS (the whole V2G_Message encoded and decoded), the stored contract
# replaced atomically on update, rejections that leave the store as it was, PaymentDetailsReq, the signed
# AuthorizationReq and MeteringReceiptReq, and SalesTariff checks with MO Sub-CA 2.
# The full negative matrix (certificates crafted with cryptography) is tests/test_pnc_matrix.py.

import hashlib
import os


import pncfix

from evpilot import exi
from evpilot.errors import PeerError, UsageError
from evpilot.ev import contracts as pnc
from evpilot.ev.contracts import ContractManager, PncError
from evpilot.pnc import p256, x509, xmldsig
from evpilot.store import certs
from evpilot.store import keystore as st
from evpilot_sim.station import cps

NOW = pncfix.NOW_S
SID = bytes.fromhex("0102030405060708")
_count = [0]


def _fresh_dir():
    """An empty directory: a temporary one on CPython, one under /tmp in MicroPython's in-memory FS."""
    try:
        import tempfile

        return tempfile.mkdtemp(prefix="evpilot-pnc-")
    except ImportError:
        pass
    if "tmp" not in os.listdir("/"):
        os.mkdir("/tmp")
    _count[0] += 1
    path = "/tmp/evpilot-pnc-%d" % _count[0]
    os.mkdir(path)
    return path


def make_store(contract=None, oem=True, roots=("v2g_root", "mo_root")):
    s = st.Store(_fresh_dir() + "/store")
    for role in roots:
        certs.add_root_certificate(s, pncfix.der(role))
    if oem:
        certs.set_oem_chain(s, pncfix.chain("oem_prov_leaf"), pncfix.key("oem_prov_leaf"))
    if contract is not None:
        certs.install_contract_chain(s, pncfix.chain(contract), pncfix.key(contract))
    return s


def snapshot(s):
    """Everything the store says about its contracts, keys included (test keys), to compare before/after."""
    out = []
    for info in s.contracts():
        c = s.contract_named(info.name)
        out.append((info.name, c.emaid, c.not_before, c.not_after, c.chain, s.private_key(info.name)))
    return out


def rng(seed=b"ev-pnc-test"):
    state = [0]

    def draw(n):
        out = b""
        while len(out) < n:
            state[0] += 1
            out += hashlib.sha256(seed + str(state[0]).encode()).digest()
        return out[:n]

    return draw


def service(contract="contract_new"):
    def issue(emaid, now_s):
        return pncfix.chain(contract), pncfix.key(contract), pncfix.EMAID

    return cps.ProvisioningService(pncfix.chain("cps_leaf"), pncfix.key("cps_leaf"), issue,
                                   v2g_roots=[pncfix.der("v2g_root")], mo_roots=[pncfix.der("mo_root")], rng=rng())


def wire(name, body, signature=None):
    """body and signature after a trip through EXI as a whole V2G_Message (what the peer receives)."""
    header = {"SessionID": SID}
    if signature is not None:
        header["Signature"] = signature
    data = exi.encode("iso2", {"V2G_Message": {"Header": header, "Body": {name: body}}})
    msg = exi.decode("iso2", data)["V2G_Message"]
    return msg["Body"][name], msg["Header"].get("Signature")


def raises(cls, fn, *args):
    try:
        fn(*args)
    except cls as e:
        return e
    assert False, "expected " + cls.__name__


def install_round_trip(s, manager=None):
    m = manager or ContractManager(s, now_s=NOW)
    name, body, sig = m.installation_request()
    req, req_sig = wire(name, body, sig)
    res, res_sig = service().installation(req, req_sig, NOW)
    assert res["ResponseCode"] == "OK", service().last_error
    res, res_sig = wire("CertificateInstallationRes", res, res_sig)
    return m, res, res_sig


# ---- the store helper ---------------------------------------------------------------------------------


def test_install_contract_chain_takes_emaid_and_validity_from_the_certificate():
    s = make_store()
    name = certs.install_contract_chain(s, pncfix.chain("contract_leaf"), pncfix.key("contract_leaf"))
    leaf = x509.parse(pncfix.der("contract_leaf"))
    c = s.contract(now_s=NOW)
    assert name == pncfix.EMAID and c.emaid == pncfix.EMAID and c.chain == pncfix.chain("contract_leaf")
    assert (c.not_before, c.not_after) == (leaf.not_before, leaf.not_after)
    assert s.private_key(name) == pncfix.key("contract_leaf")
    before = snapshot(s)
    # The key of another certificate, a leaf that is no contract: refused, nothing written.
    e = raises(PeerError, certs.install_contract_chain, s, pncfix.chain("contract_new"), pncfix.key("contract_leaf"))
    assert "does not belong" in str(e) and pncfix.key("contract_leaf").hex() not in str(e)
    e = raises(PeerError, certs.install_contract_chain, s, pncfix.chain("cps_leaf"), pncfix.key("cps_leaf"))
    assert "eMAID" in str(e)
    assert snapshot(s) == before


def test_roots_and_oem_chain_from_the_certificates():
    s = make_store()
    assert [r.dc for r in certs.root_certificates(s, ("V2G",))] == [["V2G"]]
    assert sorted(r.dc[0] for r in certs.root_certificates(s)) == ["MO", "V2G"]
    oem = s.oem()
    assert oem.pcid == pncfix.PCID and oem.chain == pncfix.chain("oem_prov_leaf")
    raises(PeerError, certs.set_oem_chain, s, pncfix.chain("oem_prov_leaf"), pncfix.key("cps_leaf"))
    assert s.private_key(st.OEM) == pncfix.key("oem_prov_leaf")


# ---- what to ask for ----------------------------------------------------------------------------------


def test_action_install_update_or_nothing():
    assert ContractManager(make_store(), now_s=NOW).action() == "install"
    assert ContractManager(make_store(oem=False), now_s=NOW).action() is None  # nothing to install with
    assert ContractManager(make_store(roots=("mo_root",)), now_s=NOW).action() is None  # no V2G root
    s = make_store("contract_leaf")
    leaf = x509.parse(pncfix.der("contract_leaf"))
    assert ContractManager(s, now_s=NOW).action() is None
    assert ContractManager(s, now_s=None).action() is None
    assert ContractManager(s, now_s=NOW, update_requested=True).action() == "update"
    # 21 days before notAfter (RISE-V2G's margin) an update is due; a day earlier it is not.
    assert ContractManager(s, now_s=leaf.not_after - 21 * 86400).action() == "update"
    assert ContractManager(s, now_s=leaf.not_after - 22 * 86400).action() is None
    assert ContractManager(s, now_s=leaf.not_after - 22 * 86400, renew_days=30).action() == "update"
    # Expired: no usable contract, so a new one is installed.
    assert ContractManager(s, now_s=leaf.not_after + 1).action() == "install"
    # A station said OK_CertificateExpiresSoon: the next session updates.
    m = ContractManager(s, now_s=NOW)
    m.note_expires_soon()
    assert m.expires_soon and s.meta()[pnc.RENEW_META] == pncfix.EMAID
    assert ContractManager(s, now_s=NOW).action() == "update"


# ---- requests -----------------------------------------------------------------------------------------


def test_installation_request_is_signed_with_the_oem_key_and_lists_v2g_roots_only():
    s = make_store()
    name, body, sig = ContractManager(s, now_s=NOW).installation_request()
    assert name == "CertificateInstallationReq"
    assert body["OEMProvisioningCert"] == pncfix.der("oem_prov_leaf")  # the leaf only
    root = x509.parse(pncfix.der("v2g_root"))
    assert body["ListOfRootCertificateIDs"] == {"RootCertificateID": [
        {"X509IssuerName": root.issuer_string, "X509SerialNumber": root.serial}]}
    assert root.issuer_string.startswith("CN=") and "<" not in root.issuer_string  # RFC 4514, not a repr
    body, sig = wire(name, body, sig)
    oem_pub = x509.parse(pncfix.der("oem_prov_leaf")).public_key
    xmldsig.verify(sig, xmldsig.by_id([(name, body)]), oem_pub)
    assert [r["URI"] for r in sig["SignedInfo"]["Reference"]] == ["#" + body["Id"]]


def test_update_request_is_signed_with_the_contract_key():
    s = make_store("contract_leaf")
    name, body, sig = ContractManager(s, now_s=NOW, update_requested=True).update_request()
    assert name == "CertificateUpdateReq" and body["eMAID"] == pncfix.EMAID
    chain = pncfix.chain("contract_leaf")
    assert body["ContractSignatureCertChain"] == {"Certificate": chain[0],
                                                  "SubCertificates": {"Certificate": chain[1:]}}
    body, sig = wire(name, body, sig)
    xmldsig.verify(sig, xmldsig.by_id([(name, body)]), x509.parse(chain[0]).public_key)


def test_requests_need_what_they_sign_with():
    m = ContractManager(make_store(oem=False), now_s=NOW)
    raises(UsageError, m.installation_request)
    raises(UsageError, m.update_request)
    raises(UsageError, m.payment_details_request)
    raises(UsageError, m.authorization_request, bytes(16))
    raises(UsageError, ContractManager(make_store(roots=()), now_s=NOW).installation_request)


# ---- installation and update through the station's CPS ------------------------------------------------


def test_installation_round_trip_stores_the_new_contract():
    s = make_store()
    m, res, res_sig = install_round_trip(s)
    c = m.accept("CertificateInstallationRes", res, res_sig)
    assert m.installed and not m.updated and m.emaid == pncfix.EMAID
    assert c.chain == pncfix.chain("contract_new")
    assert s.private_key(c.name) == pncfix.key("contract_new")
    assert ContractManager(s, now_s=NOW).action() is None
    # PaymentDetailsReq names the new contract: eMAID + chain, SubCertificates [Sub-CA 2, Sub-CA 1].
    name, body = m.payment_details_request()
    assert name == "PaymentDetailsReq" and body["eMAID"] == pncfix.EMAID
    assert body["ContractSignatureCertChain"]["SubCertificates"]["Certificate"] == [
        pncfix.der("mo_sub_ca2"), pncfix.der("mo_sub_ca1")]
    wire(name, body)


def test_update_round_trip_replaces_the_old_contract():
    s = make_store("contract_leaf")
    m = ContractManager(s, now_s=NOW, update_requested=True)
    s.set_meta(pnc.RENEW_META, pncfix.EMAID)
    name, body, sig = m.update_request()
    req, req_sig = wire(name, body, sig)
    res, res_sig = service().update(req, req_sig, NOW)
    assert res["ResponseCode"] == "OK"
    res, res_sig = wire("CertificateUpdateRes", res, res_sig)
    m.accept("CertificateUpdateRes", res, res_sig)
    assert m.updated and not m.installed
    assert [(c.name, c.emaid) for c in s.contracts()] == [(pncfix.EMAID, pncfix.EMAID)]
    assert s.contract(now_s=NOW).chain == pncfix.chain("contract_new")
    assert s.private_key(pncfix.EMAID) == pncfix.key("contract_new")
    assert pnc.RENEW_META not in s.meta()


def test_update_needs_the_old_contract_key():
    # A CertificateUpdateRes encrypted for the OEM key (an installation answer) does not decrypt.
    s = make_store("contract_leaf")
    m = ContractManager(s, now_s=NOW, update_requested=True)
    m.update_request()
    _, res, res_sig = install_round_trip(make_store())
    before = snapshot(s)
    e = raises(PncError, m.accept, "CertificateUpdateRes", res, res_sig)
    assert e.stage == "key" and e.reason in ("decrypt", "mismatch")
    assert snapshot(s) == before


def _tampered(mutate, sign_with=None):
    """An installation response changed by mutate(res, signature) (optionally re-signed with a key)."""
    s = make_store("contract_leaf")
    m, res, sig = install_round_trip(s, ContractManager(s, now_s=NOW))
    mutate(res, sig)
    if sign_with is not None:
        sig = xmldsig.sign([(n, res[n]) for n in pnc.SIGNED_ELEMENTS], sign_with)
    before = snapshot(s)
    e = raises(PncError, m.accept, "CertificateInstallationRes", res, sig)
    assert snapshot(s) == before, e
    return e.stage, e.reason


def _flip(value):
    return bytes([value[0] ^ 1]) + value[1:]


def test_rejections_leave_the_stored_contract_as_it_was():
    def enc(res, sig):
        element = res["ContractSignatureEncryptedPrivateKey"]
        element["CONTENT"] = _flip(element["CONTENT"])

    def drop_sig(res, sig):
        sig.clear()

    def drop_ref(res, sig):
        sig["SignedInfo"]["Reference"].pop()

    def der_sig(res, sig):
        sig["SignatureValue"]["CONTENT"] = p256.raw_to_der(sig["SignatureValue"]["CONTENT"])

    def emaid(res, sig):
        res["eMAID"]["CONTENT"] = "DEABCC123ABC57"

    def no_cps(res, sig):
        del res["SAProvisioningCertificateChain"]

    assert _tampered(enc) == ("signature", "digest")
    assert _tampered(drop_sig) == ("signature", "malformed")
    assert _tampered(drop_ref) == ("signature", "missing_reference")
    assert _tampered(der_sig) == ("signature", "malformed")
    assert _tampered(emaid) == ("signature", "digest")
    assert _tampered(no_cps) == ("response", "malformed")
    # Re-signed with a key that is not the CPS leaf's: the wrong signer.
    assert _tampered(lambda res, sig: None, pncfix.key("cps_sub_ca2")) == ("signature", "signature")
    # Re-signed correctly by the CPS, but the eMAID no longer names the certificate.
    assert _tampered(emaid, pncfix.key("cps_leaf")) == ("contract_chain", "emaid_mismatch")
    # Re-signed by the CPS over an encrypted key that decrypts to garbage.
    assert _tampered(enc, pncfix.key("cps_leaf"))[0] == "key"


def test_missing_signature_or_wrong_response_name():
    s = make_store()
    m, res, sig = install_round_trip(s)
    e = raises(PncError, m.accept, "CertificateInstallationRes", res, None)
    assert (e.stage, e.reason) == ("signature", "missing")
    raises(UsageError, m.accept, "PaymentDetailsRes", res, sig)
    raises(UsageError, m.accept, "CertificateUpdateRes", res, sig)  # no update was asked for
    assert s.contracts() == []


# ---- PaymentDetails, Authorization, MeteringReceipt, SalesTariff ----------------------------------------


def test_authorization_and_metering_receipt_are_signed_with_the_contract_key():
    s = make_store("contract_leaf")
    m = ContractManager(s, now_s=NOW)
    pub = x509.parse(pncfix.der("contract_leaf")).public_key
    challenge = bytes(range(16))
    name, body, sig = m.authorization_request(challenge)
    assert body == {"Id": body["Id"], "GenChallenge": challenge}
    body, sig = wire(name, body, sig)
    xmldsig.verify(sig, xmldsig.by_id([(name, body)]), pub)
    raises(PeerError, m.authorization_request, bytes(15))
    raises(PeerError, m.authorization_request, None)
    meter = {"MeterID": "M1", "MeterReading": 1234, "SigMeterReading": b"\x01\x02", "TMeter": 1700000000}
    name, body, sig = m.metering_receipt_request(SID, 1, meter)
    assert body["SessionID"] == SID and body["SAScheduleTupleID"] == 1 and body["MeterInfo"] is meter
    body, sig = wire(name, body, sig)
    xmldsig.verify(sig, xmldsig.by_id([(name, body)]), pub)


def _tuples():
    tariff = {"Id": "tariff1", "SalesTariffID": 1, "NumEPriceLevels": 2, "SalesTariffEntry": [
        {"RelativeTimeInterval": {"start": 0}, "EPriceLevel": 1},
        {"RelativeTimeInterval": {"start": 3600, "duration": 82800}, "EPriceLevel": 2}]}
    pmax = {"PMaxScheduleEntry": [{"RelativeTimeInterval": {"start": 0, "duration": 86400},
                                   "PMax": {"Multiplier": 0, "Unit": "W", "Value": 11000}}]}
    return [{"SAScheduleTupleID": 1, "PMaxSchedule": pmax, "SalesTariff": tariff}]


def test_sales_tariff_signed_by_mo_sub_ca2_is_kept_else_dropped():
    m = ContractManager(make_store("contract_leaf"), now_s=NOW)
    tuples = _tuples()
    good = xmldsig.sign([("SalesTariff", tuples[0]["SalesTariff"])], pncfix.key("mo_sub_ca2"))
    kept, problem = m.check_sales_tariffs(tuples, good)
    assert problem is None and kept is tuples
    kept, problem = m.check_sales_tariffs(tuples, None)
    assert problem == "unsigned" and "SalesTariff" not in kept[0] and "SalesTariff" in tuples[0]
    assert kept[0]["PMaxSchedule"] == tuples[0]["PMaxSchedule"]
    other = xmldsig.sign([("SalesTariff", tuples[0]["SalesTariff"])], pncfix.key("mo_sub_ca1"))
    assert m.check_sales_tariffs(tuples, other)[1] == "signature signature"
    changed = _tuples()
    changed[0]["SalesTariff"]["SalesTariffEntry"][1]["EPriceLevel"] = 1
    assert m.check_sales_tariffs(changed, good)[1] == "signature digest"
    no_id = _tuples()
    del no_id[0]["SalesTariff"]["Id"]
    assert m.check_sales_tariffs(no_id, good)[1] == "signature malformed"
    plain = [{"SAScheduleTupleID": 1, "PMaxSchedule": tuples[0]["PMaxSchedule"]}]
    assert m.check_sales_tariffs(plain, None) == (plain, None)  # nothing to check


def test_no_key_bytes_in_reprs_and_errors():
    s = make_store("contract_leaf")
    m = ContractManager(s, now_s=NOW)
    texts = [repr(m), repr(s), repr(s.contract(now_s=NOW)), repr(s.oem())]
    try:
        certs.install_contract_chain(s, pncfix.chain("contract_new"), pncfix.key("contract_leaf"))
    except PeerError as e:
        texts.append(str(e))
    for role in ("contract_leaf", "contract_new", "oem_prov_leaf"):
        k = pncfix.key(role)
        for t in texts:
            assert k.hex() not in t and k.hex().upper() not in t and str(k) not in t


# ---- the session's choice of payment ---------------------------------------------------------------------


def _discovery(options=("Contract", "ExternalPayment"), cert_service=True):
    body = {"ResponseCode": "OK", "PaymentOptionList": {"PaymentOption": list(options)},
            "ChargeService": {"ServiceID": 1, "ServiceCategory": "EVCharging", "FreeService": False,
                              "SupportedEnergyTransferMode": {"EnergyTransferMode": ["AC_three_phase_core"]}}}
    if cert_service:
        body["ServiceList"] = {"Service": [{"ServiceID": 2, "ServiceCategory": "ContractCertificate",
                                           "FreeService": True}]}
    return wire("ServiceDiscoveryRes", body)[0]


def _selection(manager, tls=True, **discovery):
    """The PaymentServiceSelectionReq an Iso2Session sends after this ServiceDiscoveryRes, and the session."""
    from evpilot.ev.iso2 import Iso2Session
    from evpilot_sim.vehicle import SimVehicle

    session = Iso2Session(SimVehicle(modes=("AC_three_phase_core",)), pnc=manager, tls=tls)
    session.first_request(0)
    session.on_response("SessionSetupRes", {"ResponseCode": "OK_NewSessionEstablished", "EVSEID": "DE*EVP*E1"}, {}, 10)
    name, body = session.on_response("ServiceDiscoveryRes", _discovery(**discovery), {}, 20)
    assert name == "PaymentServiceSelectionReq"
    wire(name, body)
    services = [(s["ServiceID"], s.get("ParameterSetID")) for s in body["SelectedServiceList"]["SelectedService"]]
    return body["SelectedPaymentOption"], services, session


def test_payment_choice():
    fresh = make_store()
    assert _selection(ContractManager(fresh, now_s=NOW))[:2] == ("Contract", [(1, None), (2, 1)])
    has = make_store("contract_leaf")
    assert _selection(ContractManager(has, now_s=NOW))[:2] == ("Contract", [(1, None)])
    assert _selection(ContractManager(has, now_s=NOW, update_requested=True))[:2] == ("Contract", [(1, None), (2, 2)])
    # Never Contract without TLS, nor when the station does not offer it.
    option, services, session = _selection(ContractManager(has, now_s=NOW), tls=False)
    assert option == "ExternalPayment" and "TLS" in session.pnc_note and session.summary()["identification"] == "EIM"
    option, _, session = _selection(ContractManager(has, now_s=NOW), options=("ExternalPayment",))
    assert option == "ExternalPayment" and "does not offer Contract" in session.pnc_note
    # No Certificate service: nothing to install with (EIM); an update that is due waits (PnC as is).
    option, _, session = _selection(ContractManager(fresh, now_s=NOW), cert_service=False)
    assert option == "ExternalPayment" and "Certificate service" in session.pnc_note
    option, services, session = _selection(ContractManager(has, now_s=NOW, update_requested=True), cert_service=False)
    assert (option, services) == ("Contract", [(1, None)]) and "update due" in session.pnc_note
    # Contract only, and no way to use it: the session cannot go on.
    from evpilot.errors import SessionError

    try:
        _selection(ContractManager(make_store(oem=False), now_s=NOW), options=("Contract",))
        assert False, "expected SessionError"
    except SessionError as e:
        assert "no ExternalPayment" in str(e)


def test_a_damaged_store_falls_back_to_external_payment():
    s = make_store("contract_leaf")
    directory = s.directory
    for name in os.listdir(directory):
        if name.endswith(".der"):
            size = len(open(directory + "/" + name, "rb").read())
            with open(directory + "/" + name, "wb") as f:
                f.write(b"\x30" * size)
    option, _, session = _selection(ContractManager(st.Store(directory), now_s=NOW))
    assert option == "ExternalPayment" and "cannot be read" in session.pnc_note
