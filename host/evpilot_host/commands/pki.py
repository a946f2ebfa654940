"""`evpilot pki`: generate and inspect ISO 15118-2 test PKIs.

How this works
--------------
`evpilot pki init [DIR]` builds every role of certs/profiles.json (V2G root, CPO/CPS/MO/OEM Sub-CAs, SECC,
CPS, contract and OEM provisioning leaves) with evpilot_host.pki and writes DER, PEM, PKCS#8 keys (0600),
chain files and index.json under DIR (default certs/out), atomically; it refuses a non-empty DIR unless
--force. `evpilot pki show FILE...` prints a summary of each certificate (PEM, possibly several, or DER) and
its deviations from the role's profile; the exit status is 1 if any certificate deviates. `evpilot pki verify
CHAIN --root ROOT...` runs the EV's chain checks. Bad command lines exit 2 (argparse), as do the project's
errors (unreadable files, an existing PKI), through cli.py.

cli.py calls main(args) with the words after `evpilot pki`; `python -m evpilot_host.commands.pki` works
too.
"""

import datetime
import json
import os
import sys
from pathlib import Path

from evpilot.errors import EvpilotError, PeerError, UsageError
from evpilot_host import pki
from evpilot_host.commands import options
from evpilot_host import pki_check

PROG = "evpilot pki"


def _parser():
    parser = options.parser(PROG, "Generate and inspect ISO 15118-2 test PKIs (Annex F profiles).")
    parser.add_argument("--profiles", metavar="FILE", help="certificate profiles (default: certs/profiles.json)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", title="actions", required=True)

    init = sub.add_parser("init", help="generate a complete test PKI",
                          description="Generate a complete ISO 15118-2 test PKI. EC keys cannot be seeded, so every"
                                      " run gives different keys, serials and fingerprints.")
    init.add_argument("dir", nargs="?", default=str(pki.DEFAULT_OUT), help="output directory (default: certs/out)")
    init.add_argument("--validity-days", type=options.number(int, 28, 730), metavar="N",
                      help="contract certificate validity in days (28-730; default from the profile, 365)")
    init.add_argument("--emaid", default=pki.DEFAULT_EMAID, help="eMAID for the contract CN (default %(default)s)")
    init.add_argument("--pcid", default=pki.DEFAULT_PCID,
                      help="PCID for the OEM provisioning CN, 18 capital letters/digits (default %(default)s)")
    init.add_argument("--secc-id", default=pki.DEFAULT_SECC_ID, help="CN of the SECC leaf (default %(default)s)")
    init.add_argument("--force", action="store_true", help="replace an existing PKI in DIR")
    init.add_argument("--json", action="store_true", help="print index.json instead of a summary")

    show = sub.add_parser("show", help="summarise certificates and check them against their profile")
    show.add_argument("files", nargs="+", metavar="FILE", help="certificate files, PEM (one or more) or DER")
    show.add_argument("--role", help="role to check against (default: inferred from DC and basicConstraints)")
    show.add_argument("--json", action="store_true", help="one JSON document per certificate")

    verify = sub.add_parser("verify", help="check a chain (leaf first) against trust anchors as the EV does")
    verify.add_argument("chain", metavar="CHAIN", help="PEM file: leaf, Sub-CA 2, Sub-CA 1")
    verify.add_argument("--root", action="append", required=True, metavar="FILE", help="trust anchor (repeatable)")
    verify.add_argument("--dc", help="required DC of the leaf (CPO for an SECC, CPS for provisioning)")
    verify.add_argument("--at", metavar="TIME", help="check validity at this ISO time (default now; 'never' to skip)")
    return parser


def _read_certs(path):
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise PeerError("cannot read %s: %s" % (path, e.strerror)) from None
    return pki_check.load_certificates(data, path)


def _check_out_dir(path):
    """DIR of `pki init`: a directory or missing, under an existing writable directory; EvpilotError naming it."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise EvpilotError("pki init %s: not a directory" % path)
    up = target.absolute().parent
    while not up.exists():
        up = up.parent
    if not up.is_dir():
        raise EvpilotError("pki init %s: %s is not a directory" % (path, up))
    if not os.access(up, os.W_OK):
        raise EvpilotError("pki init %s: %s is not writable" % (path, up))


def _init(args, profiles, out):
    _check_out_dir(args.dir)
    issued = pki.build_pki(profiles, emaid=args.emaid, pcid=args.pcid, secc_id=args.secc_id,
                           contract_days=args.validity_days)
    try:
        index = pki.write_pki(args.dir, issued, profiles, force=args.force)
    except OSError as e:
        raise EvpilotError("pki init %s: %s%s" % (args.dir, e.strerror or e,
                                                  " (%s)" % e.filename if e.filename else "")) from None
    if args.json:
        out.write(json.dumps(index, indent=2) + "\n")
        return 0
    out.write("wrote a test PKI to %s (%d files)\n" % (args.dir, len(index["files"]) + 1))
    for role, item in issued.items():
        c = item.certificate
        cn = c.subject.get_attributes_for_oid(pki.NameOID.COMMON_NAME)[0].value
        out.write("  %-14s %-24s %3d B DER, valid until %s\n"
                  % (role, cn, len(item.der), c.not_valid_after_utc.strftime("%Y-%m-%d")))
    out.write("  chains: %s\n" % ", ".join(n + ".pem" for n in profiles.get("chains", {})))
    out.write("  oem_prov_leaf.key %s\n" % pki.OEM_KEY_NOTE)
    return 0


def _show_one(cert, label, role_arg, profiles, now, out, as_json):
    info = pki_check.describe(cert)
    if role_arg:
        role, how = role_arg, "given"
    else:
        role, how = pki_check.infer_role(cert)
    deviations = pki_check.check_certificate(cert, role, profiles) if role else None
    info.update({"file": label, "role": role, "role_from": how, "deviations": deviations,
                 "notes": pki_check.notes(cert, now)})
    if as_json:
        out.write(json.dumps(info) + "\n")
    else:
        out.write("%s\n" % label)
        for key in ("subject", "issuer", "serial", "not_before", "not_after"):
            out.write("  %-20s %s\n" % (key.replace("_", " "), info[key]))
        out.write("  %-20s %s days\n" % ("validity", info["validity_days"]))
        out.write("  %-20s %s\n" % ("public key", info["public_key"]))
        out.write("  %-20s %s\n" % ("signature", info["signature_algorithm"]))
        out.write("  %-20s %s\n" % ("SKI", info["ski"] or "(none)"))
        out.write("  %-20s %s\n" % ("AKI", info["aki"] or "(none)"))
        out.write("  %-20s %s\n" % ("SHA-256", info["sha256"]))
        out.write("  %-20s %d bytes DER\n" % ("size", info["der_bytes"]))
        out.write("  extensions\n")
        for ext in info["extensions"]:
            out.write("    %s%s: %s\n" % (ext["name"], " (critical)" if ext["critical"] else "", ext["value"]))
        if role is None:
            out.write("  role                 unknown (%s); pass --role to check it\n" % (how or "no hints"))
        else:
            out.write("  role                 %s (%s)\n" % (role, how))
            if deviations:
                out.write("  deviations from the %s profile:\n" % role)
                for d in deviations:
                    out.write("    - %s\n" % d)
            else:
                out.write("  conforms to the %s profile\n" % role)
        for n in info["notes"]:
            out.write("  note: %s\n" % n)
    return bool(deviations) or role is None


def _show(args, profiles, out):
    if args.role and args.role not in profiles["roles"]:
        raise UsageError("unknown role %s (known: %s)" % (args.role, ", ".join(profiles["roles"])))
    now = datetime.datetime.now(datetime.timezone.utc)
    bad = False
    for path in args.files:
        certs = _read_certs(path)
        for i, cert in enumerate(certs):
            label = path if len(certs) == 1 else "%s [%d]" % (path, i)
            bad |= _show_one(cert, label, args.role, profiles, now, out, args.json)
    return 1 if bad else 0


def _verify(args, out):
    chain = _read_certs(args.chain)
    anchors = [c for path in args.root for c in _read_certs(path)]
    if args.at == "never":
        at = None
    elif args.at:
        try:
            at = datetime.datetime.fromisoformat(args.at.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError("--at %r is not an ISO time" % args.at) from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=datetime.timezone.utc)
    else:
        at = datetime.datetime.now(datetime.timezone.utc)
    problems = pki_check.check_chain(chain, anchors, now=at, leaf_dc=args.dc)
    if problems:
        for p in problems:
            out.write("- %s\n" % p)
        return 1
    out.write("chain OK: %s -> %s\n" % (" -> ".join(c.subject.rfc4514_string() for c in chain),
                                        chain[-1].issuer.rfc4514_string()))
    return 0


def main(args, out=None):
    out = out or sys.stdout
    parsed = _parser().parse_args(list(args))
    profiles = pki.load_profiles(parsed.profiles)
    if parsed.action == "init":
        return _init(parsed, profiles, out)
    if parsed.action == "show":
        return _show(parsed, profiles, out)
    return _verify(parsed, out)


if __name__ == "__main__":
    from evpilot.errors import EvpilotError

    try:
        sys.exit(main(sys.argv[1:]))
    except EvpilotError as e:
        print("evpilot: error: %s" % e, file=sys.stderr)
        sys.exit(2)
