# evpilot_sim: the portable simulator. A simulated vehicle (vehicle.py), a simulated EVSE (evse.py), the
# station's side of the protocols (station/: the SECC connection with fault injection, the DIN and ISO-2
# station sessions, the certificate provisioning service and the station's Plug&Charge checks), the
# virtual-clock pipe that joins an EV and a station in memory (pipe.py), and one EV session over the
# platform's sockets with a simulated vehicle (ev_run.py, what `evpilot ev --on micropython` runs).
#
# It is not firmware (a board carries exactly firmware/evpilot), but it must stay MicroPython-clean: the
# firmware tests run it on both interpreters, and the laptop runs the firmware's EV under MicroPython with
# it. So: only evpilot, the standard library that MicroPython has, and nothing of evpilot_host.
