# The board's entry point: read the board file and the application's settings, start evpilot.app.
#
# `evpilot deploy` writes board.json (one of boards/*.json) and this file to the board's filesystem; app.json
# (optional) holds the session settings described in evpilot/app.py. A board file that does not validate
# stops here with one line naming the field: nothing touches a pin before that.

import json
import sys

from evpilot import app
from evpilot.errors import EvpilotError
from evpilot.hal import board as board_file


def _config(path):
    try:
        with open(path) as f:
            return json.loads(f.read(8192))
    except OSError:
        return {}
    except ValueError as e:
        raise EvpilotError("%s: not JSON (%s)" % (path, e))


def run(board_path="board.json", config_path="app.json"):
    try:
        b = board_file.load(board_path)
        config = _config(config_path)
    except EvpilotError as e:
        sys.stderr.write("evpilot: %s\n" % (e,))
        return 2
    try:
        results, _ = app.main(b, config)
    except EvpilotError as e:  # the app could not go on (its log says why)
        sys.stderr.write("evpilot: %s\n" % (e,))
        return 1
    return 0 if all(r.get("result") == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(run(*sys.argv[1:3]))
