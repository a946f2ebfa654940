# Store helpers that read the certificates themselves, so what the store records always matches them.
#
# How this works
# --------------
# Store (store.py) keeps bytes and the descriptive fields its caller hands it: a root's SKI and subject, the
# PCID, a contract's eMAID and validity. Handing those over by hand invites a mismatch (a contract filed
# under one eMAID whose certificate names another, a validity typed in wrong). These helpers parse the
# certificate with pnc.x509 and derive every field from it:
#   add_root_certificate(store, der)            SKI and subject from the root
#   set_oem_chain(store, chain, key)            PCID from the provisioning leaf's CN; key checked against it
#   install_contract_chain(store, chain, key)   eMAID from the leaf's CN (hyphens dropped), notBefore and
#                                               notAfter from the leaf; key checked against it (d*G == Q),
#                                               unless the caller hands over the leaf it has checked
#   root_certificates(store, dcs=None)          the stored roots parsed, optionally only those whose
#                                               subject DC is one of dcs ("V2G", "MO", ...)
# A key that does not belong to its certificate, or a leaf without the identity its role needs, raises
# PeerError before anything is written. Key bytes appear in no message.

from evpilot.errors import PeerError
from evpilot.pnc import chain as chain_module
from evpilot.pnc import keytransport, p256, x509


def _leaf(chain, what):
    if not isinstance(chain, (list, tuple)) or not chain:
        raise PeerError(what + " chain must hold at least the leaf certificate")
    return x509.parse(chain[0])


def _check_pair(key, cert, what):
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise PeerError(what + " private key must be 32 bytes")
    try:
        keytransport.check_key_pair(bytes(key), cert.public_key, p256.public_key)
    except PeerError:
        raise PeerError(what + " private key does not belong to the certificate " + cert.label())


def add_root_certificate(store, der):
    """Add a root (V2G or MO) keyed by its subjectKeyIdentifier; returns the store's name for it."""
    cert = x509.parse(der)
    if cert.ski is None or not 0 < len(cert.ski) <= 32:
        raise PeerError("root " + cert.label() + " has no usable subjectKeyIdentifier")
    return store.add_root(cert.der, cert.ski, cert.subject_string[:256])


def set_oem_chain(store, chain, key):
    """Store the OEM provisioning chain (leaf first) and key; the PCID is the leaf's CN."""
    cert = _leaf(chain, "OEM provisioning")
    pcid = cert.cn
    if pcid is None or not 0 < len(pcid) <= 32:
        raise PeerError("OEM provisioning certificate " + cert.label() + " has no PCID as its CN")
    _check_pair(key, cert, "OEM provisioning")
    store.set_oem(list(chain), bytes(key), pcid)
    return pcid


def install_contract_chain(store, chain, key, name=None, checked_leaf=None):
    """Store a contract chain (leaf first) and its key with the eMAID and validity the leaf states; a
    contract of the same name (default: the eMAID) is replaced atomically. Returns the name.
    checked_leaf: chain[0] parsed, when the caller has checked already that `key` belongs to it (ev/contracts.py
    accept() has, just before): then neither the parse nor the d*G == Q check is done a second time."""
    if checked_leaf is None:
        cert = _leaf(chain, "contract")
    else:
        if not isinstance(chain, (list, tuple)) or not chain or checked_leaf.der != chain[0]:
            raise PeerError("contract chain: checked_leaf is not its leaf certificate")
        cert = checked_leaf
    emaid = chain_module.emaid_from_cn(cert.cn)
    if emaid is None:
        raise PeerError("contract certificate " + cert.label() + ": CN is not an eMAID")
    if checked_leaf is None:
        _check_pair(key, cert, "contract")
    elif not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise PeerError("contract private key must be 32 bytes")
    return store.install_contract(list(chain), bytes(key), emaid, cert.not_before, cert.not_after, name)


def root_certificates(store, dcs=None):
    """The stored roots as x509.Certificate objects, in the store's order; with dcs, only roots whose
    subject carries one of those domain components (compared without case). A root the store cannot read
    or parse is skipped: one damaged anchor must not hide the others (the caller reports unknown_root)."""
    out = []
    for info in store.roots():
        try:
            cert = x509.parse(store.root(info.name))
        except PeerError:
            continue
        if dcs is not None and not [v for v in cert.dc if v.upper() in dcs]:
            continue
        out.append(cert)
    return out
