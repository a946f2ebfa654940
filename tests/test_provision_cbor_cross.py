# The device's CBOR subset (evpilot.provision.cbor) against PyPI cbor2, both ways: what either encodes the
# other decodes to the same value, our bytes equal cbor2's canonical encoding (RFC 8949 4.2.1), and random
# bytes make our decoder either agree with cbor2 or raise PeerError, nothing else.

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from evpilot.errors import PeerError
from evpilot.provision import cbor

_ints = st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1)
_scalars = st.one_of(_ints, st.binary(max_size=300), st.text(max_size=50), st.booleans(), st.none())
_keys = st.one_of(st.integers(min_value=-(1 << 63), max_value=1 << 63), st.text(max_size=12))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(_keys, inner, max_size=6)),
    max_leaves=25,
)


def _depth(v):
    if isinstance(v, list):
        return 1 + max([_depth(x) for x in v] or [0])
    if isinstance(v, dict):
        return 1 + max([max(_depth(k), _depth(v[k])) for k in v] or [0])
    return 0


def _no_bool_key_clash(v):
    # cbor2 and Python both treat True == 1 as the same dict key; keep such documents out
    if isinstance(v, dict):
        return all(not isinstance(k, bool) for k in v) and all(_no_bool_key_clash(x) for x in v.values())
    if isinstance(v, list):
        return all(_no_bool_key_clash(x) for x in v)
    return True


@settings(max_examples=400, deadline=None)
@given(_values)
def test_ours_equals_cbor2_canonical_and_both_decode(value):
    if _depth(value) > cbor.MAX_DEPTH or not _no_bool_key_clash(value):
        return
    ours = cbor.encode(value)
    assert ours == cbor2.dumps(value, canonical=True)
    assert cbor2.loads(ours) == value
    assert cbor.decode(ours) == value


@settings(max_examples=300, deadline=None)
@given(_values)
def test_we_read_cbor2_default_encoding(value):
    if _depth(value) > cbor.MAX_DEPTH or not _no_bool_key_clash(value):
        return
    assert cbor.decode(cbor2.dumps(value)) == value


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_agree_with_cbor2_or_are_refused(data):
    try:
        ours = cbor.decode(data)
    except PeerError:
        return
    # what we accept, cbor2 accepts with the same value
    assert cbor2.loads(data) == ours


def test_what_cbor2_has_and_we_refuse():
    for value in (1.5, cbor2.CBORTag(1, 0), cbor2.undefined, float("inf")):
        data = cbor2.dumps(value)
        try:
            cbor.decode(data)
        except PeerError:
            continue
        raise AssertionError("%r accepted" % (value,))
