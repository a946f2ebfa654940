# SLAC (ISO 15118-3): how the EV finds its charger on the powerline and joins the charger's network.
# mme.py encodes and decodes the HomePlug management messages (SLAC and the Qualcomm modem's own);
# ev.py is the EV's sans-I/O state machine (frames and `now` in; frames, events and a deadline out).
# The EVSE side for the station simulator lives in evpilot_sim.slac_evse.
