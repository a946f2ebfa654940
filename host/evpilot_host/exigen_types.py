"""Simple types for the EXI grammar generator: how an XSD simple type becomes one of the value types the
firmware's codec reads (evpilot.exi.format V_*), with the integer ranges of the built-in types."""

from evpilot.exi.format import V_BINARY, V_BOOL, V_ENUM, V_INT, V_NBIT, V_STRING, V_UINT, V_UNSUPPORTED
from evpilot_host.exigen_tables import GeneratorError

XS = "{http://www.w3.org/2001/XMLSchema}"
_INT_RANGES = {
    "byte": (-128, 127),
    "short": (-32768, 32767),
    "int": (-(1 << 31), (1 << 31) - 1),
    "long": (-(1 << 63), (1 << 63) - 1),
    "unsignedByte": (0, 255),
    "unsignedShort": (0, 65535),
    "unsignedInt": (0, (1 << 32) - 1),
    "unsignedLong": (0, (1 << 64) - 1),
    "nonNegativeInteger": (0, None),
    "positiveInteger": (1, None),
    "negativeInteger": (None, -1),
    "nonPositiveInteger": (None, 0),
    "integer": (None, None),
}
_STRING_TYPES = {
    "string", "normalizedString", "token", "anyURI", "ID", "IDREF", "NCName", "Name", "NMTOKEN", "language",
    "QName", "ENTITY",
}


def builtin_name(st):
    """The XSD built-in type a simple type derives from (its local name)."""
    t = st
    while t is not None and not (t.name or "").startswith(XS):
        t = t.base_type
    if t is None:
        raise GeneratorError("simple type %r has no built-in base" % (st,))
    return t.name[len(XS):]

def describe_simple(st):
    """The value-type tuple the firmware's codec reads for simple type `st` (evpilot.exi.format V_* kinds):
    enumerations by index, booleans, binary and strings with their length limit, integers as n-bit offsets
    when the range is small, unsigned or signed otherwise."""
    if st.is_list() or st.is_union():
        return (V_UNSUPPORTED, "list or union type")
    builtin = builtin_name(st)
    enum = st.enumeration
    if enum:
        width = (len(enum) - 1).bit_length()
        if builtin in _INT_RANGES:
            return (V_ENUM, tuple(int(v) for v in enum), width)
        return (V_ENUM, tuple(str(v) for v in enum), width)
    if builtin == "boolean":
        return (V_BOOL, 0, 1)  # shaped like the other fixed-width kinds: (kind, -, bits)
    # Lengths: (kind, maxLength or 0 for none, minLength or 0); `length` counts as both (XSD Part 2 4.3.1-4.3.3:
    # characters for strings, octets for binary).
    if builtin in ("hexBinary", "base64Binary"):
        return (V_BINARY, max_length(st), min_length(st))
    if builtin in _STRING_TYPES:
        return (V_STRING, max_length(st), min_length(st))
    if builtin in _INT_RANGES:
        lo, hi = _INT_RANGES[builtin]
        t = st
        while t is not None and not (t.name or "").startswith(XS):
            mn, mx = t.min_value, t.max_value
            if mn is not None:
                lo = int(mn) if lo is None else max(lo, int(mn))
            if mx is not None:
                hi = int(mx) if hi is None else min(hi, int(mx))
            t = t.base_type
        if lo is not None and hi is not None and hi - lo + 1 <= 4096:
            return (V_NBIT, lo, (hi - lo).bit_length(), hi)
        if lo is not None and lo >= 0:
            return (V_UINT, 0 if hi is None else hi, lo)  # (kind, max or 0 for none, min)
        return (V_INT, lo, hi)
    return (V_UNSUPPORTED, builtin)

def _length_facets(st, keys):
    t = st
    while t is not None and not (t.name or "").startswith(XS):
        for key in keys:
            f = getattr(t, "facets", {}).get(XS + key)
            if f is not None:
                yield int(f.value)
        t = t.base_type


def min_length(st):
    """The tightest minLength or length facet along the derivation (0: none)."""
    return max(_length_facets(st, ("minLength", "length")), default=0)


def max_length(st):
    """The tightest maxLength or length facet along the derivation (0: none)."""
    return min(_length_facets(st, ("maxLength", "length")), default=0)
