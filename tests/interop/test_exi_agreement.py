"""Our codec and the independent EXIficient codec (Josev's, test-only) agree on random valid documents of
every message of the three schema sets, in both directions:
  - EXIficient decodes our bytes to the same document, and we decode EXIficient's bytes to it;
  - both write the same bytes, except where EXI leaves a choice: an empty string or binary value, which
    EXIficient writes as a second-level EE and we (like libcbv2g) as a zero-length value.
Known gap: we read EXIficient's second-level EE for empty simple-typed elements (an empty SessionID, EVCCID,
EVSEID or MeterID, which real peers send), not for the empty simple content of an element with attributes
(an empty SignatureValue or eMAID), which no ISO 15118 message carries; such documents get one character
or byte of content here.
The documents come from tests/exi_random.py (the grammar tables); the bridge is tests/interop/exificient.py.
"""

import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import exificient  # noqa: E402
from exi_random import messages, random_message  # noqa: E402

from evpilot import exi  # noqa: E402

CASES = [(schema, m) for schema in ("apphand", "din", "iso2") for m in sorted(messages(schema))]


@pytest.fixture(scope="module")
def bridge():
    ok, reason = exificient.available()
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail("EXIficient bridge unavailable on CI: " + reason)
        pytest.skip("EXIficient bridge unavailable: " + reason)
    return exificient


def _has_empty(value):
    if isinstance(value, dict):
        return any(_has_empty(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_empty(v) for v in value)
    return value == "" or value == b""


def _no_empty_content(value):
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "CONTENT" and v in ("", b""):
                value[k] = "x" if v == "" else b"\x00"
            else:
                _no_empty_content(v)
    elif isinstance(value, list):
        for v in value:
            _no_empty_content(v)
    return value


def _agree(bridge, schema, doc, via):
    _no_empty_content(doc)
    ours = exi.encode(schema, doc)
    theirs = bridge.encode(schema, doc, via=via)
    assert exi.decode(schema, theirs) == doc
    assert bridge.decode(schema, ours, via=via) == doc
    if not _has_empty(doc):
        assert ours == theirs
    return ours == theirs


@pytest.mark.parametrize("schema,message", CASES)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(rnd=st.randoms(use_true_random=False))
def test_random_documents_agree_with_exificient(bridge, schema, message, rnd):
    _agree(bridge, schema, random_message(schema, message, rnd), "xml")


# Messages Josev's own Java data model cannot carry (its JSON front end fails before EXIficient runs):
# DIN certificate messages need javax.mail classes its jar lacks; DIN's non-abstract BodyElement and DIN
# ChargeParameterDiscoveryRes fail JAXB unmarshalling. The direct XML path above covers them.
JOSEV_MODEL_LIMITS = {
    "din": {"BodyElement", "ChargeParameterDiscoveryRes", "CertificateInstallationReq",
            "CertificateInstallationRes", "CertificateUpdateReq", "CertificateUpdateRes", "PaymentDetailsReq"},
    "iso2": set(),
}


@pytest.mark.parametrize("schema", ["din", "iso2"])
def test_josev_own_path_agrees(bridge, schema):
    # Josev's own route (JSON -> its Java data model -> EXIficient), one document per message: slower
    # (about 15-30 ms a call), so fewer.
    import random

    rnd = random.Random(15118)
    checked = 0
    for message in sorted(messages(schema)):
        doc = random_message(schema, message, rnd, signature=False)
        if message in JOSEV_MODEL_LIMITS[schema]:
            with pytest.raises(Exception):
                bridge.encode(schema, doc, via="json")
            continue
        _agree(bridge, schema, doc, "json")
        checked += 1
    assert checked == len(messages(schema)) - len(JOSEV_MODEL_LIMITS[schema])
