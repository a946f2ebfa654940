"""The laptop's side of provisioning over USB serial: frames, CBOR, the authority's signatures.

How this works
--------------
Client(port) opens the serial port with pyserial (exclusively, so a port another program holds is reported
as busy), and request(op, **args) sends one request frame (evpilot.provision.frame, the device's own
framing) holding the CBOR array [body] (PyPI cbor2, canonical encoding) and waits for the reply frame.
Bytes that are not a frame (the REPL's prompt, log lines) are skipped. signed(op, **args) first asks the
device for a fresh nonce, puts it into the body and adds the provisioning authority's ECDSA-SHA256 signature
over SIG_CONTEXT + body (raw r || s, as the device's p256 checks it).

The provisioning authority is a P-256 key kept in the laptop's PKI directory as
provisioning_authority.key (PKCS#8 PEM, 0600), made on first use by authority_key(DIR). The device binds its
public key at the first provisioning (`bind`, unsigned only while nothing is bound) and from then on refuses
every change not signed by it.

Every failure is an EvpilotError with one line: the port missing or busy, no answer (a device that is not
running evpilot), a damaged reply, or the device's own refusal ("device: ...").
"""

import os
import time
from pathlib import Path

import cbor2
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from evpilot.errors import PeerError, UsageError
from evpilot.provision import frame
from evpilot.provision.service import SIG_CONTEXT

AUTHORITY_FILE = "provisioning_authority.key"
BAUD = 115200
REPLY_TIMEOUT = 5.0  # seconds; oem-keygen on a slow board gets more
SLOW_TIMEOUT = 60.0


class DeviceError(PeerError):
    """The device refused a request; the message is its own."""


def authority_key(pki_dir, create=True):
    """The provisioning authority's private key from DIR/provisioning_authority.key, made when missing."""
    path = Path(pki_dir) / AUTHORITY_FILE
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError):
            raise UsageError("%s is not an unencrypted PEM private key" % path) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise UsageError("%s is not a P-256 key" % path)
        return key
    if not create:
        raise UsageError("%s: no provisioning authority key (run a provisioning with --pki to make one)" % path)
    if not Path(pki_dir).is_dir():
        raise UsageError("%s is not a directory" % pki_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def public_point(key):
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def sign_raw(key, message):
    r, s = utils.decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def open_serial(port, timeout=0.1):
    """pyserial's Serial on port, exclusive; one clear line when it is missing or busy."""
    import serial

    try:
        return serial.Serial(port, BAUD, timeout=timeout, exclusive=True)
    except serial.SerialException as e:
        text = str(e)
        if not os.path.exists(port):
            raise UsageError("%s: no such serial port (is the board plugged in?)" % port) from None
        if "lock" in text.lower() or "busy" in text.lower() or getattr(e, "errno", None) in (11, 16):
            raise UsageError("%s is busy: another program has it open (a serial monitor, mpremote?)"
                             % port) from None
        raise UsageError("%s: cannot open the serial port (%s)" % (port, text)) from None


class Client:
    def __init__(self, port, authority=None, timeout=REPLY_TIMEOUT, link=None):
        """port: a serial device path; authority: the authority's private key (cryptography) for changes;
        link: an open pyserial-like object instead of opening port (tests)."""
        self.port = port
        self.authority = authority
        self.timeout = timeout
        self.link = link if link is not None else open_serial(port)
        self._deframer = frame.Deframer()

    def close(self):
        self.link.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _exchange(self, payload, timeout):
        import serial

        try:
            return self._exchange_on(payload, timeout)
        except (serial.SerialException, OSError) as e:
            raise PeerError("%s: the connection was lost (the board reset or was unplugged?): %s"
                            % (self.port, getattr(e, "strerror", None) or e)) from None

    def _exchange_on(self, payload, timeout):
        self.link.reset_input_buffer()
        self.link.write(frame.encode(payload))
        self.link.flush()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.link.read(4096)
            if not data:
                continue
            now = int(time.monotonic() * 1000) & ((1 << 29) - 1)
            for kind, value in self._deframer.feed(data, now):
                if kind == frame.FRAME:
                    return value
        raise PeerError("%s: no answer within %g s: is the device running evpilot's provisioning service?"
                        % (self.port, timeout))

    def _send(self, message, timeout=None):
        raw = self._exchange(cbor2.dumps(message, canonical=True), timeout or self.timeout)
        try:
            reply = cbor2.loads(raw)
        except Exception:  # cbor2 raises several types for bad input
            raise PeerError("%s: the reply is not CBOR" % self.port) from None
        if not isinstance(reply, dict) or "ok" not in reply:
            # e.g. a bare REPL or a loopback that echoes our own request
            raise PeerError("%s: the device does not speak evpilot's provisioning protocol (is evpilot deployed"
                            " and running?)" % self.port)
        if reply["ok"] is not True:
            raise DeviceError("device: %s" % reply.get("error"))
        return reply

    def request(self, op, timeout=None, **args):
        args["op"] = op
        return self._send([cbor2.dumps(args, canonical=True)], timeout)

    def signed(self, op, timeout=None, **args):
        if self.authority is None:
            raise UsageError("%s changes the device: pass --pki DIR (the provisioning authority's key)" % op)
        args["op"] = op
        args["nonce"] = self.request("nonce")["nonce"]
        body = cbor2.dumps(args, canonical=True)
        return self._send([body, sign_raw(self.authority, SIG_CONTEXT + body)], timeout)

    def ensure_bound(self):
        """Bind the authority at the first provisioning; True when this call bound it."""
        if self.authority is None:
            raise UsageError("changes need the provisioning authority: pass --pki DIR")
        store = self.request("info").get("store") or {}
        if store.get("bound"):
            return False
        self.request("bind", authority=public_point(self.authority))
        return True


# --- what the commands do, on top of a Client -------------------------------------------------------------


def read_certificates(path):
    """DER certificates from a file (DER, or PEM with one or more) or a PKI directory (its V2G and MO
    roots)."""
    path = Path(path)
    if path.is_dir():
        return [(path / (role + ".der")).read_bytes() for role in ("v2g_root", "mo_root")
                if (path / (role + ".der")).exists()] or _none(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError("%s: cannot read (%s)" % (path, e.strerror)) from None
    if b"-----BEGIN" in data:
        try:
            certs = cx509.load_pem_x509_certificates(data)
        except ValueError:
            raise UsageError("%s: not a PEM certificate file" % path) from None
        return [c.public_bytes(serialization.Encoding.DER) for c in certs]
    return [data]


def _none(path):
    raise UsageError("%s holds no v2g_root.der or mo_root.der" % path)


class _PublicOnly:
    """Stands in for a key object where pki.issue only needs the public key (the private one is on the
    device)."""

    def __init__(self, public):
        self._public = public

    def public_key(self):
        return self._public


def issue_oem_certificate(pki_dir, csr_der):
    """The OEM provisioning leaf for a device's CSR, signed by the PKI's OEM Sub-CA 2 with the Annex F
    profile; returns the chain [leaf, Sub-CA 2, Sub-CA 1] as DER."""
    import datetime

    from evpilot_host import pki, pki_material

    pki_dir = Path(pki_dir)
    try:
        request = cx509.load_der_x509_csr(csr_der)
    except ValueError:
        raise PeerError("the device's CSR is not DER PKCS#10") from None
    if not request.is_signature_valid:
        raise PeerError("the device's CSR signature does not verify")
    cns = request.subject.get_attributes_for_oid(cx509.oid.NameOID.COMMON_NAME)
    if not cns:
        raise PeerError("the device's CSR has no CN (PCID)")
    sub2_key = serialization.load_pem_private_key((pki_dir / "oem_sub_ca2.key").read_bytes(), password=None)
    sub2 = pki.Issued("oem_sub_ca2", cx509.load_der_x509_certificate(pki_material._der(pki_dir, "oem_sub_ca2")),
                      sub2_key)
    profiles = pki.load_profiles()
    profile = profiles["roles"]["oem_prov_leaf"]
    organization = profiles.get("common", {}).get("organization", "evpilot test PKI")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    leaf = pki.issue("oem_prov_leaf", profile, cns[0].value, sub2, now - datetime.timedelta(minutes=5),
                     profile["validity_days"]["default"], organization, key=_PublicOnly(request.public_key()))
    return [leaf.der, pki_material._der(pki_dir, "oem_sub_ca2"), pki_material._der(pki_dir, "oem_sub_ca1")]


def provision_oem(client, pki_dir, pcid, progress=None):
    """oem-keygen on the device, the PKI's OEM Sub-CA 2 signs the CSR, oem-install; returns the PCID."""
    say = progress or (lambda line: None)
    say("generating the OEM provisioning key on the device ...")
    reply = client.signed("oem-keygen", timeout=SLOW_TIMEOUT, pcid=pcid, o="evpilot test PKI")
    say("signing the device's CSR with %s/oem_sub_ca2 ..." % pki_dir)
    chain = issue_oem_certificate(pki_dir, reply["csr"])
    say("installing the OEM provisioning chain on the device ...")
    return client.signed("oem-install", timeout=SLOW_TIMEOUT, chain=chain)["pcid"]


def contract_material(chain_path, key_path):
    """(chain as DER list, 32-byte scalar) from a PEM chain file (leaf first) and a PKCS#8 PEM key."""
    chain = read_certificates(chain_path)
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        raise UsageError("%s: not a readable unencrypted PEM private key" % key_path) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise UsageError("%s is not a P-256 key" % key_path)
    return chain, key.private_numbers().private_value.to_bytes(32, "big")


def check_reachable(client):
    """info, or one clear line when what answers is not evpilot."""
    info = client.request("info")
    if info.get("firmware") != "evpilot":
        raise PeerError("%s: the device answered but is not running evpilot" % client.port)
    return info
