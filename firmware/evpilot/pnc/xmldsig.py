# XMLDSig over EXI for ISO 15118-2 (Annex J; reference/plug-and-charge.md 3).
#
# How this works
# --------------
# A signature covers up to four message elements, each carrying an Id attribute. Every element is
# EXI-encoded alone as a fragment of the full ISO-2 message schema set (evpilot.exi "iso2" fragments, the
# MsgBody namespace, the relaxed grammar for eMAID) and hashed with SHA-256; each hash goes into one
# Reference (URI "#<Id>", one canonical-EXI Transform, the xmlenc SHA-256 DigestMethod). The SignedInfo is
# then EXI-encoded as a fragment of the xmldsig schema alone and signed with ECDSA-P256-SHA256; the
# SignatureValue is raw r || s (64 bytes), never DER.
#
#   sign([(name, element), ...], d) -> {"SignedInfo": ..., "SignatureValue": {"CONTENT": r||s}}
#   verify(signature, by_id(elements), pub65, required_ids=None)  -> None, or raises SignatureError
#
# EXI with these grammars is canonical (one encoding per document), so the verifier re-encodes what it
# received: each referenced element for its digest and the SignedInfo for the ECDSA check. verify checks,
# stopping at the first failure: the shapes, the number of References (1..4), the algorithm URIs, that
# every URI names a given element and every required Id is referenced, the digests, then r || s.
# SignatureError.reason says which check failed. Parts Annex J forbids (SignedInfo@Id, Reference@Id/@Type,
# SignatureValue@Id, KeyInfo, Object) are never produced; on receipt the attributes are covered by the
# signature like the rest of SignedInfo and KeyInfo/Object are ignored (the key always comes from the
# certificate chain), except HMACOutputLength, which changes the signature method and is refused.

import hashlib

from evpilot import exi
from evpilot.compat import const
from evpilot.errors import PeerError, UsageError
from evpilot.pnc import p256

C14N = "http://www.w3.org/TR/canonical-exi/"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"  # xmlenc, not xmldsig-more (a known interop trap)

MAX_REFERENCES = const(4)  # Annex J: at most 4 References per SignedInfo
_RAW_SIG_LEN = const(64)
_DIGEST_LEN = const(32)


class SignatureError(PeerError):
    """A signature we must not accept. `reason` is one of: algorithm, missing_reference, unknown_reference,
    too_many_references, digest, signature, malformed. `reference` names the Reference concerned (its URI)
    where there is one."""

    response_code = "FAILED_SignatureError"

    def __init__(self, reason, message, reference=None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.reference = reference


# -- helpers both sides use ----------------------------------------------------------------------------


def digest(name, element):
    """SHA-256 (32 bytes) of one element EXI-encoded alone as an ISO-2 fragment. The encoding is streamed
    into the hash: a certificate chain element (2 KB and more) is never held whole."""
    h = hashlib.sha256()
    exi.encode_fragment("iso2", {name: element}, h.update)
    return h.digest()


def signed_info_bytes(signed_info):
    """The SignedInfo (its content dict) EXI-encoded as an xmldsig fragment: the bytes ECDSA signs."""
    return exi.encode_fragment("xmldsig", {"SignedInfo": signed_info})


def reference(element_id, digest_value):
    """One Annex J Reference: URI "#<Id>", one canonical-EXI Transform, SHA-256."""
    return {
        "URI": "#" + element_id,
        "Transforms": {"Transform": [{"Algorithm": C14N}]},
        "DigestMethod": {"Algorithm": SHA256},
        "DigestValue": digest_value,
    }


def by_id(elements):
    """{Id: (name, element)} for a list of (name, element) taken from a received message. An element
    without an Id, or two elements with one Id, is the peer's error (two elements sharing an Id is how
    signature-wrapping attacks start)."""
    out = {}
    for item in elements:
        name, element = _pair(item)
        element_id = element.get("Id") if isinstance(element, dict) else None
        if not isinstance(element_id, str) or not element_id:
            raise SignatureError("malformed", name + " has no Id attribute to reference")
        if element_id in out:
            raise SignatureError("malformed", "Id '" + element_id + "' is used by more than one element")
        out[element_id] = (name, element)
    return out


def _pair(item):
    if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[0], str):
        raise UsageError("elements must be (name, element dict) pairs")
    return item[0], item[1]


# -- signing -------------------------------------------------------------------------------------------


def sign(elements, d):
    """A header Signature over the given (name, element) pairs, References in the order given. Each element
    must carry a distinct "Id"; d is the signer's private key (32 bytes or an int)."""
    if not isinstance(elements, (tuple, list)) or not elements:
        raise UsageError("sign needs at least one (name, element) pair")
    if len(elements) > MAX_REFERENCES:
        raise UsageError("at most %d elements can be signed together, got %d" % (MAX_REFERENCES, len(elements)))
    refs = []
    seen = []
    for item in elements:
        name, element = _pair(item)
        element_id = element.get("Id") if isinstance(element, dict) else None
        if not isinstance(element_id, str) or not element_id:
            raise UsageError(name + " needs an Id attribute to be signed")
        if element_id in seen:
            raise UsageError("Id '" + element_id + "' given twice")
        seen.append(element_id)
        refs.append(reference(element_id, digest(name, element)))
    signed_info = {
        "CanonicalizationMethod": {"Algorithm": C14N},
        "SignatureMethod": {"Algorithm": ECDSA_SHA256},
        "Reference": refs,
    }
    return {"SignedInfo": signed_info, "SignatureValue": {"CONTENT": p256.sign(d, signed_info_bytes(signed_info))}}


# -- verification --------------------------------------------------------------------------------------


def _dict(value, what):
    if not isinstance(value, dict):
        raise SignatureError("malformed", what + " is missing or not an element")
    return value


def _algorithm(method, expected, what, uri=None):
    """method is {"Algorithm": expected} and nothing else (no HMACOutputLength, no parameters)."""
    method = _dict(method, what)
    found = method.get("Algorithm")
    if found != expected:
        raise SignatureError("algorithm", "%s is %r, expected %s" % (what, found, expected), uri)
    if len(method) != 1:
        raise SignatureError("algorithm", what + " carries parameters Annex J does not allow", uri)


def _signature_value(signature):
    value = _dict(signature.get("SignatureValue"), "SignatureValue").get("CONTENT")
    if not isinstance(value, (bytes, bytearray)):
        raise SignatureError("malformed", "SignatureValue has no binary content")
    n = len(value)
    if n == _RAW_SIG_LEN:
        return bytes(value)
    if n >= 8 and value[0] == 0x30 and value[1] == n - 2:
        raise SignatureError("malformed", "SignatureValue is DER-encoded (%d bytes); Annex J wants raw r||s" % n)
    raise SignatureError("malformed", "SignatureValue is %d bytes, expected raw r||s (64)" % n)


def _check_reference(ref, elements_by_id):
    """The Id a well-formed Annex J Reference points at; raises SignatureError otherwise."""
    ref = _dict(ref, "Reference")
    uri = ref.get("URI")
    if not isinstance(uri, str):
        raise SignatureError("malformed", "Reference without a URI")
    transforms = ref.get("Transforms")
    if transforms is None:  # no canonicalization: the digest would be over some other serialisation
        raise SignatureError("algorithm", "Reference " + uri + " has no canonical-EXI Transform", uri)
    transforms = _dict(transforms, "Transforms of Reference " + uri).get("Transform")
    if not isinstance(transforms, list) or len(transforms) != 1:
        raise SignatureError("algorithm", "Reference " + uri + " must have exactly one canonical-EXI Transform", uri)
    _algorithm(transforms[0], C14N, "Transform of Reference " + uri, uri)
    _algorithm(ref.get("DigestMethod"), SHA256, "DigestMethod of Reference " + uri, uri)
    value = ref.get("DigestValue")
    if not isinstance(value, (bytes, bytearray)) or len(value) != _DIGEST_LEN:
        raise SignatureError("malformed", "DigestValue of Reference " + uri + " is not 32 bytes", uri)
    if len(uri) < 2 or uri[0] != "#" or uri[1:] not in elements_by_id:
        raise SignatureError("unknown_reference", "Reference " + repr(uri) + " names no signed element", uri)
    return uri[1:]


def verify(signature, elements_by_id, pub65, required_ids=None):
    """None when `signature` (a header Signature dict as decoded) is a valid Annex J signature by pub65
    (65-byte uncompressed P-256 key) over the elements; else SignatureError with its reason.

    elements_by_id is {Id: (name, element)} of the received elements (by_id() builds it). required_ids are
    the Ids that must be referenced; None means every Id in elements_by_id."""
    if not isinstance(elements_by_id, dict):
        raise UsageError("elements_by_id must be a dict {Id: (name, element)}")
    for element_id in elements_by_id:
        name, element = _pair(elements_by_id[element_id])
        if not isinstance(element, dict) or element.get("Id") != element_id:
            raise UsageError("elements_by_id[%r] is not an element with that Id" % element_id)
    if required_ids is None:
        required_ids = list(elements_by_id)
    signature = _dict(signature, "Signature")
    signed_info = _dict(signature.get("SignedInfo"), "SignedInfo")
    sig = _signature_value(signature)
    refs = signed_info.get("Reference")
    if not isinstance(refs, list) or not refs:
        raise SignatureError("malformed", "SignedInfo has no Reference")
    if len(refs) > MAX_REFERENCES:
        raise SignatureError("too_many_references",
                             "SignedInfo has %d References, at most %d allowed" % (len(refs), MAX_REFERENCES))
    _algorithm(signed_info.get("CanonicalizationMethod"), C14N, "CanonicalizationMethod")
    _algorithm(signed_info.get("SignatureMethod"), ECDSA_SHA256, "SignatureMethod")

    referenced = []
    for ref in refs:
        element_id = _check_reference(ref, elements_by_id)
        if element_id in referenced:
            raise SignatureError("malformed", "Reference #" + element_id + " appears twice", "#" + element_id)
        referenced.append(element_id)
    for element_id in required_ids:
        if element_id not in referenced:
            raise SignatureError("missing_reference", "no Reference covers the element with Id '%s'" % element_id,
                                 "#%s" % element_id)

    # Reference validation, then signature validation (XMLDSig core validation order; digests are cheap).
    for ref in refs:
        uri = ref["URI"]
        name, element = elements_by_id[uri[1:]]
        try:
            computed = digest(name, element)
        except PeerError as e:  # an element that does not re-encode cannot match any digest
            raise SignatureError("malformed", name + " (" + uri + ") does not encode: " + str(e), uri)
        if computed != bytes(ref["DigestValue"]):
            raise SignatureError("digest", "digest of " + name + " (" + uri + ") does not match its Reference", uri)
    try:
        data = signed_info_bytes(signed_info)
    except PeerError as e:
        raise SignatureError("malformed", "SignedInfo does not encode: " + str(e))
    if not p256.verify(pub65, data, sig):
        raise SignatureError("signature", "SignatureValue does not verify over SignedInfo with the given key")
