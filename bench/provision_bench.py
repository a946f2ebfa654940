# The provisioning service's cost per request (evpilot.provision), on whichever interpreter runs it:
#
#   python3 bench/provision_bench.py
#   MICROPYPATH=firmware:sim:.frozen micropython bench/provision_bench.py
#
# One JSON object: "us" is the best microseconds per request (bench/clock.py's best of 5 batches) for
#   info            an unsigned read, frame + CBOR in and out, store status
#   nonce           the device nonce (os.urandom where present, else a fixed stand-in)
#   signed_reject   a signed roots-add whose nonce is stale: the verify is skipped, the nonce check refuses
#   signed_verify   a signed command with a good nonce, through the ECDSA verify (the request's cert is then
#                   refused: nothing is written)
#   keygen_csr      oem-keygen: a P-256 key pair and its PKCS#10 CSR (one sign)
#   cbor_list_reply CBOR encode + decode of a list reply with 2 roots, an OEM chain and a contract
# and "frame_bytes" the frame sizes of those requests and replies; on MicroPython "alloc_bytes" what a
# signed_verify request allocates with the GC off.

import gc
import hashlib
import json
import sys

for _p in ("firmware", "bench"):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import clock  # noqa: E402
from evpilot.pnc import p256  # noqa: E402
from evpilot.provision import cbor, frame, service  # noqa: E402


class _Store:
    """The store's read side, in memory (the bench measures the protocol, not the filesystem)."""

    def __init__(self, authority):
        self._meta = {service.AUTHORITY_META: authority.hex()}

    def meta(self):
        return dict(self._meta)

    def roots(self):
        return []

    def contracts(self):
        return []

    def oem(self):
        return None


class _Rng:
    def __init__(self):
        self.state = b"bench"

    def __call__(self, n):
        out = b""
        while len(out) < n:
            self.state = hashlib.sha256(self.state).digest()
            out += self.state
        return out[:n]


def main():
    rng = _Rng()
    auth_d, auth_pub = p256.generate(rng)
    svc = service.Service(_Store(auth_pub), info={"board": "bench"}, rng=rng)
    info_req = frame.encode(cbor.encode([cbor.encode({"op": "info"})]))
    nonce_req = frame.encode(cbor.encode([cbor.encode({"op": "nonce"})]))
    body = cbor.encode({"op": "roots-add", "nonce": b"\x00" * 16, "cert": b"\x30\x00"})
    stale = frame.encode(cbor.encode([body, p256.sign(auth_d, service.SIG_CONTEXT + body)]))
    keygen = cbor.encode([cbor.encode({"op": "oem-keygen", "pcid": "EVPILOTTESTPCID001"})])

    fixed = b"\x01" * 16
    vbody = cbor.encode({"op": "roots-add", "nonce": fixed, "cert": b"\x30\x00"})
    signed = frame.encode(cbor.encode([vbody, p256.sign(auth_d, service.SIG_CONTEXT + vbody)]))

    def signed_verify():
        svc._nonce = fixed  # as if the laptop had just asked for it: measures the device's side only
        return svc.receive(signed)

    # keygen without a bound check: signature handling is measured by signed_verify
    def keygen_csr():
        return svc._op_oem_keygen(cbor.decode(cbor.decode(keygen)[0]))

    reply = {"ok": True, "op": "list", "roots": [{"name": "ab" * 20, "subject": "CN=evpilot V2G Root CA", "size": 600}] * 2,
             "oem": {"pcid": "EVPILOTTESTPCID001", "chain": [{"subject": "CN=x", "issuer": "CN=y", "not_after": 1}] * 3},
             "contracts": [{"name": "DEABCC123ABC56", "emaid": "DEABCC123ABC56", "not_before": 1, "not_after": 2}]}

    p256.verify(auth_pub, b"warm", p256.sign(auth_d, b"warm"))  # the first use sets up tables / viper code
    out = {
        "interpreter": sys.implementation.name,
        "us": {
            "info": clock.best_us(lambda: svc.receive(info_req)),
            "nonce": clock.best_us(lambda: svc.receive(nonce_req)),
            "signed_reject": clock.best_us(lambda: svc.receive(stale)),
            "signed_verify": clock.best_us(signed_verify),
            "keygen_csr": clock.best_us(keygen_csr),
            "cbor_list_reply": clock.best_us(lambda: cbor.decode(cbor.encode(reply))),
        },
        "frame_bytes": {"info_request": len(info_req), "info_reply": len(svc.receive(info_req)),
                        "signed_request": len(stale), "keygen_reply": len(cbor.encode(keygen_csr())) + 9},
    }
    if hasattr(gc, "mem_alloc"):
        gc.collect()
        gc.disable()
        before = gc.mem_alloc()
        signed_verify()
        out["alloc_bytes"] = gc.mem_alloc() - before
        gc.enable()
    print(json.dumps(out))


main()
