"""The JSON view of an EXI document, for the CLI and for logs.

How this works: the codec's documents are already plain data (DESIGN principle 4): dicts keyed by XSD
element names, an element that may repeat is always a list, an element with attributes and simple content
is {"Id": ..., "CONTENT": ...}, booleans are bool, integers int, enumerations their string. The only value
JSON cannot carry is binary, so `to_json` renders bytes as lowercase hex and keeps everything else, key order
included. The way back needs no converter: the encoder accepts a hex string wherever a binary value goes, so
`json.loads(line)` is a document `exi.encode` takes as it is.
"""

import json

_BINARY = (bytes, bytearray, memoryview)


def to_json(doc):
    """A copy of doc with every binary value as a lowercase hex string (nothing else changes)."""
    if isinstance(doc, dict):
        return {k: to_json(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [to_json(v) for v in doc]
    if isinstance(doc, _BINARY):
        return bytes(doc).hex()
    return doc


def dumps(doc, pretty=False):
    """doc as JSON text: one compact line by default, indented by two spaces with pretty=True."""
    if pretty:
        return json.dumps(to_json(doc), indent=2)
    return json.dumps(to_json(doc), separators=(",", ":"))
