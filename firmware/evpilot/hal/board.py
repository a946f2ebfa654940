# Board files (boards/NAME.json): load one and check it on the device before anything touches a pin.
#
# How this works
# --------------
# A board file is plain JSON (boards/schema.json describes it for the laptop's tools). load() reads it with a
# size limit, validate() checks the same rules as the schema by hand (MicroPython has no jsonschema):
# required fields, their types, the enumerations, and each pin against the port's own pin table below, so a
# typo fails at boot with the field's name instead of as a wrong level on a wire. check_pins() then asks the
# port's `machine` module itself: every pin is constructed once (machine.Pin raises ValueError for a name the
# port does not have) and the CP ADC once with machine.ADC. Every problem is a PeerError (a user's file).
#
# Pin tables are flat bytes (one byte per GPIO number, bit flags), not dicts (STYLE rule 3):
#   ESP32     GPIO 0-39 exist except 20, 24, 28-31; 6-11 drive the SPI flash; 34-39 are inputs only; the CP
#             ADC must be on ADC1 (32-39): ADC2 is unusable while the radio runs (Espressif's ESP32 datasheet,
#             "Peripheral Pin Configurations").
#   ESP32-S3  GPIO 0-21 and 26-48; 26-32 drive the flash/PSRAM on the modules; ADC1 is GPIO 1-10
#             (ESP32-S3 datasheet, "Pin Overview").
#   RP2       GPIO 0-29 (RP2040; the RP2350's QFN-60 has 0-29 too), ADC on 26-29 (RP2040 datasheet 2.19,
#             4.9); "LED" names the Pico's on-board LED (MicroPython's rp2 port).
#   unix      no pins: every pin field must be null or absent.

import json

from evpilot.compat import const
from evpilot.errors import PeerError

MAX_BOARD_FILE = const(8192)  # a board file is about 2 KB; more is not a board file

_EXISTS = const(1)
_OUTPUT = const(2)
_ADC = const(4)
_RESERVED = const(8)  # exists but belongs to the flash/PSRAM


def _table(size, rules):
    t = bytearray(size)
    for lo, hi, flags in rules:
        for n in range(lo, hi + 1):
            t[n] = flags
    return bytes(t)


_IO = _EXISTS | _OUTPUT
PIN_TABLES = {
    "esp32": _table(40, ((0, 19, _IO), (21, 23, _IO), (25, 27, _IO), (32, 33, _IO | _ADC),
                         (34, 39, _EXISTS | _ADC), (6, 11, _IO | _RESERVED))),
    "esp32s3": _table(49, ((0, 21, _IO), (1, 10, _IO | _ADC), (26, 48, _IO), (26, 32, _IO | _RESERVED))),
    "rp2": _table(30, ((0, 29, _IO), (26, 29, _IO | _ADC))),
}
_NAMED_PINS = {"rp2": ("LED",)}

PORTS = ("esp32", "esp32s3", "rp2", "unix")
CHIPS = ("QCA7000", "QCA7005", "none")
LINKS = ("spi", "sockets", "ether", "qca7000-sim")
PILOT_KINDS = ("adc", "sim")
CHANNELS = ("uart", "usb-cdc", "stdio")
REQUIRED = ("name", "description", "port", "modem", "pilot", "leds", "storage", "provisioning", "heap", "notes",
            "unverified")
SPI_PINS = ("sck", "mosi", "miso", "cs")
SPI_OPTIONAL_PINS = ("int", "reset")
PILOT_ADC_FIELDS = ("adc", "sense", "s2", "s2_active", "vref_mv", "offset_mv", "gain")


def _fail(field, text):
    raise PeerError("board file: " + field + ": " + text)


def load(path):
    """The board file at `path`, read, parsed and validated; PeerError naming the problem otherwise."""
    try:
        with open(path) as f:
            text = f.read(MAX_BOARD_FILE + 1)
    except OSError as e:
        raise PeerError("board file " + str(path) + ": cannot read it (" + str(e) + ")")
    if len(text) > MAX_BOARD_FILE:
        raise PeerError("board file " + str(path) + ": longer than " + str(MAX_BOARD_FILE) + " bytes")
    return loads(text)


def loads(text):
    try:
        board = json.loads(text)
    except ValueError as e:
        raise PeerError("board file: not JSON (" + str(e) + ")")
    return validate(board)


def _obj(board, field):
    value = board.get(field)
    if not isinstance(value, dict):
        _fail(field, "must be an object")
    return value


def _int(value, field, lo=None, hi=None, optional=False):
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        _fail(field, "must be an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        _fail(field, "%d outside %s..%s" % (value, lo, hi))


def _str(value, field):
    if not isinstance(value, str) or not value:
        _fail(field, "must be a non-empty string")


def _one_of(value, choices, field):
    if value not in choices:
        _fail(field, "%r is not one of %s" % (value, ", ".join(choices)))


def pin_ok(port, pin, output=False, adc=False):
    """None when `pin` is usable on `port` for the purpose, else the reason (a string)."""
    table = PIN_TABLES.get(port)
    if table is None:
        return "the %s port has no pins" % port
    if isinstance(pin, str):
        if pin in _NAMED_PINS.get(port, ()) and not adc:
            return None
        return "no pin named %r on %s" % (pin, port)
    if not isinstance(pin, int) or isinstance(pin, bool):
        return "a pin is a GPIO number or a port's pin name"
    flags = table[pin] if 0 <= pin < len(table) else 0
    if not flags & _EXISTS:
        return "GPIO %d does not exist on %s" % (pin, port)
    if flags & _RESERVED:
        return "GPIO %d belongs to the flash/PSRAM on %s" % (pin, port)
    if output and not flags & _OUTPUT:
        return "GPIO %d is input-only on %s" % (pin, port)
    if adc and not flags & _ADC:
        return "GPIO %d has no usable ADC channel on %s" % (pin, port)
    return None


def pins(board):
    """(field, pin, output, adc) for every pin the board file names (None pins left out)."""
    out = []
    modem = board["modem"]
    spi = modem.get("spi")
    if spi is not None:
        for name in SPI_PINS + SPI_OPTIONAL_PINS:
            if spi.get(name) is not None:
                out.append(("modem.spi." + name, spi[name], name in ("sck", "mosi", "cs", "reset"), False))
    pilot = board["pilot"]
    for name, output, adc in (("adc", False, True), ("sense", False, False), ("s2", True, False)):
        if pilot.get(name) is not None:
            out.append(("pilot." + name, pilot[name], output, adc))
    for name, value in board["leds"].items():
        if value is not None:
            out.append(("leds." + name, value, True, False))
    uart = board["provisioning"].get("uart")
    if uart is not None:
        out.append(("provisioning.uart.tx", uart.get("tx"), True, False))
        out.append(("provisioning.uart.rx", uart.get("rx"), False, False))
    return out


def validate(board):
    """`board` itself when it is a valid board file; PeerError naming the first bad field otherwise."""
    if not isinstance(board, dict):
        _fail("(top)", "must be an object")
    for field in REQUIRED:
        if field not in board:
            _fail(field, "missing")
    _str(board["name"], "name")
    _str(board["description"], "description")
    port = board["port"]
    _one_of(port, PORTS, "port")
    modem = _obj(board, "modem")
    _one_of(modem.get("chip"), CHIPS, "modem.chip")
    _one_of(modem.get("link"), LINKS, "modem.link")
    if modem["link"] == "spi":
        spi = modem.get("spi")
        if not isinstance(spi, dict):
            _fail("modem.spi", "an SPI modem needs its bus and pins")
        for name in ("bus", "baudrate", "mode") + SPI_PINS + SPI_OPTIONAL_PINS:
            if name not in spi:
                _fail("modem.spi." + name, "missing")
        _int(spi["bus"], "modem.spi.bus", 0, 3)
        _int(spi["baudrate"], "modem.spi.baudrate", 1000000, 16000000)  # the QCA7000 runs SPI at 1-16 MHz
        if spi["mode"] != 3:  # CPOL=1, CPHA=1 (QCA7000 SPI host interface)
            _fail("modem.spi.mode", "the QCA7000 needs SPI mode 3")
    elif port != "unix":
        _fail("modem.link", "only the unix port has the laptop's link adapters")
    elif modem["link"] != "sockets" and not modem.get("iface"):
        _fail("modem.iface", "link %s needs the laptop interface's name" % (modem["link"],))
    if "iface" in modem and not isinstance(modem["iface"], str):
        _fail("modem.iface", "must be a string")
    pilot = _obj(board, "pilot")
    _one_of(pilot.get("kind"), PILOT_KINDS, "pilot.kind")
    _int(pilot.get("period_ms"), "pilot.period_ms", 1, 1000)
    if pilot["kind"] == "adc":
        for name in PILOT_ADC_FIELDS:
            if name not in pilot:
                _fail("pilot." + name, "missing")
        _one_of(pilot["s2_active"], (0, 1), "pilot.s2_active")
        _int(pilot["vref_mv"], "pilot.vref_mv", 1, 10000)
        _int(pilot["offset_mv"], "pilot.offset_mv", -10000, 10000)
        if not isinstance(pilot["gain"], (int, float)) or pilot["gain"] <= 0:
            _fail("pilot.gain", "must be a positive number")
    elif port != "unix":
        _fail("pilot.kind", "a simulated pilot only on the unix port")
    for name in ("noise_mv", "plug_after_ms", "pwm_after_ms", "unplug_after_ms", "cycles"):
        _int(pilot.get(name), "pilot." + name, 0, None, optional=True)
    leds = _obj(board, "leds")
    for name in ("status", "charging"):
        if name not in leds:
            _fail("leds." + name, "missing (null for none)")
    _str(board["storage"], "storage")
    prov = _obj(board, "provisioning")
    _one_of(prov.get("channel"), CHANNELS, "provisioning.channel")
    if prov["channel"] == "uart":
        uart = prov.get("uart")
        if not isinstance(uart, dict):
            _fail("provisioning.uart", "a UART channel needs id, tx, rx and baudrate")
        _int(uart.get("id"), "provisioning.uart.id", 0, 9)
        _int(uart.get("baudrate"), "provisioning.uart.baudrate", 1200, 4000000)
    _int(board.get("watchdog_ms"), "watchdog_ms", 0, 3600000, optional=True)
    heap = _obj(board, "heap")
    _int(heap.get("free_kb"), "heap.free_kb", 1)
    if not isinstance(heap.get("notes"), str):
        _fail("heap.notes", "must be a string")
    for field in ("notes", "unverified"):
        if not isinstance(board[field], list) or not all(isinstance(x, str) for x in board[field]):
            _fail(field, "must be a list of strings")
    for field, pin, output, adc in pins(board):
        if port == "unix":
            _fail(field, "the unix port has no pins (null)")
        reason = pin_ok(port, pin, output, adc)
        if reason is not None:
            _fail(field, reason)
    return board


def check_pins(board, machine):
    """Construct each pin (and the CP ADC) with the port's `machine` module: PeerError naming the field whose
    pin the port refuses. Touches no level: pins are made as inputs, outputs are left to their drivers."""
    for field, pin, output, adc in pins(board):
        try:
            p = machine.Pin(pin, machine.Pin.IN)
            if adc:
                machine.ADC(p)
        except (ValueError, TypeError) as e:
            _fail(field, "the port refuses pin %r (%s)" % (pin, e))
    return board
