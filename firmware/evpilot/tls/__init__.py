# TLS 1.2 for ISO 15118-2 as one sans-I/O package: TlsConnection (bytes in, bytes and events out) with a
# CPython backend (ssl memory BIOs) and a MicroPython backend (mbedTLS over a user stream), and TlsEndpoint,
# which runs the EV client or the station connection behind it. See connection.py.

from evpilot.tls.connection import (  # noqa: F401
    CIPHER,
    CIPHER_IANA,
    CIPHER_ID,
    CIPHER_MBEDTLS,
    CURVE,
    EXPECTED_DC,
    VERSION,
    TlsConnection,
    TlsContext,
    TlsError,
    check_leaf_dc,
    client_context,
    roots_der,
    server_context,
    wall_clock_s,
)
from evpilot.tls.endpoint import HANDSHAKE_TIMEOUT_MS, TlsEndpoint  # noqa: F401
