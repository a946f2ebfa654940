# Freeze evpilot into a custom MicroPython build: the way to fit a Plug&Charge session into the small heaps
# of ESP32 / RP2040 boards (frozen bytecode runs from flash and costs the heap nothing; see the boards'
# "heap" notes and README's Benchmarks for the figures). Build a port with it, for example:
#     make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=<this repository>/firmware/manifest.py
#     make -C ports/rp2 BOARD=RPI_PICO FROZEN_MANIFEST=<this repository>/firmware/manifest.py
# (MicroPython's docs/reference/manifest.rst describes the functions used here). FROZEN_MANIFEST replaces
# the port's default manifest, so that one is included first for the port's own frozen modules (asyncio,
# ...); ports/unix keeps its default in variants/manifest.py: change the include to that path there.
# The build compiles the package with the port's own mpy-cross flags (its native architecture, so P-256's
# viper code is frozen as machine code). main.py and board.json stay files on the board's filesystem
# (`evpilot deploy --board NAME` writes them); a frozen evpilot comes before /lib on the boards' sys.path,
# so modules deploy copies there are not the ones imported.

include("$(PORT_DIR)/boards/manifest.py")

# firmware/evpilot, relative to this file (every module; a board that needs no DIN or no ISO-2 can list
# package("evpilot", files=[...]) instead)
package("evpilot")
