# X.509 parsing (evpilot.pnc.x509, evpilot.pnc.der) and chain validation on both interpreters: the Hubject 2018
# and RISE-V2G reference certificates parse to what `cryptography` reports (expected values below were taken
# from a CPython run with cryptography 44), malformed DER is refused with PeerError, a few thousand mutations
# let nothing else escape, and chain.validate runs on real and fixture chains.
#
# Signatures: most chain tests use table_verify, which accepts exactly the (key, tbs, signature) triples
# listed in KNOWN_GOOD. That table was computed with `cryptography` on CPython, and
# test_known_good_table_is_real (CPython only) recomputes it: every listed triple verifies and every other
# pair of LINKS does not. test_chains_with_pnc_p256_verify checks the same links with evpilot.pnc.p256.

import hashlib

from evpilot.errors import PeerError, UsageError
from evpilot.pnc import chain, der, x509
from vectorlib import need_shared, shared, shared_missing, vector

try:
    import ubinascii as binascii
except ImportError:
    import binascii

HUBJECT = "pki-reference/hubject-test-2018/"  # under ../shared, which a clone may lack: those tests then skip
RISE = "pnc/rise-v2g-signature-testdata/"  # the project's own vectors (tests/vectors)
HUBJECT_MISSING = shared_missing(HUBJECT + "V2G_Root.pem")
NEEDS_HUBJECT = ["test_hubject_certificates_parse_like_cryptography", "test_hubject_profile_quirks",
                 "test_hubject_chains", "test_hubject_links_with_pnc_p256_verify"]
MICROPYTHON_SKIP = ["test_known_good_table_is_real"] + (NEEDS_HUBJECT if HUBJECT_MISSING else [])

# (path under ../shared (HUBJECT) or tests/vectors (RISE), subject, issuer (RFC 4514), serial, signature
#  algorithm, notBefore, notAfter, CA, pathlen, keyUsage, DC values, public key) as cryptography reports them.
REFERENCE = [
    ('pki-reference/hubject-test-2018/CPO_Sub_CA_1.pem', 'CN=CPO Sub CA 1,DC=V2G,O=Hubject,C=DE', 'CN=V2G Root,DC=V2G,O=Hubject,C=DE', 78059129601751719102951303407763910657, '1.2.840.10045.4.3.2', 1513588218, 1671354618, True, 1, ['keyCertSign', 'cRLSign'], ['V2G'], '04556ce520a80fc11c52c007262a500c947ebe814ee7488ccf1378eee206087e47d5640e66270748839a31171b40637a66f4995c0c6fb0d32eb8295cbd19739f0f'),
    ('pki-reference/hubject-test-2018/CPO_Sub_CA_2.pem', 'DC=V2G,CN=CPO Sub CA 2,O=Hubject,C=DE', 'CN=CPO Sub CA 1,DC=V2G,O=Hubject,C=DE', 145052993969917521433195293623157108687, '1.2.840.10045.4.3.2', 1513688400, 1576760400, True, 0, ['keyCertSign', 'cRLSign'], ['V2G'], '04371f4c625d64aa71bb8c6a5baf8c799b69258cc1825b3cfd7ffc8fca553139a2b3c34dcfe31c2b664d6b471285788f3646d8840a05bdd6f53e0302c46b8b5eff'),
    ('pki-reference/hubject-test-2018/MO_Sub_CA_1.pem', 'CN=MO Sub CA 1,O=Hubject,C=DE', 'CN=V2G Root,DC=V2G,O=Hubject,C=DE', 115802517801773880063132725246216393276, '1.2.840.10045.4.3.2', 1513599776, 1671366176, True, 1, ['keyCertSign', 'cRLSign'], [], '0433432182c1b29f7e4daef7ff021cbfc7110f2548c296c3220dee5a2ce0ab2e1973eb5a59596e0497d3f62890a0821ef5b371bfcb7246f81d2142ebc1d241e778'),
    ('pki-reference/hubject-test-2018/MO_Sub_CA_2.pem', 'CN=MO Sub CA 2,O=Hubject,C=DE', 'CN=MO Sub CA 1,O=Hubject,C=DE', 140490212776523362263294350950954276423, '1.2.840.10045.4.3.2', 1518689128, 1644919528, True, 1, ['keyCertSign', 'cRLSign'], [], '0405cec97d5d0fb1451cf849e8492a2362fa65e09a738b33f38a88306a1d82561448d8e5334e0ce2f3b3f64f509c58895e0873d593c5884e8611d7ed734a3c525c'),
    ('pki-reference/hubject-test-2018/OEM_Sub_CA_1.pem', 'CN=OEM Sub CA 1,O=Hubject,C=DE', 'CN=V2G Root,DC=V2G,O=Hubject,C=DE', 15346157724142698138768230202457236602, '1.2.840.10045.4.3.2', 1513589907, 1671356307, True, 1, ['keyCertSign', 'cRLSign'], [], '04bb64cbf3baa555cb05fbd435d7ff46abdbbae712ea1240de8ec2b566580f06d857c008dd3ca0209214cbc1b80a043354bf346510091e37ab2220653f0c845692'),
    ('pki-reference/hubject-test-2018/OEM_Sub_CA_2.pem', 'CN=OEM Sub 2 CA,O=Hubject,C=DE', 'CN=OEM Sub CA 1,O=Hubject,C=DE', 124368872239823851124628418129477537253, '1.2.840.10045.4.3.2', 1541431404, 1671356307, True, 1, ['keyCertSign', 'cRLSign'], [], '04465121e2eb971e2d05435455f672f02f76e6fb98e65d014e535b56219b26af21c68c9882e7f42cbd8295c3a7ebc9448eeddcb8427979f4e7e5f9b218ec134b12'),
    ('pki-reference/hubject-test-2018/V2G_Root.pem', 'CN=V2G Root,DC=V2G,O=Hubject,C=DE', 'CN=V2G Root,DC=V2G,O=Hubject,C=DE', 160598981117487344650335005170761013832, '1.2.840.10045.4.3.2', 1512655710, 2774959710, True, None, ['keyCertSign', 'cRLSign'], ['V2G'], '04c953f7f967299fa91a3f2dca938a64e4e41659bfc634784b5fb70dc3e9af0d14e0f662266210f1c1f974d8cdce668750b9a3428872aa638f0cfcc763b010ef00'),
    ('pki-reference/hubject-test-2018/hubjectopenpnc0001.pem', 'CN=hubjectopenpnc0001,O=Hubject', 'CN=OEM Sub 2 CA,O=Hubject,C=DE', 141877975331300669344384960109104475145, '1.2.840.10045.4.3.2', 1541433759, 1667664159, None, None, ['digitalSignature', 'keyEncipherment'], [], '04d29492bb027396619f66e13e356d5c840a4aa49d7f1639044f6a9030017a39c8661be97fda3caf8eec52bc9365903c24cf0d5627fb5c85ad2cb4ee1d86bf5c01'),
    ('pnc/rise-v2g-signature-testdata/contractCert.pem', 'DC=MO,C=DE,O=RISE V2G Project,CN=DE-ABC-C123ABC56', 'DC=MO,C=DE,O=RISE V2G Project,CN=MOSubCA2', 12345, '1.2.840.10045.4.1', 1534336475, 1597408475, False, None, ['digitalSignature', 'nonRepudiation', 'keyEncipherment', 'keyAgreement'], ['MO'], '0473feba248e8e0d246f4ecc79d46e57184bf86acbc01644f7ae453d8c721b8af9442723892948a6e48a6e81229363dfbaef37f4631fc3592e868bef2e5884185e'),
    ('pnc/rise-v2g-signature-testdata/cpsLeafCert.pem', 'DC=CPS,C=DE,O=RISE V2G Project,CN=CPS Leaf', 'DC=CPS,C=DE,O=RISE V2G Project,CN=ProvSubCA2', 12345, '1.2.840.10045.4.1', 1534336475, 1542112475, False, None, ['digitalSignature'], ['CPS'], '0491caa2fe68797277c9feadec61dc7ae7dc334da59dd82d82290327af105771f7307b9573870a8da09ca4ce2f293b23d9f8aeed3ae49a9c177c6f710c55089ce4'),
    ('pnc/rise-v2g-signature-testdata/cpsSubCA1Cert.pem', 'DC=CPS,C=DE,O=RISE V2G Project,CN=ProvSubCA1', 'DC=V2G,C=DE,O=RISE V2G Project,CN=V2GRootCA', 12345, '1.2.840.10045.4.1', 1534336475, 1660480475, True, 1, ['keyCertSign', 'cRLSign'], ['CPS'], '04baa2560e5b612a8fc51b13ca8ae24c3aebebfbeffc077daf1fbb18b3898cfdfc2f136ae6554b398b2995614b1828b7f68433d6ab711eb3ea99ba214868a111c2'),
    ('pnc/rise-v2g-signature-testdata/cpsSubCA2Cert.pem', 'DC=CPS,C=DE,O=RISE V2G Project,CN=ProvSubCA2', 'DC=CPS,C=DE,O=RISE V2G Project,CN=ProvSubCA1', 12345, '1.2.840.10045.4.1', 1534336475, 1597408475, True, 0, ['keyCertSign', 'cRLSign'], ['CPS'], '046fb9e2efb92f8a189b1187dedfcae47558aa6d06760dd6964ee4a06fc7f931806dd17ed877612630d820040ff2e9bfea772ee2fc266d3b85e8c6159dc51dbb56'),
    ('pnc/rise-v2g-signature-testdata/moSubCA1Cert.pem', 'DC=MO,C=DE,O=RISE V2G Project,CN=MOSubCA1', 'DC=MO,C=DE,O=RISE V2G Project,CN=MORootCA', 12345, '1.2.840.10045.4.1', 1534336475, 1660480475, True, 1, ['keyCertSign', 'cRLSign'], ['MO'], '04c57c4fb19975481e8ad0f132b87c699bcbde789686bf909894af6df08425f99f832a5216764ca4ab7899e0cf46529ce6a2daa964ab0719386becfebeef6c9dcd'),
    ('pnc/rise-v2g-signature-testdata/moSubCA2Cert.pem', 'DC=MO,C=DE,O=RISE V2G Project,CN=MOSubCA2', 'DC=MO,C=DE,O=RISE V2G Project,CN=MOSubCA1', 12345, '1.2.840.10045.4.1', 1534336475, 1660480475, True, 0, ['digitalSignature', 'nonRepudiation', 'keyCertSign', 'cRLSign'], ['MO'], '04943fa1f9187ead4bcb9f89341fbe22080155afd19166758c8dde1727498e994069fdb561200626c0fc4909270bc8b20bbb6456bbb3d1153820ed9df84cd5091e'),
    ('pnc/rise-v2g-signature-testdata/oemProvCert.pem', 'DC=OEM,C=DE,O=RISE V2G Project,CN=OEMProvCert', 'DC=OEM,C=DE,O=RISE V2G Project,CN=OEMSubCA2', 12345, '1.2.840.10045.4.1', 1534336475, 1660480475, False, None, ['digitalSignature', 'keyAgreement'], ['OEM'], '040f884898becf14f53b371b20b7ff92c8d4a46e107138932c79937273a28d4e2c5b976980d3c022c6184fbb47feda64d6c93f2a04729cd7c7a40f80230a7475b8'),
    ('pnc/rise-v2g-signature-testdata/v2gRootCACert.pem', 'DC=V2G,C=DE,O=RISE V2G Project,CN=V2GRootCA', 'DC=V2G,C=DE,O=RISE V2G Project,CN=V2GRootCA', 12345, '1.2.840.10045.4.3.2', 1534336475, 1849696475, True, None, ['keyCertSign', 'cRLSign'], ['V2G'], '0466f3a2ce7199dbc12281ac11f5ac068e5d39f2319158c9aaddd2b48c80c1e937f9038e5ba1067bef020a64e30995071d1806a7d545a20fadeb401829aa3b926c'),
]

# A small SECC chain made with cryptography (valid 2024-01-01 to 2059-08-04), for a positive chain here.
FIX_ROOT = (
    "MIIB7TCCAZSgAwIBAgIULZw0skfaHj5igsOf/yKMM3pQfKkwCgYIKoZIzj0EAwIwVDEZMBcGA1UEAwwQRml4dHVyZSBWMkcgUm9v"
    "dDEVMBMGA1UECgwMZXZwaWxvdCB0ZXN0MQswCQYDVQQGEwJERTETMBEGCgmSJomT8ixkARkWA1YyRzAgFw0yNDAxMDEwMDAwMDBa"
    "GA8yMDU5MDgwNTAwMDAwMFowVDEZMBcGA1UEAwwQRml4dHVyZSBWMkcgUm9vdDEVMBMGA1UECgwMZXZwaWxvdCB0ZXN0MQswCQYD"
    "VQQGEwJERTETMBEGCgmSJomT8ixkARkWA1YyRzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABBaPIl1xE2kqrCb4TSABo5iFrbfF"
    "4Pjmfw1z7Rt3uRZ0/N05qEZoUNLXqZlBNF9V3itiT7jbmCArructOfBPn9ejQjBAMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/"
    "BAQDAgEGMB0GA1UdDgQWBBQyCTuHrjo2fSp0fYkDUgGqSG3GPDAKBggqhkjOPQQDAgNHADBEAiA7I3aFyhusppBE2kYTEfB99DvX"
    "0go85hbuv11ZJ9A/xQIgawohS7PYEkE6zxOgEtQFSbQbJwepubA7MAlzXgYdt0Y="
)
FIX_SUB1 = (
    "MIIB9TCCAZugAwIBAgIUXA8ZJWFElgTChRtBuXgsBY05tGcwCgYIKoZIzj0EAwIwVDEZMBcGA1UEAwwQRml4dHVyZSBWMkcgUm9v"
    "dDEVMBMGA1UECgwMZXZwaWxvdCB0ZXN0MQswCQYDVQQGEwJERTETMBEGCgmSJomT8ixkARkWA1YyRzAgFw0yNDAxMDEwMDAwMDBa"
    "GA8yMDU5MDgwNTAwMDAwMFowWDEdMBsGA1UEAwwURml4dHVyZSBDUE8gU3ViLUNBIDExFTATBgNVBAoMDGV2cGlsb3QgdGVzdDEL"
    "MAkGA1UEBhMCREUxEzARBgoJkiaJk/IsZAEZFgNWMkcwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASe6HwzaLjpuLMjYNRAca6L"
    "KKywCE1Zf46KmO9u/RsJKrkjjq9Q/A2U06GxeALDajdvWMHsHGlLNTbJ/Wy/lTEUo0UwQzASBgNVHRMBAf8ECDAGAQH/AgEBMA4G"
    "A1UdDwEB/wQEAwIBBjAdBgNVHQ4EFgQUyfqzOG+KOPQHJKMbsMo4jKbOYSYwCgYIKoZIzj0EAwIDSAAwRQIgO6F6TRGTR5L4O+sn"
    "ApiGGh+vR6+SF7s21n+KVs30DO0CIQCyqfj8eIEcU4+7liFThr5EnppvXcFLA0Ym/jMzlPopzA=="
)
FIX_SUB2 = (
    "MIIB+TCCAZ+gAwIBAgIUNs6KAWIo6AC0rCSYlNbj8A4vbMUwCgYIKoZIzj0EAwIwWDEdMBsGA1UEAwwURml4dHVyZSBDUE8gU3Vi"
    "LUNBIDExFTATBgNVBAoMDGV2cGlsb3QgdGVzdDELMAkGA1UEBhMCREUxEzARBgoJkiaJk/IsZAEZFgNWMkcwIBcNMjQwMTAxMDAw"
    "MDAwWhgPMjA1OTA4MDUwMDAwMDBaMFgxHTAbBgNVBAMMFEZpeHR1cmUgQ1BPIFN1Yi1DQSAyMRUwEwYDVQQKDAxldnBpbG90IHRl"
    "c3QxCzAJBgNVBAYTAkRFMRMwEQYKCZImiZPyLGQBGRYDVjJHMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEaDgYCyQB+waYFYy3"
    "VDscPvoUs1Wl9U7rwfEbnYU5rUNy27nFKCEHRZdV3BgizNpNHkZJaHDOv7Bexue4ZQ2JMKNFMEMwEgYDVR0TAQH/BAgwBgEB/wIB"
    "ADAOBgNVHQ8BAf8EBAMCAQYwHQYDVR0OBBYEFB6aOC5OiIoQ6AP3PZ7Q/yBn/UB7MAoGCCqGSM49BAMCA0gAMEUCIHPJ0o9LalZh"
    "z+Ika7fGfxFPQ8bMZsADI+6cKp91sGsbAiEA7F8bCAPqFUesPqiC6TVVV8Q1+6cPv/kbub/i8ArMGfQ="
)
FIX_SECC = (
    "MIIB7jCCAZOgAwIBAgIUYpnziU2P/3SGxIHZJvXbh8ztIlEwCgYIKoZIzj0EAwIwWDEdMBsGA1UEAwwURml4dHVyZSBDUE8gU3Vi"
    "LUNBIDIxFTATBgNVBAoMDGV2cGlsb3QgdGVzdDELMAkGA1UEBhMCREUxEzARBgoJkiaJk/IsZAEZFgNWMkcwIBcNMjQwMTAxMDAw"
    "MDAwWhgPMjA1OTA4MDUwMDAwMDBaMFIxFzAVBgNVBAMMDlNFQ0MtRklYVFVSRS0xMRUwEwYDVQQKDAxldnBpbG90IHRlc3QxCzAJ"
    "BgNVBAYTAkRFMRMwEQYKCZImiZPyLGQBGRYDQ1BPMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEpmm8PsI0YpMs/sLZC8vtn6mr"
    "MMuoKPyzwhofHYNgZuL603GSlpBQncROVI3xrsFzpFnyif8PsDzSm4JC3e8PoqM/MD0wDAYDVR0TAQH/BAIwADAOBgNVHQ8BAf8E"
    "BAMCA4gwHQYDVR0OBBYEFO1tsJ1LKZyQkExTgtGqEam7V9UbMAoGCCqGSM49BAMCA0kAMEYCIQDjC+CI5oYklY5YMstzGjjuIWXU"
    "qAhApEbhZC3HO7rOGAIhAIn/LJYvXieUXRHlVXFlwaJ6L+NqCYqUPv6P1gIfsRGd"
)


# Issuer links whose signatures the chain tests check: (child, issuer), by file or fixture name.
LINKS = [
    ("SECC", "SUB2"), ("SUB2", "SUB1"), ("SUB1", "ROOT"),
    (HUBJECT + "CPO_Sub_CA_1.pem", HUBJECT + "V2G_Root.pem"),
    (HUBJECT + "CPO_Sub_CA_2.pem", HUBJECT + "CPO_Sub_CA_1.pem"),
    (HUBJECT + "MO_Sub_CA_1.pem", HUBJECT + "V2G_Root.pem"),
    (HUBJECT + "MO_Sub_CA_2.pem", HUBJECT + "MO_Sub_CA_1.pem"),
    (HUBJECT + "OEM_Sub_CA_1.pem", HUBJECT + "V2G_Root.pem"),
    (HUBJECT + "OEM_Sub_CA_2.pem", HUBJECT + "OEM_Sub_CA_1.pem"),
    (HUBJECT + "hubjectopenpnc0001.pem", HUBJECT + "OEM_Sub_CA_2.pem"),
]

# sha256(pub65 || tbs || r||s) of the LINKS that verify, computed with cryptography (see the module comment).
KNOWN_GOOD = {
    "0822caef97bc4a8e6c2efab2c296a7ebb1fd4201adf6a8dc808975f69245ae6b",
    "3db746e4c3d18dad30404c609f07a683b478b676b935aaf0ffe169212ff5986f",
    "347dd30c2ad8bf0adcdee389f95057559660e56509543d30f0f336da2842d1a7",
    "b23f9d31ce73ffd6e78c790e3e7145ca5f4aec897a638605dee6c3c2182ae855",
    "34a4cb00fd0c0cf7f3e741c845d4e3a4a14bd040fb03deb7662b6eb66fe28a40",
    "b3a3f0e3f03c1618be9dbadc7f279db32a99472dc0dcacc2ede7036389a80185",
    "697ebce2d3116f696393abaafda5054007eefbfda20f4508050173de7308749b",
    "b23d5dd5ae427bf1a026e402603f89fba6278520f896c540201b1a128ddab070",
    "409e8c4a42a7a57090214d29540afd4cdc94d1e00b3111e62f45dceb9d47f673",
    "84db54e385334d1a9f8972be5cf7ad9c5118fbbef2e94cff54846885868fc7f8",
}


def table_verify(pub, tbs, sig):
    return _triple(pub, tbs, sig) in KNOWN_GOOD


def _triple(pub, tbs, sig):
    return binascii.hexlify(hashlib.sha256(bytes(pub) + bytes(tbs) + bytes(sig)).digest()).decode()


def _fixture(name):
    return binascii.a2b_base64("".join(globals()["FIX_" + name]))


def der_of(name):
    if name in ("ROOT", "SUB1", "SUB2", "SECC"):
        return _fixture(name)
    with open(shared(name) if name.startswith(HUBJECT) else vector(name)) as f:
        return x509.pem_to_der(f.read())


def _raises(fn, *args):
    try:
        fn(*args)
    except PeerError as e:
        return e
    assert False, "no PeerError for %r" % (args,)


def _parse_like_cryptography(folder):
    for path, subject, issuer, serial, alg, nb, na, ca, pathlen, ku, dcs, pub in REFERENCE:
        if not path.startswith(folder):
            continue
        c = x509.parse(der_of(path))
        assert c.subject_string == subject, (path, c.subject_string)
        assert c.issuer_string == issuer, path
        assert (c.version, c.serial, c.signature_algorithm) == (3, serial, alg), path
        assert (c.not_before, c.not_after) == (nb, na), path
        assert (c.ca, c.pathlen) == (ca, pathlen), path
        assert c.key_usage_names() == ku, path
        assert c.dc == dcs, path
        assert binascii.hexlify(c.public_key).decode() == pub, path
        assert len(c.signature) == 64 and c.critical(x509.OID_KEY_USAGE), path
        assert c.cn == subject.split("CN=")[1].split(",")[0], path
        assert c.der[-len(c.signature_der):] == c.signature_der
        assert c.tbs == c.der[4:4 + len(c.tbs)]  # every one of these is over 255 bytes: 4-byte header


def test_reference_certificates_parse_like_cryptography():
    _parse_like_cryptography(RISE)
    contract = x509.parse(der_of(RISE + "contractCert.pem"))
    assert chain.emaid_from_cn(contract.cn) == "DEABCC123ABC56"
    cps = x509.parse(der_of(RISE + "cpsLeafCert.pem"))
    # The RISE-V2G README gives the CPS Sub-CA 2 key for the signature, but it is the CPS leaf's.
    assert cps.public_key == bytes.fromhex(
        "0491CAA2FE68797277C9FEADEC61DC7AE7DC334DA59DD82D82290327AF105771F7307B9573870A8DA09CA4CE2F293B23D9F8AE"
        "ED3AE49A9C177C6F710C55089CE4")


def test_hubject_certificates_parse_like_cryptography():
    need_shared(HUBJECT + "V2G_Root.pem")
    _parse_like_cryptography(HUBJECT)


def test_hubject_profile_quirks():
    need_shared(HUBJECT + "V2G_Root.pem")
    root = x509.parse(der_of(HUBJECT + "V2G_Root.pem"))
    assert root.eku == ["1.3.6.1.5.5.7.3.9"] and not root.critical(x509.OID_EKU)  # OCSPSigning on a root
    assert root.ski == root.aki == bytes.fromhex("4e7caec14613965e")
    assert root.subject == [("2.5.4.6", "DE"), ("2.5.4.10", "Hubject"), (x509.OID_DC, "V2G"),
                            (x509.OID_CN, "V2G Root")]
    assert root.has_key_usage(x509.KU_KEY_CERT_SIGN | x509.KU_CRL_SIGN)
    assert not root.has_key_usage(x509.KU_DIGITAL_SIGNATURE)
    leaf = x509.parse(der_of(HUBJECT + "hubjectopenpnc0001.pem"))
    assert leaf.ca is None and leaf.dc == [] and leaf.aki == bytes.fromhex("49b8b5653e2c98be")
    assert leaf.serial == 0x6ABCB440CFF8A321FAA7D822165E2C09


def test_pem_helpers():
    with open(vector(RISE + "v2gRootCACert.pem")) as f:
        text = f.read()
    d = x509.pem_to_der(text)
    assert d[:2] == b"\x30\x82" and len(d) == 473
    assert x509.pem_to_ders(text + "\n" + text.encode().decode()) == [d, d]
    assert x509.pem_to_der(text.encode()) == d
    for bad in ("", "no pem here", "-----BEGIN CERTIFICATE-----\nMII", "-----BEGIN CERTIFICATE-----\n!!\n"
                "-----END CERTIFICATE-----"):
        assert isinstance(_raises(x509.pem_to_der, bad), x509.CertificateError)


def test_fixture_secc_chain_validates():
    got = chain.validate(_fixture("SECC"), [_fixture("SUB2"), _fixture("SUB1")], [_fixture("ROOT")],
                         1750000000, "secc", table_verify)
    assert [c.cn for c in got] == ["SECC-FIXTURE-1", "Fixture CPO Sub-CA 2", "Fixture CPO Sub-CA 1",
                                   "Fixture V2G Root"]
    assert got[0].dc == ["CPO"] and got[0].has_key_usage(x509.KU_DIGITAL_SIGNATURE | x509.KU_KEY_AGREEMENT)
    # The same chain for another purpose, root or time is refused with its reason.
    cases = [
        ((_fixture("SECC"), [_fixture("SUB2"), _fixture("SUB1")], [_fixture("ROOT")], 1750000000, "cps"),
         "wrong_dc"),
        ((_fixture("SECC"), [_fixture("SUB2"), _fixture("SUB1")], [der_of(RISE + "v2gRootCACert.pem")],
          1750000000, "secc"), "unknown_root"),
        ((_fixture("SECC"), [_fixture("SUB2"), _fixture("SUB1")], [_fixture("ROOT")], 1700000000, "secc"),
         "not_yet_valid"),
        ((_fixture("SECC"), [_fixture("SUB1"), _fixture("SUB2")], [_fixture("ROOT")], None, "secc"),
         "pathlen"),
        ((_fixture("SECC"), [_fixture("SUB2")], [_fixture("ROOT")], None, "secc"), "unknown_root"),
        ((_fixture("SUB2"), [_fixture("SUB1")], [_fixture("ROOT")], None, "secc"), "leaf_is_ca"),
    ]
    for args, reason in cases:
        e = _raises(chain.validate, *(args + (table_verify,)))
        assert isinstance(e, chain.ChainError) and e.reason == reason, (reason, e.reason, str(e))
    e = _raises(chain.validate, _fixture("SECC"), [_fixture("SUB2"), _fixture("SUB1")], [_fixture("ROOT")],
                None, "secc", lambda pub, tbs, sig: False)
    assert e.reason == "bad_signature" and e.position == 0 and "'SECC-FIXTURE-1'" in str(e)


def test_hubject_chains():
    need_shared(HUBJECT + "V2G_Root.pem")
    root = der_of(HUBJECT + "V2G_Root.pem")
    oem = [der_of(HUBJECT + n) for n in ("hubjectopenpnc0001.pem", "OEM_Sub_CA_2.pem", "OEM_Sub_CA_1.pem")]
    # Every link verifies (the table holds them) ...
    for child, parent in LINKS[3:]:
        c, p = x509.parse(der_of(child)), x509.parse(der_of(parent))
        assert c.issuer_string == p.subject_string
        assert table_verify(p.public_key, c.tbs, c.signature), child
    # ... yet the 2018 OEM provisioning certificate has no DC=OEM, and the CPO Sub-CA 2 is no leaf.
    e = _raises(chain.validate, oem[0], oem[1:], [root], 1577836800, "oem", table_verify)
    assert e.reason == "wrong_dc" and "hubjectopenpnc0001" in str(e)
    cpo = [der_of(HUBJECT + n) for n in ("CPO_Sub_CA_2.pem", "CPO_Sub_CA_1.pem")]
    assert _raises(chain.validate, cpo[0], cpo[1:], [root], None, "secc", table_verify).reason == "leaf_is_ca"


def test_rise_chain_signed_with_sha1_is_refused():
    # RISE-V2G's chains are signed with ecdsa-with-SHA1, which ISO 15118-2 does not allow.
    e = _raises(chain.validate, der_of(RISE + "cpsLeafCert.pem"),
                [der_of(RISE + "cpsSubCA2Cert.pem"), der_of(RISE + "cpsSubCA1Cert.pem")],
                [der_of(RISE + "v2gRootCACert.pem")], None, "cps", table_verify)
    assert e.reason == "algorithm" and "CPS Leaf" in str(e)


def test_known_good_table_is_real():
    need_shared(HUBJECT + "V2G_Root.pem")
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    def real(pub, tbs, sig):
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)
        try:
            key.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
                       tbs, ec.ECDSA(hashes.SHA256()))
            return True
        except InvalidSignature:
            return False

    certs = {}
    for child, parent in LINKS:
        certs[child] = x509.parse(der_of(child))
        certs[parent] = x509.parse(der_of(parent))
    good = set()
    for name, c in certs.items():
        for pname, p in certs.items():
            ok = real(p.public_key, c.tbs, c.signature)
            assert ok == ((name, pname) in LINKS or (name == pname and name.endswith("V2G_Root.pem"))
                          or (name, pname) == ("ROOT", "ROOT")), (name, pname)
            if (name, pname) in LINKS:
                good.add(_triple(p.public_key, c.tbs, c.signature))
    assert good == KNOWN_GOOD, sorted(good)


def test_times():
    assert der.days_from_civil(1970, 1, 1) == 0
    assert der.days_from_civil(2000, 3, 1) == 11017
    assert der.days_from_civil(1969, 12, 31) == -1
    assert der.parse_time(b"491231235959Z", False) == 2524607999  # UTCTime 49 -> 2049
    assert der.parse_time(b"500101000000Z", False) == -631152000  # UTCTime 50 -> 1950
    assert der.parse_time(b"20240229120000Z", True) == 1709208000
    assert der.parse_time(b"99991231235959Z", True) == 253402300799
    for bad, gen in ((b"240229120000Z", False), (b"230229120000Z", False), (b"241301000000Z", False),
                     (b"240101246000Z", False), (b"2401010000Z", False), (b"240101000000+0100", False),
                     (b"20240101000000.5Z", True), (b"2024010100000Z", True), (b"24O101000000Z", False),
                     (b"240100000000Z", False), (b"240101000060Z", False)):
        if bad == b"240229120000Z":
            assert der.parse_time(bad, gen) == 1709208000
            continue
        assert isinstance(_raises(der.parse_time, bad, gen), der.DerError), bad


def test_primitives():
    r = der.Reader(bytes.fromhex("020100" "0201ff" "02020080" "0209010000000000000000" "0500" "0101ff" "010100"
                                 "06082a8648ce3d040302" "0603550403" "060a0992268993f22c640119" "03020780"
                                 "0403010203" "0c03c3a46b" "130244 45" .replace(" ", "") + "16024d4f"
                                 + "1e0400410042"))
    assert r.integer("a") == 0 and r.integer("b") == -1 and r.integer("c") == 128
    assert r.integer("d") == 1 << 64
    r.null("e")
    assert r.boolean("f") is True and r.boolean("g") is False
    assert r.oid("h") == "1.2.840.10045.4.3.2" and r.oid("i") == "2.5.4.3"
    assert r.oid("j") == "0.9.2342.19200300.100.1.25"
    assert r.bit_string("k") == (b"\x80", 7)
    assert r.octet_string("l") == b"\x01\x02\x03"
    assert r.string("m") == "\u00e4k" and r.string("n") == "DE" and r.string("o") == "MO"
    assert r.string("p") == "AB"
    r.expect_end()
    assert der.decode_oid(b"\x88\x37\x03") == "2.999.3"
    assert der.context(0) == 0xA0 and der.context(2, False) == 0x82


def test_malformed_primitives_name_the_field():
    cases = [
        ("020100", lambda r: r.boolean("x.flag"), "x.flag"),  # wrong tag
        ("0200", lambda r: r.integer("x.serial"), "x.serial"),  # empty INTEGER
        ("0101 01", lambda r: r.boolean("x.b"), "x.b"),  # BOOLEAN not 00/ff
        ("0600", lambda r: r.oid("x.oid"), "x.oid"),
        ("060180", lambda r: r.oid("x.oid"), "x.oid"),  # ends inside an arc
        ("06028001", lambda r: r.oid("x.oid"), "x.oid"),  # leading 0x80
        ("0300", lambda r: r.bit_string("x.bits"), "x.bits"),
        ("030208ff", lambda r: r.bit_string("x.bits"), "x.bits"),  # 8 unused bits
        ("030201ff", lambda r: r.bit_string("x.bits"), "x.bits"),  # unused bit set
        ("0c02c328", lambda r: r.string("x.utf8"), "x.utf8"),
        ("1302c328", lambda r: r.string("x.ascii"), "x.ascii"),
        ("1e03004100", lambda r: r.string("x.bmp"), "x.bmp"),
        ("0401", lambda r: r.octet_string("x.o"), "x.o"),  # truncated before... content
        ("04", lambda r: r.octet_string("x.o"), "x.o"),  # no length
        ("", lambda r: r.octet_string("x.o"), "x.o"),
        ("0480", lambda r: r.octet_string("x.o"), "x.o"),  # indefinite
        ("048105" + "00" * 5, lambda r: r.octet_string("x.o"), "x.o"),  # non-minimal length
        ("04820010" + "00" * 16, lambda r: r.octet_string("x.o"), "x.o"),  # non-minimal length
        ("0484ffffffff", lambda r: r.octet_string("x.o"), "x.o"),  # huge length
        ("0482ffff00", lambda r: r.octet_string("x.o"), "x.o"),  # length over what is left
        ("0481", lambda r: r.octet_string("x.o"), "x.o"),
        ("1f2201", lambda r: r.octet_string("x.o"), "x.o"),  # multi-byte tag
        ("050100", lambda r: r.null("x.n"), "x.n"),
        ("170d3234303130313030303030305a", lambda r: r.string("x.s"), "x.s"),
        ("0c00", lambda r: r.time("x.t"), "x.t"),
        ("3003020100", lambda r: r.enter(der.SET, "x.set"), "x.set"),
    ]
    for hexdata, fn, field in cases:
        e = _raises(fn, der.Reader(bytes.fromhex(hexdata.replace(" ", ""))))
        assert isinstance(e, der.DerError) and e.field == field and field in str(e), (hexdata, str(e))


def test_nesting_and_trailing_data():
    deep = b""
    for _ in range(40):
        deep = b"\x30" + bytes([len(deep)]) + deep if len(deep) < 128 else b"\x30\x81" + bytes([len(deep)]) + deep
    e = _raises(der.walk, deep)
    assert "nested deeper" in str(e)
    assert der.walk(deep[2 * 30:]) > 0  # shallower runs are fine
    r = der.Reader(deep)
    for i in range(der.MAX_DEPTH):
        r = r.enter(der.SEQUENCE, "level")
    assert "nested deeper" in str(_raises(r.enter, der.SEQUENCE, "level"))
    e = _raises(der.Reader(b"\x05\x00\x00").expect_end, "x.tail")
    assert "x.tail" in str(e)


def test_malformed_certificates():
    good = _fixture("SECC")
    x509.parse(good)
    for cut in range(len(good)):  # every truncation
        e = _raises(x509.parse, good[:cut])
        assert isinstance(e, x509.CertificateError) and e.reason == "malformed"
    assert _raises(x509.parse, good + b"\x00").reason == "malformed"  # trailing data
    assert _raises(x509.parse, b"\x30" * 3000).reason == "oversized"
    # Wrong outer lengths: one more, one less, indefinite.
    for head in (b"\x30\x82" + (len(good) - 3).to_bytes(2, "big"), b"\x30\x82" + (len(good) - 5).to_bytes(2, "big"),
                 b"\x30\x80"):
        assert _raises(x509.parse, head + good[4:]).reason == "malformed"
    # A key on another curve is refused with "algorithm".
    p256 = bytes.fromhex("06082a8648ce3d030107")
    i = good.find(p256)
    other = good[:i] + bytes.fromhex("06082a8648ce3d030108") + good[i + len(p256):]
    assert _raises(x509.parse, other).reason == "algorithm"  # 1.2.840.10045.3.1.8 is not P-256
    assert "not secp256r1" in str(_raises(x509.parse, other))
    # A public key point off the curve.
    pub = x509.parse(good).public_key
    j = good.find(pub)
    off = good[:j + 64] + bytes([good[j + 64] ^ 1]) + good[j + 65:]
    assert "not on the P-256 curve" in str(_raises(x509.parse, off))


def test_fuzzed_certificates_raise_only_peer_error():
    seeds = [_fixture("SECC"), der_of(RISE + "v2gRootCACert.pem"),
             der_of("pnc/rise-v2g-signature-testdata/contractCert.pem")]
    state = [0x2545F491]

    def rnd(n):
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return state[0] % n

    parsed = refused = 0
    for k in range(3000):
        b = bytearray(seeds[k % 3])
        for _ in range(1 + rnd(3)):
            op = rnd(5)
            pos = rnd(len(b))
            if op == 0:
                b[pos] ^= 1 << rnd(8)
            elif op == 1:
                b[pos] = (0x00, 0x80, 0x81, 0x82, 0xFF, 0x30, 0x7F)[rnd(7)]
            elif op == 2:
                b = b[:pos]
            elif op == 3:
                b = b[:pos] + bytes([rnd(256)]) + b[pos:]
            else:
                b = b[:pos] + b[pos + 1 + rnd(4):]
            if not b:
                b = bytearray(b"\x30")
        try:
            c = x509.parse(bytes(b))
            parsed += 1
            assert isinstance(c.subject_string, str) and len(c.public_key) == 65
        except PeerError:
            refused += 1
    assert parsed + refused == 3000 and refused > 2000


def test_emaid_helpers():
    assert chain.emaid_from_cn("DE-ABC-C123ABC56") == "DEABCC123ABC56"
    assert chain.emaid_from_cn("DE8ACC123ABC561") == "DE8ACC123ABC561"
    for bad in (None, "", "DE-ABC-C123ABC5", "DE-ABC-C123ABC5678", "DEABCC123ABC5!", "12ABCC123ABC56"):
        assert chain.emaid_from_cn(bad) is None, bad
    assert chain.matches_emaid("DE-ABC-C123ABC56", "DEABCC123ABC56")
    assert chain.matches_emaid("DE-ABC-C123ABC56", "de-abc-c123abc56")
    assert not chain.matches_emaid("DE-ABC-C123ABC56", "DEABCC123ABC57")
    assert not chain.matches_emaid("John Doe", "John Doe")


def test_chain_misuse():
    for args in ((_fixture("SECC"), [], [], None, "tls", table_verify), (_fixture("SECC"), [], [], None, "secc", None)):
        try:
            chain.validate(*args)
        except UsageError:
            continue
        assert False, args
    e = _raises(chain.validate, _fixture("SECC"), [b"", b"", b""], [], None, "secc", table_verify)
    assert e.reason == "too_many_subcas"


def test_chains_with_pnc_p256_verify():
    # The board's own verifier: the same chains without the table, real ECDSA on both interpreters.
    from evpilot.pnc import p256

    got = chain.validate(_fixture("SECC"), [_fixture("SUB2"), _fixture("SUB1")], [_fixture("ROOT")],
                         1750000000, "secc", p256.verify)
    assert got[-1].cn == "Fixture V2G Root"


def test_hubject_links_with_pnc_p256_verify():
    from evpilot.pnc import p256

    need_shared(HUBJECT + "V2G_Root.pem")
    for child, parent in LINKS[3:]:
        c, p = x509.parse(der_of(child)), x509.parse(der_of(parent))
        assert p256.verify(p.public_key, c.tbs, c.signature), child
        assert not p256.verify(c.public_key, c.tbs, c.signature), child
