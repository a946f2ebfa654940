# The board application (firmware/main.py -> evpilot.app) under MicroPython, for bench/board_heap_bench.py.
#
#   cd BOARD_DIR && MICROPYPATH=.frozen:HARNESS micropython -X heapsize=N -m board_heap_app [profile]
#
# How this works: without arguments it imports firmware/main.py (as `main`, compiled to .mpy beside this
# file by the driver, so neither is compiled on the device) and returns main.run()'s exit status: exactly the
# application a board runs, reading board.json and app.json from the working directory. With `profile` (run
# in a big heap) it first wraps methods of evpilot.app.App so that at the end of each it collects and writes
# one line to stderr:
#     board_heap: POINT alloc A free F
# POINT: start (firmware imported, before the App), modem (_modem_device: the frame device under the link
# opened), plc_link (_plc_link: the PlcLink made, its modules imported, nothing started), link_up (SLAC done,
# own stack started: what the link holds while the session runs), session (_run_session: the session over,
# link still up), link_down (_session: the round over, link down). Over OS sockets only start, link_up,
# session and link_down.
# A is gc.mem_alloc() after gc.collect(), the live bytes; F gc.mem_free(). Nothing in firmware/ changes; the
# collections change where the GC runs, so the smallest-heap runs leave `profile` out.

import gc
import sys


def _point(name):
    gc.collect()
    sys.stderr.write("board_heap: %s alloc %d free %d\n" % (name, gc.mem_alloc(), gc.mem_free()))


def _wrap(cls, attr, name, coroutine=True):
    inner = getattr(cls, attr)

    async def wrapped(self, *args):
        result = await inner(self, *args)
        _point(name)
        return result

    def wrapped_sync(self, *args):
        result = inner(self, *args)
        _point(name)
        return result

    setattr(cls, attr, wrapped if coroutine else wrapped_sync)


def run(argv):
    import main

    if "profile" in argv:
        from evpilot import app

        _wrap(app.App, "_modem_device", "modem", coroutine=False)
        _wrap(app.App, "_plc_link", "plc_link")
        _wrap(app.App, "link_up", "link_up")
        _wrap(app.App, "_run_session", "session")
        _wrap(app.App, "_session", "link_down")
        _point("start")
    return main.run()


sys.exit(run(sys.argv[1:]))
