# The provisioning service, sans-I/O, on both interpreters: every command through frames; the authority
# binding; unsigned, wrongly signed and replayed changes refused with the store intact; oversized, truncated
# and damaged frames and bad CBOR answered with one error each; the OEM key born on the device with a CSR
# signed by it, and its chain installed; no private key byte in any reply or log line.

import hashlib
import os

import pncfix
from evpilot.pnc import p256, x509
from evpilot.provision import cbor, csr, frame, service
from evpilot.store import keystore as st

_count = [0]


def _fresh_dir():
    try:
        import tempfile

        return tempfile.mkdtemp(prefix="evpilot-prov-")
    except ImportError:
        pass
    if "tmp" not in os.listdir("/"):
        os.mkdir("/tmp")
    _count[0] += 1
    path = "/tmp/evpilot-prov-%d" % _count[0]
    if path[5:] in os.listdir("/tmp"):
        for n in os.listdir(path):
            os.remove(path + "/" + n)
        os.rmdir(path)
    os.mkdir(path)
    return path


class _Rng:
    """Deterministic bytes (a SHA-256 counter), so the tests run the same on every interpreter."""

    def __init__(self, seed):
        self.state = hashlib.sha256(seed).digest()

    def __call__(self, n):
        out = b""
        while len(out) < n:
            self.state = hashlib.sha256(self.state).digest()
            out += self.state
        return out[:n]


AUTH_D, AUTH_PUB = p256.generate(_Rng(b"authority"))
OTHER_D, _OTHER_PUB = p256.generate(_Rng(b"someone else"))


class _Laptop:
    """The host's side of the protocol, in the test: frames, nonces, signatures."""

    def __init__(self, svc):
        self.svc = svc
        self.wire = []  # every reply payload, to search for key bytes

    def raw(self, data):
        out = self.svc.receive(data, 0)
        d = frame.Deframer()
        replies = [cbor.decode(p) for k, p in d.feed(out, 0) if k == frame.FRAME]
        self.wire.append(out)
        return replies

    def send(self, msg):
        replies = self.raw(frame.encode(cbor.encode(msg)))
        assert len(replies) == 1, replies
        return replies[0]

    def call(self, op, **args):
        args["op"] = op
        return self.send([cbor.encode(args)])

    def signed(self, op, by=AUTH_D, nonce=None, **args):
        if nonce is None:
            nonce = self.call("nonce")["nonce"]
        args["op"] = op
        args["nonce"] = nonce
        body = cbor.encode(args)
        return self.send([body, p256.sign(by, service.SIG_CONTEXT + body)])


def _device():
    store = st.Store(_fresh_dir())
    svc = service.Service(store, info={"board": "unix"}, rng=_Rng(b"device"))
    lap = _Laptop(svc)
    assert lap.call("bind", authority=AUTH_PUB)["ok"]
    return store, svc, lap


def _ok(reply):
    assert reply["ok"] is True, reply
    return reply


def _refused(reply, word):
    assert reply["ok"] is False, reply
    assert word in reply["error"], reply["error"]
    return reply


def _issue_leaf(pub, pcid, issuer_role="oem_sub_ca2"):
    """A minimal X.509 v3 certificate for pub with CN=pcid, signed by the fixture's OEM Sub-CA 2 (the laptop's
    job in real life; the test builds it with the device's own DER writer so it runs under MicroPython)."""
    issuer = x509.parse(pncfix.der(issuer_role))
    alg = csr.tlv(0x30, b"\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02")
    validity = csr.tlv(0x30, csr.tlv(0x17, b"250101000000Z") + csr.tlv(0x17, b"350101000000Z"))
    tbs = csr.tlv(0x30, csr.tlv(0xA0, b"\x02\x01\x02") + b"\x02\x01\x07" + alg + issuer.subject_der
                  + validity + csr.name(pcid, "OEM", "evpilot test PKI") + csr.spki(pub))
    sig = p256.raw_to_der(p256.sign(pncfix.key(issuer_role), tbs))
    return csr.tlv(0x30, tbs + alg + csr.tlv(0x03, b"\x00" + sig))


def _secrets(store, svc):
    out = [AUTH_D, OTHER_D]
    if svc._pending is not None:
        out.append(svc._pending[0])
    if store.oem() is not None:
        out.append(store.private_key(st.OEM))
    for c in store.contracts():
        out.append(store.private_key(c.name))
    return out


def _assert_no_key_bytes(lap, store, secrets):
    everything = b"".join(lap.wire) + "\n".join(lap.svc.log.lines()).encode()
    for d in secrets:
        assert d not in everything
        assert d.hex().encode() not in everything
        assert d[:16] not in everything  # not even half of one


def test_info_and_nonce_need_no_signature():
    store = st.Store(_fresh_dir())
    lap = _Laptop(service.Service(store, info={"board": "unix"}, rng=_Rng(b"d")))
    info = _ok(lap.call("info"))
    assert info["firmware"] == "evpilot" and info["board"] == "unix" and info["version"]
    assert info["store"] == {"state": "ok", "roots": 0, "contracts": 0, "oem": None, "bound": False,
                             "pending_oem_key": False}
    assert "heap_free" in info
    # the application hands its version as "firmware": the reply still says evpilot
    app = _Laptop(service.Service(store, info={"firmware": "9.9.9", "board": "b"}, rng=_Rng(b"d")))
    info = _ok(app.call("info"))
    assert info["firmware"] == "evpilot" and info["version"] == "9.9.9"
    n1 = _ok(lap.call("nonce"))["nonce"]
    n2 = _ok(lap.call("nonce"))["nonce"]
    assert len(n1) == 16 and n1 != n2
    assert _ok(lap.call("list")) ["roots"] == []
    assert _ok(lap.call("log"))["lines"] == []


def test_nothing_changes_before_an_authority_is_bound():
    store = st.Store(_fresh_dir())
    lap = _Laptop(service.Service(store, rng=_Rng(b"d")))
    _refused(lap.call("roots-add", cert=pncfix.der("v2g_root")), "bind")
    _refused(lap.call("bind", authority=b"\x04" + b"\x01" * 64), "")
    assert store.meta() == {} and store.roots() == []
    _ok(lap.call("bind", authority=AUTH_PUB))
    assert _ok(lap.call("info"))["store"]["bound"] is True


def test_roots_add_list_remove_signed():
    store, svc, lap = _device()
    name = _ok(lap.signed("roots-add", cert=pncfix.der("v2g_root")))["name"]
    _ok(lap.signed("roots-add", cert=pncfix.der("mo_root")))
    roots = _ok(lap.call("list"))["roots"]
    assert [r["name"] for r in roots] == sorted(r.name for r in store.roots()) and len(roots) == 2
    assert name in [r["name"] for r in roots] and "V2G" in [r for r in roots if r["name"] == name][0]["subject"]
    _ok(lap.signed("roots-remove", name=name))
    assert len(store.roots()) == 1
    _refused(lap.signed("roots-remove", name=name), "no V2G root")
    _refused(lap.signed("roots-add", cert=b"\x30\x03\x02\x01"), "")
    assert len(store.roots()) == 1


def test_unsigned_wrongly_signed_and_replayed_changes_are_refused():
    store, svc, lap = _device()
    cert = pncfix.der("v2g_root")
    _refused(lap.call("roots-add", cert=cert), "must be signed")
    _refused(lap.signed("roots-add", by=OTHER_D, cert=cert), "signature")
    _refused(lap.signed("roots-add", nonce=b"\x00" * 16, cert=cert), "nonce")
    # a signature over a different body
    nonce = lap.call("nonce")["nonce"]
    body = cbor.encode({"op": "roots-add", "nonce": nonce, "cert": cert})
    other = cbor.encode({"op": "roots-add", "nonce": nonce, "cert": pncfix.der("mo_root")})
    _refused(lap.send([body, p256.sign(AUTH_D, service.SIG_CONTEXT + other)]), "signature")
    # a good command, then the same bytes again: the nonce is spent
    nonce = lap.call("nonce")["nonce"]
    body = cbor.encode({"op": "roots-add", "nonce": nonce, "cert": cert})
    good = [body, p256.sign(AUTH_D, service.SIG_CONTEXT + body)]
    _ok(lap.send(good))
    _refused(lap.send(good), "nonce")
    lap.call("nonce")
    _refused(lap.send(good), "nonce")
    # the signature covers the context string: a bare-body signature is not accepted
    nonce = lap.call("nonce")["nonce"]
    body = cbor.encode({"op": "roots-remove", "nonce": nonce, "name": store.roots()[0].name})
    _refused(lap.send([body, p256.sign(AUTH_D, body)]), "signature")
    # rebinding to another authority needs the bound one's signature
    _refused(lap.call("bind", authority=_OTHER_PUB), "must be signed")
    assert len(store.roots()) == 1
    assert store.meta()[service.AUTHORITY_META] == AUTH_PUB.hex()
    lines = svc.log.lines()
    assert any("refused" in line for line in lines)


def test_oem_keygen_csr_and_install():
    store, svc, lap = _device()
    reply = _ok(lap.signed("oem-keygen", pcid=pncfix.PCID, o="evpilot test PKI"))
    pub = reply["public_key"]
    request = reply["csr"]
    assert len(pub) == 65 and pub[0] == 4
    assert pub in request and pncfix.PCID.encode() in request
    # the CSR is signed by the new key over its certificationRequestInfo (parsed with the DER reader)
    from evpilot.pnc import der

    top = der.Reader(request, "CSR").enter(der.SEQUENCE, "CSR")
    info = top.raw("info")[1]  # (tag, the whole TLV)
    top.skip("alg")
    sig, unused = top.bit_string("sig")
    assert unused == 0 and p256.verify(pub, info, p256.der_to_raw(sig))
    assert _ok(lap.call("info"))["store"]["pending_oem_key"] is True
    secrets = _secrets(store, svc)
    # a chain for another key is refused
    _refused(lap.signed("oem-install", chain=pncfix.chain("oem_prov_leaf")), "not for the key")
    leaf = _issue_leaf(pub, pncfix.PCID)
    chain = [leaf, pncfix.der("oem_sub_ca2"), pncfix.der("oem_sub_ca1")]
    _refused(lap.call("oem-install", chain=chain), "signed")
    assert store.oem() is None
    assert _ok(lap.signed("oem-install", chain=chain))["pcid"] == pncfix.PCID
    assert store.oem().pcid == pncfix.PCID and store.oem().chain[0] == leaf
    assert p256.public_key(store.private_key(st.OEM)) == pub
    listed = _ok(lap.call("list"))["oem"]
    assert listed["pcid"] == pncfix.PCID and len(listed["chain"]) == 3 and "OEM" in listed["chain"][0]["subject"]
    _refused(lap.signed("oem-install", chain=chain), "oem-keygen first")
    _assert_no_key_bytes(lap, store, secrets)


def test_contract_add_and_rm():
    store, svc, lap = _device()
    chain = pncfix.chain("contract_leaf")
    key = pncfix.key("contract_leaf")
    _refused(lap.signed("contract-add", chain=chain, key=pncfix.key("contract_new")), "does not belong")
    assert store.contracts() == []
    name = _ok(lap.signed("contract-add", chain=chain, key=key))["name"]
    contracts = _ok(lap.call("list"))["contracts"]
    assert contracts == [{"name": name, "emaid": st.normalize_emaid(pncfix.EMAID),
                          "not_before": store.contracts()[0].not_before,
                          "not_after": store.contracts()[0].not_after}]
    # the replies carry no key: only the request did
    assert key not in b"".join(lap.wire)
    _ok(lap.signed("contract-rm", name=name))
    assert store.contracts() == []
    _refused(lap.signed("contract-rm", name=name), "no contract")


def test_factory_reset():
    store, svc, lap = _device()
    _ok(lap.signed("roots-add", cert=pncfix.der("v2g_root")))
    _ok(lap.signed("contract-add", chain=pncfix.chain("contract_leaf"), key=pncfix.key("contract_leaf")))
    store.set_oem(pncfix.chain("oem_prov_leaf"), pncfix.key("oem_prov_leaf"), "PCID1")
    _refused(lap.call("reset"), "signed")
    reply = _ok(lap.signed("reset"))
    assert reply["removed"] == {"roots": 1, "contracts": 1, "oem": 1}
    assert store.roots() == [] and store.contracts() == [] and store.meta() == {} and store.oem() is None
    assert _ok(lap.call("info"))["store"]["bound"] is False
    _ok(lap.call("bind", authority=AUTH_PUB))  # a reset device can be bound again


def test_bad_frames_and_bad_cbor_each_get_one_error_reply():
    store, svc, lap = _device()
    _refused(lap.raw(frame.encode(b"\xff\x00"))[0], "CBOR")
    _refused(lap.raw(frame.encode(cbor.encode({"op": "info"})))[0], "[body]")
    _refused(lap.send([cbor.encode([1, 2])]), "map")
    _refused(lap.send([b"\x1a\x00"]), "truncated")
    _refused(lap.call("no-such-thing"), "unknown command")
    _refused(lap.call("roots-remove"), "")
    bad = bytearray(frame.encode(cbor.encode([cbor.encode({"op": "info"})])))
    bad[-1] ^= 1
    _refused(lap.raw(bytes(bad))[0], "CRC")
    _refused(lap.raw(frame.MARKER + b"\xff\xff" + b"x" * 30)[0], "limit")
    # a truncated frame: nothing until its time runs out, then one error, and the next frame is answered
    part = frame.encode(cbor.encode([cbor.encode({"op": "info"})]))[:-3]
    assert svc.receive(part, 100) == b""
    late = svc.on_timer(100 + frame.PARTIAL_TIMEOUT)
    errors = [cbor.decode(p) for k, p in frame.Deframer().feed(late, 0) if k == frame.FRAME]
    assert len(errors) == 1 and "truncated" in errors[0]["error"]
    assert _ok(lap.call("info"))["store"]["bound"] is True
    assert store.meta()[service.AUTHORITY_META] == AUTH_PUB.hex()


def test_log_read_has_the_changes_and_no_keys():
    store, svc, lap = _device()
    _ok(lap.signed("contract-add", chain=pncfix.chain("contract_leaf"), key=pncfix.key("contract_leaf")))
    _ok(lap.signed("oem-keygen", pcid=pncfix.PCID))
    lines = _ok(lap.call("log"))["lines"]
    assert "provision: bind done" in lines and "provision: contract-add done" in lines
    _assert_no_key_bytes(lap, store, _secrets(store, svc))


def test_mutated_requests_always_get_one_reply_and_change_nothing():
    store, svc, lap = _device()
    _ok(lap.signed("roots-add", cert=pncfix.der("v2g_root")))
    before = (len(store.roots()), store.meta())
    nonce = lap.call("nonce")["nonce"]
    body = cbor.encode({"op": "roots-remove", "nonce": nonce, "name": store.roots()[0].name})
    good = cbor.encode([body, p256.sign(AUTH_D, service.SIG_CONTEXT + body)])
    rng = _Rng(b"mutations")
    for i in range(120):
        r = rng(3)
        data = bytearray(good)
        pos = (r[0] << 8 | r[1]) % len(data)
        data[pos] ^= r[2] | 1
        if i % 4 == 0:
            data = data[:pos]
        replies = lap.raw(frame.encode(bytes(data)))
        assert len(replies) == 1 and replies[0]["ok"] in (True, False)
    # every mutation breaks the signature or the shape, and the first one spent the nonce anyway
    assert (len(store.roots()), store.meta()) == before
