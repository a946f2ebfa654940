"""Regenerate tests/firmware/data/pnc/: a fixed ISO 15118-2 test PKI for the firmware Plug&Charge tests.

Those tests run under MicroPython too, where no certificate can be built, so they read a PKI made once by
this script with evpilot_host.pki (the same code as `evpilot pki init`), plus a second contract for the same
eMAID (what a backend hands the certificate provisioning service). They pass their own "trusted time"
(index.json "now_s", a day after issue), so the committed certificates never expire for them.

Files: <role>.der for every role of certs/profiles.json and contract_new; <role>.hex holding the private
scalar as 64 hex digits (test keys only); index.json with now_s, emaid, pcid and the role list.

    python3 tests/make_pnc_fixture.py
"""

import datetime
import json
import sys
from pathlib import Path

from evpilot_host import pki

OUT = Path(__file__).resolve().parent / "firmware" / "data" / "pnc"


def main():
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    issued = pki.build_pki(now=now)
    issued["contract_new"] = pki.issue_contract(issued["mo_sub_ca2"], pki.DEFAULT_EMAID, now=now)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    for role, item in issued.items():
        (OUT / (role + ".der")).write_bytes(item.der)
        scalar = item.key.private_numbers().private_value
        (OUT / (role + ".hex")).write_text("%064x\n" % scalar)
    index = {"about": "fixed test PKI for tests/firmware (made by tests/make_pnc_fixture.py); test keys only",
             "now_s": int(now.timestamp()) + 86400, "emaid": pki.DEFAULT_EMAID, "pcid": pki.DEFAULT_PCID,
             "roles": sorted(issued)}
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    print("wrote %d certificates to %s" % (len(issued), OUT.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
