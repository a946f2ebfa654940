"""Property tests: random valid documents of every message of the three schema sets, generated from the
grammar tables, round-trip through the codec."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evpilot import exi

from exi_random import messages, random_message

CASES = [(schema, m) for schema in ("apphand", "din", "iso2") for m in sorted(messages(schema))]


def test_every_message_is_covered():
    counts = {s: sum(1 for c in CASES if c[0] == s) for s in ("apphand", "din", "iso2")}
    # DIN's BodyElement head is not abstract, so it is a (contentless) body element of its own.
    assert counts == {"apphand": 2, "din": 35, "iso2": 34}


@pytest.mark.parametrize("schema,message", CASES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rnd=st.randoms(use_true_random=False))
def test_random_documents_round_trip(schema, message, rnd):
    doc = random_message(schema, message, rnd)
    data = exi.encode(schema, doc)
    assert exi.decode(schema, data) == doc
    assert exi.encode(schema, exi.decode(schema, data)) == data
    # A stream always decodes the same when data follows it (trailing bytes are ignored).
    assert exi.decode(schema, data + b"\x00\xff") == doc
