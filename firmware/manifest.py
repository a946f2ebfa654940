# Freeze evpilot into a custom MicroPython build: the way to fit a Plug&Charge session into the small heaps
# of ESP32 / RP2040 boards (frozen bytecode runs from flash and costs the heap nothing; see the boards'
# "heap" notes and README's Benchmarks for the figures). Build a port with it, for example:
#     make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=<this repository>/firmware/manifest.py
#     make -C ports/rp2 BOARD=RPI_PICO FROZEN_MANIFEST=<this repository>/firmware/manifest.py
# (MicroPython's docs/reference/manifest.rst describes the functions used here). FROZEN_MANIFEST replaces
# the port's default manifest, so that one is included first for the port's own frozen modules (asyncio,
# ...); ports/unix keeps its default in variants/manifest.py: change the include to that path there.
# The build compiles the package with the port's own mpy-cross flags (its native architecture). P-256's
# viper code, which plain mpy-cross cannot compile, is generated here as one module for the board's limb
# layout (evpilot.pnc.p256_viper.native_module, into .cache/frozen-native beside this folder) and frozen
# as machine code with the rest: nothing is compiled on the board, and the heap stays in one piece (see
# README's Benchmarks). For a 64-bit port (unix), include this manifest with word_bits=64.
# main.py and board.json stay files on the board's filesystem
# (`evpilot deploy --board NAME` writes them); a frozen evpilot comes before /lib on the boards' sys.path,
# so modules deploy copies there are not the ones imported.

include("$(PORT_DIR)/boards/manifest.py")

# firmware/evpilot, relative to this file (every module; a board that needs no DIN or no ISO-2 can list
# package("evpilot", files=[...]) instead)
package("evpilot")


def _native_module(bits):
    """Write the prebuilt P-256 viper module for a word size; returns its base folder."""
    import os
    import sys

    here = os.getcwd()  # makemanifest runs a manifest in its own folder
    sys.path.insert(0, here)
    try:
        from evpilot.pnc import p256_viper
    finally:
        sys.path.remove(here)
    base = os.path.join(os.path.dirname(here), ".cache", "frozen-native")
    os.makedirs(os.path.join(base, "evpilot", "pnc"), exist_ok=True)
    with open(os.path.join(base, "evpilot", "pnc", "p256_viper_native.py"), "w") as f:
        f.write(p256_viper.native_module(29 if bits == 64 else 13))
    return base


module("evpilot/pnc/p256_viper_native.py", base_path=_native_module(options.word_bits or 32))
