# The device side of provisioning: sans-I/O, frames in, reply frames out.
#
# How this works
# --------------
# receive(data, now) feeds bytes from the serial stream to a frame.Deframer and returns the bytes to write
# back: one reply frame per request frame (or per framing error). A request payload is the CBOR array
# [body] or [body, signature], where body is the CBOR bytes of a map {"op": name, ...arguments} and
# signature is ECDSA-SHA256 (raw r || s) by the provisioning authority over SIG_CONTEXT + body. Signing the
# body's bytes as received means both sides never have to re-encode the same map identically. A reply is a
# CBOR map {"ok": true, "op": name, ...} or {"ok": false, "op": name, "error": "one clear line"}.
#
# Security (DESIGN principle 6). The first `bind` stores the provisioning authority's P-256 public key in the
# store's metadata (a trust anchor, written through the power-safe store) and needs no signature; until then
# every other changing command is refused. Once bound, every command in _CHANGES must carry the authority's
# signature over a body holding {"nonce": N}, where N is the device nonce the last `nonce` command handed
# out. A nonce serves one signed command, whether it passes or fails, and is forgotten at the next `nonce`,
# so a recorded command can never be replayed. Read-only commands (info, nonce, list, log) need no
# signature. Private keys are born here (oem-keygen, with p256.generate over the `rng` given) or arrive here
# (contract-add, for bench tests) and are never put in a reply or a log line.
#
# The OEM provisioning key pair made by oem-keygen waits in RAM for its certificate chain (oem-install),
# because the store keeps an OEM key only with its chain; a reset in between means running oem-keygen again.
#
# Commands (arguments -> reply fields):
#   info                                  version, board, store {roots, oem, contracts, bound}, heap_free, ...
#   nonce                                 nonce (16 bytes)
#   list                                  roots [{name, subject, size}], oem {pcid, chain [{subject, issuer,
#                                         not_after}]} or null, contracts [{name, emaid, not_before, not_after}]
#   log                                   lines [str]
#   bind {authority: 65 bytes}            -
#   roots-add {cert: DER}                 name
#   roots-remove {name}                   -
#   oem-keygen {pcid, o?}                 csr (DER PKCS#10), public_key (65 bytes)
#   oem-install {chain: [DER, ...]}       pcid (the leaf must certify the key from oem-keygen)
#   contract-add {chain, key}             name (bench tests: the key travels in, never out)
#   contract-rm {name}                    -
#   reset                                 removed {roots, contracts, oem} (factory reset: trust anchors,
#                                         contracts, the OEM chain and key, metadata, the authority
#                                         binding, a pending OEM key)

from evpilot import __version__
from evpilot.compat import const
from evpilot.errors import EvpilotError, PeerError, UsageError
from evpilot.pnc import p256, x509
from evpilot.provision import cbor, csr, frame
from evpilot.store import certs

SIG_CONTEXT = b"evpilot provisioning v1\x00"
AUTHORITY_META = "prov_authority"
NONCE_LEN = const(16)
LOG_LINES = const(32)
MAX_LOG_LINE = const(160)

_READ = ("info", "nonce", "list", "log")
_CHANGES = ("bind", "roots-add", "roots-remove", "oem-keygen", "oem-install", "contract-add",
            "contract-rm", "reset")


class RingLog:
    """The last LOG_LINES lines (a stand-in where the application gives no log of its own)."""

    def __init__(self, size=LOG_LINES):
        self._lines = []
        self._size = size

    def add(self, line):
        self._lines.append(line[:MAX_LOG_LINE])
        if len(self._lines) > self._size:
            self._lines.pop(0)

    def lines(self):
        return list(self._lines)


def _heap_free():
    try:
        import gc

        return gc.mem_free()
    except (ImportError, AttributeError):  # CPython has no mem_free
        return None


def _arg(body, key, kind, what=None):
    v = body.get(key)
    if not isinstance(v, kind):
        raise PeerError("argument %r missing or of the wrong type" % (what or key))
    return v


def _chain_arg(body):
    chain = _arg(body, "chain", list)
    if not chain or not all(isinstance(c, bytes) for c in chain):
        raise PeerError("argument 'chain' must be a list of DER certificates")
    return chain


class Service:
    def __init__(self, store, info=None, rng=None, log=None):
        """store: an evpilot.store.keystore.Store; info: a dict merged into `info` replies (board, ...);
        rng(n): n random bytes (os.urandom on a board); log: an object with add(line) and lines()."""
        self.store = store
        self.info = info or {}
        self._rng = rng
        self.log = log if log is not None else RingLog()
        self._deframer = frame.Deframer()
        self._nonce = None
        self._pending = None  # (d, public key) from oem-keygen, until oem-install

    # --- the byte stream ------------------------------------------------------------------------------------

    def receive(self, data, now=0):
        """Reply bytes (zero or more frames) for bytes received from the stream at now (ms)."""
        out = []
        for kind, value in self._deframer.feed(data, now):
            if kind == frame.FRAME:
                out.append(frame.encode(self.handle(value)))
            else:
                out.append(frame.encode(cbor.encode({"ok": False, "op": None, "error": value})))
        return b"".join(out)

    def next_deadline(self):
        return self._deframer.next_deadline()

    def on_timer(self, now):
        return b"".join(frame.encode(cbor.encode({"ok": False, "op": None, "error": v}))
                        for _, v in self._deframer.on_timer(now))

    # --- one request ------------------------------------------------------------------------------------------

    def handle(self, payload):
        """The reply payload (CBOR bytes) for one request payload."""
        op = None
        try:
            msg = cbor.decode(payload)
            if not isinstance(msg, list) or not 1 <= len(msg) <= 2 or not isinstance(msg[0], bytes):
                raise PeerError("request must be [body] or [body, signature]")
            body = cbor.decode(msg[0])
            if not isinstance(body, dict) or not isinstance(body.get("op"), str):
                raise PeerError("request body must be a map with a text 'op'")
            op = body["op"]
            if op in _READ:
                reply = getattr(self, "_op_" + op)(body)
            elif op in _CHANGES:
                self._authorise(op, msg, body)
                reply = getattr(self, "_op_" + op.replace("-", "_"))(body)
                self.log.add("provision: %s done" % op)
            else:
                raise PeerError("unknown command %r" % op)
            reply["ok"] = True
            reply["op"] = op
        except EvpilotError as e:
            # UsageError from the store means the request named something that is not there
            reply = {"ok": False, "op": op, "error": str(e)}
            if op in _CHANGES:
                self.log.add(("provision: %s refused: %s" % (op, e)))
        except MemoryError:
            reply = {"ok": False, "op": op, "error": "out of memory"}
        return cbor.encode(reply)

    def _authority(self):
        if self.store is None:
            raise PeerError("no store")
        value = self.store.meta().get(AUTHORITY_META)
        if not isinstance(value, str):
            return None
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise PeerError("the stored provisioning authority is damaged")

    def _authorise(self, op, msg, body):
        authority = self._authority()
        if authority is None:
            if op == "bind":
                return
            raise PeerError("no provisioning authority bound yet: bind one first")
        nonce, self._nonce = self._nonce, None  # one signed command per nonce, passed or failed
        if len(msg) != 2 or not isinstance(msg[1], bytes):
            raise PeerError("%s changes the device: it must be signed by the provisioning authority" % op)
        if nonce is None or body.get("nonce") != nonce:
            raise PeerError("%s: stale or missing device nonce (ask for a fresh one)" % op)
        if not p256.verify(authority, SIG_CONTEXT + msg[0], msg[1]):
            raise PeerError("%s: signature is not the provisioning authority's" % op)

    # --- read-only ----------------------------------------------------------------------------------------------

    def _store_status(self):
        s = self.store
        if s is None:
            return {"state": "missing"}
        try:
            oem = s.oem()
            return {"state": "ok", "roots": len(s.roots()), "contracts": len(s.contracts()),
                    "oem": None if oem is None else oem.pcid, "bound": self._authority() is not None,
                    "pending_oem_key": self._pending is not None}
        except EvpilotError as e:
            return {"state": "damaged", "error": str(e)}

    def _op_info(self, body):
        reply = {"version": __version__, "heap_free": _heap_free()}
        for k in self.info:
            reply[k] = self.info[k]
        if reply.get("firmware") not in (None, "evpilot"):  # the application passes its version as firmware
            reply["version"] = reply["firmware"]
        reply["firmware"] = "evpilot"  # what tells the laptop that evpilot answers
        reply["store"] = self._store_status()
        return reply

    def _op_nonce(self, body):
        if self._rng is None:
            raise UsageError("the service has no random source")
        self._nonce = bytes(self._rng(NONCE_LEN))
        return {"nonce": self._nonce}

    def _op_list(self, body):
        s = self.store
        if s is None:
            raise PeerError("no store")
        oem = s.oem()
        oem_out = None
        if oem is not None:
            chain = []
            for der in oem.chain:
                c = x509.parse(der)
                chain.append({"subject": c.subject_string, "issuer": c.issuer_string, "not_after": c.not_after})
            oem_out = {"pcid": oem.pcid, "chain": chain}
        return {"roots": [{"name": r.name, "subject": r.subject, "size": r.size} for r in s.roots()],
                "oem": oem_out,
                "contracts": [{"name": c.name, "emaid": c.emaid, "not_before": c.not_before,
                               "not_after": c.not_after} for c in s.contracts()]}

    def _op_log(self, body):
        return {"lines": self.log.lines()}

    # --- changes (signed once bound) --------------------------------------------------------------------------

    def _op_bind(self, body):
        pub = _arg(body, "authority", bytes)
        p256.check_public_key(pub)
        self.store.set_meta(AUTHORITY_META, pub.hex())
        return {}

    def _op_roots_add(self, body):
        return {"name": certs.add_root_certificate(self.store, _arg(body, "cert", bytes))}

    def _op_roots_remove(self, body):
        self.store.remove_root(_arg(body, "name", str))
        return {}

    def _op_oem_keygen(self, body):
        if self._rng is None:
            raise UsageError("the service has no random source")
        pcid = _arg(body, "pcid", str)
        o = body.get("o")
        if o is not None and not isinstance(o, str):
            raise PeerError("argument 'o' must be text")
        d, pub = p256.generate(self._rng)
        request = csr.build(d, pub, pcid, "OEM", o)
        self._pending = (d, pub)
        return {"csr": request, "public_key": pub}

    def _op_oem_install(self, body):
        chain = _chain_arg(body)
        if self._pending is None:
            raise PeerError("no OEM key waiting for its certificate: run oem-keygen first")
        d, pub = self._pending
        leaf = x509.parse(chain[0])
        if leaf.public_key != pub:
            raise PeerError("the OEM certificate " + leaf.label() + " is not for the key this device generated")
        pcid = certs.set_oem_chain(self.store, chain, d)
        self._pending = None
        return {"pcid": pcid}

    def _op_contract_add(self, body):
        chain = _chain_arg(body)
        key = _arg(body, "key", bytes)
        return {"name": certs.install_contract_chain(self.store, chain, key)}

    def _op_contract_rm(self, body):
        self.store.remove_contract(_arg(body, "name", str))
        return {}

    def _op_reset(self, body):
        s = self.store
        roots = s.roots()
        contracts = s.contracts()
        for c in contracts:
            s.remove_contract(c.name)
        for r in roots:
            s.remove_root(r.name)
        for k in s.meta():
            if k != AUTHORITY_META:
                s.set_meta(k, None)
        oem = s.remove_oem()
        s.set_meta(AUTHORITY_META, None)  # last: until here a retry can still be signed
        self._pending = None
        return {"removed": {"roots": len(roots), "contracts": len(contracts), "oem": 1 if oem else 0}}
