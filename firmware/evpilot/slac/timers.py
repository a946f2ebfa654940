# SLAC timers and counters (ISO 15118-3 Table A.1 "SLAC protocol timing and constants"), in milliseconds.
#
# The standard's text is not public; the values are those public implementations transcribe (EVerest
# libslac slac/slac.hpp "defs", pyPLC, ccs32clara) and agree on. TT_* are time-outs, TP_* performance times
# (how soon this side should act), C_* counts.

from evpilot.compat import const

TT_MATCH_RESPONSE = const(200)  # TT_match_response: wait for a CNF before repeating the REQ
C_EV_MATCH_RETRY = const(2)  # C_EV_match_retry: repetitions of a REQ after the first (3 sends in all)
TT_MATCH_SEQUENCE = const(400)  # TT_match_sequence: the EVSE waits this long for the EV's next request
TP_EV_BATCH_MSG_INTERVAL = const(20)  # TP_EV_batch_msg_interval 20-50 ms: between START_ATTEN / MNBC frames
C_EV_START_ATTEN_CHAR_INDS = const(3)  # C_EV_start_atten_char_inds
C_EV_MATCH_MNBC = const(10)  # C_EV_match_MNBC: sounds
TIME_OUT_MNBC = const(6)  # TIME_OUT field in 100 ms units: TT_EVSE_match_MNBC = 600 ms (10 broke a charger)
TT_EVSE_MATCH_MNBC = const(600)
TT_EV_ATTEN_RESULTS = const(1200)  # TT_EV_atten_results: EV collects ATTEN_CHAR.IND from the first START_ATTEN
TT_EVSE_MATCH_SESSION = const(10000)  # TT_EVSE_match_session: after ATTEN_CHAR.RSP until MATCH/VALIDATE
TT_MATCH_JOIN = const(12000)  # TT_match_join: the EV's modem joins the network after MATCH.CNF
TT_MATCHING_RATE = const(400)  # TT_matching_rate: pause before the EV restarts the matching process
TT_MATCHING_REPETITION = const(10000)  # TT_matching_repetition: the EV stops restarting after this long
C_CONN_MAX_MATCH = const(3)  # C_conn_max_match (>= 3): matching attempts
TT_EVSE_SLAC_INIT = const(50000)  # TT_EVSE_SLAC_init 20-50 s: the EVSE waits for the first PARM.REQ

# Field practice (not from the standard; see pyPLC's and ccs32clara's notes on real chargers and modems):
# the QCA modem restarts after SET_KEY, so the EV waits before it asks whether the modem joined, then polls.
MODEM_SETTLE = const(3000)
MODEM_POLL_INTERVAL = const(500)
