"""`evpilot deploy --port PORT --board NAME [--dry-run] [--source] [--no-reset] [--json]`.

Compiles firmware/evpilot with mpy-cross for the .mpy version the device reports, copies what changed (by
SHA-256, compared with the device's), writes boards/NAME.json as board.json and main.py, and resets the
board (evpilot_host.deploy does the work, through mpremote). --dry-run prints the plan and writes nothing;
--source copies .py files instead of compiling. Progress goes to stderr; an error is one line (cli.py).
"""

import argparse
import json
import sys

from evpilot_host import deploy

PROG = "evpilot deploy"


def _parser():
    p = argparse.ArgumentParser(prog=PROG, description="Compile the firmware and copy what changed to a board.")
    p.add_argument("--port", required=True, help="the board's serial port (/dev/ttyACM0, a pty)")
    p.add_argument("--board", required=True, help="a board file name in boards/ (esp32-qca7005, unix, ...)")
    p.add_argument("--dry-run", action="store_true", help="list what would be copied; write nothing")
    p.add_argument("--source", action="store_true", help="copy .py sources instead of compiled .mpy files")
    p.add_argument("--no-reset", action="store_true", help="do not reset the board afterwards")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def _progress(line):
    print(line, file=sys.stderr, flush=True)


def main(argv):
    args = _parser().parse_args(argv)
    summary = deploy.deploy(args.port, args.board, dry_run=args.dry_run, source=args.source,
                            reset=not args.no_reset, progress=_progress)
    if args.json:
        print(json.dumps(summary, sort_keys=True, default=str))
        return 0
    if args.dry_run:
        for step in summary["plan"]:
            if step["state"] != "same":
                print("would copy %s (%s)" % (step["path"], step["state"]))
        print("%d of %d files would be copied (%s, .mpy %s)" % (len(summary["copy"]), summary["files"],
                                                                  summary["platform"], summary["mpy"]))
        return 0
    print("deployed: %d of %d files copied (%s, .mpy %s)%s" % (
        len(summary["copy"]), summary["files"], summary["platform"], summary["mpy"],
        ", board reset" if summary.get("reset") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
