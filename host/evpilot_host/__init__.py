"""evpilot_host: the `evpilot` command and everything that runs only on a laptop (CPython).

The protocol core lives in the `evpilot` package (firmware/evpilot), which this package imports; nothing here
is needed on a board.
"""

from evpilot import __version__  # noqa: F401  (one version for the firmware and the companion)
