"""Test-only bridge to the EXIficient EXI codec shipped inside Josev (PyPI ``iso15118``).

Josev bundles ``iso15118/shared/EXICodec.jar`` (EXIficient plus a JAXB/EclipseLink-MOXy JSON
front end, class ``com.siemens.ct.exi.main.cmd.EXICodec``) and drives it through py4j. This module
starts that jar the same way Josev does (``JavaGateway.launch_gateway`` with
``--add-opens java.base/java.lang=ALL-UNNAMED``) but does not import Josev's Python code or its
pydantic models: it only takes the jar file from Josev's own virtual environment (``.cache/josev-venv``,
made by tests/interop/josev.py on first use; Josev never enters the tests' environment). py4j, the
Python side of the gateway, is a dev dependency of its own. It exists so that property tests can compare our own
native codec with an independent implementation; it is not part of evpilot.

API (``schema`` is "apphand", "din" or "iso2")::

    available() -> (bool, reason)
    encode(schema, doc, via="json") -> bytes
    decode(schema, data, via="json") -> doc
    encode_fragment(grammar, doc, via=None) -> bytes   # grammar "iso2" or "xmldsig"
    decode_fragment(grammar, data) -> doc
    shutdown()

``doc`` is evpilot's plain-data document: nested dicts keyed by XSD element names; binary values
(hexBinary, base64Binary) are ``bytes``; booleans are ``bool``; enumerations are strings; an element
that may repeat (maxOccurs > 1, also through a repeating group) is always a list; an element with
attributes and simple content is ``{"Id": ..., "CONTENT": ...}``; attributes of complex elements sit
next to the child elements. Whole messages are ``{"V2G_Message": {...}}`` (din, iso2) and
``{"supportedAppProtocolReq": {...}}`` / ``{"supportedAppProtocolRes": {...}}`` (apphand); fragments
are ``{"<element name>": {...}}``.

Josev's JSON (what the jar reads and writes) differs from ``doc`` in exactly these ways, and the
converters below bridge them, directed by the project's XSDs (``schemas/``):

* hexBinary is an UPPER-case hex string, base64Binary is a base64 string;
* the simple content of an element with attributes is under the key ``"value"`` (ours: ``"CONTENT"``);
* the jar may render a repeated element that holds one item as a bare object; we always use a list.
Booleans (JSON true/false), integers (including xs:integer of any size), strings and enumerations
need no conversion. Element names are plain local names in both.

Two paths through the same jar and grammars: via="json" is Josev's own (JSON -> JAXB objects -> XML ->
EXIficient, and back); via="xml" hands XML built from the doc straight to EXIficient's encoder (and
parses EXIficient's decoded XML), skipping Josev's JAXB model. The JSON path rebuilds a JAXBContext
on every call (~20 ms per message) and inherits the model's quirks (optional apphand SchemaID is a
Java short, so absent reads and writes as 0; some valid streams fail JAXB unmarshalling); the XML
path takes ~1 ms but cannot carry control characters in strings (XML 1.0).

Fragments: the jar switches to EXI fragment mode by itself when the JSON root is one of
AuthorizationReq, CertificateInstallationReq, MeteringReceiptReq, SignedInfo, ContractSignatureCertChain,
ContractSignatureEncryptedPrivateKey, DHpublickey, eMAID, SalesTariff (namespace MsgDef), or for
anything under the xmldsig namespace (xmldsig-core grammar only; this is how Josev encodes SignedInfo
for signatures: ``EXI().to_exi(signed_info, Namespace.XML_DSIG)``). The jar's JSON path wraps every
ISO-2 fragment root in the MsgBody namespace, which is wrong for SignedInfo (an xmldsig element), so
``encode_fragment("iso2", {"SignedInfo": ...})`` instead feeds XML built from the doc straight into
the jar's EXIficient encoder with the ISO-2 grammar in fragment mode. Decoding a fragment sets the
jar's EXIFactory to fragment mode (through reflection) for that one call.
"""

from __future__ import annotations

import atexit
import base64
import glob
import json
import os
import shutil
import sys
import threading
import time
from xml.sax.saxutils import escape, quoteattr

_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(_HERE))
SCHEMAS_DIR = os.environ.get("EVPILOT_SCHEMAS_DIR", os.path.join(ROOT, "schemas"))

NAMESPACES = {
    "apphand": "urn:iso:15118:2:2010:AppProtocol",
    "din": "urn:din:70121:2012:MsgDef",
    "iso2": "urn:iso:15118:2:2013:MsgDef",
    "xmldsig": "http://www.w3.org/2000/09/xmldsig#",
}
_XSD_FILES = {
    "apphand": ("apphand", "V2G_CI_AppProtocol.xsd"),
    "din": ("din70121", "V2G_CI_MsgDef.xsd"),
    "iso2": ("iso15118-2", "V2G_CI_MsgDef.xsd"),
    "xmldsig": ("iso15118-2", "xmldsig-core-schema.xsd"),
}
_DOC_ROOTS = {
    "apphand": ("supportedAppProtocolReq", "supportedAppProtocolRes"),
    "din": ("V2G_Message",),
    "iso2": ("V2G_Message",),
}
_FRAGMENT_GRAMMARS = ("iso2", "xmldsig")

# Keys of the simple content of an element with attributes.
_OUR_CONTENT = "CONTENT"
_JSON_CONTENT = "value"


class BridgeError(Exception):
    """The EXIficient jar refused a document or a stream (its own error message included)."""


# --------------------------------------------------------------------------- schema model


class _Schema:
    """Element declarations of one schema set, with per-type child lookup tables."""

    def __init__(self, name: str):
        import xmlschema  # test-only dependency

        folder, filename = _XSD_FILES[name]
        path = os.path.join(SCHEMAS_DIR, folder, filename)
        self.xsd = xmlschema.XMLSchema(path)
        self.globals = {}
        for qname, decl in self.xsd.maps.elements.items():
            if qname.startswith("{http://www.w3.org/2001/XMLSchema}"):
                continue
            self.globals.setdefault(decl.local_name, decl)
        self._children = {}
        self._locals = None

    def root(self, name: str, with_attributes=None):
        """The declaration of a document or fragment root: a global element, else a local element
        whose declarations all share one type (EXI fragments may start with local elements, e.g.
        ContractSignatureCertChain or SalesTariff in ISO 15118-2)."""
        decl = self.globals.get(name)
        if decl is not None:
            return decl
        if self._locals is None:
            self._locals = {}
            seen = set()
            todo = list(self.globals.values())
            while todo:
                d = todo.pop()
                if id(d.type) in seen or d.type.is_simple():
                    continue
                seen.add(id(d.type))
                for local, (child, _rep) in self.children(d.type).items():
                    self._locals.setdefault(local, {})[id(child.type)] = child
                    todo.append(child)
        found = self._locals.get(name, {})
        if len(found) > 1 and with_attributes is not None:
            # e.g. ISO-2 eMAID: a plain string in PaymentDetailsReq, {Id, CONTENT} in CertificateInstallationRes
            found = {k: d for k, d in found.items() if bool(_attr_table(d.type)) == with_attributes}
        if len(found) != 1:
            why = "ambiguous" if found else "not declared"
            raise BridgeError(f"element {name!r} is {why} in this schema set")
        return next(iter(found.values()))

    def children(self, xsd_type):
        """{local name: (element decl, repeats)} for a complex type with element content."""
        key = id(xsd_type)
        table = self._children.get(key)
        if table is None:
            table = {}
            content = getattr(xsd_type, "content", None)
            if content is not None and hasattr(content, "iter_elements"):
                self._collect(content, content.max_occurs != 1, table)
            self._children[key] = table
        return table

    def _collect(self, group, repeated, table):
        from xmlschema.validators import XsdElement, XsdGroup

        for item in group:
            if isinstance(item, XsdGroup):
                self._collect(item, repeated or item.max_occurs != 1, table)
            elif isinstance(item, XsdElement):
                rep = repeated or item.max_occurs != 1
                decls = [item]
                decls.extend(item.iter_substitutes())
                for decl in decls:
                    if not decl.abstract:
                        table.setdefault(decl.local_name, (decl, rep))
            # xs:any wildcards: children under them pass through unconverted


_schemas = {}
_schemas_lock = threading.Lock()


def _schema(name: str) -> _Schema:
    with _schemas_lock:
        s = _schemas.get(name)
        if s is None:
            s = _schemas[name] = _Schema(name)
        return s


def _primitive(simple_type):
    prim = getattr(simple_type, "primitive_type", None)
    return getattr(prim, "local_name", None)


def _attr_table(xsd_type):
    attrs = getattr(xsd_type, "attributes", None) or {}
    return {a.local_name: a for a in attrs.values() if getattr(a, "local_name", None)}


def transform(schema: _Schema, name: str, value, decl, leaf, content_in, content_out, listify, path=""):
    """Walk ``value`` (the value of element ``decl``) along the XSD, rebuilding it.

    ``leaf(value, primitive_type_name, path)`` converts simple values; ``content_in``/``content_out`` are the
    keys of simple content next to attributes; with ``listify`` a repeated element given as a single
    value becomes a one-item list. Unknown keys raise BridgeError (keeps both sides honest).
    """
    path = f"{path}/{name}"
    xsd_type = decl.type
    if xsd_type.is_simple():
        return leaf(value, _primitive(xsd_type), path)
    if xsd_type.has_simple_content():
        attrs = _attr_table(xsd_type)
        if not isinstance(value, dict):
            return {content_out: leaf(value, _primitive(xsd_type.content), path)}
        out = {}
        for k, v in value.items():
            if k == content_in:
                out[content_out] = leaf(v, _primitive(xsd_type.content), path)
            elif k in attrs:
                out[k] = leaf(v, _primitive(attrs[k].type), f"{path}@{k}")
            else:
                raise BridgeError(f"{path}: unexpected key {k!r}")
        return out
    if not isinstance(value, dict):
        raise BridgeError(f"{path}: expected an object for a complex element, got {value!r}")
    attrs = _attr_table(xsd_type)
    kids = schema.children(xsd_type)
    out = {}
    for k, v in value.items():
        if k in kids:
            child, repeats = kids[k]
            if repeats:
                items = v if isinstance(v, list) else ([v] if listify else v)
                if not isinstance(items, list):
                    raise BridgeError(f"{path}/{k}: repeated element must be a list")
                out[k] = [
                    transform(schema, k, it, child, leaf, content_in, content_out, listify, path)
                    for it in items
                ]
            else:
                if isinstance(v, list):
                    raise BridgeError(f"{path}/{k}: element does not repeat but got a list")
                out[k] = transform(schema, k, v, child, leaf, content_in, content_out, listify, path)
        elif k in attrs:
            out[k] = leaf(v, _primitive(attrs[k].type), f"{path}@{k}")
        elif kids == {} and not attrs:
            out[k] = v  # xs:any / anyType content: pass through
        else:
            raise BridgeError(f"{path}: unexpected key {k!r}")
    return out


def _leaf_to_json(value, prim, path):
    if prim in ("hexBinary", "base64Binary"):
        if not isinstance(value, (bytes, bytearray)):
            raise BridgeError(f"{path}: {prim} value must be bytes, got {type(value).__name__}")
        if prim == "hexBinary":
            return bytes(value).hex().upper()
        return base64.b64encode(bytes(value)).decode("ascii")
    if prim == "boolean":
        if not isinstance(value, bool):
            raise BridgeError(f"{path}: boolean value must be bool, got {value!r}")
        return value
    if isinstance(value, (bytes, bytearray, bool)):
        raise BridgeError(f"{path}: {type(value).__name__} given for a {prim} value")
    return value


def _leaf_from_json(value, prim, path):
    if prim == "hexBinary":
        return bytes.fromhex(value)
    if prim == "base64Binary":
        return base64.b64decode(value)
    if prim == "boolean" and isinstance(value, str):
        return value in ("true", "1")
    return value


def doc_to_json(schema_name: str, doc: dict) -> dict:
    """Our doc -> Josev/EXIficient JSON object (not yet serialised)."""
    (root, value), = _single_root(doc)
    s = _schema(schema_name)
    return {root: transform(s, root, value, _root_decl(s, root, value), _leaf_to_json, _OUR_CONTENT, _JSON_CONTENT, False)}


def json_to_doc(schema_name: str, obj: dict) -> dict:
    """Josev/EXIficient JSON object -> our doc."""
    (root, value), = _single_root(obj)
    s = _schema(schema_name)
    return {root: transform(s, root, value, _root_decl(s, root, value), _leaf_from_json, _JSON_CONTENT, _OUR_CONTENT, True)}


def _root_decl(s, root, value):
    has_attrs = isinstance(value, dict) and (_OUR_CONTENT in value or _JSON_CONTENT in value or "Id" in value)
    return s.root(root, has_attrs)


def _single_root(doc):
    if not isinstance(doc, dict) or len(doc) != 1:
        raise BridgeError("a document must be a dict with exactly one root element")
    return list(doc.items())


# ---------------------------------------------------------------- doc -> XML (fragment path)


def _xml_leaf(value, prim):
    if prim == "hexBinary":
        return bytes(value).hex().upper()
    if prim == "base64Binary":
        return base64.b64encode(bytes(value)).decode("ascii")
    if prim == "boolean":
        return "true" if value else "false"
    return str(value)


def _to_xml(s: _Schema, decl, value, out: list):
    qualified = decl.qualified or decl.is_global()
    ns, local = (decl.target_namespace if qualified else ""), decl.local_name
    xsd_type = decl.type
    attrs = _attr_table(xsd_type) if not xsd_type.is_simple() else {}
    attr_parts = []
    for k, a in attrs.items():
        if isinstance(value, dict) and k in value:
            text = quoteattr(_xml_leaf(value[k], _primitive(a.type)))
            a_ns = a.target_namespace if a.qualified else ""
            if a_ns:  # ISO-2 Id attributes are qualified (MsgDataTypes namespace)
                attr_parts.append(f' xmlns:a="{a_ns}" a:{k}={text}')
            else:
                attr_parts.append(f" {k}={text}")
    attr_text = "".join(attr_parts)
    out.append(f'<{local} xmlns="{ns}"{attr_text}>')  # xmlns="" for unqualified locals (apphand)
    if xsd_type.is_simple():
        out.append(escape(_xml_leaf(value, _primitive(xsd_type))))
    elif xsd_type.has_simple_content():
        content = value.get(_OUR_CONTENT) if isinstance(value, dict) else value
        out.append(escape(_xml_leaf(content, _primitive(xsd_type.content))))
    else:
        kids = s.children(xsd_type)
        for k, (child, _rep) in kids.items():  # declaration order == schema order
            if k in value:
                items = value[k] if isinstance(value[k], list) else [value[k]]
                for it in items:
                    _to_xml(s, child, it, out)
        unknown = set(value) - set(kids) - set(attrs)
        if unknown:
            raise BridgeError(f"{local}: unexpected keys {sorted(unknown)}")
    out.append(f"</{local}>")


def doc_to_xml(schema_name: str, doc: dict) -> str:
    (root, value), = _single_root(doc)
    s = _schema(schema_name)
    out = []
    _to_xml(s, _root_decl(s, root, value), value, out)
    return "".join(out)


def _leaf_from_text(text, prim, path):
    text = text or ""
    if prim == "hexBinary":
        return bytes.fromhex(text.strip())
    if prim == "base64Binary":
        return base64.b64decode("".join(text.split()))
    if prim == "boolean":
        return text.strip() in ("true", "1")
    if prim == "decimal":  # every integer type derives from xs:decimal
        t = text.strip()
        return int(t) if t.lstrip("+-").isdigit() else t
    return text


def _element_to_value(s: _Schema, decl, el, path):
    path = f"{path}/{decl.local_name}"
    xsd_type = decl.type
    if xsd_type.is_simple():
        return _leaf_from_text(el.text, _primitive(xsd_type), path)
    attrs = _attr_table(xsd_type)
    out = {}
    for k, a in attrs.items():
        text = el.get(a.name if a.qualified else k)
        if text is not None:
            out[k] = _leaf_from_text(text, _primitive(a.type), path)
    if xsd_type.has_simple_content():
        out[_OUR_CONTENT] = _leaf_from_text(el.text, _primitive(xsd_type.content), path)
        return out
    kids = s.children(xsd_type)
    for child_el in el:
        local = child_el.tag.rsplit("}", 1)[-1]
        if local not in kids:
            raise BridgeError(f"{path}: unexpected element {local!r}")
        child, repeats = kids[local]
        value = _element_to_value(s, child, child_el, path)
        if repeats:
            out.setdefault(local, []).append(value)
        else:
            out[local] = value
    return out


def xml_to_doc(schema_name: str, xml: str) -> dict:
    import xml.etree.ElementTree as ET

    el = ET.fromstring(xml)
    local = el.tag.rsplit("}", 1)[-1]
    s = _schema(schema_name)
    return {local: _element_to_value(s, s.root(local, bool(el.attrib)), el, "")}


# ------------------------------------------------------------------------------- the JVM


def jar_path(create=False):
    """Path of Josev's EXICodec.jar in Josev's venv (None when there is none); create=True makes the venv
    first if needed (josev.ensure_venv: pinned versions, needs the package registry the first time)."""
    if _HERE not in sys.path:
        sys.path.insert(0, _HERE)
    import josev  # the harness beside this file: stdlib only at import

    if create:
        try:
            josev.ensure_venv()
        except josev.HarnessError:
            return None
    pattern = os.path.join(josev.VENV, "*", "*", "site-packages", "iso15118", "shared", "EXICodec.jar")
    found = sorted(glob.glob(pattern) + glob.glob(os.path.join(
        josev.VENV, "Lib", "site-packages", "iso15118", "shared", "EXICodec.jar")))
    return found[0] if found else None


def _java_executable():
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = os.path.join(java_home, "bin", "java")
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("java")


class _Jvm:
    def __init__(self):
        from py4j.java_gateway import JavaGateway

        t0 = time.perf_counter()
        self.gateway = JavaGateway.launch_gateway(
            classpath=jar_path(),
            java_path=_java_executable(),
            die_on_exit=True,
            javaopts=["--add-opens", "java.base/java.lang=ALL-UNNAMED"],
        )
        jvm = self.gateway.jvm
        self.codec = jvm.com.siemens.ct.exi.main.cmd.EXICodec()
        abstract = jvm.java.lang.Class.forName("com.siemens.ct.exi.main.cmd.AbstractEXICodec")
        field = abstract.getDeclaredField("exiFactory")
        field.setAccessible(True)
        self.factory = field.get(self.codec)
        self.grammars = {}
        for key, fname in (
            ("apphand", "commonAppProtocol"),
            ("din", "dinspec_70121"),
            ("iso2", "iso15118_2_Grammar"),
            ("xmldsig", "core_schema_Protocol"),
        ):
            g_field = abstract.getDeclaredField(fname)
            g_field.setAccessible(True)
            self.grammars[key] = g_field.get(self.codec)
        cls = jvm.java.lang.Class
        sig = self.gateway.new_array(cls, 2)
        sig[0] = cls.forName("java.io.InputStream")
        sig[1] = cls.forName("com.siemens.ct.exi.core.grammars.Grammars")
        self.xml_encode = abstract.getDeclaredMethod("encode", sig)
        self.xml_encode.setAccessible(True)
        sig1 = self.gateway.new_array(cls, 1)
        sig1[0] = cls.forName("java.io.InputStream")
        self.xml_decode = abstract.getDeclaredMethod("decode_stream", sig1)
        self.xml_decode.setAccessible(True)
        self.version = self.codec.get_version()
        self.startup_seconds = time.perf_counter() - t0
        self.lock = threading.RLock()

    def close(self):
        try:
            self.gateway.shutdown()
        except Exception:
            pass


_jvm = None
_jvm_error = None
_jvm_lock = threading.Lock()


def _get_jvm() -> _Jvm:
    global _jvm, _jvm_error
    with _jvm_lock:
        if _jvm is None and _jvm_error is None:
            try:
                _jvm = _Jvm()
                atexit.register(shutdown)
            except Exception as exc:  # noqa: BLE001 - reported through available()
                _jvm_error = f"could not start the EXIficient JVM: {exc!r}"
        if _jvm is None:
            raise BridgeError(_jvm_error)
        return _jvm


def shutdown():
    """Stop the JVM (also registered with atexit)."""
    global _jvm
    with _jvm_lock:
        if _jvm is not None:
            _jvm.close()
            _jvm = None


def available():
    """(True, description) when the bridge works here, else (False, why not)."""
    try:
        import py4j  # noqa: F401
    except ImportError:
        return False, "py4j is not installed (pip install py4j; the dev extra has it)"
    try:
        import xmlschema  # noqa: F401
    except ImportError:
        return False, "xmlschema is not installed (pip install xmlschema)"
    if _java_executable() is None:
        return False, "no java executable on PATH or in JAVA_HOME"
    if jar_path(create=True) is None:
        return False, ("Josev's EXICodec.jar not found: Josev's venv could not be made "
                       "(python3 tests/interop/josev.py setup says why)")
    for folder, filename in _XSD_FILES.values():
        if not os.path.isfile(os.path.join(SCHEMAS_DIR, folder, filename)):
            return False, f"schema {folder}/{filename} not found under {SCHEMAS_DIR}"
    try:
        jvm = _get_jvm()
    except BridgeError as exc:
        return False, str(exc)
    return True, f"EXIficient codec {jvm.version} from {jar_path()}"


def startup_seconds():
    """Wall time the JVM took to start and load the codec (None before it starts)."""
    return None if _jvm is None else _jvm.startup_seconds


# ----------------------------------------------------------------------------- codec API


def _check(schema, allowed):
    if schema not in allowed:
        raise ValueError(f"schema must be one of {allowed}, not {schema!r}")


def encode(schema: str, doc: dict, via: str = "json") -> bytes:
    """Encode a whole message (doc) with EXIficient; schema is "apphand", "din" or "iso2".

    via "json": Josev's path (its JAXB/MOXy JSON front end, then EXIficient). via "xml": XML built
    from the doc goes straight into EXIficient with the same built-in grammars, bypassing Josev's
    JAXB model (about 100x faster, and free of that model's quirks; see the module docstring).
    """
    _check(schema, tuple(_DOC_ROOTS))
    (root, _), = _single_root(doc)
    if root not in _DOC_ROOTS[schema]:
        raise BridgeError(f"{root!r} is not a {schema} message root (use encode_fragment)")
    if via == "xml":
        return _encode_xml(schema, doc_to_xml(schema, doc), fragment=False)
    if via != "json":
        raise ValueError('via must be "json" or "xml"')
    return _encode_json(schema, doc_to_json(schema, doc))


def decode(schema: str, data: bytes, via: str = "json") -> dict:
    """Decode a whole EXI message with EXIficient into our doc (via: see encode)."""
    _check(schema, tuple(_DOC_ROOTS))
    if via == "xml":
        return xml_to_doc(schema, _decode_xml(schema, data, fragment=False))
    if via != "json":
        raise ValueError('via must be "json" or "xml"')
    return json_to_doc(schema, _decode_json(schema, data, fragment=False))


def encode_fragment(grammar: str, doc: dict, via: str | None = None) -> bytes:
    """Encode an EXI fragment.

    grammar "iso2": the ISO 15118-2 schema set in fragment mode, as for the Id-carrying elements that
    a V2G signature references (AuthorizationReq, CertificateInstallationReq, MeteringReceiptReq,
    ContractSignatureCertChain, ContractSignatureEncryptedPrivateKey, DHpublickey, eMAID, SalesTariff)
    and SignedInfo. grammar "xmldsig": the xmldsig-core schema alone, which is what Josev (and
    RISE-V2G) use for SignedInfo when signing.

    via "json" is Josev's own path (its JSON front end, then EXIficient); via "xml" (iso2 only) feeds
    XML built from the doc straight to EXIficient, bypassing the front end's quirks. Default: "json",
    except SignedInfo under "iso2", which the JSON front end cannot put in the xmldsig namespace.
    """
    _check(grammar, _FRAGMENT_GRAMMARS)
    (root, value), = _single_root(doc)
    if via is None:
        is_dsig = _root_decl(_schema(grammar), root, value).target_namespace == NAMESPACES["xmldsig"]
        via = "xml" if grammar == "iso2" and is_dsig else "json"
    if via == "xml":
        if grammar != "iso2":
            raise ValueError('via="xml" is only wired for the "iso2" grammar')
        return _encode_xml("iso2", doc_to_xml("iso2", doc), fragment=True)
    if via != "json":
        raise ValueError('via must be "json" or "xml"')
    return _encode_json(grammar, doc_to_json(grammar, doc))


def decode_fragment(grammar: str, data: bytes) -> dict:
    """Decode an EXI fragment (see encode_fragment for the grammars).

    The jar's JSON path only knows some fragment roots (its JAXB context lacks e.g. SalesTariff and
    ContractSignatureCertChain as root elements); for the others the EXIficient decoder's XML output
    is converted to our doc here, directed by the XSD.
    """
    _check(grammar, _FRAGMENT_GRAMMARS)
    try:
        return json_to_doc(grammar, _decode_json(grammar, data, fragment=True))
    except BridgeError as exc:
        if "UnmarshalException" not in str(exc):
            raise
    return xml_to_doc(grammar, _decode_xml(grammar, data, fragment=True))


def encode_json(schema: str, obj: dict) -> bytes:
    """Low level: encode Josev-style JSON (as a dict) as-is."""
    return _encode_json(schema, obj)


def decode_json(schema: str, data: bytes, fragment: bool = False) -> dict:
    """Low level: decode to Josev-style JSON (as a dict)."""
    return _decode_json(schema, data, fragment)


def _encode_json(schema, obj) -> bytes:
    jvm = _get_jvm()
    text = json.dumps(obj)
    with jvm.lock:
        out = jvm.codec.encode(text, NAMESPACES[schema])
        if out is None:
            raise BridgeError(f"EXIficient encode failed: {jvm.codec.get_last_encoding_error()}")
    return bytes(out)


def _decode_json(schema, data, fragment) -> dict:
    jvm = _get_jvm()
    with jvm.lock:
        if fragment:
            jvm.factory.setFragment(True)
        try:
            out = jvm.codec.decode(bytes(data), NAMESPACES[schema])
        finally:
            jvm.factory.setFragment(False)
        if out is None:
            raise BridgeError(f"EXIficient decode failed: {jvm.codec.get_last_decoding_error()}")
    return json.loads(out)


def _decode_xml(grammar, data, fragment) -> str:
    jvm = _get_jvm()
    gw = jvm.gateway
    with jvm.lock:
        args = gw.new_array(gw.jvm.java.lang.Object, 1)
        args[0] = gw.jvm.java.io.ByteArrayInputStream(bytes(data))
        jvm.factory.setGrammars(jvm.grammars[grammar])
        jvm.factory.setFragment(fragment)
        try:
            return jvm.xml_decode.invoke(jvm.codec, args)
        except Exception as exc:  # py4j.protocol.Py4JJavaError
            raise BridgeError(f"EXIficient decode failed: {exc}") from None
        finally:
            jvm.factory.setFragment(False)


def _encode_xml(grammar, xml: str, fragment) -> bytes:
    jvm = _get_jvm()
    gw = jvm.gateway
    with jvm.lock:
        stream = gw.jvm.java.io.ByteArrayInputStream(xml.encode("utf-8"))
        args = gw.new_array(gw.jvm.java.lang.Object, 2)
        args[0] = stream
        args[1] = jvm.grammars[grammar]
        jvm.factory.setFragment(fragment)
        try:
            result = jvm.xml_encode.invoke(jvm.codec, args)
        finally:
            jvm.factory.setFragment(False)
        data = bytes(result.toByteArray()) if result is not None else b""
    if not data:
        raise BridgeError("EXIficient XML encode failed (the jar prints the reason to its stdout)")
    return data
