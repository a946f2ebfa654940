# The station's certificate provisioning service (evpilot_sim.station.cps) on both interpreters, with the
# fixed test PKI (pncfix): installation and update responses checked the way an EV must (the whole
# V2G_Message encodes and decodes, four digests and the CPS leaf's SignedInfo signature, the CPS chain to the
# V2G root, ECDH with DHpublickey, decryption, d*G == the contract certificate's key), and every refusal
# with its ISO-2 response code (unsigned, wrongly signed or tampered requests, unknown V2G roots, OEM and
# contract chains that do not validate, expired certificates, no or canceled contracts).

import hashlib


import pncfix

from evpilot import exi
from evpilot.pnc import chain, keytransport, p256, x509, xmldsig
from evpilot_sim.station import cps

SIGNED = ("ContractSignatureCertChain", "ContractSignatureEncryptedPrivateKey", "DHpublickey", "eMAID")


def _rng(seed=b"cps-test"):
    """A deterministic rng(n) (SHA-256 in counter mode) so runs are repeatable on both interpreters."""
    state = [0]

    def rng(n):
        out = b""
        while len(out) < n:
            state[0] += 1
            out += hashlib.sha256(seed + str(state[0]).encode()).digest()
        return out[:n]

    return rng


class Contracts:
    """issue_contract for the tests: the fixture's contract_new, or a scripted refusal."""

    def __init__(self, result="new"):
        self.result = result
        self.calls = []

    def __call__(self, emaid, now_s):
        self.calls.append((emaid, now_s))
        if self.result == "none":
            return None
        if self.result == "canceled":
            raise cps.Refusal(cps.CANCELED, "contract canceled by the MO")
        return pncfix.chain("contract_new"), pncfix.key("contract_new"), pncfix.EMAID


def _service(contracts=None, oem=True, mo=True, v2g=True, retry_counter=None):
    return cps.ProvisioningService(
        pncfix.chain("cps_leaf"), pncfix.key("cps_leaf"), contracts or Contracts(),
        v2g_roots=[pncfix.der("v2g_root")] if v2g else (),
        oem_roots=[pncfix.der("oem_root"), pncfix.der("oem_sub_ca2"), pncfix.der("oem_sub_ca1")] if oem else (),
        rng=_rng(), mo_roots=[pncfix.der("mo_root")] if mo else (), retry_counter=retry_counter)


def _root_ids(role="v2g_root"):
    root = x509.parse(pncfix.der(role))
    return {"RootCertificateID": [{"X509IssuerName": root.issuer_string, "X509SerialNumber": root.serial}]}


def _install_req(root_ids=None):
    return {"Id": "req", "OEMProvisioningCert": pncfix.der("oem_prov_leaf"),
            "ListOfRootCertificateIDs": root_ids or _root_ids()}


def _update_req(root_ids=None, emaid=None):
    return {"Id": "req", "ContractSignatureCertChain": {
        "Certificate": pncfix.der("contract_leaf"),
        "SubCertificates": {"Certificate": [pncfix.der("mo_sub_ca2"), pncfix.der("mo_sub_ca1")]}},
        "eMAID": emaid or pncfix.EMAID, "ListOfRootCertificateIDs": root_ids or _root_ids()}


def _sign(name, req, role):
    return xmldsig.sign([(name, req)], pncfix.key(role))


def _round_trip(name, body, signature):
    """The response as the EV receives it: the whole V2G_Message through the ISO-2 codec."""
    header = {"SessionID": bytes.fromhex("0102030405060708")}
    if signature is not None:
        header["Signature"] = signature
    doc = {"V2G_Message": {"Header": header, "Body": {name: body}}}
    back = exi.decode("iso2", exi.encode("iso2", doc))
    assert back == doc
    return back["V2G_Message"]["Header"], back["V2G_Message"]["Body"][name]


def _ev_accepts(header, res, static_role):
    """What an EV does with a CertificateInstallationRes/UpdateRes: returns (contract chain, d)."""
    cps_ders = [res["SAProvisioningCertificateChain"]["Certificate"]]
    cps_ders += res["SAProvisioningCertificateChain"]["SubCertificates"]["Certificate"]
    path = chain.validate(cps_ders[0], cps_ders[1:], [pncfix.der("v2g_root")], pncfix.NOW_S, "cps", p256.verify)
    assert path[0].cn == "evpilot CPS Leaf"
    elements = xmldsig.by_id([(n, res[n]) for n in SIGNED])
    assert sorted(elements) == ["id1", "id2", "id3", "id4"]
    assert xmldsig.verify(header["Signature"], elements, path[0].public_key) is None
    refs = header["Signature"]["SignedInfo"]["Reference"]
    assert len(refs) == 4
    for ref in refs:
        name, element = elements[ref["URI"][1:]]
        assert ref["DigestValue"] == xmldsig.digest(name, element)
    contract = res["ContractSignatureCertChain"]
    ders = [contract["Certificate"]] + contract["SubCertificates"]["Certificate"]
    emaid = res["eMAID"]["CONTENT"]
    chain.validate(ders[0], ders[1:], [pncfix.der("mo_root")], pncfix.NOW_S, "contract", p256.verify, emaid=emaid)
    z = p256.ecdh(pncfix.key(static_role), res["DHpublickey"]["CONTENT"])
    d = keytransport.decrypt_contract_key(z, res["ContractSignatureEncryptedPrivateKey"]["CONTENT"])
    keytransport.check_key_pair(d, x509.parse(ders[0]).public_key, p256.public_key)
    return ders, d


def _code(result):
    body, signature = result
    assert signature is None  # refusals are never signed
    return body["ResponseCode"]


# -- installation --------------------------------------------------------------------------------------


def test_installation_as_the_ev_checks_it():
    contracts = Contracts()
    service = _service(contracts)
    req = _install_req()
    body, signature = service.installation(req, _sign("CertificateInstallationReq", req, "oem_prov_leaf"),
                                           pncfix.NOW_S)
    assert body["ResponseCode"] == "OK"
    assert sorted(body) == ["ContractSignatureCertChain", "ContractSignatureEncryptedPrivateKey", "DHpublickey",
                            "ResponseCode", "SAProvisioningCertificateChain", "eMAID"]
    assert contracts.calls == [(None, pncfix.NOW_S)]
    header, res = _round_trip("CertificateInstallationRes", body, signature)
    ders, d = _ev_accepts(header, res, "oem_prov_leaf")
    assert ders == pncfix.chain("contract_new")
    assert d == pncfix.key("contract_new")
    assert res["eMAID"] == {"Id": "id4", "CONTENT": pncfix.EMAID}
    assert len(res["ContractSignatureEncryptedPrivateKey"]["CONTENT"]) == 48
    assert len(res["DHpublickey"]["CONTENT"]) == 65
    # The contract key is not decryptable with another static key.
    z = p256.ecdh(pncfix.key("contract_leaf"), res["DHpublickey"]["CONTENT"])
    try:
        keytransport.check_key_pair(keytransport.decrypt_contract_key(
            z, res["ContractSignatureEncryptedPrivateKey"]["CONTENT"]), x509.parse(ders[0]).public_key,
            p256.public_key)
    except Exception as e:
        assert "private key" in str(e)
    else:
        assert False, "decrypted with the wrong static key"


def test_installation_without_oem_roots_skips_the_oem_chain():
    # Only the signature binds the request; no OEM anchors configured, so an unknown OEM is served.
    service = _service(oem=False)
    req = _install_req()
    body, signature = service.installation(req, _sign("CertificateInstallationReq", req, "oem_prov_leaf"),
                                           pncfix.NOW_S)
    assert body["ResponseCode"] == "OK"
    assert signature is not None


def test_installation_signature_refusals():
    service = _service()
    req = _install_req()
    assert _code(service.installation(req, None, pncfix.NOW_S)) == "FAILED_SignatureError"
    assert "not signed" in service.last_error
    other = _sign("CertificateInstallationReq", req, "contract_leaf")  # not the OEM provisioning key
    assert _code(service.installation(req, other, pncfix.NOW_S)) == "FAILED_SignatureError"
    good = _sign("CertificateInstallationReq", req, "oem_prov_leaf")
    tampered = _install_req(_root_ids("mo_root"))
    assert _code(service.installation(tampered, good, pncfix.NOW_S)) == "FAILED_SignatureError"
    assert "digest" in service.last_error
    no_id = _install_req()
    del no_id["Id"]
    assert _code(service.installation(no_id, good, pncfix.NOW_S)) == "FAILED_SignatureError"


def test_installation_root_and_chain_refusals():
    contracts = Contracts()
    service = _service(contracts)
    req = _install_req(_root_ids("mo_root"))  # the EV trusts no V2G root this station's CPS chain uses
    sig = _sign("CertificateInstallationReq", req, "oem_prov_leaf")
    assert _code(service.installation(req, sig, pncfix.NOW_S)) == "FAILED_NoCertificateAvailable"
    req = _install_req()
    sig = _sign("CertificateInstallationReq", req, "oem_prov_leaf")
    assert _code(_service(v2g=False).installation(req, sig, pncfix.NOW_S)) == "FAILED_NoCertificateAvailable"
    # An OEM chain that leads to no configured anchor.
    strict = cps.ProvisioningService(pncfix.chain("cps_leaf"), pncfix.key("cps_leaf"), contracts,
                                     v2g_roots=[pncfix.der("v2g_root")], oem_roots=[pncfix.der("mo_root")],
                                     rng=_rng())
    assert _code(strict.installation(req, sig, pncfix.NOW_S)) == "FAILED_CertChainError"
    assert "OEM provisioning chain" in strict.last_error
    # Past the OEM provisioning certificate's notAfter.
    late = x509.parse(pncfix.der("oem_prov_leaf")).not_after + 1
    assert _code(service.installation(req, sig, late)) == "FAILED_CertificateExpired"
    # A certificate that does not parse.
    bad = _install_req()
    bad["OEMProvisioningCert"] = b"\x30\x03\x02\x01\x00"
    assert _code(service.installation(bad, sig, pncfix.NOW_S)) == "FAILED_CertChainError"
    assert contracts.calls == []  # no contract was asked for on any refusal


def test_installation_contract_refusals():
    req = _install_req()
    sig = _sign("CertificateInstallationReq", req, "oem_prov_leaf")
    assert _code(_service(Contracts("none")).installation(req, sig, pncfix.NOW_S)) == \
        "FAILED_NoCertificateAvailable"
    assert _code(_service(Contracts("canceled")).installation(req, sig, pncfix.NOW_S)) == "FAILED_ContractCanceled"


def test_refusals_encode_as_iso2_messages():
    service = _service(retry_counter=3)
    req = _install_req()
    body, signature = service.installation(req, None, pncfix.NOW_S)
    header, res = _round_trip("CertificateInstallationRes", body, signature)
    assert "Signature" not in header
    assert res["ResponseCode"] == "FAILED_SignatureError"
    assert res["SAProvisioningCertificateChain"]["Certificate"] == pncfix.der("cps_leaf")
    body, signature = service.update(_update_req(), None, pncfix.NOW_S)
    header, res = _round_trip("CertificateUpdateRes", body, signature)
    assert res["ResponseCode"] == "FAILED_SignatureError"
    assert res["eMAID"]["CONTENT"] == pncfix.EMAID
    assert res["RetryCounter"] == 3


# -- update --------------------------------------------------------------------------------------------


def test_update_as_the_ev_checks_it():
    contracts = Contracts()
    service = _service(contracts, retry_counter=0)
    req = _update_req()
    body, signature = service.update(req, _sign("CertificateUpdateReq", req, "contract_leaf"), pncfix.NOW_S)
    assert body["ResponseCode"] == "OK"
    assert body["RetryCounter"] == 0
    assert contracts.calls == [(pncfix.EMAID, pncfix.NOW_S)]
    header, res = _round_trip("CertificateUpdateRes", body, signature)
    ders, d = _ev_accepts(header, res, "contract_leaf")  # encrypted for the OLD contract key
    assert ders[0] == pncfix.der("contract_new")
    assert d == pncfix.key("contract_new")


def test_update_without_retry_counter_or_mo_roots():
    service = _service()
    req = _update_req()
    body, signature = service.update(req, _sign("CertificateUpdateReq", req, "contract_leaf"), pncfix.NOW_S)
    assert body["ResponseCode"] == "OK"
    assert "RetryCounter" not in body
    assert signature["SignedInfo"]["Reference"][3]["URI"] == "#id4"
    # Without MO roots the current contract chain is not validated, only eMAID == CN.
    body, signature = _service(mo=False).update(req, _sign("CertificateUpdateReq", req, "contract_leaf"),
                                                pncfix.NOW_S)
    assert body["ResponseCode"] == "OK"


def test_update_refusals():
    service = _service()
    req = _update_req()
    # Signed with the OEM provisioning key instead of the current contract key.
    assert _code(service.update(req, _sign("CertificateUpdateReq", req, "oem_prov_leaf"), pncfix.NOW_S)) == \
        "FAILED_SignatureError"
    assert _code(service.update(req, None, pncfix.NOW_S)) == "FAILED_SignatureError"
    # An eMAID the contract certificate does not name (signed correctly).
    other = _update_req(emaid="DEXYZC123ABC56")
    assert _code(service.update(other, _sign("CertificateUpdateReq", other, "contract_leaf"), pncfix.NOW_S)) == \
        "FAILED_CertChainError"
    no_roots = cps.ProvisioningService(pncfix.chain("cps_leaf"), pncfix.key("cps_leaf"), Contracts(),
                                       v2g_roots=[pncfix.der("v2g_root")], rng=_rng())
    body, _ = no_roots.update(other, _sign("CertificateUpdateReq", other, "contract_leaf"), pncfix.NOW_S)
    assert body["ResponseCode"] == "FAILED_CertChainError"
    assert "does not name the eMAID" in no_roots.last_error
    # Not an eMAID at all (14 characters: the codec refuses fewer, the eMAID's minLength).
    short = _update_req(emaid="DE-1!!!!!!!!!!")
    assert _code(service.update(short, _sign("CertificateUpdateReq", short, "contract_leaf"), pncfix.NOW_S)) == \
        "FAILED_CertChainError"
    # The contract chain without its Sub-CAs does not reach the MO root.
    cut = _update_req()
    del cut["ContractSignatureCertChain"]["SubCertificates"]
    assert _code(service.update(cut, _sign("CertificateUpdateReq", cut, "contract_leaf"), pncfix.NOW_S)) == \
        "FAILED_CertChainError"
    # An expired contract cannot be updated.
    sig = _sign("CertificateUpdateReq", req, "contract_leaf")
    late = x509.parse(pncfix.der("contract_leaf")).not_after + 1
    assert _code(service.update(req, sig, late)) == "FAILED_CertificateExpired"
    # Canceled by the MO; unknown V2G root.
    assert _code(_service(Contracts("canceled")).update(req, sig, pncfix.NOW_S)) == "FAILED_ContractCanceled"
    unknown = _update_req(_root_ids("oem_root"))
    assert _code(service.update(unknown, _sign("CertificateUpdateReq", unknown, "contract_leaf"),
                                pncfix.NOW_S)) == "FAILED_NoCertificateAvailable"


# -- the station's Plug&Charge checks (station.contracts), also under MicroPython -----------------------------


def test_station_pnc_checks():
    from evpilot_sim.station import contracts as pnc

    station = pnc.StationPnc(cps=_service(), mo_roots=[pncfix.der("mo_root")], mo_sub_ca2=pncfix.der("mo_sub_ca2"),
                             mo_sub_ca2_key=pncfix.key("mo_sub_ca2"), clock=lambda: pncfix.NOW_S, rng=_rng(b"ch"))
    ders = pncfix.chain("contract_leaf")
    cert_chain = {"Certificate": ders[0], "SubCertificates": {"Certificate": ders[1:]}}
    code, why, leaf = station.check_contract(pncfix.EMAID, cert_chain)
    assert code is None and leaf.cn == pncfix.EMAID
    code, why, leaf = station.check_contract("DEXYZC123ABC56", cert_chain)
    assert code == "FAILED_CertChainError" and leaf is None and "eMAID" in why
    challenge = station.challenge()
    assert len(challenge) == 16 and challenge != station.challenge()
    pub = x509.parse(ders[0]).public_key
    req = {"Id": "a", "GenChallenge": challenge}
    sig = xmldsig.sign([("AuthorizationReq", req)], pncfix.key("contract_leaf"))
    assert station.check_authorization(req, sig, challenge, pub) == (None, None)
    assert station.check_authorization(req, sig, b"\x00" * 16, pub)[0] == "FAILED_ChallengeInvalid"
    assert station.check_authorization(req, None, challenge, pub)[0] == "FAILED_SignatureError"
    tariff, tariff_sig = station.sales_tariff()
    assert tariff["Id"] == pnc.TARIFF_ID
    assert xmldsig.verify(tariff_sig, xmldsig.by_id([("SalesTariff", tariff)]),
                          x509.parse(pncfix.der("mo_sub_ca2")).public_key) is None
    try:
        pnc.StationPnc(mo_sub_ca2=pncfix.der("mo_sub_ca2"), mo_sub_ca2_key=pncfix.key("mo_sub_ca1"))
    except Exception as e:
        assert "not the key" in str(e)
    else:
        assert False, "a key that does not match MO Sub-CA 2 was accepted"
