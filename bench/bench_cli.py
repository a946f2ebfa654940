"""Command lines of the CPython benchmark drivers: `options(argv, doc, flags, valued)` checks argv before a
run that may take many minutes starts. -h/--help prints the script's docstring and exits 0; an unknown
argument, or a valued flag without its value, ends it with one line (exit status 1). Returns {flag: value}
for the valued flags given and {flag: True} for the plain ones."""

import sys


def options(argv, doc, flags=(), valued=()):
    if "-h" in argv or "--help" in argv:
        sys.stdout.write(doc.strip() + "\n")
        raise SystemExit(0)
    out = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in valued:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise SystemExit("%s needs a value (see --help)" % arg)
            out[arg] = argv[i + 1]
            i += 2
            continue
        if arg not in flags:
            raise SystemExit("unknown argument %r (see --help)" % arg)
        out[arg] = True
        i += 1
    return out
