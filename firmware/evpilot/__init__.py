# evpilot: ISO 15118 EV communication controller.
# This package runs unchanged on MicroPython (1.22+) and CPython (3.10+).
__version__ = "0.1.0"
