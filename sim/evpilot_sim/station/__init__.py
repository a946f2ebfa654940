# The station (SECC) side of a session: secc.py (one V2G connection, fault injection), din.py and iso2.py
# (the protocol sessions), cps.py (certificate provisioning service), contracts.py (the station's Plug&Charge:
# the contract checks, signed SalesTariffs, metering receipts).
