"""The negative matrix of the EV's CertificateInstallationRes / CertificateUpdateRes checks (CPython only).

Each case crafts a response the EV must refuse -- certificates minted with evpilot_host.pki (cryptography)
with one thing wrong, or a correct response tampered with after signing -- and checks that
ContractManager.accept raises PncError with the expected stage and reason AND that the store (seeded with
seed_store from a PKI written by `evpilot pki init`'s writer, holding a contract already) is byte for byte
what it was: the contract, its chain and its key. The good cases at the end show the same set-up accepts a
correct installation and update.
"""

import copy
import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from evpilot import exi
from evpilot.ev.contracts import SIGNED_ELEMENTS, ContractManager, PncError
from evpilot.pnc import p256, xmldsig
from evpilot.store.keystore import Store
from evpilot_host import pki
from evpilot_host.pki_material import seed_store
from evpilot_sim.station import cps

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
NOW_S = int(NOW.timestamp())
DAY = datetime.timedelta(days=1)
EMAID = pki.DEFAULT_EMAID
PROFILES = pki.load_profiles()
ORG = PROFILES.get("common", {}).get("organization", "evpilot test PKI")
SID = b"\x01\x02\x03\x04\x05\x06\x07\x08"


@pytest.fixture(scope="module")
def ours():
    return pki.build_pki(now=NOW - DAY)


def _foreign_profiles():
    profiles = copy.deepcopy(PROFILES)
    profiles.setdefault("common", {})["organization"] = "some other PKI"
    return profiles


@pytest.fixture(scope="module")
def foreign():
    """Another PKI with other names: its roots are not in the EV's store."""
    return pki.build_pki(profiles=_foreign_profiles(), now=NOW - DAY)


@pytest.fixture(scope="module")
def impostor():
    """Another PKI with the same names as ours: its roots' names match, their keys do not."""
    return pki.build_pki(now=NOW - DAY)


@pytest.fixture(scope="module")
def pki_dir(ours, tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki") / "pki"
    pki.write_pki(directory, ours)
    return directory


def scalar(item):
    return item.key.private_numbers().private_value.to_bytes(32, "big")


def variant(issued, role, parent=None, cn=None, dc=None, days=None, not_before=None, ca=None,
            path_length="keep", key_usage=None, organization=ORG, signing_key=None):
    """A certificate of `role` like the profile's, with the given fields changed."""
    profile = copy.deepcopy(PROFILES["roles"][role])
    if dc is not None:
        profile["dc"] = dc
    if ca is not None:
        profile["ca"] = ca
    if path_length != "keep":
        profile["path_length"] = path_length
    if key_usage is not None:
        profile["key_usage"] = key_usage
    if parent is None and profile.get("issuer"):
        parent = issued[profile["issuer"]]
    if signing_key is not None:
        parent = pki.Issued(parent.role, parent.certificate, signing_key)
    if cn is None:
        identities = {"emaid": EMAID, "pcid": pki.DEFAULT_PCID, "secc_id": pki.DEFAULT_SECC_ID}
        cn = identities.get(profile["cn"], profile["cn"])
    return pki.issue(role, profile, cn, parent, not_before or NOW - DAY, days or profile["validity_days"]["default"],
                     organization)


def ders(*items):
    return [i.der for i in items]


def snapshot(store):
    out = []
    for info in store.contracts():
        c = store.contract_named(info.name)
        out.append((info.name, c.emaid, c.not_before, c.not_after, c.chain, store.private_key(info.name)))
    return out


def rng():
    counter = [0]

    def draw(n):
        import hashlib

        out = b""
        while len(out) < n:
            counter[0] += 1
            out += hashlib.sha256(b"matrix" + str(counter[0]).encode()).digest()
        return out[:n]

    return draw


class Case:
    """What the CPS sends: its chain and key, the contract it hands out, and a post-signing tamper step."""

    def __init__(self, issued, cps_chain=None, cps_key=None, contract_chain=None, contract_key=None,
                 emaid=EMAID, tamper=None, wire=True):
        self.cps_chain = cps_chain or ders(issued["cps_leaf"], issued["cps_sub_ca2"], issued["cps_sub_ca1"])
        self.cps_key = cps_key or scalar(issued["cps_leaf"])
        self.contract_chain = contract_chain or ders(issued["contract_leaf"], issued["mo_sub_ca2"],
                                                     issued["mo_sub_ca1"])
        self.contract_key = contract_key or scalar(issued["contract_leaf"])
        self.emaid = emaid
        self.tamper = tamper
        self.wire = wire
        self.v2g_root = issued["v2g_root"].der

    def service(self):
        def issue(emaid, now_s):
            return self.contract_chain, self.contract_key, self.emaid

        return cps.ProvisioningService(self.cps_chain, self.cps_key, issue, v2g_roots=[self.v2g_root], rng=rng())


def through_exi(name, body, signature):
    header = {"SessionID": SID}
    if signature is not None:
        header["Signature"] = signature
    msg = exi.decode("iso2", exi.encode("iso2", {"V2G_Message": {"Header": header, "Body": {name: body}}}))
    return msg["V2G_Message"]["Body"][name], msg["V2G_Message"]["Header"].get("Signature")


def run_case(case, store, update=False):
    """The EV asks, the crafted CPS answers, the EV checks. Returns the PncError (or None when accepted)."""
    manager = ContractManager(store, now_s=NOW_S, update_requested=update)
    name, req, req_sig = manager.update_request() if update else manager.installation_request()
    service = case.service()
    res, sig = (service.update if update else service.installation)(req, req_sig, NOW_S)
    assert res["ResponseCode"] == "OK", service.last_error
    if case.tamper is not None:
        sig = case.tamper(res, sig)
    res_name = "CertificateUpdateRes" if update else "CertificateInstallationRes"
    if case.wire:
        res, sig = through_exi(res_name, res, sig)
    try:
        manager.accept(res_name, res, sig)
    except PncError as e:
        return e
    return None


# ---- tamper steps (applied after the CPS signed) -----------------------------------------------------------


def resign(key):
    def step(res, sig):
        return xmldsig.sign([(n, res[n]) for n in SIGNED_ELEMENTS], key)

    return step


def flip_dh(res, sig):
    value = res["DHpublickey"]["CONTENT"]
    res["DHpublickey"]["CONTENT"] = value[:40] + bytes([value[40] ^ 1]) + value[41:]
    return sig


def der_signature(res, sig):
    sig["SignatureValue"]["CONTENT"] = p256.raw_to_der(sig["SignatureValue"]["CONTENT"])
    return sig


def without_emaid_reference(key):
    def step(res, sig):
        return xmldsig.sign([(n, res[n]) for n in SIGNED_ELEMENTS[:3]], key)

    return step


def unsigned(res, sig):
    return None


def bad_dh_point(key):
    def step(res, sig):
        res["DHpublickey"]["CONTENT"] = b"\x04" + bytes(range(64))  # not on the curve
        return resign(key)(res, sig)

    return step


def five_references(res, sig):
    sig["SignedInfo"]["Reference"].append(dict(sig["SignedInfo"]["Reference"][0]))
    return sig


# ---- the matrix -------------------------------------------------------------------------------------------


def _cases(o, f, imp):
    """(id, Case, expected stage, expected reason) for our PKI o, a foreign PKI f and an impostor PKI imp
    (same names as ours, other keys)."""
    cps_sub2, cps_sub1 = o["cps_sub_ca2"], o["cps_sub_ca1"]
    mo_sub2, mo_sub1 = o["mo_sub_ca2"], o["mo_sub_ca1"]
    cps_key = scalar(o["cps_leaf"])
    out = []

    def cps_case(name, leaf, stage, reason, subs=None):
        chain = [leaf.der] + ([c.der for c in subs] if subs is not None else [cps_sub2.der, cps_sub1.der])
        out.append((name, Case(o, cps_chain=chain, cps_key=scalar(leaf)), stage, reason))

    def contract_case(name, leaf, stage, reason, subs=None, emaid=EMAID):
        chain = [leaf.der] + ([c.der for c in subs] if subs is not None else [mo_sub2.der, mo_sub1.der])
        out.append((name, Case(o, contract_chain=chain, contract_key=scalar(leaf), emaid=emaid), stage, reason))

    # The CPS chain (SAProvisioningCertificateChain).
    cps_case("cps_expired", variant(o, "cps_leaf", not_before=NOW - 10 * DAY, days=5), "cps_chain", "expired")
    cps_case("cps_not_yet_valid", variant(o, "cps_leaf", not_before=NOW + 2 * DAY), "cps_chain", "not_yet_valid")
    cps_case("cps_wrong_dc", variant(o, "cps_leaf", dc="CPO"), "cps_chain", "wrong_dc")
    cps_case("cps_leaf_ca_true", variant(o, "cps_leaf", ca=True, path_length=None,
                                         key_usage=["digitalSignature", "keyCertSign"]), "cps_chain", "leaf_is_ca")
    cps_case("cps_wrong_key_usage", variant(o, "cps_leaf", key_usage=["keyAgreement"]), "cps_chain", "key_usage")
    cps_case("cps_bad_signature", variant(o, "cps_leaf", signing_key=ec.generate_private_key(ec.SECP256R1())),
             "cps_chain", "bad_signature")
    renamed = variant(o, "cps_sub_ca2", cn="evpilot other CPS Sub-CA 2")  # not the leaf's issuer
    cps_case("cps_issuer_mismatch", o["cps_leaf"], "cps_chain", "issuer_mismatch", subs=[renamed, cps_sub1])
    cps_case("cps_too_many_subcas", o["cps_leaf"], "cps_chain", "too_many_subcas", subs=[cps_sub2, cps_sub1, cps_sub1])
    sub2_pathlen = variant(o, "cps_sub_ca2", path_length=1)
    cps_case("cps_subca2_pathlen", variant(o, "cps_leaf", parent=sub2_pathlen), "cps_chain", "pathlen",
             subs=[sub2_pathlen, cps_sub1])
    cps_case("cps_unknown_root", f["cps_leaf"], "cps_chain", "unknown_root", subs=[f["cps_sub_ca2"], f["cps_sub_ca1"]])
    cps_case("cps_impostor_root", imp["cps_leaf"], "cps_chain", "bad_signature",
             subs=[imp["cps_sub_ca2"], imp["cps_sub_ca1"]])
    big = variant(o, "cps_leaf", organization="evpilot oversized test " + "O" * 700)
    out.append(("cps_oversized", Case(o, cps_chain=[big.der, cps_sub2.der, cps_sub1.der], cps_key=scalar(big),
                                      wire=False), "cps_chain", "oversized"))

    # The new contract chain.
    contract_case("contract_expired", variant(o, "contract_leaf", not_before=NOW - 40 * DAY, days=30),
                  "contract_chain", "expired")
    contract_case("contract_not_yet_valid", variant(o, "contract_leaf", not_before=NOW + DAY), "contract_chain",
                  "not_yet_valid")
    contract_case("contract_wrong_dc", variant(o, "contract_leaf", dc="CPS"), "contract_chain", "wrong_dc")
    contract_case("contract_cn_not_emaid", variant(o, "contract_leaf", cn="DEABCC123ABC99"), "contract_chain",
                  "emaid_mismatch")
    contract_case("contract_leaf_ca_true", variant(o, "contract_leaf", ca=True, path_length=None),
                  "contract_chain", "leaf_is_ca")
    contract_case("contract_wrong_key_usage", variant(o, "contract_leaf", key_usage=["keyEncipherment"]),
                  "contract_chain", "key_usage")
    sub1_pathlen0 = variant(o, "mo_sub_ca1", path_length=0)
    sub2_under = variant(o, "mo_sub_ca2", parent=sub1_pathlen0)
    contract_case("contract_pathlen_violation", variant(o, "contract_leaf", parent=sub2_under), "contract_chain",
                  "pathlen", subs=[sub2_under, sub1_pathlen0])
    contract_case("contract_unknown_root", f["contract_leaf"], "contract_chain", "unknown_root",
                  subs=[f["mo_sub_ca2"], f["mo_sub_ca1"]])
    contract_case("contract_impostor_root", imp["contract_leaf"], "contract_chain", "bad_signature",
                  subs=[imp["mo_sub_ca2"], imp["mo_sub_ca1"]])
    contract_case("contract_bad_signature", variant(o, "contract_leaf",
                                                    signing_key=ec.generate_private_key(ec.SECP256R1())),
                  "contract_chain", "bad_signature")
    renamed = variant(o, "mo_sub_ca2", cn="evpilot other MO Sub-CA 2")
    contract_case("contract_issuer_mismatch", o["contract_leaf"], "contract_chain", "issuer_mismatch",
                  subs=[renamed, mo_sub1])
    contract_case("contract_too_many_subcas", o["contract_leaf"], "contract_chain", "too_many_subcas",
                  subs=[mo_sub2, mo_sub1, mo_sub1])

    # The key transport.
    other = variant(o, "contract_leaf")
    out.append(("contract_key_mismatch", Case(o, contract_key=scalar(other)), "key", "mismatch"))
    out.append(("dh_point_not_on_curve", Case(o, tamper=bad_dh_point(cps_key)), "key", "dh_public_key"))

    # The signature over the four elements.
    out.append(("tampered_digest", Case(o, tamper=flip_dh), "signature", "digest"))
    out.append(("wrong_signer_cps_sub_ca2", Case(o, tamper=resign(scalar(cps_sub2))), "signature", "signature"))
    out.append(("der_signature_value", Case(o, tamper=der_signature), "signature", "malformed"))
    out.append(("missing_reference", Case(o, tamper=without_emaid_reference(cps_key)), "signature",
                "missing_reference"))
    out.append(("unsigned", Case(o, tamper=unsigned), "signature", "missing"))
    out.append(("five_references", Case(o, tamper=five_references, wire=False), "signature", "too_many_references"))
    return out


_PKI = pki.build_pki(now=NOW - DAY)
_IDS = [c[0] for c in _cases(_PKI, _PKI, _PKI)]


@pytest.fixture(scope="module")
def matrix(ours, foreign, impostor):
    return dict((c[0], c[1:]) for c in _cases(ours, foreign, impostor))


def test_matrix_has_enough_cases():
    assert len(_IDS) >= 20 and len(set(_IDS)) == len(_IDS)


@pytest.mark.parametrize("update", [False, True], ids=["installation", "update"])
@pytest.mark.parametrize("case_id", _IDS)
def test_refused_with_its_reason_and_store_intact(case_id, update, matrix, pki_dir, tmp_path):
    case, stage, reason = matrix[case_id]
    store = Store(seed_store(tmp_path / "store", pki_dir, contract=True)["store"])
    before = snapshot(store)
    assert len(before) == 1
    e = run_case(case, store, update=update)
    assert e is not None, "accepted a bad response (%s)" % case_id
    assert (e.stage, e.reason) == (stage, reason), str(e)
    assert snapshot(store) == before
    assert snapshot(Store(str(tmp_path / "store"))) == before  # and on disk, reopened


def test_good_installation_and_update_are_accepted(ours, pki_dir, tmp_path):
    # The same set-up with nothing wrong: installation into an empty store, then an update replaces it.
    store = Store(seed_store(tmp_path / "store", pki_dir)["store"])
    new = variant(ours, "contract_leaf")
    case = Case(ours, contract_chain=ders(new, ours["mo_sub_ca2"], ours["mo_sub_ca1"]), contract_key=scalar(new))
    assert run_case(case, store) is None
    assert snapshot(store)[0][4][0] == new.der and snapshot(store)[0][5] == scalar(new)
    newer = variant(ours, "contract_leaf")
    case = Case(ours, contract_chain=ders(newer, ours["mo_sub_ca2"], ours["mo_sub_ca1"]), contract_key=scalar(newer))
    assert run_case(case, store, update=True) is None
    assert len(snapshot(store)) == 1 and snapshot(store)[0][4][0] == newer.der


def test_contract_without_a_stored_mo_root_needs_the_option(ours, tmp_path):
    # An EV that holds no MO root: by default a contract chain it cannot anchor is refused; with
    # require_contract_root=False it is checked up to MO Sub-CA 1 and the CPS signature vouches for the rest.
    from evpilot.store import certs

    store = Store(str(tmp_path / "store"))
    certs.add_root_certificate(store, ours["v2g_root"].der)
    certs.set_oem_chain(store, ders(ours["oem_prov_leaf"], ours["oem_sub_ca2"], ours["oem_sub_ca1"]),
                        scalar(ours["oem_prov_leaf"]))
    e = run_case(Case(ours), store)
    assert (e.stage, e.reason) == ("contract_chain", "unknown_root") and store.contracts() == []
    manager = ContractManager(store, now_s=NOW_S, require_contract_root=False)
    name, req, sig = manager.installation_request()
    res, res_sig = Case(ours).service().installation(req, sig, NOW_S)
    manager.accept("CertificateInstallationRes", res, res_sig)
    assert manager.installed and store.contract(now_s=NOW_S).emaid == EMAID
