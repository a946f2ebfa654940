# The asyncio adapters: connect the sans-I/O cores (SDP, V2GTP, TLS, sessions) to the world. stream.py drives
# one sans-I/O connection over an asyncio stream pair; sockets.py uses the platform's own IP stack (a laptop,
# the MicroPython unix port, or a board debugged over Wi-Fi/Ethernet). The board's own IPv6/UDP/TCP over the
# modem is a sans-I/O stack of its own (evpilot.net, beside this package).
