"""EXI grammar generator: XSDs in, compact grammar tables for firmware/evpilot/exi out.

How this works
--------------
ISO 15118 uses schema-informed, bit-packed, non-strict EXI with only first-level productions. For each
schema set this module reads the XSDs with `xmlschema` and builds:

* one grammar per complex type (a simple-typed element's grammar is always CH then EE, so its entry
  names the value type instead): the element's content
  model as a Glushkov automaton over attribute uses (sorted by local name, then namespace) followed by the
  content particles. A state is "after position p"; its productions are the positions that may follow p,
  then EE when the element may end there, then CH (typed simple content, or untyped text for mixed types).
  Bounded repetition (maxOccurs 20, 1024, ...) is not unrolled into one state per occurrence as the EXI
  specification describes it; the state carries the (min, max) bounds and the runtime keeps a counter,
  which yields the same event codes with a few hundred states instead of thousands.
* the document grammar (all global elements sorted by local name, then namespace, then SE(*)) and the
  fragment grammar (every element declaration, global or local, with distinct qualified names, sorted the
  same way; a name declared with different types gets the relaxed element-fragment grammar).

The tables are written as Python modules of name tuples and packed bytes literals
(firmware/evpilot/exi/tables_<set>.py; the layout is in exigen_tables.py, which writes them); the runtime in
firmware/evpilot/exi/codec.py interprets them. Output is deterministic: running the generator
again over the same XSDs rewrites the same bytes (tests/test_exi_generator.py checks it).

Run:  python -m evpilot_host.exigen [--schemas DIR] [--out DIR] [--check]
"""

import argparse
import os
import sys

import xmlschema
from xmlschema.validators import XsdAnyElement, XsdElement, XsdGroup

from evpilot_host import exigen_tables, exigen_types
from evpilot_host.exigen_tables import GeneratorError

# The schema sets: name -> root XSD (relative to the schemas folder). ISO 15118-20 is a later addition of
# entries here: each of its message sets (CommonMessages, AC, DC, ACDP, WPT) is one more line.
SCHEMA_SETS = {
    "apphand": "apphand/V2G_CI_AppProtocol.xsd",
    "din": "din70121/V2G_CI_MsgDef.xsd",
    "iso2": "iso15118-2/V2G_CI_MsgDef.xsd",
    "xmldsig": "xmldsig-core-schema.xsd",
}

# The table format (production kinds and flags, value kinds, entry bits) is the firmware's own.
from evpilot.exi.format import (  # noqa: E402
    F_ALT,
    F_LIST,
    P_AT,
    P_ATANY,
    P_CH,
    P_CHU,
    P_EE,
    P_SE,
    P_SEANY,
)

UNBOUNDED = 0xFFFF  # hi bound meaning "no maximum" in COUNTED

from evpilot_host.exigen_types import XS  # noqa: E402
_BUILTIN_NS = (
    "http://www.w3.org/2001/XMLSchema",
    "http://www.w3.org/XML/1998/namespace",
    "http://www.w3.org/2001/XMLSchema-instance",
)


def _qkey(qname):
    """Sort key of a qualified name: local name, then namespace (EXI's lexicographic order)."""
    if qname.startswith("{"):
        ns, local = qname[1:].split("}", 1)
    else:
        ns, local = "", qname
    return (local, ns)


def _local(qname):
    return _qkey(qname)[0]


class _Pos:
    """A Glushkov position: one attribute use, element, wildcard or text slot of a content model."""

    def __init__(self, kind, arg, is_list=False, lo=1, hi=1):
        self.kind = kind
        self.arg = arg
        self.is_list = is_list
        self.lo = lo
        self.hi = hi  # None = unbounded
        self.follow = []
        self.state = None

    @property
    def counted(self):
        return self.lo > 1 or (self.hi is not None and self.hi > 1)


class SchemaSet:
    def __init__(self, name, xsd_path):
        self.set_name = name
        self.schema = xmlschema.XMLSchema(xsd_path)
        self.maps = self.schema.maps
        self.names = []  # local names used as dict keys
        self._name_idx = {}
        self.values = []  # value type descriptors (tuples)
        self._value_idx = {}
        self.elems = []  # (name index, start state, bare, abstract)
        self._elem_idx = {}
        self.attrs = []  # (name index, value type)
        self._attr_idx = {}
        self.states = []  # list of production lists [(kind, arg, next_state, flags)]
        self.counted = {}  # state -> (lo, hi)
        self._type_start = {}  # id(type) -> start state
        self._keep = []
        self.warnings = []

    # ---- tables -------------------------------------------------------------------------------------

    def name(self, local):
        i = self._name_idx.get(local)
        if i is None:
            i = self._name_idx[local] = len(self.names)
            self.names.append(local)
        return i

    def value(self, st):
        desc = exigen_types.describe_simple(st)
        i = self._value_idx.get(desc)
        if i is None:
            i = self._value_idx[desc] = len(self.values)
            self.values.append(desc)
        return i

    def _new_state(self):
        self.states.append(None)
        return len(self.states) - 1

    def elem_entry(self, el):
        """Element entry for an element declaration (its local name and its type's grammar)."""
        t = el.type
        bare = t.is_simple()
        # A simple-typed element's grammar is always CH [value] then EE: the entry names the value type.
        start = self.value(t) if bare else self.grammar(t)
        abstract = bool(getattr(el, "abstract", False))
        key = (el.local_name, start, bare, abstract)
        i = self._elem_idx.get(key)
        if i is None:
            i = self._elem_idx[key] = len(self.elems)
            self.elems.append((self.name(el.local_name), start, bare, abstract))
        return i

    def attr_entry(self, local, st):
        v = self.value(st)
        key = (local, v)
        i = self._attr_idx.get(key)
        if i is None:
            i = self._attr_idx[key] = len(self.attrs)
            self.attrs.append((self.name(local), v))
        return i

    # ---- simple types -------------------------------------------------------------------------------

    # ---- complex types ------------------------------------------------------------------------------

    def grammar(self, t):
        """Start state of the grammar of complex type t (built on first use)."""
        s = self._type_start.get(id(t))
        if s is not None:
            return s
        self._keep.append(t)  # keeps id(t) unique while the tables are built
        s = self._type_start[id(t)] = self._new_state()
        self._build_complex(t, s)
        return s

    def _build_complex(self, t, start):
        # Positions: attribute uses first (sorted), then the content model.
        attr_positions = []
        for qname, a in sorted(t.attributes.items(), key=lambda kv: _qkey(kv[0] or "")):
            if qname is None or a.use == "prohibited":
                if qname is None:
                    raise GeneratorError("anyAttribute in %s is not supported" % t)
                continue
            p = _Pos(P_AT, self.attr_entry(a.local_name, a.type))
            p.optional = a.use != "required"
            attr_positions.append(p)

        positions = list(attr_positions)
        if t.has_simple_content():
            p = _Pos(P_CH, self.value(t.content))
            positions.append(p)
            first, last, nullable = [p], [p], False
        elif t.is_empty():
            first, last, nullable = [], [], True
        else:
            first, last, nullable = self._particle(t.content, positions, False)

        # The attribute uses (each optional or required) come before the content model, as a sequence.
        subs = [([p], [p], p.optional) for p in attr_positions]
        first, last, nullable = _sequence(subs + [(first, last, nullable)])

        # A document is a dict: one key per child name. Two particles with one name and different types
        # could not be told apart (xmldsig's PGPData has the same PGPKeyPacket in two choice branches: fine).
        by_name = {}
        for p in positions:
            if p.kind == P_SE:
                nm = self.names[self.elems[p.arg][0]]
                if nm in by_name and by_name[nm].arg != p.arg:
                    raise GeneratorError("%s has two particles named %s: documents could not tell them apart"
                                         % (t, nm))
                by_name[nm] = p

        all_last = set(id(p) for p in last)
        start_prods = [(q, None) for q in first]
        for p in positions:
            p.state = self._new_state()
        self.states[start] = self._productions(start_prods, nullable, t.mixed, start, None)
        for p in positions:
            prods = [(q, None) for q in _dedupe(p.follow)]
            self.states[p.state] = self._productions(prods, id(p) in all_last, t.mixed, p.state, p)
            if p.counted:
                if not p.follow or p.follow[0] is not p:
                    raise GeneratorError("bounded repetition of %s in %s is not a self loop" % (p.arg, t))
                for q in p.follow[1:]:
                    if q is p:
                        raise GeneratorError("ambiguous repetition in %s" % t)
                self.counted[p.state] = (p.lo, UNBOUNDED if p.hi is None else p.hi)

    def _productions(self, follow, accepting, mixed, here, pos):
        order = {P_AT: 0, P_ATANY: 1, P_SE: 2, P_SEANY: 4, P_EE: 5, P_CH: 6, P_CHU: 6}
        prods = []
        for q, _ in follow:
            flags = F_LIST if q.is_list else 0
            prods.append((q.kind, q.arg, q.state, flags))
        if accepting:
            prods.append((P_EE, 0, 0, 0))
        # Mixed content adds untyped CH wherever content may begin (no required attribute pending).
        if mixed and (accepting or any(q.kind != P_AT for q, _ in follow)):
            prods.append((P_CHU, 0, here, 0))
        prods.sort(key=lambda pr: order[pr[0]])  # stable: keeps schema order within a kind
        if not prods:
            raise GeneratorError("state with no productions")
        return prods

    def _particle(self, part, positions, in_repeat):
        """Glushkov construction; returns (first, last, nullable) and fills positions' follow lists."""
        lo, hi = part.min_occurs, part.max_occurs
        repeats = hi is None or hi > 1
        if isinstance(part, XsdElement):
            members = self._members(part)
            ps = []
            for el in members:
                counted = len(members) == 1
                p = _Pos(P_SE, self.elem_entry(el), is_list=repeats or in_repeat,
                         lo=lo if counted else 1, hi=hi if counted else 1)
                positions.append(p)
                ps.append(p)
            if repeats:
                if len(ps) > 1 and hi is not None:
                    raise GeneratorError("bounded repetition of substitution group %s" % part)
                for p in ps:
                    p.follow.extend(ps)
            return list(ps), list(ps), lo == 0
        if isinstance(part, XsdAnyElement):
            p = _Pos(P_SEANY, 0, is_list=True)
            positions.append(p)
            if repeats:
                p.follow.append(p)
            return [p], [p], lo == 0
        if isinstance(part, XsdGroup):
            if part.model == "all":
                raise GeneratorError("xs:all groups are not supported (%s)" % part)
            inner_repeat = in_repeat or repeats
            subs = [self._particle(c, positions, inner_repeat) for c in part]
            if part.model == "sequence":
                first, last, nullable = _sequence(subs)
            else:  # choice
                first, last, nullable = [], [], False
                for f, l, n in subs:
                    first = first + f
                    last = last + l
                    nullable = nullable or n
                if not subs:
                    nullable = True
            if repeats:
                if hi is not None:
                    self.warnings.append("bounded group repetition treated as unbounded: %s" % part)
                for p in last:
                    p.follow.extend(first)
            return first, last, nullable or lo == 0
        raise GeneratorError("unexpected particle %r" % (part,))

    def _members(self, el):
        """The element declarations a particle stands for: itself and its substitution group, sorted."""
        head = el.ref if el.ref is not None else el
        found = {}

        def add(e):
            # Abstract heads stay in the list: deployed codecs (EXIficient, and the vectors) count them.
            found[e.name] = e
            for m in self.maps.substitution_groups.get(e.name, ()):
                if m.name not in found:
                    add(m)

        if el.ref is None:
            return [el]
        add(head)
        return [found[k] for k in sorted(found, key=_qkey)]

    # ---- document and fragment grammars ---------------------------------------------------------------

    def global_elements(self):
        return sorted((e for e in self.maps.elements.values() if e.target_namespace not in _BUILTIN_NS),
                      key=lambda e: _qkey(e.name))

    def all_declarations(self):
        """Every element declaration (global and local) by qualified name."""
        decls = {}
        seen_types = set()

        def visit_type(t):
            if t.is_simple() or id(t) in seen_types:
                return
            seen_types.add(id(t))
            if t.has_simple_content() or t.is_empty():
                return
            visit_particle(t.content)

        def visit_particle(p):
            if isinstance(p, XsdElement):
                e = p.ref if p.ref is not None else p
                decls.setdefault(e.name, []).append(e)
                visit_type(e.type)
            elif isinstance(p, XsdGroup):
                for c in p:
                    visit_particle(c)

        for e in self.global_elements():
            decls.setdefault(e.name, []).append(e)
            visit_type(e.type)
        return decls

    def build(self):
        self.doc = [self.elem_entry(e) for e in self.global_elements()]
        decls = self.all_declarations()
        frag = []
        relaxed = []
        for qname in sorted(decls, key=_qkey):
            types = {}
            for e in decls[qname]:
                types.setdefault(id(e.type), e)
            if len(types) == 1:
                frag.append(self.elem_entry(next(iter(types.values()))))
            else:
                frag.append(None)
                relaxed.append((len(frag) - 1, qname))
        if relaxed:
            rel_states = (self._new_state(), self._new_state(), self._new_state())
            for i, qname in relaxed:
                key = (_local(qname), rel_states[0], False, False)
                self._elem_idx[key] = len(self.elems)
                self.elems.append((self.name(_local(qname)), rel_states[0], False, False))
                frag[i] = self._elem_idx[key]
            self.relaxed_qnames = [q for _, q in relaxed]
            self._relaxed_grammar(frag, decls, rel_states)
        self.frag = frag

    def _relaxed_grammar(self, frag, decls, states):
        """EXI's relaxed element-fragment grammar (three states) for names declared with several types:
        every attribute of the set (schema-typed where all its declarations agree), then every element
        of the fragment grammar, SE(*), EE and untyped CH."""
        attrs = {}
        for e_list in decls.values():
            for e in e_list:
                if e.type.is_complex():
                    for qname, a in e.type.attributes.items():
                        if qname:
                            attrs.setdefault(qname, {})[id(a.type)] = a.type
        at_entries = []
        for qname in sorted(attrs, key=_qkey):
            types = list(attrs[qname].values())
            st = types[0] if len(types) == 1 else self.maps.types[XS + "string"]
            at_entries.append(self.attr_entry(_local(qname), st))
        # The encoder needs to know which of several same-named attributes (ISO-2 has three Id) to write:
        # the one declared on the relaxed elements themselves; the others are marked F_ALT.
        own = set()
        for rq in self.relaxed_qnames:
            for e in decls[rq]:
                if e.type.is_complex():
                    own.update(q for q in e.type.attributes if q)
        local_count = {}
        for qname in attrs:
            local_count[_local(qname)] = local_count.get(_local(qname), 0) + 1
        at_flags = []
        for qname in sorted(attrs, key=_qkey):
            alt = local_count[_local(qname)] > 1 and qname not in own
            at_flags.append(F_ALT if alt else 0)
        s0, s1, s2 = states
        ses = [(P_SE, f, s2, F_LIST) for f in frag]  # any element may come again: lists
        tail = [(P_SEANY, 0, s2, 0), (P_EE, 0, 0, 0), (P_CHU, 0, s2, 0)]
        self.states[s0] = ([(P_AT, a, s0, f) for a, f in zip(at_entries, at_flags)] + [(P_ATANY, 0, s0, 0)]
                           + ses + tail)
        self.states[s1] = ses + tail
        self.states[s2] = ses + tail


def _sequence(subs):
    """Glushkov sequence of (first, last, nullable) parts: links each part's last to what may follow."""
    first, last, nullable = [], [], True
    for f, l, n in subs:
        for p in last:
            p.follow.extend(f)
        if nullable:
            first = first + f
        last = (last + l) if n else list(l)
        nullable = nullable and n
    return first, last, nullable


def _dedupe(items):
    out, seen = [], set()
    for p in items:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def default_schemas_dir():
    """The project's schemas/ folder; an installed evpilot carries a copy as evpilot_host/schemas."""
    here = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(here, "schemas")
    return installed if os.path.isdir(installed) else os.path.normpath(os.path.join(here, "..", "..", "schemas"))


def default_out_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "firmware", "evpilot", "exi"))


def generate(schemas_dir, sets=None):
    """{set name: module source} for the given sets (all by default)."""
    result = {}
    for name in sets or SCHEMA_SETS:
        ss = SchemaSet(name, os.path.join(schemas_dir, SCHEMA_SETS[name]))
        ss.build()
        result[name] = exigen_tables.render(ss)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m evpilot_host.exigen", description=__doc__.split("\n")[0])
    ap.add_argument("--schemas", default=default_schemas_dir(), help="folder with the XSDs (default: schemas/)")
    ap.add_argument("--out", default=default_out_dir(), help="where the tables_<set>.py modules go")
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if a committed table differs")
    args = ap.parse_args(argv)
    drift = []
    for name, src in generate(args.schemas).items():
        path = os.path.join(args.out, "tables_%s.py" % name)
        old = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                old = f.read()
        if args.check:
            if old != src:
                drift.append(path)
        elif old != src:
            with open(path, "w", encoding="utf-8", newline="\n") as f:
                f.write(src)
            print("wrote", path)
    if drift:
        print("tables differ from the XSDs (run python -m evpilot_host.exigen):", *drift, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
