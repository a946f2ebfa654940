# The board's own network stack for the PLC link: Ethernet II, IPv6 (link-local), ICMPv6 (NDP, echo), UDP
# and a TCP client, all sans-I/O (frames and `now` in; frames, events and a deadline out). stack.Stack ties
# them together; evpilot.aio.netstack drives it over a raw Ethernet adapter.
