# The firmware application: the asyncio tasks of one board, from plug-in to the end of a charging session and
# back to waiting for the next plug-in.
#
# How this works
# --------------
# main(board, config) (firmware/main.py calls it with the board file and the optional app.json) builds an App
# and runs its tasks:
#   pilot        the control-pilot core (evpilot.hal.pilot) fed by the board's adapter: hal/pilot_machine.py
#                on a board (machine.ADC/Pin), evpilot_sim.pilot_sim's simulated line on the unix board
#   sessions     the plug-in loop below
#   provisioning evpilot.provision.serial's service on the board's channel, when that module is present
#   watchdog     machine.WDT fed while the loop runs, where the port has one and the board asks for it
# The plug-in loop waits for the pilot to show a plugged state with the 5 % PWM (ISO 15118-3: digital
# communication required, start matching), brings the link up, runs one V2G session, and then goes to the
# safe state (S2 open, contactors open) and waits for the unplug (state A) before the next round. Anything
# that goes wrong inside a round - a peer error, a timeout, a bug (any Exception), the pilot going to A or
# E/F while the session runs (the session task is cancelled) - is logged and ends the round the same way:
# the safe state, then ready for the next plug-in. Only KeyboardInterrupt, a MemoryError raised while
# logging, or the pilot's own task failing ends the application: without the pilot the app cannot know
# whether a cable is plugged, so it logs the failure, goes to the safe state, stops feeding the watchdog
# (a board resets) and ends with an EvpilotError (firmware/main.py exits with 1).
#
# The link and the session: a round is evpilot.ev.run.run (SDP, TCP, TLS, DIN or ISO-2, EIM or Plug&Charge
# with the store - the code path `evpilot ev --on micropython` runs too) over the board's link, by the
# board file's modem.link:
#   "spi"          a board's QCA7000 (evpilot.hal.qca7000_spi.open_board, opened at the first plug-in and
#                  kept): SLAC, then the own IPv6/UDP/TCP over the same driver (evpilot.aio.plc.PlcLink);
#                  the host MAC from config "mac", else from machine.unique_id()
#   "ether"        the unix port on a laptop's interface modem.iface (raw Ethernet, every EtherType): the same
#                  SLAC and own stack; a HomePlug adapter answers as the local modem, on a veth (no modem
#                  answers) a simulated one does (evpilot_sim.slac_evse.SimModem)
#   "qca7000-sim"  the unix port with a simulated QCA7000 (evpilot_sim.qca7000_board: the model behind the
#                  firmware's driver, its powerline side on modem.iface): the whole board link on a laptop
#   "sockets"      the unix port over the laptop's own IPv6/TCP (OS sockets): no SLAC
# App.link_up() brings it up after the 5 % PWM and returns the NetStack the session runs over; link_down()
# (after the session, whatever ended it) stops the stack and takes the modem out of the EVSE's network. A
# link that does not come up (SLAC failed, no modem sync) fails the round like any other error.
#
# The vehicle-controller interface is evpilot.ev.vehicle.Vehicle: an integrator passes an instance answering
# from the battery management (CAN, UART) as main(board, config, vehicle=...); the unix board uses
# evpilot_sim.vehicle.SimVehicle. The app wraps its set_cp_state so S2 goes through the pilot core, which
# never closes it outside B/C/D.
#
# The log: evpilot.log.Log, the last lines in a ring that the provisioning service reads. On the unix port
# each line is also written to stderr (stdout is the provisioning channel there).
#
# config (app.json, all optional): standard ("iso2"/"din"), mode ("dc"/"ac"), soc [from, to], tls (bool),
# pnc (bool), roots [hex DER] (else the store's V2G roots), msg_timeouts, iface (else the board's
# modem.iface), log_level ("debug"/"info"/"warn"/"error"), log_size, provision (bool, default true), now_s,
# mac (the host MAC on the powerline), slac (evpilot.slac.ev.SlacEv options: attenuation_limit, validate,
# settle, reset_after), qca7000_sim (link qca7000-sim only: the simulated modem's boot_ms, join_delay and
# the fault crash_after_frames).

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

import sys

from evpilot.aio.stream import now_ms, sleep_ms as _sleep_ms
from evpilot.compat import const, ticks_diff
from evpilot.errors import EvpilotError, UsageError
from evpilot.ev import pilot as line
from evpilot.hal import pilot as cp
from evpilot.log import LEVEL_NAMES, Log

VERSION = "0.1.0"

_POLL_MS = const(20)
_WDT_FEED_MS = const(1000)

READY = "ready"  # App.phase values, also in the log
PLUGGED = "plugged"
SESSION = "session"
SAFE = "safe"


def _now():
    return now_ms()


def _stderr_echo(text):
    sys.stderr.write(text + "\n")


class App:
    def __init__(self, board, config=None, vehicle=None, log=None, machine=None, modem=None):
        self.board = board
        self.config = dict(config or {})
        self.port = board["port"]
        level = self.config.get("log_level", "info")
        if level not in LEVEL_NAMES:
            raise UsageError("log_level must be one of debug, info, warn, error")
        self.log = log or Log(self.config.get("log_size", 64), LEVEL_NAMES.index(level),
                              _stderr_echo if self.port == "unix" else None)
        self.machine = machine
        self.core = cp.PilotCore()
        self.pilot = self._pilot_adapter()
        self.vehicle = vehicle
        self.phase = READY
        self.sessions = 0
        self.results = []
        self.wdt = None
        self.session_vehicle = None
        self.modem = modem  # the PLC link's frame device (opened at the first plug-in unless given)
        self.sim_modem = None
        self.plc = None  # the PLC link of the plug-in under way
        self.pilot_failed = None  # why the pilot's task ended, once it has

    # -- the pieces --

    def _pilot_adapter(self):
        cfg = self.board["pilot"]
        if cfg["kind"] == "sim":
            from evpilot_sim.pilot_sim import SimPilot

            return SimPilot(self.core, cfg)
        from evpilot.hal.pilot_machine import MachinePilot

        return MachinePilot(cfg, self.core, machine=self.machine)

    def _make_vehicle(self):
        """The vehicle controller for one session: the integrator's, else SimVehicle (unix board)."""
        veh = self.vehicle
        if veh is None:
            from evpilot_sim import ev_run  # the unix board: its simulated vehicle

            veh = ev_run.vehicle(self.config)
        core = self.core
        set_state = veh.set_cp_state

        def set_cp_state(state):  # S2 through the pilot core: closed only while the line allows it
            set_state(state)
            core.request_s2(state != line.STATE_B, _now())
            self.pilot.apply()

        veh.set_cp_state = set_cp_state
        self.session_vehicle = veh
        return veh

    def _iface(self):
        return self.config.get("iface") or self.board["modem"].get("iface", "")

    def _mac(self):
        """The host MAC the board uses on the powerline: config "mac" (12 hex digits), else a locally
        administered one from machine.unique_id()."""
        text = self.config.get("mac")
        if text:
            try:
                mac = bytes.fromhex(text.replace(":", ""))
            except ValueError:
                mac = b""
            if len(mac) != 6 or mac[0] & 1:
                raise UsageError("mac must be a unicast MAC address (12 hex digits), not %r" % (text,))
            return mac
        machine = self.machine
        if machine is None:
            import machine
        return mac_from_id(machine.unique_id())

    def _modem_device(self):
        """The frame device under the PLC link: opened at the first plug-in, kept for the next ones."""
        if self.modem is not None:
            return self.modem
        link = self.board["modem"]["link"]
        if link == "spi":
            from evpilot.hal import qca7000_spi

            mac = self._mac()
            self.modem = qca7000_spi.open_board(self.board, mac=mac, machine=self.machine)
            self.log.info("link: %s on SPI bus %d, host MAC %s" % (
                self.board["modem"]["chip"], self.board["modem"]["spi"]["bus"], ":".join("%02x" % b for b in mac)))
        elif link == "ether":
            from evpilot.aio import ether

            self.modem = ether.open(self._iface(), None)  # every EtherType: SLAC and IPv6
        else:  # "qca7000-sim": the unix port's simulated QCA7000 behind the firmware's driver
            from evpilot_sim import qca7000_board

            options = self.config.get("qca7000_sim") or {}
            for key in options:
                if key not in ("boot_ms", "join_delay", "crash_after_frames"):
                    raise UsageError("qca7000_sim: unknown option %r" % (key,))
            self.sim_modem = qca7000_board.open(self._iface(), **options)
            self.modem = self.sim_modem.start()
        return self.modem

    async def _plc_link(self, dev):
        from evpilot.aio import netstack, plc

        link = self.board["modem"]["link"]
        slac = dict(self.config.get("slac") or {})
        stack = {}
        frame_size = 1518
        nodes = ()
        if link == "ether":
            stack, frame_size = netstack.fit_to_interface(self._iface(), dev, stack)
            found = await plc.probe_modem(plc.TypeFilter(dev, plc.mme.ETHERTYPE))
            if found is None:  # no HomePlug adapter answers (a veth): a simulated local modem, on a laptop
                try:
                    from evpilot_sim.slac_evse import SimModem
                except ImportError:
                    raise plc.LinkError("no HomePlug modem answers on %s" % (self._iface(),))
                nodes = (SimModem(dev.mac, join_delay=300),)
                slac.setdefault("settle", 200)
            self.log.info("link: modem %s" % (found["version"] if found else "simulated",))
        elif link == "qca7000-sim":
            stack, _ = netstack.fit_to_interface(self._iface(), self.sim_modem, stack)
            slac.setdefault("settle", 200)
        return plc.PlcLink(dev, log=self.log, slac=slac, stack=stack, nodes=nodes, frame_size=frame_size)

    async def link_up(self):
        """Bring the link up after the 5 % PWM: nothing to do over OS sockets (None); else SLAC and the
        board's own IPv6/TCP (evpilot.aio.plc) over the modem, returning the started NetStack."""
        if self.board["modem"]["link"] == "sockets":
            return None
        self.plc = await self._plc_link(self._modem_device())
        return await self.plc.up()

    async def link_down(self):
        if self.plc is not None:
            plc, self.plc = self.plc, None
            await plc.down()
        error = getattr(self.modem, "error", None)
        if error is not None:  # the SPI bus failed: open the modem afresh at the next plug-in
            self.log.error("link: modem failed (%s): reopening it at the next plug-in" % (error,))
            self.close()

    def close(self):
        """Close the modem (the application ends)."""
        for m in (self.sim_modem, self.modem):
            if m is not None:
                try:
                    m.close()
                except Exception:  # noqa: BLE001 - ending anyway
                    pass
        self.sim_modem = self.modem = None

    def _session_config(self):
        config = dict(self.config)
        if not config.get("iface"):
            config["iface"] = self.board["modem"].get("iface", "")
        if config.get("pnc") and not config.get("store"):
            config["store"] = self.board["storage"]
        if config.get("tls") and not config.get("roots"):
            config["roots"] = self._store_roots()
        return config

    def _store_roots(self):
        from evpilot.store import certs
        from evpilot.store.keystore import Store

        return [bytes(c.der).hex() for c in certs.root_certificates(Store(self.board["storage"]), ("V2G",))]

    async def _session(self):
        """One V2G session over the link; returns its summary (a dict) or raises."""
        from evpilot.ev import run as ev_session

        veh = self._make_vehicle()
        net = await self.link_up()
        try:
            return await self._run_session(ev_session, veh, net)
        finally:
            await self.link_down()

    async def _run_session(self, ev_session, veh, net):
        config = self._session_config()
        out = {}
        log = self.log

        def report(item):
            if "m" in item:
                log.debug("%s %s" % (item["m"], item["name"]))
            elif "summary" in item:
                out["summary"] = item["summary"]
            elif "error" in item:
                out["error"] = item
            elif "tls_failed" in item:
                out["tls_failed"] = item["tls_failed"]
            elif "sdp" in item:
                log.info("sdp: station [%s]:%d %s" % (item["sdp"]["address"], item["sdp"]["port"],
                                                     item["sdp"]["security"]))
            elif "tls" in item:
                log.info("tls: %s %s" % (item["tls"]["version"], item["tls"]["cipher"]))

        await ev_session.run(config, report, veh, net=net)
        if "error" in out:
            raise EvpilotError("%s: %s" % (out["error"]["error"], out["error"].get("message")))
        if "tls_failed" in out:
            raise EvpilotError("tls %s: %s" % (out["tls_failed"]["reason"], out["tls_failed"]["message"]))
        summary = out.get("summary") or {"result": "failed", "end": "no summary"}
        if self.plc is not None and self.plc.result is not None:
            r = self.plc.result
            summary["slac"] = {"evse_mac": ev_session.hex_text(r["evse_mac"]), "attenuation": r["attenuation"],
                               "attempts": r["attempts"]}
        return summary

    def safe(self):
        """The safe state: S2 open, contactors open."""
        self.core.request_s2(False, _now())
        try:
            self.pilot.safe()
        except Exception as e:  # a broken pilot adapter: the contactors are opened all the same
            self.log.error("pilot: safe state: %s: %s" % (type(e).__name__, e))
        veh = self.session_vehicle
        if veh is not None and hasattr(veh, "open_contactors"):
            try:
                veh.open_contactors(_now())
            except Exception as e:  # the safe state must be reached whatever the vehicle says
                self.log.error("open_contactors: %s" % (e,))

    def _set_phase(self, phase):
        if phase != self.phase:
            self.phase = phase
            self.log.info("app: " + phase)

    # -- tasks --

    def _on_pilot_events(self, events, now):
        for kind, value in events:
            if kind == cp.EV_STATE:
                self.log.info("pilot: %s" % (self.core.name(),))
            elif kind == cp.EV_DIGITAL:
                self.log.info("pilot: 5 %% PWM (digital communication), duty %d per mille" % value)
            elif kind == cp.EV_FAULT:
                self.log.warn("pilot: state %s" % (line.STATE_NAMES[value],))
            elif kind == cp.EV_WAKE:
                self.log.info("pilot: wake-up from E/F")

    async def _wait(self, test, timeout_ms=None):
        start = _now()
        while not test():
            if timeout_ms is not None and ticks_diff(_now(), start) >= timeout_ms:
                return False
            await _sleep_ms(_POLL_MS)
        return True

    async def sessions_task(self, rounds=None):
        """The plug-in loop; `rounds`: stop after that many sessions (None: forever)."""
        core = self.core
        while rounds is None or self.sessions < rounds:
            self._set_phase(READY)
            await self._wait(lambda: core.plugged() and core.digital())
            self._set_phase(PLUGGED)
            self._set_phase(SESSION)
            try:
                summary = await self._watched_session()
                ok = summary.get("result") == "ok"
                (self.log.info if ok else self.log.warn)(
                    "session: %s (%s)" % (summary.get("result"), summary.get("end")))
            except Exception as e:  # any failure ends the round in the safe state
                summary = {"result": "failed", "end": "%s: %s" % (type(e).__name__, e)}
                self.log.error("session: failed (%s)" % (summary["end"],))
            self.sessions += 1
            self.results.append(summary)
            self.safe()
            self._set_phase(SAFE)
            if hasattr(self.pilot, "session_over"):
                self.pilot.session_over(_now())
            await self._wait(lambda: core.state() == line.STATE_A)
            self.log.info("pilot: unplugged")

    async def _watched_session(self):
        """The session as a task, cancelled when the pilot shows A (unplugged) or E/F (fault) meanwhile. The
        task is awaited from the start, so its failure is always taken here (no "exception never
        retrieved")."""
        core = self.core
        task = asyncio.create_task(self._session())
        aborted = []

        async def watch():
            while True:
                state = core.state()
                if state == line.STATE_A or state >= line.STATE_E:
                    aborted.append(line.STATE_NAMES[state])
                    task.cancel()
                    return
                await _sleep_ms(_POLL_MS)

        watcher = asyncio.create_task(watch())
        try:
            return await task
        except asyncio.CancelledError:
            if not aborted:  # the plug-in loop itself is cancelled: the session goes with it
                task.cancel()
                raise
        finally:
            watcher.cancel()
        raise EvpilotError("pilot state %s during the session" % (aborted[0],))

    async def watchdog_task(self):
        timeout = self.board.get("watchdog_ms") or 0
        if not timeout or self.port == "unix":
            return
        try:
            machine = self.machine
            if machine is None:
                import machine
            self.wdt = machine.WDT(timeout=timeout)
        except (ImportError, AttributeError, ValueError) as e:
            self.log.warn("watchdog: none (%s)" % (e,))
            return
        while self.pilot_failed is None:  # no pilot, no feeding: the board resets
            self.wdt.feed()
            await _sleep_ms(min(_WDT_FEED_MS, timeout // 4))

    async def pilot_task(self, sessions):
        """The pilot adapter's loop. Should it end (an exception, or returning), the app cannot tell a
        plugged cable from none: `sessions` (the plug-in loop's task) is cancelled, and run() ends in the
        safe state."""
        try:
            await self.pilot.run(_now, self._on_pilot_events)
            why = "its loop returned"
        except asyncio.CancelledError:
            raise
        except Exception as e:
            why = "%s: %s" % (type(e).__name__, e)
        self.pilot_failed = why
        self.log.error("pilot: stopped (%s)%s" % (why, "; the watchdog is no longer fed" if self.wdt else ""))
        sessions.cancel()

    async def provisioning_task(self):
        if not self.config.get("provision", True):
            return
        try:
            from evpilot.provision import serial
        except ImportError:
            self.log.info("provisioning: not in this firmware")
            return
        from evpilot.store.keystore import Store

        info = {"firmware": VERSION, "board": self.board["name"]}
        self.log.info("provisioning: serving on the console")
        try:
            await serial.serve_stdio(Store(self.board["storage"]), info=info, log=self.log)
        except Exception as e:
            self.log.error("provisioning: %s: %s" % (type(e).__name__, e))

    async def run(self, rounds=None):
        self.log.info("app: evpilot %s on board %s" % (VERSION, self.board["name"]))
        self.safe()
        sessions = asyncio.create_task(self.sessions_task(rounds))
        others = [asyncio.create_task(self.pilot_task(sessions)), asyncio.create_task(self.watchdog_task()),
                  asyncio.create_task(self.provisioning_task())]
        try:
            await sessions
        except asyncio.CancelledError:
            if self.pilot_failed is None:
                raise
        finally:
            self.safe()
            for t in others:
                t.cancel()
            self.close()
        if self.pilot_failed is not None:
            self.log.error("app: stopped after %d session(s): the pilot stopped" % (self.sessions,))
            raise EvpilotError("pilot stopped (%s)" % (self.pilot_failed,))
        self.log.info("app: done, %d session(s)" % (self.sessions,))
        return self.results


def mac_from_id(uid):
    """A locally administered unicast MAC (02:..) from a board's unique id (machine.unique_id()): its last
    five bytes, zero-padded in front when shorter."""
    uid = bytes(uid)[-5:]
    return b"\x02" + bytes(5 - len(uid)) + uid


def main(board, config=None, vehicle=None, rounds=None):
    """Run the application for `board` (a validated board file) until `rounds` sessions (None: forever)."""
    if rounds is None:
        rounds = (config or {}).get("rounds")
    app = App(board, config, vehicle)
    return asyncio.run(app.run(rounds)), app
