"""What a station keeps on a laptop: session records in SQLite (records.py), which `evpilot station` writes and
`evpilot station report` (commands/report.py) prints. The station's protocol side is the portable
simulator's (evpilot_sim.station)."""
