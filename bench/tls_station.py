"""The station's side of bench/pnc_heap.py's TLS replay (CPython): a TLS 1.2 server on 127.0.0.1 with the
fixture's SECC chain (tests/firmware/pncfix.py: SECC leaf, CPO Sub-CA 2 and 1 under the V2G root) that answers
each V2GTP message the EV sends with the next station message of a trace (pnc_heap.py record), then waits
for the EV to close. It serves one connection after the other, so a heap bisection can reuse it.

    python3 bench/tls_station.py TRACE        (prints the port, then serves until killed)

From Python: Station(trace).start() -> port (a daemon thread); station.served / station.failed count the
connections that got every response, and those that broke off (an EV out of memory, a refused handshake).
"""

import os
import socket
import ssl
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in ("firmware", "tests/firmware"):
    if os.path.join(ROOT, _p) not in sys.path:
        sys.path.append(os.path.join(ROOT, _p))

CIPHER = "ECDHE-ECDSA-AES128-SHA256"  # ISO 15118-2's TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256


def station_messages(trace):
    """The station's messages (the D events) of a pnc_heap.py trace, in order."""
    out = []
    with open(trace, "rb") as f:
        while True:
            head = f.read(9)
            if len(head) < 9:
                break
            data = f.read(int.from_bytes(head[5:9], "big"))
            if head[:1] == b"D":
                out.append(data)
            elif head[:1] == b"Z":
                break
    return out


def server_context():
    """TLS 1.2, the ISO 15118-2 suite on P-256, the fixture SECC chain and key (PEM made here)."""
    import pncfix
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.derive_private_key(int.from_bytes(pncfix.key("secc_leaf"), "big"), ec.SECP256R1())
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    pem_chain = "".join(ssl.DER_cert_to_PEM_cert(d) for d in pncfix.chain("secc_leaf"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHER)
    ctx.set_ecdh_curve("prime256v1")
    with tempfile.TemporaryDirectory() as d:
        chain_path, key_path = os.path.join(d, "chain.pem"), os.path.join(d, "key.pem")
        with open(chain_path, "w") as f:
            f.write(pem_chain)
        with open(key_path, "wb") as f:
            f.write(pem_key)
        ctx.load_cert_chain(chain_path, key_path)
    return ctx


def _read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("the EV closed the connection")
        buf += chunk
    return buf


class Station:
    def __init__(self, trace, timeout_s=60):
        self.messages = station_messages(trace)
        self.ctx = server_context()
        self.timeout_s = timeout_s
        self.served = 0
        self.failed = 0
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]

    def start(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self.port

    def serve_forever(self):
        while True:
            sock, _ = self.listener.accept()
            sock.settimeout(self.timeout_s)
            try:
                self.serve_one(sock)
                self.served += 1
            except (OSError, EOFError, ssl.SSLError):
                self.failed += 1
            finally:
                sock.close()

    def serve_one(self, sock):
        tls = self.ctx.wrap_socket(sock, server_side=True)
        for message in self.messages:
            head = _read_exact(tls, 8)
            _read_exact(tls, int.from_bytes(head[4:8], "big"))
            tls.sendall(message)
        try:  # the EV closes once SessionStopRes is in
            while tls.recv(4096):
                pass
        except (OSError, ssl.SSLError):
            pass


def main(argv):
    if len(argv) != 2:
        raise SystemExit("usage: tls_station.py TRACE")
    station = Station(argv[1])
    print(station.port, flush=True)
    station.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
