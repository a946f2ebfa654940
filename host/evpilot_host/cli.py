"""The `evpilot` command.

How this works: each command group (`evpilot exi ...`, later `evpilot station ...`) lives in its own module
with a `main(args)` that takes the remaining arguments and returns an exit status. This module only picks
the group, imports its module lazily (so `evpilot --help` stays fast and one group's dependencies never
slow down another), and turns the project's errors into one line on stderr and exit status 2.
"""

import argparse
import importlib
import sys

from evpilot import __version__
from evpilot.errors import EvpilotError

# name -> (module under evpilot_host[:function, default main], one-line help). Add a group here and write its
# module.
COMMANDS = {
    "demo": ("demo", "run a whole charging session: the firmware's EV against the station simulator"),
    "ev": ("link_cli:ev_main", "run the firmware's EV on a network interface (SDP, then a session)"),
    "station": ("link_cli:station_main", "run the station simulator on a network interface (with faults)"),
    "exi": ("exi_cli", "encode and decode EXI messages (SupportedAppProtocol, DIN 70121, ISO 15118-2, xmldsig fragments)"),
    "pki": ("pki_cli", "generate and inspect ISO 15118-2 test PKIs"),
}


def _parser():
    parser = argparse.ArgumentParser(
        prog="evpilot",
        description="ISO 15118 EV communication controller: companion tools for the laptop.",
    )
    parser.add_argument("--version", action="version", version="evpilot " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _run_group(name, args):
    target, _, function = COMMANDS[name][0].partition(":")
    module_name = "evpilot_host." + target
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        raise EvpilotError("the '%s' command is not available in this version yet" % name) from None
    return getattr(module, function or "main")(args)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] in COMMANDS:
            # The group parses its own arguments, including its own --help.
            return _run_group(argv[0], argv[1:])
        parser = _parser()
        parser.parse_args(argv)  # --help, --version and unknown commands exit here
        parser.print_help(sys.stderr)
        return 2
    except EvpilotError as e:
        print("evpilot: error: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
