"""`evpilot exi`: decode and encode EXI messages (SupportedAppProtocol, DIN SPEC 70121, ISO 15118-2).

How this works
--------------
`evpilot exi decode` takes EXI streams as hex (arguments, or one per line on standard input with `-`) and
prints one JSON document per line in the JSON view of evpilot_host.jsonview. `evpilot exi encode` reads JSON
documents, one per line, and prints one hex line each. Every input is a batch: each item (argument or line)
is converted on its own, good results go to stdout in input order, and a bad item costs one line on stderr
naming the item (`evpilot: line 3: ...`, `evpilot: argument 2: ...`), never a traceback; the exit status is 1
at the end if any item failed. Problems with the command line itself (unknown schema, options that do not go
together) stop before any input is read, with exit status 2, as argparse does.

`--v2gtp` checks (decode) or adds (encode) the 8-byte V2GTP header of evpilot.v2g.v2gtp, payload type 0x8001.
`--schema auto` (decode only) picks the set with exi.detect_schema. `--fragment` works on EXI fragments
(ISO 15118-2 message elements and xmldsig SignedInfo, as signed in Plug&Charge).

`evpilot exi schemas` lists the schema sets; `evpilot exi generate [--check]` runs the grammar generator
(evpilot_host.exigen) that writes the codec's tables from the XSDs: by default from the project's schemas/ (an
installed evpilot carries a copy) into the folder of the evpilot.exi package that this command imports.

cli.py calls main(args) with the words after `evpilot exi`; `python -m evpilot_host.commands.exi` works
too.
"""

import argparse
import json
import os
import sys

from evpilot import exi
from evpilot.errors import EvpilotError, PeerError
from evpilot.v2g import v2gtp
from evpilot_host import jsonview

PROG = "evpilot exi"

DOCUMENT_SCHEMAS = ("apphand", "din", "iso2")
FRAGMENT_SCHEMAS = ("iso2", "xmldsig")

# name, what it is, what the codec does with it
SCHEMA_SETS = (
    ("apphand", "SupportedAppProtocol handshake (ISO 15118-2 Annex and DIN SPEC 70121)", "documents"),
    ("din", "DIN SPEC 70121:2014 messages", "documents"),
    ("iso2", "ISO 15118-2:2013 messages", "documents, fragments"),
    ("xmldsig", "W3C XML Signature (SignedInfo signed in Plug&Charge)", "fragments"),
)

# V2GTP payload types, for messages about the ones decode does not take (ISO 15118-2 Table 10; -20 Table 13).
_PAYLOAD_TYPES = {
    v2gtp.EXI: "EXI",
    v2gtp.EXI_20_AC: "ISO 15118-20 AC",
    v2gtp.EXI_20_DC: "ISO 15118-20 DC",
    v2gtp.EXI_20_WPT: "ISO 15118-20 WPT",
    v2gtp.EXI_20_ACDP: "ISO 15118-20 ACDP",
    v2gtp.SDP_REQUEST: "SDP request",
    v2gtp.SDP_RESPONSE: "SDP response",
}

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class _CommandLineError(Exception):
    """The command line itself is wrong: reported before any input is read, exit status 2."""


class _Parser(argparse.ArgumentParser):
    # argparse prints usage and exits; we want one line and a return value (cli.py and tests call main).
    def error(self, message):
        raise _CommandLineError("%s: %s" % (self.prog, message))


# ---- inputs -----------------------------------------------------------------------------------------------


def parse_hex(text):
    """bytes from a hex stream; whitespace anywhere is ignored ("80 98 02"). Raises PeerError."""
    digits = "".join(text.split())
    if not digits:
        raise PeerError("empty input: expected hex digits")
    for i, c in enumerate(digits):
        if c not in _HEX_DIGITS:
            raise PeerError("not hex: %r at digit %d" % (c, i + 1))
    if len(digits) % 2:
        raise PeerError("odd number of hex digits (%d): a byte is two digits" % len(digits))
    return bytes.fromhex(digits)


def _lines(stream):
    """(label, text, problem) for each non-blank line of a text or binary stream; lines count from 1."""
    raw = getattr(stream, "buffer", stream)
    for n, line in enumerate(raw, 1):
        problem = None
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as e:
                line, problem = "", "not UTF-8 text (byte 0x%02x at column %d)" % (line[e.start], e.start + 1)
        if n == 1:
            line = line.lstrip("\ufeff")  # a byte-order mark from an editor
        if problem is None and not line.strip():
            continue
        yield "line %d" % n, line, problem


def _arguments(words):
    for n, word in enumerate(words, 1):
        yield "argument %d" % n, word, None


def _open_input(name):
    if name == "-":
        return sys.stdin, False
    try:
        return open(name, "rb"), True
    except OSError as e:
        raise _CommandLineError("cannot read %s: %s" % (name, e.strerror or e))


# ---- the conversions --------------------------------------------------------------------------------------


def strip_v2gtp(data):
    """The EXI payload of one V2GTP message that must fill data exactly. Raises PeerError."""
    ptype, n = v2gtp.parse_header(data)
    rest = len(data) - v2gtp.HEADER_LEN
    if rest < n:
        raise PeerError("V2GTP header announces %d payload bytes, only %d follow" % (n, rest))
    if rest > n:
        raise PeerError("%d byte%s after the %d-byte V2GTP payload" % (rest - n, "s" if rest - n > 1 else "", n))
    if ptype != v2gtp.EXI:
        name = _PAYLOAD_TYPES.get(ptype, "unknown")
        raise PeerError("V2GTP payload type 0x%04x (%s) is not supported; exi decode takes 0x8001 (EXI: "
                        "SupportedAppProtocol, DIN SPEC 70121, ISO 15118-2)" % (ptype, name))
    return data[v2gtp.HEADER_LEN:]


def _decoder(opts):
    def decode(text):
        data = parse_hex(text)
        if opts.v2gtp:
            data = strip_v2gtp(data)
        schema = opts.schema
        if schema == "auto":
            schema = exi.detect_schema(data)
            if schema is None:
                raise PeerError("--schema auto: the stream starts %s, which is no SupportedAppProtocol, "
                                "DIN SPEC 70121 or ISO 15118-2 document; name the set with --schema"
                                % (data[:2].hex(" ") or "empty"))
        try:
            doc = exi.decode_fragment(schema, data) if opts.fragment else exi.decode(schema, data)
        except EvpilotError as e:
            raise PeerError("decoding as %s: %s" % (schema, e)) from None
        return jsonview.dumps(doc, pretty=opts.pretty)

    return decode


def _encoder(opts):
    def encode(text):
        try:
            doc = json.loads(text)
        except ValueError as e:  # json.JSONDecodeError, or a number too long for int()
            where = " at column %d" % e.colno if hasattr(e, "colno") else ""
            raise PeerError("invalid JSON: %s%s (one document per line)" % (getattr(e, "msg", e), where)) from None
        try:
            data = exi.encode_fragment(opts.schema, doc) if opts.fragment else exi.encode(opts.schema, doc)
        except EvpilotError as e:
            raise PeerError("encoding as %s: %s" % (opts.schema, e)) from None
        if opts.v2gtp:
            data = v2gtp.build(v2gtp.EXI, data)
        return data.hex()

    return encode


def _run_batch(items, convert):
    """convert each item; results to stdout in order, one line per failure to stderr. Exit status."""
    status = 0
    seen = False
    for label, text, problem in items:
        seen = True
        try:
            if problem is not None:
                raise PeerError(problem)
            result = convert(text)
        except EvpilotError as e:
            _report("%s: %s" % (label, e))
            status = 1
            continue
        except Exception as e:  # noqa: BLE001 - a codec bug must not end the batch or show a traceback
            _report("%s: internal error %s: %s (please report this input)" % (label, type(e).__name__, e))
            status = 1
            continue
        sys.stdout.write(result + "\n")
    if not seen:
        _report("no input: every line was blank")
        status = 1
    return status


def _report(message):
    sys.stdout.flush()  # keep stdout and stderr in input order on a terminal
    sys.stderr.write("evpilot: %s\n" % message)


# ---- subcommands ------------------------------------------------------------------------------------------


def _check_schema(opts, command):
    s = opts.schema
    if s is None:
        if command == "encode":
            raise _CommandLineError("encode needs --schema (one of %s)" % ", ".join(DOCUMENT_SCHEMAS))
        if opts.fragment:
            raise _CommandLineError("--fragment needs --schema (one of %s)" % ", ".join(FRAGMENT_SCHEMAS))
        s = opts.schema = "auto"
    if opts.fragment:
        if opts.v2gtp:
            raise _CommandLineError("--v2gtp does not go with --fragment: V2GTP carries whole documents")
        if s == "auto":
            raise _CommandLineError("--schema auto cannot tell fragments apart: use %s" % " or ".join(FRAGMENT_SCHEMAS))
        if s not in FRAGMENT_SCHEMAS:
            known = s in DOCUMENT_SCHEMAS
            raise _CommandLineError("%s schema %r for --fragment (fragments use %s)"
                                    % ("no fragments in" if known else "unknown", s, " or ".join(FRAGMENT_SCHEMAS)))
        return
    if s == "auto" and command == "encode":
        raise _CommandLineError("--schema auto is for decode only: encode needs the set named (%s)"
                                % ", ".join(DOCUMENT_SCHEMAS))
    if s == "xmldsig":
        raise _CommandLineError("schema xmldsig holds fragments only: add --fragment")
    if s != "auto" and s not in DOCUMENT_SCHEMAS:
        choices = DOCUMENT_SCHEMAS + (("auto",) if command == "decode" else ())
        raise _CommandLineError("unknown schema %r (choose from %s)" % (s, ", ".join(choices)))


def _cmd_decode(opts):
    _check_schema(opts, "decode")
    if "-" in opts.hex:
        if len(opts.hex) != 1:
            raise _CommandLineError("'-' (read standard input) must be the only HEX argument")
        items = _lines(sys.stdin)
    else:
        items = _arguments(opts.hex)
    return _run_batch(items, _decoder(opts))


def _cmd_encode(opts):
    _check_schema(opts, "encode")
    stream, close = _open_input(opts.file)
    try:
        return _run_batch(_lines(stream), _encoder(opts))
    finally:
        if close:
            stream.close()


def _cmd_schemas(opts):
    if opts.json:
        rows = [{"name": n, "description": d, "codec": c.split(", ")} for n, d, c in SCHEMA_SETS]
        sys.stdout.write(json.dumps(rows) + "\n")
        return 0
    for name, description, what in SCHEMA_SETS:
        sys.stdout.write("%-8s %-54s %s\n" % (name, description, what))
    return 0


def _cmd_generate(opts):
    try:
        from evpilot_host import exigen
    except ImportError as e:
        raise _CommandLineError("generate needs %s: python3 -m pip install %s" % ((e.name or e,) * 2)) from None
    # The XSDs: the project's schemas/ (a copy inside an installed evpilot), or --schemas. The tables: the
    # evpilot.exi package this command runs, wherever it is installed, or --out.
    schemas = opts.schemas or exigen.default_schemas_dir()
    missing = [name for name in exigen.SCHEMA_SETS.values() if not os.path.isfile(os.path.join(schemas, name))]
    if missing:
        hint = "" if opts.schemas else " (the project's schemas/ folder; or give --schemas DIR)"
        raise _CommandLineError("generate: no XSDs in %s%s: %s is missing" % (schemas, hint, missing[0]))
    out = opts.out or os.path.dirname(os.path.abspath(exi.__file__))
    return exigen.main((["--check"] if opts.check else []) + ["--schemas", schemas, "--out", out])


def _parser():
    p = _Parser(prog=PROG, description="Encode and decode EXI messages of SupportedAppProtocol, "
                "DIN SPEC 70121 and ISO 15118-2 (JSON view: binary as lowercase hex).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    d = sub.add_parser("decode", help="EXI hex -> one JSON document per line",
                       description="Decode EXI streams given as hex; prints one JSON document per line.")
    d.add_argument("hex", nargs="+", metavar="HEX",
                   help="an EXI stream as hex (spaces allowed); '-' alone reads one stream per line from stdin")
    d.add_argument("--schema", metavar="SET", help="apphand, din, iso2 or auto (default: auto; "
                   "iso2 or xmldsig with --fragment)")
    d.add_argument("--v2gtp", action="store_true", help="each stream starts with a V2GTP header (type 0x8001)")
    d.add_argument("--fragment", action="store_true", help="the streams are EXI fragments, not documents")
    d.add_argument("--pretty", action="store_true", help="indent the JSON (default: one compact line each)")

    e = sub.add_parser("encode", help="JSON documents (one per line) -> EXI hex",
                       description="Encode JSON documents, one per line; prints one hex line each.")
    e.add_argument("file", nargs="?", default="-", metavar="FILE", help="JSON lines to read (default: - stdin)")
    e.add_argument("--schema", metavar="SET", help="apphand, din or iso2 (iso2 or xmldsig with --fragment)")
    e.add_argument("--v2gtp", action="store_true", help="put a V2GTP header (type 0x8001) in front")
    e.add_argument("--fragment", action="store_true", help="encode EXI fragments, not documents")

    s = sub.add_parser("schemas", help="list the schema sets", description="List the EXI schema sets.")
    s.add_argument("--json", action="store_true", help="as one JSON list")

    g = sub.add_parser("generate", help="regenerate the grammar tables from the XSDs",
                       description="Run the EXI grammar generator (python -m evpilot_host.exigen).")
    g.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table differs from the XSDs")
    g.add_argument("--schemas", metavar="DIR", help="folder with the XSDs (default: the project's schemas/)")
    g.add_argument("--out", metavar="DIR", help="where the tables_<set>.py modules go (default: evpilot.exi's "
                   "own folder)")
    return p


_COMMANDS = {"decode": _cmd_decode, "encode": _cmd_encode, "schemas": _cmd_schemas, "generate": _cmd_generate}


def main(argv=None):
    """Run `evpilot exi` with argv, the words after `exi`. Returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    try:
        try:
            opts = parser.parse_args(argv)
        except SystemExit as e:  # --help
            return e.code if isinstance(e.code, int) else 0
        if opts.command is None:
            parser.print_help(sys.stderr)
            return 2
        return _COMMANDS[opts.command](opts)
    except _CommandLineError as e:
        _report("error: %s" % e)
        return 2
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's exit flush from complaining.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
