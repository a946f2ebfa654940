"""The firmware application (firmware/main.py -> evpilot.app) on the unix board under the real MicroPython
unix port, against `evpilot station` (CPython) in another network namespace across a veth pair: the
simulated pilot plugs in (A -> B, 5 % PWM), the session closes S2 (B -> C) and charges, the app goes to the
safe state, the driver unplugs, and a second plug-in runs a second session. A station that withholds a
response mid-session ends that round in the safe state and the next plug-in charges again. Plug&Charge over
TLS with a store seeded from the test PKI (host/evpilot_host/pki_material.py). Needs root for the namespaces
(skipped with the reason otherwise, failing in CI) and the unix port."""

import json
import os

import pytest
import subprocess
import sys

import evpilot_mp_unix as mp_unix
from evpilot.log import INFO, Log
from test_link_cli import pki, veth  # noqa: F401 (fixtures)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _station(ns, iface, args, db):
    cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "evpilot_host.cli", "station", "--iface", iface,
           "--seed", "7", "--db", str(db)] + list(args)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def _wait_serving(proc):
    out = []
    for line in proc.stdout:
        out.append(line)
        if line.startswith("station: SECC"):
            return out
    raise AssertionError("the station ended before serving: " + "".join(out))


def _board_dir(tmp_path, config, cycles, provision=False, name="unix", modem=None):
    """A folder with board.json (boards/NAME.json, quick plug-ins, `modem` merged into its modem) and
    app.json (`config`, rounds = cycles)."""
    with open(os.path.join(ROOT, "boards", name + ".json")) as f:
        board = json.load(f)
    board["modem"].update(modem or {})
    board["pilot"].update(cycles=cycles, plug_after_ms=200, pwm_after_ms=200, unplug_after_ms=100)
    d = tmp_path / "board"
    d.mkdir()
    (d / "board.json").write_text(json.dumps(board))
    (d / "app.json").write_text(json.dumps(dict(config, rounds=cycles, provision=provision)))
    return d


def _app(ns, iface, board_dir, heap=None):  # None: $EVPILOT_MP_UNIX_HEAP, else 4m
    cmd = ["ip", "netns", "exec", ns] + mp_unix.command(os.path.join(ROOT, "firmware", "main.py"), heap=heap)
    env = mp_unix.script_env()
    return subprocess.Popen(cmd, cwd=str(board_dir), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _lines(stderr, word):
    return [line.split(" ", 2)[2] for line in stderr.splitlines() if len(line.split(" ", 2)) == 3
            and line.split(" ", 2)[2].startswith(word)]


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def test_two_plug_ins_eim(micropython_unix, veth, tmp_path):
    st_ns, st_if, ev_ns, ev_if = veth
    station = _station(st_ns, st_if, ["--protocols", "iso2", "--mode", "dc"], tmp_path / "s.sqlite3")
    try:
        _wait_serving(station)
        # The provisioning service runs too, on the console (here an empty stdin: it ends at once).
        board = _board_dir(tmp_path, {"standard": "iso2", "soc": [20, 21], "iface": ev_if}, cycles=2,
                           provision=True)
        app = _app(ev_ns, ev_if, board)
        out, err = app.communicate(timeout=180)
    finally:
        st_out = _stop(station)
    assert _lines(err, "provisioning:") == ["provisioning: serving on the console"], err[-3000:]  # no error
    assert app.returncode == 0, err[-3000:] + out[-1000:]
    assert _lines(err, "session:") == ["session: ok (session stopped)"] * 2, err[-3000:]
    pilot = _lines(err, "pilot:")
    # Each plug-in: B1, then the 5 % PWM, C2 while charging (S2 closed by the session), back to B2 in the
    # safe state, A1 when unplugged.
    one = ["pilot: B1", "pilot: 5 % PWM (digital communication), duty 50 per mille", "pilot: C2", "pilot: B2",
           "pilot: A1", "pilot: unplugged"]
    assert pilot == one + one, pilot
    phases = _lines(err, "app: ")
    assert phases.count("app: session") == 2 and phases.count("app: safe") == 2 and phases[-1].startswith("app: done")
    assert st_out.count("station: session ok") == 2, st_out


def test_station_failure_mid_session_then_ready_again(micropython_unix, veth, tmp_path):
    st_ns, st_if, ev_ns, ev_if = veth
    faulty = _station(st_ns, st_if, ["--protocols", "iso2", "--once", "--fault", "PreChargeRes:withhold:2"],
                      tmp_path / "f.sqlite3")
    good = None
    try:
        _wait_serving(faulty)
        board = _board_dir(tmp_path, {"standard": "iso2", "soc": [20, 21], "iface": ev_if}, cycles=2)
        app = _app(ev_ns, ev_if, board)
        faulty.wait(timeout=120)  # one session, failed
        good = _station(st_ns, st_if, ["--protocols", "iso2", "--once"], tmp_path / "g.sqlite3")
        _wait_serving(good)  # the app's SDP keeps asking (up to 50 requests) meanwhile
        out, err = app.communicate(timeout=180)
    finally:
        f_out = _stop(faulty)
        g_out = _stop(good) if good is not None else ""
    results = _lines(err, "session:")
    assert len(results) == 2, err[-3000:]
    assert results[0].startswith("session: failed") and "PreChargeRes" in results[0], results
    assert results[1] == "session: ok (session stopped)", err[-3000:]
    phases = _lines(err, "app: ")
    first_safe = phases.index("app: safe")
    assert phases[first_safe + 1] == "app: ready", phases  # safe, then ready for the next plug-in
    pilot = _lines(err, "pilot:")
    assert pilot.count("pilot: A1") == 2
    assert app.returncode == 1  # one round failed
    assert "station: session ok" in g_out and "station: session failed" in f_out, f_out


def test_plug_and_charge_over_tls_with_a_seeded_store(micropython_unix, veth, tmp_path, pki):
    from evpilot_host import pki_material

    st_ns, st_if, ev_ns, ev_if = veth
    board = _board_dir(tmp_path, {"standard": "iso2", "soc": [20, 21], "iface": ev_if, "tls": True, "pnc": True},
                       cycles=2)
    pki_material.seed_store(str(board / "store"), str(pki))
    station = _station(st_ns, st_if, ["--protocols", "iso2", "--tls", "--pki", str(pki), "--pnc"],
                       tmp_path / "p.sqlite3")
    try:
        _wait_serving(station)
        app = _app(ev_ns, ev_if, board)
        out, err = app.communicate(timeout=300)
    finally:
        st_out = _stop(station)
    assert app.returncode == 0, err[-3000:] + out[-1000:]
    assert _lines(err, "session:") == ["session: ok (session stopped)"] * 2, err[-3000:]
    assert len(_lines(err, "tls: TLSv1.2")) == 2
    assert "station: contract DEABCC123ABC56" in st_out, st_out
    assert st_out.count("station: session ok") == 2


# --- in-process (CPython): the log, and a board whose link is not there yet ---------------------------------


def test_log_ring_keeps_the_last_lines_with_levels():
    clock = iter(range(1000))
    log = Log(size=4, level=INFO, clock=lambda: next(clock))
    log.debug("hidden")
    for i in range(6):
        log.info("line %d" % i)
    log.add("from the provisioning service")
    assert log.lines() == ["3 info line 3", "4 info line 4", "5 info line 5", "from the provisioning service"]
    log.error("bad")
    assert log.lines()[-1] == "6 error bad" and len(log.lines()) == 4 and log.count == 8


class _BoardMachine:
    """A machine module for an ESP32 board file: the CP line shows B2 with 5 % PWM until the test unplugs;
    S2's pin level and the watchdog's feeds are recorded. The SPI bus has nothing on it (every read gives
    zeros: a QCA7000 that is not fitted or not powered)."""

    def __init__(self):
        self.plugged = True
        self.s2 = []
        self.feeds = 0
        self.adc_error = None  # raised by every ADC read once set
        fake = self

        class Pin:
            IN = 1
            OUT = 3
            IRQ_RISING = 4

            def __init__(self, ident, mode=-1, value=None):
                self.ident = ident
                if value is not None:
                    self.value(value)

            def value(self, v=None):
                if v is not None and self.ident == 4:
                    fake.s2.append(v)

            def irq(self, handler=None, trigger=None):
                pass

        class SPI:
            def __init__(self, bus, **kw):
                fake.spi = (bus, kw)

            def write(self, data):
                pass

            def readinto(self, buf, write_byte=0):
                for i in range(len(buf)):
                    buf[i] = 0

        class ADC:
            def __init__(self, pin):
                self.n = 0

            def read_u16(self):
                if fake.adc_error is not None:
                    raise fake.adc_error
                self.n += 1
                mv = 12000 if not fake.plugged else (9000 if self.n % 2 else -12000)
                return int((mv / 8.0 + 1650) * 65535 / 3300)

        class WDT:
            def __init__(self, timeout):
                fake.wdt_timeout = timeout

            def feed(self):
                fake.feeds += 1

        self.Pin, self.ADC, self.WDT, self.SPI = Pin, ADC, WDT, SPI

    def unique_id(self):
        return b"\x24\x0a\xc4\x11\x22\x33"

    def time_pulse_us(self, pin, level, timeout):
        if not self.plugged:
            return -2
        return 50 if level else 950


def test_a_board_whose_modem_never_syncs_ends_the_round_safely_and_waits_for_unplug():
    import asyncio

    from evpilot import app
    from evpilot.hal import board

    b = board.load(os.path.join(ROOT, "boards", "esp32-qca7005.json"))
    fake = _BoardMachine()
    lines = []
    a = app.App(b, {"provision": False}, log=Log(echo=lines.append), machine=fake)

    async def driver():
        while a.phase != app.SAFE:
            await asyncio.sleep(0.01)
        fake.plugged = False  # the driver unplugs

    async def both():
        task = asyncio.create_task(driver())
        results = await asyncio.wait_for(a.run(rounds=1), 30)
        await task
        return results

    results = asyncio.run(both())
    assert results[0]["result"] == "failed", results
    assert results[0]["end"] == "LinkError: modem: no SPI sync with the QCA7000 within 5000 ms", results
    assert fake.spi[0] == 2 and fake.spi[1]["polarity"] == 1 and fake.spi[1]["phase"] == 1  # the board's VSPI
    text = "\n".join(lines)
    # the host MAC: locally administered, from machine.unique_id()
    assert "link: QCA7005 on SPI bus 2, host MAC 02:0a:c4:11:22:33" in text, text
    assert "session: failed (LinkError: modem: no SPI sync" in text and "app: safe" in text, text
    assert "slac:" not in text  # no SLAC without a modem
    assert "pilot: unplugged" in text and text.index("app: safe") < text.index("pilot: unplugged")
    assert fake.s2 and fake.s2[-1] == 0 and 1 not in fake.s2  # S2 never closed, open at the end
    assert fake.wdt_timeout == 8000 and fake.feeds >= 1


def _charging_board(fault, rounds):
    """An ESP32 app whose session charges for ever (S2 closed) until cancelled; once it charges, `fault(fake)`
    changes the board. Runs a.run(rounds) (20 s at most); returns (app, fake machine, log lines, cancelled,
    the outcome: run()'s results, or the exception it raised)."""
    import asyncio

    from evpilot import app
    from evpilot.hal import board

    b = board.load(os.path.join(ROOT, "boards", "esp32-qca7005.json"))
    fake = _BoardMachine()
    lines = []
    a = app.App(b, {"provision": False}, log=Log(echo=lines.append), machine=fake)
    cancelled = []

    async def endless_session():
        a.core.request_s2(True, 0)
        try:
            await asyncio.sleep(3600)
        finally:
            cancelled.append(True)

    a._session = endless_session

    async def driver():
        while a.phase != app.SESSION or not fake.s2 or fake.s2[-1] != 1:
            await asyncio.sleep(0.01)
        fault(fake)

    async def both():
        task = asyncio.create_task(driver())
        try:
            return await asyncio.wait_for(a.run(rounds), 20)
        except Exception as e:
            return e
        finally:
            await task

    return a, fake, lines, cancelled, asyncio.run(both())


def test_a_pilot_fault_during_the_session_cancels_it_into_the_safe_state():
    def pull_the_plug(fake):  # the pilot shows A while charging
        fake.plugged = False

    a, fake, lines, cancelled, results = _charging_board(pull_the_plug, rounds=1)
    assert cancelled == [True]
    assert results[0]["result"] == "failed" and "pilot state A during the session" in results[0]["end"], results
    assert fake.s2[-1] == 0 and "app: safe" in "\n".join(lines)


def test_a_pilot_whose_adc_fails_mid_session_ends_the_app_in_the_safe_state_and_starves_the_watchdog():
    from evpilot.errors import EvpilotError

    def adc_fails(fake):  # the CP's ADC stops answering while charging
        fake.adc_error = OSError(5, "EIO")

    # rounds=None: only the pilot's failure ends it
    a, fake, lines, cancelled, outcome = _charging_board(adc_fails, rounds=None)
    assert isinstance(outcome, EvpilotError), outcome
    assert str(outcome) == "pilot stopped (OSError: [Errno 5] EIO)"
    assert cancelled == [True]  # the session was cancelled
    assert fake.s2[-1] == 0  # S2 open
    text = "\n".join(lines)
    assert "error pilot: stopped (OSError: [Errno 5] EIO); the watchdog is no longer fed" in text, text
    assert "app: stopped after 0 session(s): the pilot stopped" in text, text  # the cut round is not one
    assert text.count("app: plugged") == 1 and "app: done" not in text  # and no new round began
    assert fake.feeds >= 1 and fake.wdt_timeout == 8000  # the watchdog ran; once stopped, the board resets


def test_a_modem_whose_spi_failed_is_reopened_at_the_next_plug_in():
    import asyncio

    from evpilot import app
    from evpilot.hal import board

    class Dead:
        error = OSError(5, "EIO")
        closed = False

        def close(self):
            self.closed = True

    b = board.load(os.path.join(ROOT, "boards", "esp32-qca7005.json"))
    lines = []
    dead = Dead()
    a = app.App(b, {"provision": False}, log=Log(echo=lines.append), machine=_BoardMachine(), modem=dead)
    asyncio.run(a.link_down())
    assert dead.closed and a.modem is None  # _modem_device() opens it again at the next plug-in
    assert lines[-1].endswith("error link: modem failed ([Errno 5] EIO): reopening it at the next plug-in"), lines
