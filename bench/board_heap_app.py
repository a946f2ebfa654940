# The board application (firmware/main.py -> evpilot.app) under MicroPython, for bench/board_heap_bench.py.
#
#   cd BOARD_DIR && MICROPYPATH=.frozen:HARNESS micropython -X heapsize=N -m board_heap_app [profile]
#
# How this works: without arguments it imports firmware/main.py (as `main`, compiled to .mpy beside this
# file by the driver, so neither is compiled on the device) and returns main.run()'s exit status: exactly the
# application a board runs, reading board.json and app.json from the working directory. With `profile` (run
# in a big heap) it first wraps evpilot.app.App's link_up, _run_session and _session, so that at the end of
# each it collects and writes one line to stderr:
#     board_heap: POINT alloc A free F
# POINT: start (firmware imported, before the App), link_up (SLAC done, own stack started: what the link holds
# while the session runs), session (the session over, link still up), link_down (the round over, link down).
# A is gc.mem_alloc() after gc.collect(), the live bytes; F gc.mem_free(). Nothing in firmware/ changes; the
# collections change where the GC runs, so the smallest-heap runs leave `profile` out.

import gc
import sys


def _point(name):
    gc.collect()
    sys.stderr.write("board_heap: %s alloc %d free %d\n" % (name, gc.mem_alloc(), gc.mem_free()))


def _wrap(cls, attr, name):
    inner = getattr(cls, attr)

    async def wrapped(self, *args):
        result = await inner(self, *args)
        _point(name)
        return result

    setattr(cls, attr, wrapped)


def run(argv):
    import main

    if "profile" in argv:
        from evpilot import app

        _wrap(app.App, "link_up", "link_up")
        _wrap(app.App, "_run_session", "session")
        _wrap(app.App, "_session", "link_down")
        _point("start")
    return main.run()


sys.exit(run(sys.argv[1:]))
