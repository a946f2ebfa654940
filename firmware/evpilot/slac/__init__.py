# SLAC (ISO 15118-3): how the EV finds its charger on the powerline and joins the charger's network.
# mme.py encodes and decodes the HomePlug AV / Green PHY management messages SLAC uses, qca.py the Qualcomm
# modem's own (version, network info, reset), timers.py holds the standard's timers and counts, and ev.py is
# the EV's sans-I/O state machine (frames and `now` in; frames, events and a deadline out).
# The EVSE side for the station simulator lives in evpilot_sim.slac_evse.
