# EXI for ISO 15118: `from evpilot import exi`.
#
#   exi.decode("iso2", data) -> {"V2G_Message": {...}}      exi.encode("iso2", doc) -> bytes
#   exi.decode("iso2", data + b"\0\0\0", padded=True)        (read in place: no copy of a large message)
#   exi.decode_fragment("iso2", data) -> {"AuthorizationReq": {...}}
#   exi.encode_fragment("xmldsig", {"SignedInfo": {...}}) -> bytes
#   exi.encode_fragment("iso2", {...}, sha.update)         (streamed to sha.update, never held whole)
#   exi.decode("iso2", data, lenient=True)                  (a capture whose values break an XSD facet)
#
# Values outside their XSD facets (an n-bit integer above its maxInclusive, a string or binary shorter than
# its minLength or length) raise ExiError naming the element, in both directions; lenient=True reads and
# writes what the encoding carries, for captures of real peers (see codec.Grammar).
#
# Schema sets: "apphand" (SupportedAppProtocol), "din" (DIN SPEC 70121), "iso2" (ISO 15118-2) and
# "xmldsig" (fragments of the signature schema alone, for SignedInfo). Each set's tables are imported on
# first use, so a board that speaks only DIN never loads the ISO-2 tables.

from evpilot.errors import ExiError

SCHEMAS = ("apphand", "din", "iso2", "xmldsig")

_grammars = {}


def _load_tables(schema):
    if schema == "iso2":
        from evpilot.exi import tables_iso2 as t
    elif schema == "din":
        from evpilot.exi import tables_din as t
    elif schema == "apphand":
        from evpilot.exi import tables_apphand as t
    elif schema == "xmldsig":
        from evpilot.exi import tables_xmldsig as t
    else:
        raise ExiError("unknown schema set %r (known: %s)" % (schema, ", ".join(SCHEMAS)))
    return t


def grammar(schema, lenient=False):
    key = schema + "~" if lenient else schema
    g = _grammars.get(key)
    if g is None:
        from evpilot.exi.codec import Grammar

        g = _grammars[key] = Grammar(schema, _load_tables(schema), lenient)
    return g


def decode(schema, data, padded=False, lenient=False):
    """Decode one EXI document; bytes after the end of the document are ignored. padded=True: the last 3 bytes
    of `data` (bytes or bytearray) are room the reader may read past the end into, not part of the stream; the
    data is then decoded in place, without the copy the reader otherwise makes (a CertificateInstallationRes
    is 4-8 KB: a receive path that leaves the room saves that much at the session's peak)."""
    return grammar(schema, lenient).decode(data, padded)


def encode(schema, doc, lenient=False, sink=None):
    """One EXI document's bytes; with sink, handed to sink(view) in pieces instead (b"" returned): a V2G
    connection writes them straight into its frame buffer."""
    return grammar(schema, lenient).encode(doc, sink)


def decode_fragment(schema, data, lenient=False):
    return grammar(schema, lenient).decode_fragment(data)


def encode_fragment(schema, doc, sink=None, lenient=False):
    """The fragment's EXI bytes; with sink (e.g. a hash's update), handed to it in pieces instead."""
    return grammar(schema, lenient).encode_fragment(doc, sink)


def detect_schema(data):
    """The schema set of an EXI message carried with V2GTP payload type 0x8001, from its first bits:
    SupportedAppProtocol documents start with bit 0 (2-bit document code), DIN SPEC 70121 with the
    7-bit code 77 and ISO 15118-2 with 76. Returns None when the bytes fit none of them."""
    if len(data) < 2 or data[0] != 0x80:
        return None
    b = data[1]
    if b < 0x80:
        return "apphand"
    if b >> 1 == 76:
        return "iso2"
    if b >> 1 == 77:
        return "din"
    return None
