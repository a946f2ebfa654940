# asyncio programs that wire the sans-I/O cores to the platform: ev_run runs one EV session over the
# platform's own sockets (evpilot.net.sockets, evpilot.net.stream) and reports it as JSON lines.
