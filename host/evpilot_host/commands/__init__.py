"""The `evpilot` commands, one module each: demo.py (`evpilot demo`; demo_pnc.py for `demo --pnc`), ev.py
(`evpilot ev`; ev_micropython.py for `ev --on micropython`), station.py (`evpilot station`), report.py
(`evpilot station report`), exi.py (`evpilot exi`) and pki.py (`evpilot pki`); options.py holds the options
several of them share.

How this works: evpilot_host.cli picks the module for the words on the command line and calls its
main(argv) with the rest, which returns the exit status. A command parses its own arguments, builds its
session's ends with evpilot_host.ends, prints messages with evpilot_host.trace.Printer, and raises
EvpilotError for what the user can fix (cli.py prints it as one line). Nothing is imported here, so each
command loads only what it needs.
"""
