# The device side of the provisioning protocol over USB serial: a small CBOR subset (cbor.py), framing over a
# byte stream shared with the REPL (frame.py), the sans-I/O command service (service.py), the PKCS#10 CSR for
# the OEM provisioning key born on the device (csr.py) and the asyncio task that serves a stream (serial.py).
