"""What a station keeps on a laptop: session records in SQLite (records.py) and `evpilot station report`
(report_cli.py). The station's protocol side is the portable simulator's (evpilot_sim.station)."""
