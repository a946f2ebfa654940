"""`evpilot provision`: provision a board's certificate store over USB serial.

How this works
--------------
    evpilot provision --port PORT info | list | log               read-only, no key needed
    evpilot provision --port PORT --pki DIR roots add FILE|DIR    V2G/MO roots (DER, PEM, or a PKI's roots)
    evpilot provision --port PORT --pki DIR roots rm NAME         by the name `list` shows (the SKI)
    evpilot provision --port PORT --pki DIR oem [--pcid PCID]     key pair made ON the device, its CSR signed by
                                                                  DIR's OEM Sub-CA 2, the chain installed
    evpilot provision --port PORT --pki DIR contract add CHAIN KEY | contract rm NAME   (bench tests)
    evpilot provision --port PORT --pki DIR reset                 factory reset
Changes are signed by the provisioning authority in DIR (provisioning_authority.key, made on first use); the
first change binds it on the device. evpilot_host.provision does the work. Output is one line per result, or
JSON with --json; progress goes to stderr; every error is one line (through cli.py, exit status 2).
"""

import argparse
import json
import sys

from evpilot.errors import UsageError
from evpilot_host import provision as prov

PROG = "evpilot provision"


def _parser():
    p = argparse.ArgumentParser(prog=PROG, description="Provision a board's certificate store over USB serial.")
    p.add_argument("--port", required=True, help="the board's serial port (/dev/ttyACM0, /dev/ttyUSB0, a pty)")
    p.add_argument("--pki", metavar="DIR", help="test PKI directory (`evpilot pki init`): the provisioning "
                                                "authority's key for changes, the OEM Sub-CA for `oem`")
    p.add_argument("--timeout", type=float, default=prov.REPLY_TIMEOUT, help="seconds to wait for a reply")
    p.add_argument("--json", action="store_true", help="print the device's reply as JSON")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("info", help="firmware version, board, store status, free heap")
    sub.add_parser("list", help="roots, OEM provisioning chain, contracts")
    sub.add_parser("log", help="the device's log")
    roots = sub.add_parser("roots", help="add or remove V2G and MO roots").add_subparsers(dest="what", required=True)
    roots.add_parser("add").add_argument("file", help="DER or PEM certificate(s), or a PKI directory")
    roots.add_parser("rm").add_argument("name", help="the root's name in `list` (its SKI in hex)")
    oem = sub.add_parser("oem", help="generate the OEM provisioning key on the device and install its chain")
    oem.add_argument("--pcid", default=None, help="the PCID (CN); default: the PKI's oem_prov_leaf CN")
    contract = sub.add_parser("contract", help="install or delete a contract (bench tests)").add_subparsers(
        dest="what", required=True)
    add = contract.add_parser("add")
    add.add_argument("chain", help="PEM chain, leaf first")
    add.add_argument("key", help="the leaf's private key, PKCS#8 PEM")
    contract.add_parser("rm").add_argument("name")
    sub.add_parser("reset", help="factory reset: roots, contracts, the OEM chain and key, metadata and the "
                                  "authority binding")
    return p


def _plain(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, dict):
        return {k: _plain(v[k]) for k in v}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _progress(line):
    print(line, file=sys.stderr, flush=True)


def _default_pcid(pki_dir):
    from pathlib import Path

    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate((Path(pki_dir) / "oem_prov_leaf.der").read_bytes())
    except (OSError, ValueError):
        raise UsageError("%s: no oem_prov_leaf.der to take the PCID from; pass --pcid" % pki_dir) from None
    return cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value


def _run(args, client):
    a = args.action
    if a == "info":
        r = prov.check_reachable(client)
        s = r.get("store") or {}
        line = "evpilot %s on %s: store %s, %s roots, OEM %s, %s contracts, authority %s, heap free %s" % (
            r.get("version"), r.get("board"), s.get("state"), s.get("roots"), s.get("oem") or "none",
            s.get("contracts"), "bound" if s.get("bound") else "not bound", r.get("heap_free"))
        return r, [line]
    if a == "list":
        r = client.request("list")
        lines = ["root %s %s" % (x["name"], x["subject"]) for x in r["roots"]]
        o = r.get("oem")
        lines.append("oem %s (%d certificates)" % (o["pcid"], len(o["chain"])) if o else "oem none")
        lines += ["contract %s eMAID %s valid %d..%d" % (c["name"], c["emaid"], c["not_before"], c["not_after"])
                  for c in r["contracts"]]
        return r, lines
    if a == "log":
        r = client.request("log")
        return r, list(r["lines"])
    # changes
    client.ensure_bound()
    if a == "roots":
        if args.what == "add":
            names = [client.signed("roots-add", cert=der)["name"] for der in prov.read_certificates(args.file)]
            return {"added": names}, ["root %s added" % n for n in names]
        client.signed("roots-remove", name=args.name)
        return {"removed": args.name}, ["root %s removed" % args.name]
    if a == "oem":
        pcid = args.pcid or _default_pcid(args.pki)
        got = prov.provision_oem(client, args.pki, pcid, _progress)
        return {"pcid": got}, ["OEM provisioning chain installed, PCID %s (key generated on the device)" % got]
    if a == "contract":
        if args.what == "add":
            chain, key = prov.contract_material(args.chain, args.key)
            name = client.signed("contract-add", chain=chain, key=key)["name"]
            return {"name": name}, ["contract %s installed" % name]
        client.signed("contract-rm", name=args.name)
        return {"removed": args.name}, ["contract %s removed" % args.name]
    if a == "reset":
        r = client.signed("reset")
        removed = r["removed"]
        return r, ["factory reset: %d roots and %d contracts removed%s" % (
            removed["roots"], removed["contracts"], ", OEM provisioning chain and key removed" if removed.get("oem")
            else "")]
    raise UsageError("unknown action %s" % a)


def main(argv):
    args = _parser().parse_args(argv)
    changes = args.action not in ("info", "list", "log")
    authority = None
    if changes:
        if not args.pki:
            raise UsageError("'%s' changes the device: pass --pki DIR (the provisioning authority's key)"
                             % args.action)
        authority = prov.authority_key(args.pki)
    with prov.Client(args.port, authority=authority, timeout=args.timeout) as client:
        reply, lines = _run(args, client)
    if args.json:
        print(json.dumps(_plain(reply), sort_keys=True))
    else:
        for line in lines:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
