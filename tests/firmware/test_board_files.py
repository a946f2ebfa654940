# Board files (boards/*.json): each one loads and validates with the device's own loader, and its pins are
# accepted by a fake `machine` module that knows the port's pin names as the port's makers publish them (the
# only fake here: it stands in for the board's firmware, which this machine does not have). Broken files fail
# with the field's name. Runs on CPython and on the MicroPython unix port (the webassembly runner does not
# copy boards/ into its filesystem).

from evpilot.errors import PeerError
from evpilot.hal import board

MICROPYTHON_PORTS = ("unix",)

try:
    _ROOT = __file__.rsplit("/", 3)[0] if __file__.count("/") >= 3 else "."
except NameError:  # pragma: no cover
    _ROOT = "."
BOARDS = ("esp32-qca7005", "esp32s3-plcstamp", "rp2040-qca7000", "unix")


def _path(name):
    return _ROOT + "/boards/" + name + ".json"


# GPIO numbers each port's machine.Pin accepts, from the chips' datasheets (flash pins left out), and the ADC
# channels machine.ADC accepts.
_GPIOS = {
    "esp32": [n for n in range(40) if n not in (20, 24, 28, 29, 30, 31, 6, 7, 8, 9, 10, 11)],
    "esp32s3": [n for n in range(49) if not (22 <= n <= 32)],
    "rp2": list(range(30)) + ["LED"],
}
_ADCS = {"esp32": list(range(32, 40)), "esp32s3": list(range(1, 11)), "rp2": [26, 27, 28, 29]}


class FakeMachine:
    """A `machine` module for one port: Pin and ADC raise ValueError for what that port does not have."""

    def __init__(self, port):
        gpios = _GPIOS[port]
        adcs = _ADCS[port]
        made = self.made = []

        class Pin:
            IN = 1
            OUT = 3

            def __init__(self, ident, mode=-1):
                if ident not in gpios:
                    raise ValueError("invalid pin")
                self.ident = ident
                made.append(ident)

        class ADC:
            def __init__(self, pin):
                if pin.ident not in adcs:
                    raise ValueError("invalid pin for ADC")

        self.Pin = Pin
        self.ADC = ADC


def _expect_error(text, words):
    try:
        board.loads(text)
    except PeerError as e:
        for w in words:
            assert w in str(e), (str(e), w)
        return
    assert False, "accepted: " + text[:80]


def test_every_board_file_loads_and_validates():
    ports = []
    for name in BOARDS:
        b = board.load(_path(name))
        assert b["name"] == name
        ports.append(b["port"])
        assert b["storage"] and b["provisioning"]["channel"] in ("uart", "usb-cdc", "stdio")
        assert b["heap"]["free_kb"] > 0 and b["heap"]["notes"]
    assert ports == ["esp32", "esp32s3", "rp2", "unix"]


def test_board_pins_are_valid_for_their_port():
    for name in BOARDS[:3]:
        b = board.load(_path(name))
        fake = FakeMachine(b["port"])
        board.check_pins(b, fake)
        fields = [f for f, _, _, _ in board.pins(b)]
        for f in ("modem.spi.sck", "modem.spi.mosi", "modem.spi.miso", "modem.spi.cs", "pilot.adc",
                  "pilot.sense", "pilot.s2"):
            assert f in fields, (name, f)
        assert len(fake.made) == len(fields)
        # The same pins on another port's machine: at least one is refused (the files are not interchangeable).
        other = "rp2" if b["port"] != "rp2" else "esp32"
        try:
            board.check_pins(b, FakeMachine(other))
        except PeerError as e:
            assert "refuses pin" in str(e)
        else:
            assert False, name + " pins all valid on " + other


def test_published_pins_are_kept():
    # Pins the makers publish (ccs32berta VSPI; the ESP32-S3 + PLC Stamp micro port).
    spi = board.load(_path("esp32-qca7005"))["modem"]["spi"]
    got = (spi["sck"], spi["miso"], spi["mosi"], spi["cs"], spi["mode"], spi["baudrate"])
    assert got == (18, 19, 23, 5, 3, 2000000)
    spi = board.load(_path("esp32s3-plcstamp"))["modem"]["spi"]
    got = (spi["cs"], spi["reset"], spi["sck"], spi["miso"], spi["mosi"], spi["baudrate"])
    assert got == (41, 40, 48, 21, 47, 8000000)
    # Whatever is not published says so.
    for name in BOARDS[:3]:
        b = board.load(_path(name))
        assert b["unverified"] and any("unverified" in n for n in b["notes"]), name


def test_unix_board_uses_the_laptop_adapters():
    b = board.load(_path("unix"))
    assert b["port"] == "unix" and b["modem"]["link"] == "sockets" and b["pilot"]["kind"] == "sim"
    assert board.pins(b) == []


def _text(name, change):
    import json

    with open(_path(name)) as f:
        b = json.load(f)
    change(b)
    return json.dumps(b)


def test_broken_board_files_name_the_field():
    def drop(key):
        return lambda b: b.pop(key)

    _expect_error(_text("unix", drop("storage")), ["storage", "missing"])
    _expect_error(_text("esp32-qca7005", lambda b: b["modem"]["spi"].update(cs=24)), ["modem.spi.cs", "GPIO 24"])
    _expect_error(_text("esp32-qca7005", lambda b: b["modem"]["spi"].update(sck=7)), ["modem.spi.sck", "flash"])
    _expect_error(_text("esp32-qca7005", lambda b: b["pilot"].update(s2=35)), ["pilot.s2", "input-only"])
    _expect_error(_text("esp32-qca7005", lambda b: b["pilot"].update(adc=25)), ["pilot.adc", "ADC"])
    _expect_error(_text("esp32s3-plcstamp", lambda b: b["modem"]["spi"].update(mode=0)), ["modem.spi.mode"])
    _expect_error(_text("rp2040-qca7000", lambda b: b["modem"]["spi"].update(baudrate=40000000)),
                  ["modem.spi.baudrate"])
    _expect_error(_text("rp2040-qca7000", lambda b: b.update(port="stm32")), ["port", "stm32"])
    _expect_error(_text("rp2040-qca7000", lambda b: b["leds"].update(status="LED2")), ["leds.status", "LED2"])
    _expect_error(_text("rp2040-qca7000", lambda b: b["pilot"].pop("gain")), ["pilot.gain", "missing"])
    _expect_error(_text("rp2040-qca7000", lambda b: b["pilot"].update(kind="sim")), ["pilot.kind"])
    _expect_error(_text("unix", lambda b: b["leds"].update(status=2)), ["leds.status", "no pins"])
    _expect_error(_text("unix", lambda b: b["provisioning"].update(channel="uart")), ["provisioning.uart"])
    _expect_error("[1, 2]", ["must be an object"])
    _expect_error("{not json", ["not JSON"])
    try:
        board.load(_ROOT + "/boards/no-such-board.json")
    except PeerError as e:
        assert "cannot read" in str(e)
    else:
        assert False
