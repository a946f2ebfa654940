"""How many hostile TCP connections the station survives while still serving a real EV within its timers.

How this works: the station's own connection handler (evpilot_host.commands.station.make_handler: the
connection limit, the setup timeout, stream.drive without busy polling) listens on ::1. The bench opens
HOSTILE connections that never send a byte (idle) or trickle one byte per second (slow), all before the EV,
and keeps opening new ones at RATE per second during the session; then the firmware's EV (evpilot_host.ends,
ISO-2 DC, the standard's timers) connects and charges. For each count it reports whether the EV's session
ended DONE, its time, how many connections the station evicted or refused, and the CPU the process used.
Prints one JSON object per count, then a summary with the largest count served.

    python3 bench/station_load.py [--counts 100,1000,3000] [--slow-share 0.2] [--rate 200]
"""

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for _d in ("firmware", "sim", "host"):
    sys.path.insert(0, os.path.join(HERE, "..", _d))

from evpilot.aio import stream  # noqa: E402
from evpilot.ev import client as ev_client  # noqa: E402
from evpilot_host import ends  # noqa: E402
from evpilot_host.commands import station  # noqa: E402


SOC = (78.0, 80.0)  # a short charge: the session's set-up and its timers are what the load can break
CAPACITY_WH = 4000


def _station_args():
    return argparse.Namespace(mode="dc", seed=1, verbose=False, once=False)


async def _hostile(port, slow, opened, stop):
    try:
        reader, writer = await asyncio.open_connection("::1", port)
    except OSError:
        return
    opened.append(writer)
    try:
        while not stop.is_set():
            if slow:
                writer.write(b"\x01")  # a V2GTP header, one byte a second, never complete
                await writer.drain()
            try:
                data = await asyncio.wait_for(reader.read(100), 1.0)
                if not data:  # the station closed it
                    return
            except asyncio.TimeoutError:
                pass
    except (OSError, ConnectionError):
        pass
    finally:
        writer.close()


async def run_one(count, slow_share=0.2, rate=200, max_connections=station.MAX_CONNECTIONS):
    handle = station.make_handler(_station_args(), ("iso2",), [], {}, max_connections=max_connections)
    server = await asyncio.start_server(handle, "::1", 0)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    opened = []
    tasks = []
    n_slow = int(count * slow_share)
    for i in range(count):
        tasks.append(asyncio.ensure_future(_hostile(port, i < n_slow, opened, stop)))
        if i % 100 == 99:
            await asyncio.sleep(0)
    await asyncio.sleep(0.2)

    async def keep_opening():
        i = 0
        while not stop.is_set():
            tasks.append(asyncio.ensure_future(_hostile(port, i % 5 == 0, opened, stop)))
            i += 1
            await asyncio.sleep(1.0 / rate)

    opener = asyncio.ensure_future(keep_opening()) if rate else None
    cpu0 = time.process_time()
    t0 = time.monotonic()
    ev = ends.ev_end("iso2", "dc", SOC, CAPACITY_WH)
    result = {"hostile": count, "slow": n_slow, "rate_per_s": rate}
    try:
        reader, writer = await asyncio.open_connection("::1", port)
        await asyncio.wait_for(stream.drive(ev.outer, reader, writer, tick=ev.tick), 600)
        result["ev"] = "done" if ev.client.state == ev_client.DONE else "failed: %s" % ev.client.reason
    except (OSError, asyncio.TimeoutError) as e:
        result["ev"] = "failed: %s" % (e,)
    result["session_s"] = round(time.monotonic() - t0, 2)
    result["cpu_s"] = round(time.process_time() - cpu0, 2)
    stop.set()
    if opener is not None:
        opener.cancel()
    result["opened"] = len(opened)
    result.update(handle.stats)
    server.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await server.wait_closed()
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--counts", default="100,1000,3000")
    p.add_argument("--slow-share", type=float, default=0.2)
    p.add_argument("--rate", type=float, default=200, help="new hostile connections per second during the session")
    args = p.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 2 * max(counts) + 4096)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    best = 0
    for count in counts:
        with contextlib.redirect_stdout(sys.stderr):  # the station's trace; stdout is the JSON alone
            r = asyncio.run(run_one(count, args.slow_share, args.rate))
        print(json.dumps(r), flush=True)
        if r["ev"] == "done":
            best = max(best, count)
    print(json.dumps({"bench": "station_load", "max_hostile_served": best, "max_connections":
                      station.MAX_CONNECTIONS, "counts": counts}))


if __name__ == "__main__":
    main()
