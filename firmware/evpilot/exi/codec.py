# Table-driven schema-informed EXI (bit-packed, non-strict, first-level productions only).
#
# How this works: the generator (host/evpilot_host/exigen.py) turns each schema set into a tables module:
#   NAMES   local names of elements and attributes (the dict keys of a document)
#   VALUES  value types: (V_STRING, maxlen, minlen) (V_BINARY, maxlen, minlen) (V_BOOL, 0, 1) (V_UINT, max,
#           min) (V_INT, min, max) (V_NBIT, min, bits, max) (V_ENUM, values, bits) (V_UNSUPPORTED, why);
#           maxlen or max 0: none. These are the XSD facets (min/maxInclusive, length, min/maxLength; the
#           ISO 15118 schemas have no pattern facets): the decoder rejects a value outside them with ExiError
#           naming the element, the encoder refuses to write one.
#   ELEMS   element entries, one int each: name | start state << 10, or name | value type << 10 | BARE;
#           ABSTRACT marks an abstract substitution-group head: it has an event code, never a document
#   ATTRS   attribute entries: name | value type << 10
#   PRODS   one int per production: kind (bits 0-2) | F_LIST | F_ALT | F_COUNTED | argument << 6 (10 bits)
#           | next state << 16; a state's productions are PRODS[STATES[s]:STATES[s + 1]]
#   (ELEMS, ATTRS, PRODS and STATES: 4 or 2 bytes an entry read in place from bytes literals by
#   format.table, so a frozen module's tables stay in flash; no object per state on a board)
#   COUNTED state -> (min, max) for states that repeat one element a bounded number of times
#   DOC     element entries of the document grammar (global elements, sorted); SE(*) follows them
#   FRAG    element entries of the fragment grammar (all element names, sorted); SE(*) and ED follow
#           (the encoder finds a name's code by binary search over these: sorted by local name)
# An event code is the index of the production among those available in the state, written in
# ceil(log2(n + 1)) bits: non-strict grammars keep one more code for second-level events, which ISO 15118
# never uses (an escape code is rejected). A counted state offers only its loop production while fewer
# than min occurrences were read and drops it once max were read, exactly like the unrolled grammar of the
# EXI specification. A simple-typed element is always CH [value] then EE: 1-bit codes around the value.
#
# Documents are plain data: dicts keyed by local names; a repeatable element is a list; a simple-typed
# element is its bare value; attributes and simple content ("CONTENT") of a complex element are keys of its
# dict. Binary values are bytes (a hex string is accepted when encoding: the JSON view).

from evpilot.exi.decoder import Decoder
from evpilot.exi.encoder import Encoder
from evpilot.exi.format import V_STRING, V_BINARY, V_UINT, V_NBIT


class Grammar(Decoder, Encoder):
    """One schema set's tables, with the decoder and encoder that interpret them.

    lenient=True: a grammar that checks only what the encoding itself bounds (an n-bit integer up to
    min + 2**n - 1, maxLength) and not the facets the bits do not carry (maxInclusive below the field's
    capacity, minLength, length, a minimum of an unsigned integer). For reading and re-encoding captures of
    real peers bit for bit (a real car sends ChargingProfileEntryMaxNumberOfPhasesInUse 4 in the 1..3
    field); the sessions use the strict grammar. Its value table is a copy, built only when asked for."""

    def __init__(self, name, tables, lenient=False):
        self.name = name
        self.names = tables.NAMES
        self.values = tables.VALUES if not lenient else tuple(_relaxed(t) for t in tables.VALUES)
        self.elems = tables.ELEMS
        self.attrs = tables.ATTRS
        self.states = tables.STATES
        self.prods = tables.PRODS
        self.counted = tables.COUNTED
        self.doc = tables.DOC
        self.frag = tables.FRAG
        self._root_name = None  # the encoder's last root element and its code
        self._root_code = None


def _relaxed(t):
    k = t[0]
    if k == V_NBIT:
        return (k, t[1], t[2], t[1] + (1 << t[2]) - 1)
    if k == V_STRING or k == V_BINARY:
        return (k, t[1], 0)
    if k == V_UINT:
        return (k, t[1], 0)
    return t
