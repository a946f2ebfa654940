# Network adapters: connect the sans-I/O cores (SDP, V2GTP, sessions) to the world. sockets.py uses the
# platform's IP stack (laptop, or a board debugged over Wi-Fi/Ethernet); the board's own IPv6/UDP/TCP over the
# modem will live beside it.
