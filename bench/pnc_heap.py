# The EV alone in an ISO-2 DC Plug&Charge session with certificate installation, fed recorded station
# responses: does it fit a MicroPython heap? (bench/pnc_bench.py bisects the heap size with it.)
#
#   python3 bench/pnc_heap.py record .cache/bench/pnc_trace.bin
#   python3 bench/pnc_heap.py replay .cache/bench/pnc_trace.bin
#   .cache/micropython-unix/micropython-1.27.0-x86-32[-frozen] -X heapsize=140k \
#       bench/pnc_heap.py replay .cache/bench/pnc_trace.bin [mpy] [bare] [profile]
#   node tests/micropython/run.mjs --heap 512k --data .cache/bench/pnc_trace.bin [--data .cache/bench/mpy] \
#       --script bench/pnc_heap.py replay .cache/bench/pnc_trace.bin [mpy] [profile]
#
# How this works: `record` (CPython) runs the session of bench/pnc_session.py, EV against station through
# evpilot_sim.pipe, and writes each call into the EV's side in order: connection_made, the pipe's tick
# (vehicle.advance), data_received with the station's bytes, on_timer, connection_lost, and the SHA-256 of
# what each output() returned. `replay` builds the same EV (store, now_s, vehicle: ev_side below) and makes
# those calls, reading the trace one event at a time. The EV's requests are deterministic (RFC 6979; SessionID,
# GenChallenge and DHpublickey come from the responses), so a request that hashes differently ends the replay
# as "diverged". Trace events: kind (1 byte: M A D T L O Z), now (4), length (4), data. One JSON line: done,
# diverged, heap figures; exit 0 only when the session reached Done.
# Fitting a heap: the unix port (built 32-bit by bench/pnc_bench.py --mp-src) raises MemoryError;
# `bare` leaves out the checkpoints, which cost about 1 KB. The webassembly port never raises it: it adds heap
# areas, and it does not collect garbage while a script runs (see bench/pnc_bench.py), so there the replay
# checks the GC total after every event and when the big steps return (EXI, P-256, XMLDSig, chains, store)
# and exits 3 when it grew: what that measures is all the bytes allocated, garbage included.
# `store DIR`: the EV opens a store provisioned before (`pnc_heap.py seed DIR`, CPython) instead of seeding one
# itself, as a board boots with its store: provisioning (P-256 key checks, parsing) is not part of the session.
# `tls PORT` (unix port or CPython; bench/heap_bench.py runs the station side): the same session over TLS
# against a TLS server on 127.0.0.1:PORT that answers each V2GTP request with the trace's next station message
# (bench/tls_station.py); the EV runs behind evpilot.tls.TlsEndpoint as on a board, trusting the fixture's V2G
# root at the fixture's time, and the replay checks that what it decrypts is what the trace recorded.
# `p256pure`: P-256 on its pure-Python path (p256.use_viper(False)): the viper path compiles its code from text
# at first use, and what that leaves behind is spread over the heap.
# `mpy`: the firmware from .cache/bench/mpy, as a board loads .mpy files. `profile` (a big heap, unix port):
# live bytes of each firmware module, the EXI tables, P-256 tables, store and session objects, and the
# largest live set at the checkpoints (a collection at each: slow), with what each response's handling added.

import gc
import sys

_HERE = __file__.replace("\\", "/").rsplit("/", 1)[0] if "/" in __file__ else "."
# The repository: bench/.. for the script, or ../../.. of .cache/bench/harness (bench/heap_bench.py runs the
# harness as .mpy from there under MicroPython).
_ROOT = "/".join(_HERE.split("/")[:-3 if _HERE.endswith(".cache/bench/harness") else -1]) or "."
_MPY = "mpy" in sys.argv[3:]
if _MPY:
    sys.path.insert(0, _ROOT + "/.cache/bench/mpy")
for _p in ("/firmware", "/sim", "/host", "/bench", "/tests/firmware"):
    if _ROOT + _p not in sys.path:
        sys.path.append(_ROOT + _p)

NOW_S = None  # pncfix.NOW_S, read in seeded_store()
_n = [0]


def store_dir():
    try:
        import tempfile

        return tempfile.mkdtemp(prefix="evpilot-bench-pnc-")
    except ImportError:  # MicroPython: /tmp of the unix port, or of the webassembly port's in-memory filesystem
        import os
        import time

        try:
            os.mkdir("/tmp")
        except OSError:
            pass
        while True:
            _n[0] += 1
            path = "/tmp/evpilot-bench-pnc-%d-%d" % (time.ticks_ms(), _n[0])
            try:
                os.mkdir(path)
                return path
            except OSError:
                pass


def seeded_store(path=None):
    """V2G root, MO root, OEM provisioning chain and key; no contract (what the EV holds before installing)."""
    global NOW_S
    import pncfix
    from evpilot.store import certs
    from evpilot.store.keystore import Store

    s = Store(path or store_dir())
    certs.add_root_certificate(s, pncfix.der("v2g_root"))
    certs.add_root_certificate(s, pncfix.der("mo_root"))
    certs.set_oem_chain(s, pncfix.chain("oem_prov_leaf"), pncfix.key("oem_prov_leaf"))
    NOW_S = pncfix.NOW_S
    return s


def opened_store(path):
    """A store provisioned before (pnc_heap.py seed DIR, on CPython), opened as a board opens its own at boot:
    the provisioning steps (key checks with P-256, parsing) are not part of the EV's session."""
    global NOW_S
    import pncfix
    from evpilot.store.keystore import Store

    NOW_S = pncfix.NOW_S
    return Store(path)


def ev_side(store, log=None):
    """(EvClient, SimVehicle, ContractManager, {"ev": Iso2Session}) of one session over `store`; with store
    None an EIM session (no ContractManager: the EV pays with ExternalPayment)."""
    from evpilot.ev.client import EvClient
    from evpilot.ev.iso2 import Iso2Session
    from evpilot.ev.contracts import ContractManager
    from evpilot_sim.vehicle import SimVehicle
    from evpilot.ev.vehicle import DC_EXTENDED
    from evpilot.v2g import timers

    veh = SimVehicle(capacity_wh=1000, soc=20, target_soc=25, bulk_soc=25, modes=(DC_EXTENDED,))
    manager = None if store is None else ContractManager(store, now_s=NOW_S)
    made = {}

    def make(protocol):
        made["ev"] = Iso2Session(veh, pnc=manager, tls=True)
        return made["ev"]

    return EvClient(make, [("iso2", 1)], timers.msg_timeout, log=log), veh, manager, made


def remove_store(store):
    if store is None:
        return
    try:
        import shutil

        shutil.rmtree(store.directory, ignore_errors=True)
    except ImportError:  # MicroPython: the store is one flat directory
        import os

        for name in os.listdir(store.directory):
            os.remove(store.directory + "/" + name)
        os.rmdir(store.directory)


def _digest(frames):
    import hashlib

    h = hashlib.sha256()
    for f in frames:
        h.update(f)
    return h.digest()


class Recorder:
    """Wraps the EV connection for pipe.run and writes every call into it to a trace file."""

    def __init__(self, inner, f):
        self.inner = inner
        self.f = f

    def event(self, kind, now, data=b""):
        self.f.write(kind + int(now).to_bytes(4, "big") + len(data).to_bytes(4, "big") + data)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def connection_made(self, now):
        self.event(b"M", now)
        return self.inner.connection_made(now)

    def data_received(self, data, now):
        self.event(b"D", now, bytes(data))
        return self.inner.data_received(data, now)

    def on_timer(self, now):
        self.event(b"T", now)
        return self.inner.on_timer(now)

    def connection_lost(self, now):
        self.event(b"L", now)
        return self.inner.connection_lost(now)

    def output(self):
        out = self.inner.output()
        self.event(b"O", 0, _digest(out))
        return out

    @property
    def finished(self):
        return self.inner.finished


def record(path, eim=False):
    import json

    import pnc_session
    from evpilot_sim import pipe

    store = None if eim else seeded_store()
    client, veh, manager, made = ev_side(store)
    st, evse = pnc_session.station()
    with open(path, "wb") as f:
        rec = Recorder(client, f)

        def tick(now):
            rec.event(b"A", now)
            veh.advance(now)
            evse.advance(now)

        end = pipe.run(rec, st, latency_ms=50, tick=tick)
        summary = made["ev"].summary()
        rec.event(b"Z", end, json.dumps({"state": summary["state"], "installed": summary["contract_installed"],
                                         "identification": summary["identification"]}).encode())
    print(json.dumps({"recorded": path, "client": client.state, "summary": summary}))
    remove_store(store)
    return client.state == 2 and summary["identification"] == ("EIM" if eim else "PnC") \
        and summary["contract_installed"] is not eim


class Heap:
    """Heap checkpoints: the GC total now (areas the webassembly port adds count), the largest seen, and in
    profile mode the live bytes after a collection, the largest live set and where it was."""

    def __init__(self, profile):
        self.on = hasattr(gc, "mem_free")
        self.profile = profile
        self.checks = 0
        self.start = self.max = self.total() if self.on else None
        self.grew_at = None
        self.peak_live = self.event_peak = 0
        self.peak_at = None
        self.where = ""  # the last message decoded or encoded (profile)
        self.rx = ""  # the last message decoded (profile)

    def total(self):
        # mem_free includes the webassembly port's constant "max new split": differences still show growth.
        return gc.mem_free() + gc.mem_alloc()

    def check(self, label):
        if not self.on:
            return
        self.checks += 1
        t = self.total()
        if t > self.max:
            self.max = t
            if self.grew_at is None:
                self.grew_at = label + " " + self.where
        if self.profile:
            a = live()
            if a > self.event_peak:
                self.event_peak = a
            if a > self.peak_live:
                self.peak_live = a
                self.peak_at = label + " " + self.where


def watch(heap, module, attr, label):
    fn = getattr(module, attr)

    def w(*args, **kw):
        r = fn(*args, **kw)
        heap.check(label)
        return r

    setattr(module, attr, w)


def watch_exi(heap, exi):
    enc, dec = exi.encode, exi.decode

    def name(doc):
        if heap.profile:
            body = doc.get("V2G_Message", {}).get("Body") or doc
            heap.where = next(iter(body))

    def encode(schema, doc, *more, **kw):
        name(doc)
        r = enc(schema, doc, *more, **kw)
        heap.check("exi.encode")
        return r

    def decode(schema, data, *padded):
        r = dec(schema, data, *padded)
        name(r)
        heap.rx = heap.where
        heap.check("exi.decode")
        return r

    exi.encode, exi.decode = encode, decode


def live():
    gc.collect()
    return gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0


# Firmware modules the EV uses, lowest first (profile: the live bytes each import adds).
MODULES = ("errors", "compat", "exi.bitstream", "exi.format", "exi.decoder", "exi.encoder", "exi.codec", "exi",
           "v2g.v2gtp", "v2g.sap", "v2g.timers", "v2g.messages", "v2g.connection", "pnc.der", "pnc.x509",
           "pnc.chain", "pnc.aes", "pnc.keytransport", "pnc.p256_curve", "pnc.p256", "pnc.xmldsig", "store.fs",
           "store.manifest", "store.keystore", "store.certs", "ev.pilot", "ev.vehicle", "ev.client", "ev.contracts",
           "ev.iso2_pnc", "ev.iso2")


class TlsLink:
    """The EV's client behind TlsEndpoint over a blocking TCP socket, driven like the client itself by the
    replay: data_received(recorded, now) pulls ciphertext from the socket until the EV has been handed the
    recorded plaintext (checked byte for byte), output() sends the endpoint's ciphertext and returns the
    plaintext the EV wrote, for the trace's hashes."""

    def __init__(self, client, port, roots, now_s):
        import socket

        from evpilot import tls

        self.client = client
        self.frames = []
        self.expect = None  # the recorded plaintext the EV is being handed, and how much of it arrived
        self.got = 0
        self.bad = None
        conn = tls.TlsConnection(tls.client_context(roots, clock=lambda: now_s))
        self.endpoint = tls.TlsEndpoint(_Shim(self), conn)
        addr = socket.getaddrinfo("127.0.0.1", port)[0][-1]
        self.sock = socket.socket()
        self.sock.connect(addr)
        self.buf = bytearray(2048)
        self.poll = None
        if not hasattr(self.sock, "recv_into"):  # MicroPython: readinto on a non-blocking socket after poll
            import select

            self.sock.setblocking(False)
            self.poll = select.poll()
            self.poll.register(self.sock, select.POLLIN)

    def _send(self):
        for data in self.endpoint.output():
            view = memoryview(data)
            while len(view):
                n = self.sock.send(view)  # MicroPython, non-blocking: None while the socket is full
                view = view[n or 0:]

    def _recv_into(self, buf):
        if self.poll is None:
            return self.sock.recv_into(buf)  # CPython: what has arrived, at most len(buf)
        while True:
            if not self.poll.poll(60000):
                raise OSError("TLS replay: no answer from the station for 60 s")
            n = self.sock.readinto(buf)  # non-blocking: what has arrived (0 at the end)
            if n is not None:
                return n

    def _pull(self, now):
        n = self._recv_into(self.buf)  # one buffer for the whole session, as a board's adapter would
        if not n:
            self.endpoint.connection_lost(now)
            return False
        self.endpoint.data_received(memoryview(self.buf)[:n], now)
        self._send()
        return True

    def connection_made(self, now):
        self.endpoint.connection_made(now)
        self._send()
        while not self.endpoint.started and not self.endpoint.finished:
            if not self._pull(now):
                break

    def data_received(self, data, now):
        self.expect, self.got = data, 0
        while self.got < len(data) and self.bad is None and not self.endpoint.finished:
            if not self._pull(now):
                break
        self.expect = None

    def on_timer(self, now):
        self.endpoint.on_timer(now)
        self._send()

    def connection_lost(self, now):
        self.endpoint.connection_lost(now)
        self._send()

    def output(self):
        self._send()
        out, self.frames = self.frames, []
        return out

    def close(self):
        self.sock.close()

    @property
    def state(self):
        return self.client.state

    @property
    def reason(self):
        return self.endpoint.reason or self.bad or self.client.reason


def _same(data, want, at):
    """Whether data equals want[at:at + len(data)], compared 64 bytes at a time (the harness must not make
    contiguous copies of a message the size of the one the firmware is receiving)."""
    n = len(data)
    if at + n > len(want):
        return False
    d = memoryview(data)
    w = memoryview(want)
    for i in range(0, n, 64):
        j = min(n, i + 64)
        if bytes(d[i:j]) != bytes(w[at + i:at + j]):
            return False
    return True


class _Shim:
    """The EV client as TlsEndpoint's inner endpoint: records what it writes and checks what it is handed."""

    def __init__(self, link):
        self.link = link
        self.inner = link.client

    @property
    def finished(self):
        return self.inner.finished

    def connection_made(self, now):
        self.inner.connection_made(now)

    def data_received(self, data, now):
        link = self.link
        want = link.expect
        if want is None or not _same(data, want, link.got):
            link.bad = "TLS plaintext differs from the trace"
            return
        link.got += len(data)
        self.inner.data_received(data, now)

    def connection_lost(self, now):
        self.inner.connection_lost(now)

    def abort(self, now, reason):
        self.inner.abort(now, reason)

    def on_timer(self, now):
        self.inner.on_timer(now)

    def next_deadline(self):
        return self.inner.next_deadline()

    def output(self):
        out = self.inner.output()
        self.link.frames.extend(out)
        return out


def replay(path, profile, bare=False, eim=False, tls_port=None, store_dir=None):
    import json

    out = {"interpreter": sys.implementation.name, "firmware": "mpy" if _MPY else "py",
           "session": ("eim" if eim else "pnc_install") + ("_tls" if tls_port else "")}
    base = live()
    out["live_start"] = base  # the harness: this script, json, the runner's own (webassembly)
    stages = {}
    if profile:
        # Only what the session loads: an EIM session none of the Plug&Charge modules (TLS loads what its
        # chain check needs when it runs).
        code = {}
        for m in MODULES:
            if eim and m.split(".")[0] in ("pnc", "store") or (eim and m == "ev.contracts"):
                continue
            before = live()
            __import__("evpilot." + m)
            code[m] = live() - before
        stages["code_by_module"] = code
    import evpilot
    from evpilot import exi

    f = evpilot.__file__
    out["evpilot_from"] = "frozen" if f.startswith("evpilot/") else ("mpy" if f.endswith(".mpy") else "py")
    heap = Heap(profile)
    if not bare:
        watch_exi(heap, exi)
    if not bare and not eim:
        from evpilot.pnc import chain, keytransport, p256, x509, xmldsig
        from evpilot.store import certs

        for mod, attrs in ((p256, ("sign", "verify", "ecdh", "public_key")), (xmldsig, ("sign", "verify")),
                           (chain, ("validate",)), (keytransport, ("decrypt_contract_key", "check_key_pair")),
                           (certs, ("install_contract_chain",)), (x509, ("parse",))):
            for a in attrs:
                watch(heap, mod, a, mod.__name__.rsplit(".", 1)[-1] + "." + a)
    if profile:
        stages["code"] = live() - base
        for schema in ("apphand", "iso2") if eim else ("apphand", "iso2", "xmldsig"):
            before = live()
            exi.grammar(schema)
            stages["tables_" + schema] = live() - before
        if not eim:
            before = live()
            d = bytes(range(1, 33))
            p256.verify(p256.public_key(d), b"x", p256.sign(d, b"x"))  # what P-256 builds on first use
            d = None
            stages["p256_tables"] = live() - before
    if "p256pure" in sys.argv[3:]:
        from evpilot.pnc import p256

        p256.use_viper(False)  # P-256 on its pure path: no viper code compiled at first use
    before = live()
    store = None if eim else (opened_store(store_dir) if store_dir else seeded_store())
    if tls_port is not None:
        import pncfix

        roots, now_s = [pncfix.der("v2g_root")], pncfix.NOW_S  # the store's V2G root, as the EV takes it
    sys.modules.pop("pncfix", None)
    client, veh, manager, made = ev_side(store)
    link = client if tls_port is None else TlsLink(client, tls_port, roots, now_s)
    roots = None
    if profile:
        stages["store_and_session_objects"] = live() - before
    out["live_before_session"] = live()
    heap.check("start")
    try:
        session = _replay_events(path, link, veh, made, heap, profile)
    finally:  # a MemoryError too: the unix port's store lives in the real /tmp
        remove_store(store)
        if link is not client:
            link.close()
    out.update(session)
    summary = made["ev"].summary() if "ev" in made else {}
    end = out.pop("end")
    out["done"] = client.state == 2 and out["diverged"] is None and end is not None \
        and summary.get("state") == end["state"] and summary.get("contract_installed") is end.get("installed", True) \
        and summary.get("identification") == end.get("identification", "PnC") \
        and summary.get("identification") == ("EIM" if eim else "PnC")
    out["reason"] = link.reason
    if heap.on:
        out["heap_checks"] = heap.checks
        out["heap_grew"] = heap.max > heap.start
        out["heap_grew_at"] = heap.grew_at
        out["heap_total_growth"] = heap.max - heap.start
        out["live_end"] = live()
        if profile:
            out["stages"] = stages
            out["peak_live"] = heap.peak_live
            out["peak_at"] = heap.peak_at
    print(json.dumps(out))
    if not out["done"]:
        raise SystemExit(1)
    if out.get("heap_grew"):
        raise SystemExit(3)


def _replay_events(path, client, veh, made, heap, profile):
    import json

    transient = {}  # profile: response -> the most its data_received event added to the live set
    # One buffer for every event's data, as large as the largest (a board's receive buffer): the harness then
    # allocates nothing per message that the EV's own copies would have to fit around.
    f = open(path, "rb")
    size = 0
    while True:
        head = f.read(9)
        if len(head) < 9:
            break
        n = int.from_bytes(head[5:9], "big")
        size = max(size, n)
        f.seek(n, 1)
    f.seek(0)
    buf = memoryview(bytearray(size))
    head = bytearray(9)
    events = 0
    diverged = None
    end = None
    while True:
        f.readinto(head)
        kind = head[0:1]
        now = int.from_bytes(head[1:5], "big")
        data = buf[:int.from_bytes(head[5:9], "big")]
        f.readinto(data)
        events += 1
        if kind == b"A":
            veh.advance(now)
        elif kind == b"M":
            client.connection_made(now)
        elif kind == b"D":
            if profile:
                heap.event_peak = before = live()
            client.data_received(data, now)
            if profile:
                heap.check("event")
                add = heap.event_peak - before
                if add > transient.get(heap.rx, -1):
                    transient[heap.rx] = add
        elif kind == b"T":
            client.on_timer(now)
        elif kind == b"L":
            client.connection_lost(now)
        elif kind == b"O":
            if _digest(client.output()) != bytes(data):
                diverged = "output at event %d (state %s)" % (events, made["ev"].summary()["state"]
                                                               if "ev" in made else None)
        elif kind == b"Z":
            end = json.loads(bytes(data))
            break
        else:
            diverged = "bad trace event %r" % kind
        data = None
        heap.check("event")
        if diverged:
            break
    f.close()
    out = {"diverged": diverged, "events": events, "end": end}
    if profile:
        out["transient_by_response"] = transient
    return out


def main(argv):
    if len(argv) < 3 or argv[1] not in ("record", "seed", "replay"):
        print("usage: pnc_heap.py record TRACE [eim] | seed DIR | replay TRACE [mpy] [bare] [profile] [eim] "
              "[tls PORT] [store DIR] [p256pure]")
        raise SystemExit(2)
    if argv[1] == "record":
        if not record(argv[2], "eim" in argv[3:]):
            raise SystemExit(1)
    elif argv[1] == "seed":
        seeded_store(argv[2])
    else:
        port = int(argv[argv.index("tls") + 1]) if "tls" in argv[3:] else None
        store_dir = argv[argv.index("store") + 1] if "store" in argv[3:] else None
        replay(argv[2], "profile" in argv[3:], "bare" in argv[3:], "eim" in argv[3:], port, store_dir)


if __name__ == "__main__":
    main(sys.argv)
