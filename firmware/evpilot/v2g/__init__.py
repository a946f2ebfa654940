# V2G transport: V2GTP framing, SDP, timers and limits per standard.
