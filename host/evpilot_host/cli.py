"""The `evpilot` command.

How this works: each command (`evpilot demo`, `ev`, `station`, `station report`, `exi`, `pki`) lives in its
own module under evpilot_host/commands with a `main(argv)` that takes the remaining arguments and returns an
exit status. This module only picks the command (and a command's subcommand, such as `station report`),
imports its module lazily (so `evpilot --help` stays fast and one command's dependencies never slow down
another), and turns the project's errors into one line on stderr and exit status 2.
"""

import argparse
import importlib
import sys

from evpilot import __version__
from evpilot.errors import EvpilotError

# name -> (module under evpilot_host.commands, one-line help[, {subcommand: its module}]). Add a command here
# and write its module.
COMMANDS = {
    "demo": ("demo", "run a whole charging session: the firmware's EV against the station simulator"),
    "ev": ("ev", "run the firmware's EV on a network interface (SDP, then a session)"),
    "station": ("station", "run the station simulator on a network interface (with faults)",
                {"report": "report"}),
    "exi": ("exi", "encode and decode EXI messages (SupportedAppProtocol, DIN 70121, ISO 15118-2, xmldsig fragments)"),
    "pki": ("pki", "generate and inspect ISO 15118-2 test PKIs"),
    "provision": ("provision", "provision a board's certificates over USB serial (OEM key made on the device)"),
    "deploy": ("deploy", "compile the firmware with mpy-cross and copy what changed to a board (mpremote)"),
}


def _parser():
    parser = argparse.ArgumentParser(
        prog="evpilot",
        description="ISO 15118 EV communication controller: companion tools for the laptop.",
    )
    parser.add_argument("--version", action="version", version="evpilot " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, entry in COMMANDS.items():
        sub.add_parser(name, help=entry[1], add_help=False)
    return parser


def _command(argv):
    """(module name under evpilot_host.commands, the words it parses, the words that named it) for argv, or
    None when argv names no command. A subcommand is the command's first word when the command has it."""
    if not argv or argv[0] not in COMMANDS:
        return None
    entry = COMMANDS[argv[0]]
    subcommands = entry[2] if len(entry) > 2 else {}
    if len(argv) > 1 and argv[1] in subcommands:
        return subcommands[argv[1]], argv[2:], argv[:2]
    return entry[0], argv[1:], argv[:1]


def _run(module_name, args, words):
    module_name = "evpilot_host.commands." + module_name
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        raise EvpilotError("the '%s' command is not available in this version yet" % " ".join(words)) from None
    return module.main(args)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        command = _command(argv)
        if command is not None:
            # The command parses its own arguments, including its own --help.
            return _run(*command)
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
