"""The station simulator: SECC connection, protocol sessions, simulated EVSE and backend."""
