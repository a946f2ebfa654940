"""ISO 15118-2 station Plug&Charge (evpilot_sim.station.iso2 with station.contracts and station.cps), message by
message: every request and response goes through the ISO-2 codec with its header Signature. Contract only
with TLS and Plug&Charge material; the Certificate service; installation and update; PaymentDetails (eMAID,
chain, expiry, revocation); the first AuthorizationReq (challenge, signature) and Ongoing rounds; the signed
SalesTariff; signed MeteringReceiptReq; EIM unchanged; a station built from an `evpilot pki init` directory."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "firmware"))

import pncfix  # noqa: E402
from test_cps import Contracts, _rng, _root_ids  # noqa: E402

from evpilot import exi  # noqa: E402
from evpilot.v2g.messages import pv  # noqa: E402
from evpilot.pnc import keytransport, p256, x509, xmldsig  # noqa: E402
from evpilot_sim.station import contracts as pnc, cps  # noqa: E402
from evpilot_sim.evse import EVSE  # noqa: E402
from evpilot_sim.station.iso2 import Iso2StationSession  # noqa: E402

EVCCID = b"\x02\x00\x00\x00\x00\x01"
AC = "AC_three_phase_core"


def make_pnc(contracts=None, clock=pncfix.NOW_S, mo_key=True, **options):
    service = cps.ProvisioningService(
        pncfix.chain("cps_leaf"), pncfix.key("cps_leaf"), contracts or Contracts(),
        v2g_roots=[pncfix.der("v2g_root")],
        oem_roots=[pncfix.der("oem_root"), pncfix.der("oem_sub_ca2"), pncfix.der("oem_sub_ca1")], rng=_rng(b"cps"),
        mo_roots=[pncfix.der("mo_root")])
    return pnc.StationPnc(cps=service, v2g_roots=[pncfix.der("v2g_root")], mo_roots=[pncfix.der("mo_root")],
                          mo_sub_ca2=pncfix.der("mo_sub_ca2"),
                          mo_sub_ca2_key=pncfix.key("mo_sub_ca2") if mo_key else None, clock=clock,
                          rng=_rng(b"challenge"), **options)


class Driver:
    """Requests through the codec into a station session; responses (and their Signature) back through it."""

    def __init__(self, pnc=None, tls=True, **config):
        self.evse = EVSE()
        config.setdefault("energy_modes", (AC,))
        self.st = Iso2StationSession(self.evse, seed=1, pnc=pnc, tls=tls, **config)
        self.now = 0
        self.signature = None

    def send(self, name, body=None, signature=None, sid=None):
        self.now += 100
        header = {"SessionID": self.st.session_id if sid is None else sid}
        if signature is not None:
            header["Signature"] = signature
        req = exi.decode("iso2", exi.encode("iso2", {"V2G_Message": {"Header": header, "Body": {name: body or {}}}}))
        msg = req["V2G_Message"]
        answer = self.st.on_request(name, msg["Body"][name], msg["Header"], self.now)
        res_name, res = answer[0], answer[1]
        assert res_name == name[:-3] + "Res"
        self.signature = answer[2] if len(answer) > 2 else None
        res_header = {"SessionID": self.st.session_id}
        if self.signature is not None:
            res_header["Signature"] = self.signature
        doc = {"V2G_Message": {"Header": res_header, "Body": {res_name: res}}}
        back = exi.decode("iso2", exi.encode("iso2", doc))
        assert back == doc
        return back["V2G_Message"]["Body"][res_name]

    def discover(self):
        self.send("SessionSetupReq", {"EVCCID": EVCCID}, sid=b"\x00")
        return self.send("ServiceDiscoveryReq")

    def select(self, payment="Contract", parameter_set=None):
        services = [{"ServiceID": 1}]
        if parameter_set is not None:
            services.append({"ServiceID": 2, "ParameterSetID": parameter_set})
        return self.send("PaymentServiceSelectionReq", {"SelectedPaymentOption": payment,
                                                        "SelectedServiceList": {"SelectedService": services}})

    def payment_details(self, role="contract_leaf", emaid=pncfix.EMAID, subs=True):
        ders = pncfix.chain(role)
        chain = {"Certificate": ders[0]}
        if subs:
            chain["SubCertificates"] = {"Certificate": ders[1:]}
        return self.send("PaymentDetailsReq", {"eMAID": emaid, "ContractSignatureCertChain": chain})

    def authorize(self, challenge, role="contract_leaf", element_id="auth"):
        body = {"GenChallenge": challenge}
        if element_id:
            body["Id"] = element_id
        signature = xmldsig.sign([("AuthorizationReq", body)], pncfix.key(role)) if role and element_id else None
        return self.send("AuthorizationReq", body, signature)

    def to_contract_authorized(self, **kw):
        self.discover()
        assert self.select()["ResponseCode"] == "OK"
        res = self.payment_details()
        assert self.authorize(res["GenChallenge"])["EVSEProcessing"] == "Finished"


def ac_cpd():
    return {"RequestedEnergyTransferMode": AC, "AC_EVChargeParameter": {
        "EAmount": pv(10000, "Wh"), "EVMaxVoltage": pv(400, "V"), "EVMaxCurrent": pv(32, "A"),
        "EVMinCurrent": pv(6, "A")}}


def install_req():
    req = {"Id": "req", "OEMProvisioningCert": pncfix.der("oem_prov_leaf"),
           "ListOfRootCertificateIDs": _root_ids()}
    return req, xmldsig.sign([("CertificateInstallationReq", req)], pncfix.key("oem_prov_leaf"))


# -- what is offered -----------------------------------------------------------------------------------


def test_contract_needs_tls_and_pnc():
    for options in ({"pnc": make_pnc(), "tls": False}, {"pnc": None, "tls": True},
                    {"pnc": make_pnc(), "tls": False, "payment_options": ("Contract", "ExternalPayment")}):
        d = Driver(**options)
        res = d.discover()
        assert res["PaymentOptionList"]["PaymentOption"] == ["ExternalPayment"], options
        assert "ServiceList" not in res
        assert d.select("Contract")["ResponseCode"] == "FAILED_PaymentSelectionInvalid"


def test_contract_and_certificate_service_offered_with_tls():
    d = Driver(pnc=make_pnc())
    res = d.discover()
    assert res["PaymentOptionList"]["PaymentOption"] == ["Contract", "ExternalPayment"]
    assert res["ServiceList"]["Service"] == [{"ServiceID": 2, "ServiceCategory": "ContractCertificate",
                                              "FreeService": True}]
    detail = d.send("ServiceDetailReq", {"ServiceID": 2})
    sets = detail["ServiceParameterList"]["ParameterSet"]
    assert [(s["ParameterSetID"], s["Parameter"][0]["stringValue"]) for s in sets] == \
        [(1, "Installation"), (2, "Update")]
    # Without a provisioning service: Contract, but no Certificate service.
    d = Driver(pnc=pnc.StationPnc(mo_roots=[pncfix.der("mo_root")], clock=pncfix.NOW_S))
    res = d.discover()
    assert "Contract" in res["PaymentOptionList"]["PaymentOption"] and "ServiceList" not in res
    # A station that offers only EIM on purpose keeps doing so.
    d = Driver(pnc=make_pnc(), payment_options=("ExternalPayment",))
    res = d.discover()
    assert res["PaymentOptionList"]["PaymentOption"] == ["ExternalPayment"] and "ServiceList" not in res


# -- a whole Contract session --------------------------------------------------------------------------


def test_installation_then_contract_session_message_by_message():
    d = Driver(pnc=make_pnc(), receipt_required=True)
    d.discover()
    assert d.select(parameter_set=1)["ResponseCode"] == "OK"
    req, sig = install_req()
    res = d.send("CertificateInstallationReq", req, sig)
    assert res["ResponseCode"] == "OK" and d.st.state == "certificate"
    # The EV's checks of the response: CPS leaf signature over the four elements, then decryption.
    elements = xmldsig.by_id([(n, res[n]) for n in ("ContractSignatureCertChain",
                                                    "ContractSignatureEncryptedPrivateKey", "DHpublickey", "eMAID")])
    xmldsig.verify(d.signature, elements, x509.parse(pncfix.der("cps_leaf")).public_key)
    z = p256.ecdh(pncfix.key("oem_prov_leaf"), res["DHpublickey"]["CONTENT"])
    assert keytransport.decrypt_contract_key(z, res["ContractSignatureEncryptedPrivateKey"]["CONTENT"]) == \
        pncfix.key("contract_new")

    details = d.payment_details("contract_new", emaid=res["eMAID"]["CONTENT"])
    assert details["ResponseCode"] == "OK" and d.signature is None
    assert len(details["GenChallenge"]) == 16 and details["EVSETimeStamp"] == pncfix.NOW_S
    auth = d.authorize(details["GenChallenge"], "contract_new")
    assert auth == {"ResponseCode": "OK", "EVSEProcessing": "Finished"}
    assert (d.st.payment, d.st.emaid) == ("Contract", pncfix.EMAID)

    cpd = d.send("ChargeParameterDiscoveryReq", ac_cpd())
    tariff = cpd["SAScheduleList"]["SAScheduleTuple"][0]["SalesTariff"]
    assert tariff["Id"] == "tariff1"
    xmldsig.verify(d.signature, xmldsig.by_id([("SalesTariff", tariff)]),
                   x509.parse(pncfix.der("mo_sub_ca2")).public_key)
    assert d.send("PowerDeliveryReq", {"ChargeProgress": "Start", "SAScheduleTupleID": 1})["ResponseCode"] == "OK"
    d.evse.ac_request(d.now, 16)  # the car draws 16 A per phase for a minute
    d.now += 60000
    status = d.send("ChargingStatusReq")
    assert status["ReceiptRequired"] is True
    receipt = {"Id": "rcpt", "SessionID": d.st.session_id, "SAScheduleTupleID": 1, "MeterInfo": status["MeterInfo"]}
    signed = xmldsig.sign([("MeteringReceiptReq", receipt)], pncfix.key("contract_new"))
    assert d.send("MeteringReceiptReq", receipt, signed)["ResponseCode"] == "OK"
    assert d.st.receipts == 1
    assert d.send("PowerDeliveryReq", {"ChargeProgress": "Stop", "SAScheduleTupleID": 1})["ResponseCode"] == "OK"
    assert d.send("SessionStopReq", {"ChargingSession": "Terminate"})["ResponseCode"] == "OK"
    assert d.st.finished and d.st.energy_wh > 0
    assert d.st.requests[:6] == ["SessionSetupReq", "ServiceDiscoveryReq", "PaymentServiceSelectionReq",
                                 "CertificateInstallationReq", "PaymentDetailsReq", "AuthorizationReq"]


def test_update_then_payment_details():
    contracts = Contracts()
    d = Driver(pnc=make_pnc(contracts))
    d.discover()
    d.select(parameter_set=2)
    req = {"Id": "req", "ContractSignatureCertChain": {
        "Certificate": pncfix.der("contract_leaf"),
        "SubCertificates": {"Certificate": [pncfix.der("mo_sub_ca2"), pncfix.der("mo_sub_ca1")]}},
        "eMAID": pncfix.EMAID, "ListOfRootCertificateIDs": _root_ids()}
    res = d.send("CertificateUpdateReq", req, xmldsig.sign([("CertificateUpdateReq", req)],
                                                          pncfix.key("contract_leaf")))
    assert res["ResponseCode"] == "OK" and contracts.calls == [(pncfix.EMAID, pncfix.NOW_S)]
    z = p256.ecdh(pncfix.key("contract_leaf"), res["DHpublickey"]["CONTENT"])  # the old contract key
    assert keytransport.decrypt_contract_key(z, res["ContractSignatureEncryptedPrivateKey"]["CONTENT"]) == \
        pncfix.key("contract_new")
    assert d.payment_details("contract_new")["ResponseCode"] == "OK"
    # Only one certificate request per session.
    assert d.send("CertificateUpdateReq", req)["ResponseCode"] == "FAILED_SequenceError"


def test_certificate_requests_need_the_certificate_service():
    req, sig = install_req()
    d = Driver(pnc=make_pnc())
    d.discover()
    d.select()  # Contract without the Certificate service
    res = d.send("CertificateInstallationReq", req, sig)
    assert res["ResponseCode"] == "FAILED_SequenceError" and d.signature is None
    d = Driver(pnc=make_pnc())
    d.discover()
    d.select(parameter_set=1)  # installation selected, update requested
    assert d.send("CertificateUpdateReq", {"Id": "r", "ContractSignatureCertChain": {
        "Certificate": pncfix.der("contract_leaf")}, "eMAID": pncfix.EMAID,
        "ListOfRootCertificateIDs": _root_ids()})["ResponseCode"] == "FAILED_SequenceError"
    d = Driver(pnc=make_pnc())
    d.discover()
    d.select("ExternalPayment", parameter_set=1)  # EIM: no certificate requests at all
    assert d.send("CertificateInstallationReq", req, sig)["ResponseCode"] == "FAILED_SequenceError"


def test_certificate_installation_refused():
    req, sig = install_req()
    bad_sig = xmldsig.sign([("CertificateInstallationReq", req)], pncfix.key("contract_leaf"))
    d = Driver(pnc=make_pnc())
    d.discover()
    d.select(parameter_set=1)
    res = d.send("CertificateInstallationReq", req, bad_sig)
    assert res["ResponseCode"] == "FAILED_SignatureError" and d.signature is None
    assert "SignatureValue" in d.st.refusal
    d = Driver(pnc=make_pnc(Contracts("canceled")))
    d.discover()
    d.select(parameter_set=1)
    assert d.send("CertificateInstallationReq", req, sig)["ResponseCode"] == "FAILED_ContractCanceled"


# -- PaymentDetails and Authorization ------------------------------------------------------------------


def _details(pnc_obj=None, **kw):
    d = Driver(pnc=pnc_obj or make_pnc())
    d.discover()
    d.select()
    return d, d.payment_details(**kw)


def test_payment_details_checks():
    d, res = _details(emaid="DEXYZC123ABC56")
    assert res["ResponseCode"] == "FAILED_CertChainError" and "does not name" in d.st.refusal
    assert d.st.emaid is None
    d, res = _details(emaid="DE-ABCC123ABC56")  # hyphens ignored
    assert res["ResponseCode"] == "OK" and d.st.emaid == pncfix.EMAID
    d, res = _details(subs=False)
    assert res["ResponseCode"] == "FAILED_CertChainError" and "contract chain" in d.st.refusal
    d, res = _details(role="oem_prov_leaf", emaid=pncfix.EMAID)
    assert res["ResponseCode"] == "FAILED_CertChainError"
    late = x509.parse(pncfix.der("contract_leaf")).not_after + 1
    d, res = _details(make_pnc(clock=late))
    assert res["ResponseCode"] == "FAILED_CertificateExpired"
    assert res["EVSETimeStamp"] == late
    d, res = _details(make_pnc(revoked=["DE-ABC-C123ABC56"]))
    assert res["ResponseCode"] == "FAILED_CertificateRevoked"
    # A station that trusts no MO root (only the V2G root) cannot accept the contract.
    only_v2g = pnc.StationPnc(v2g_roots=[pncfix.der("v2g_root")], clock=pncfix.NOW_S)
    d, res = _details(only_v2g)
    assert res["ResponseCode"] == "FAILED_CertChainError" and "root" in d.st.refusal
    # Without trusted time nothing expires and the time stamp is 0.
    d, res = _details(make_pnc(clock=None))
    assert res["ResponseCode"] == "OK" and res["EVSETimeStamp"] == 0


def test_authorization_challenge_and_signature():
    d, res = _details()
    assert d.authorize(b"\x00" * 16)["ResponseCode"] == "FAILED_ChallengeInvalid"
    d, res = _details()
    assert d.authorize(res["GenChallenge"], element_id=None)["ResponseCode"] == "FAILED_ChallengeInvalid"
    d, res = _details()
    assert d.authorize(res["GenChallenge"], role=None)["ResponseCode"] == "FAILED_SignatureError"
    assert "not signed" in d.st.refusal
    d, res = _details()
    assert d.authorize(res["GenChallenge"], role="oem_prov_leaf")["ResponseCode"] == "FAILED_SignatureError"
    d, res = _details()
    assert d.send("AuthorizationReq")["ResponseCode"] == "FAILED_ChallengeInvalid"  # empty first request
    # A request signed over another challenge, then changed: the digest no longer matches.
    d, res = _details()
    body = {"Id": "auth", "GenChallenge": b"\x01" * 16}
    sig = xmldsig.sign([("AuthorizationReq", body)], pncfix.key("contract_leaf"))
    body["GenChallenge"] = res["GenChallenge"]
    assert d.send("AuthorizationReq", body, sig)["ResponseCode"] == "FAILED_SignatureError"


def test_authorization_ongoing_rounds_accept_empty_requests():
    d = Driver(pnc=make_pnc(), auth_ongoing=2)
    d.discover()
    d.select()
    res = d.payment_details()
    assert d.authorize(res["GenChallenge"])["EVSEProcessing"] == "Ongoing"
    assert d.send("AuthorizationReq")["EVSEProcessing"] == "Ongoing"
    assert d.send("AuthorizationReq") == {"ResponseCode": "OK", "EVSEProcessing": "Finished"}
    assert d.st.state == "authorized"


def test_authorization_before_payment_details_is_a_sequence_error():
    d = Driver(pnc=make_pnc())
    d.discover()
    d.select()
    assert d.send("AuthorizationReq")["ResponseCode"] == "FAILED_SequenceError"


# -- SalesTariff and MeteringReceipt -------------------------------------------------------------------


def test_sales_tariff_signed_with_mo_sub_ca2_only_under_contract():
    d = Driver(pnc=make_pnc())
    d.to_contract_authorized()
    cpd = d.send("ChargeParameterDiscoveryReq", ac_cpd())
    tariff = cpd["SAScheduleList"]["SAScheduleTuple"][0]["SalesTariff"]
    refs = d.signature["SignedInfo"]["Reference"]
    assert [r["URI"] for r in refs] == ["#tariff1"]
    mo2 = x509.parse(pncfix.der("mo_sub_ca2")).public_key
    assert xmldsig.verify(d.signature, xmldsig.by_id([("SalesTariff", tariff)]), mo2) is None
    # No MO Sub-CA 2 key: the tariff has its Id but goes out unsigned.
    d = Driver(pnc=make_pnc(mo_key=False))
    d.to_contract_authorized()
    cpd = d.send("ChargeParameterDiscoveryReq", ac_cpd())
    assert cpd["SAScheduleList"]["SAScheduleTuple"][0]["SalesTariff"]["Id"] == "tariff1"
    assert d.signature is None
    # EIM on the same station: no tariff, no signature.
    d = Driver(pnc=make_pnc())
    d.discover()
    d.select("ExternalPayment")
    d.send("AuthorizationReq")
    cpd = d.send("ChargeParameterDiscoveryReq", ac_cpd())
    assert "SalesTariff" not in cpd["SAScheduleList"]["SAScheduleTuple"][0] and d.signature is None


def _to_receipt(d):
    d.to_contract_authorized()
    d.send("ChargeParameterDiscoveryReq", ac_cpd())
    d.send("PowerDeliveryReq", {"ChargeProgress": "Start", "SAScheduleTupleID": 1})
    status = d.send("ChargingStatusReq")
    assert status["ReceiptRequired"] is True
    return {"Id": "rcpt", "SessionID": d.st.session_id, "SAScheduleTupleID": 1, "MeterInfo": status["MeterInfo"]}


def test_metering_receipt_must_be_signed_by_the_contract_key():
    d = Driver(pnc=make_pnc(), receipt_required=True)
    receipt = _to_receipt(d)
    assert d.send("MeteringReceiptReq", receipt)["ResponseCode"] == "FAILED_SignatureError"
    d = Driver(pnc=make_pnc(), receipt_required=True)
    receipt = _to_receipt(d)
    wrong = xmldsig.sign([("MeteringReceiptReq", receipt)], pncfix.key("oem_prov_leaf"))
    assert d.send("MeteringReceiptReq", receipt, wrong)["ResponseCode"] == "FAILED_SignatureError"
    d = Driver(pnc=make_pnc(), receipt_required=True)
    receipt = _to_receipt(d)
    del receipt["Id"]
    assert d.send("MeteringReceiptReq", receipt)["ResponseCode"] == "FAILED_SignatureError"
    assert "no Id" in d.st.refusal
    d = Driver(pnc=make_pnc(), receipt_required=True)
    receipt = _to_receipt(d)
    good = xmldsig.sign([("MeteringReceiptReq", receipt)], pncfix.key("contract_leaf"))
    assert d.send("MeteringReceiptReq", receipt, good)["ResponseCode"] == "OK"
    assert d.st.state == "charging_ac"


# -- EIM unchanged -------------------------------------------------------------------------------------


def test_eim_on_a_pnc_station_is_unchanged():
    d = Driver(pnc=make_pnc(), receipt_required=True)
    d.discover()
    assert d.select("ExternalPayment")["ResponseCode"] == "OK"
    assert d.send("PaymentDetailsReq", {"eMAID": pncfix.EMAID, "ContractSignatureCertChain": {
        "Certificate": pncfix.der("contract_leaf")}})["ResponseCode"] == "FAILED_SequenceError"
    d = Driver(pnc=make_pnc(), receipt_required=True)
    d.discover()
    d.select("ExternalPayment")
    assert d.send("AuthorizationReq") == {"ResponseCode": "OK", "EVSEProcessing": "Finished"}
    d.send("ChargeParameterDiscoveryReq", ac_cpd())
    d.send("PowerDeliveryReq", {"ChargeProgress": "Start", "SAScheduleTupleID": 1})
    status = d.send("ChargingStatusReq")
    receipt = {"SessionID": d.st.session_id, "SAScheduleTupleID": 1, "MeterInfo": status["MeterInfo"]}
    assert d.send("MeteringReceiptReq", receipt)["ResponseCode"] == "OK"  # unsigned is fine under EIM
    assert (d.st.payment, d.st.emaid) == ("ExternalPayment", None)


# -- a station from a generated PKI directory ----------------------------------------------------------


def test_station_pnc_from_a_pki_directory(tmp_path):
    import datetime

    from evpilot_host import pki

    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    now_s = int(now.timestamp()) + 3600
    pki.write_pki(tmp_path / "pki", pki.build_pki(now=now))
    from evpilot_host import pki_material

    station_pnc = pki_material.station_pnc(str(tmp_path / "pki"), clock=now_s)
    d = Driver(pnc=station_pnc)
    d.discover()
    d.select(parameter_set=1)
    root = x509.parse((tmp_path / "pki" / "v2g_root.der").read_bytes())
    oem_der = (tmp_path / "pki" / "oem_prov_leaf.der").read_bytes()
    from cryptography.hazmat.primitives import serialization

    oem_key = serialization.load_pem_private_key((tmp_path / "pki" / "oem_prov_leaf.key").read_bytes(), None)
    oem_d = oem_key.private_numbers().private_value.to_bytes(32, "big")
    req = {"Id": "req", "OEMProvisioningCert": oem_der, "ListOfRootCertificateIDs": {"RootCertificateID": [
        {"X509IssuerName": root.subject_string, "X509SerialNumber": root.serial}]}}
    res = d.send("CertificateInstallationReq", req, xmldsig.sign([("CertificateInstallationReq", req)], oem_d))
    assert res["ResponseCode"] == "OK", d.st.refusal
    z = p256.ecdh(oem_d, res["DHpublickey"]["CONTENT"])
    new_d = keytransport.decrypt_contract_key(z, res["ContractSignatureEncryptedPrivateKey"]["CONTENT"])
    leaf = res["ContractSignatureCertChain"]["Certificate"]
    keytransport.check_key_pair(new_d, x509.parse(leaf).public_key, p256.public_key)
    # The freshly issued contract is accepted by PaymentDetails and authorizes.
    details = d.send("PaymentDetailsReq", {"eMAID": res["eMAID"]["CONTENT"], "ContractSignatureCertChain": {
        "Certificate": leaf, "SubCertificates": res["ContractSignatureCertChain"]["SubCertificates"]}})
    assert details["ResponseCode"] == "OK", d.st.refusal
    body = {"Id": "auth", "GenChallenge": details["GenChallenge"]}
    assert d.send("AuthorizationReq", body, xmldsig.sign([("AuthorizationReq", body)], new_d))["ResponseCode"] == "OK"


# -- through the connection ----------------------------------------------------------------------------


def test_signed_responses_leave_the_connection_with_their_signature():
    from evpilot.v2g import sap, v2gtp
    from evpilot_sim.station import secc as S

    made = {}

    def make_session(protocol):
        made["st"] = Iso2StationSession(EVSE(), seed=1, energy_modes=(AC,), pnc=make_pnc(), tls=True)
        return made["st"]

    conn = S.SeccConnection(("iso2",), make_session)
    conn.connection_made(0)
    conn.data_received(v2gtp.build(v2gtp.EXI, exi.encode("apphand", sap.request([("iso2", 1)]))), 1)
    conn.output()

    def exchange(name, body, signature=None, sid=None):
        header = {"SessionID": made["st"].session_id if sid is None else sid}
        if signature is not None:
            header["Signature"] = signature
        doc = {"V2G_Message": {"Header": header, "Body": {name: body}}}
        conn.data_received(v2gtp.build(v2gtp.EXI, exi.encode("iso2", doc)), 2)
        (frame,) = conn.output()
        msg = exi.decode("iso2", v2gtp.parse(frame)[1])["V2G_Message"]
        return msg["Header"], msg["Body"][name[:-3] + "Res"]

    exchange("SessionSetupReq", {"EVCCID": EVCCID}, sid=b"\x00")
    exchange("ServiceDiscoveryReq", {})
    exchange("PaymentServiceSelectionReq", {"SelectedPaymentOption": "Contract", "SelectedServiceList": {
        "SelectedService": [{"ServiceID": 1}, {"ServiceID": 2, "ParameterSetID": 1}]}})
    req, sig = install_req()
    header, res = exchange("CertificateInstallationReq", req, sig)
    assert res["ResponseCode"] == "OK" and header["SessionID"] == made["st"].session_id
    elements = xmldsig.by_id([(n, res[n]) for n in ("ContractSignatureCertChain",
                                                    "ContractSignatureEncryptedPrivateKey", "DHpublickey", "eMAID")])
    assert xmldsig.verify(header["Signature"], elements, x509.parse(pncfix.der("cps_leaf")).public_key) is None
    # A refused PaymentDetailsReq ends the connection, unsigned.
    header, res = exchange("PaymentDetailsReq", {"eMAID": "DEXYZC123ABC56", "ContractSignatureCertChain": {
        "Certificate": pncfix.der("contract_new")}})
    assert res["ResponseCode"] == "FAILED_CertChainError" and "Signature" not in header
    assert conn.state == S.FAILED and "FAILED_CertChainError" in conn.reason
