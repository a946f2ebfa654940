# A simulated control pilot for the unix board: the EVSE side of evpilot.ev.pilot.Pilot (the shared line
# model) turned into CP samples for evpilot.hal.pilot.PilotCore, so the firmware's pilot core runs on the
# laptop exactly as on a board, fed with a synthesised waveform instead of an ADC.
#
# How this works: waveform(state, duty_permille, n, noise_mv, seed) makes n samples of one 1 kHz period:
# the state's level (ev.pilot.STATE_VOLTS) for the high part, -12 V for the rest, plus bounded pseudo-random
# noise (a small LCG: no `random` needed on every port). SimPilot owns a Pilot line and a PilotCore; each
# sample(now) synthesises what the line shows and feeds it; S2 from the core goes back to the line as the
# EV's state (B or C). A script of plug-ins (board file: plug_after_ms, pwm_after_ms, unplug_after_ms,
# cycles) plays the EVSE and the driver: plug in, start the 5 % PWM, and after each session unplug and plug
# in again. run() is evpilot.hal.pilot.sample_loop (the board's adapter runs the same loop) calling sample()
# every period_ms (board file, default 10). The tests drive the same object by hand.

from evpilot.compat import ticks_diff
from evpilot.ev import pilot as line
from evpilot.hal.pilot import sample_loop

SAMPLES = 200  # per period: 0.5 % steps, enough for 5 % +/- 1


class Noise:
    def __init__(self, seed=1):
        self.x = seed & 0x7FFFFFFF

    def next(self, amplitude):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        if amplitude <= 0:
            return 0
        return (self.x >> 8) % (2 * amplitude + 1) - amplitude


def waveform(state, duty_permille, n=SAMPLES, noise_mv=0, noise=None, out=None):
    """n CP samples in mV of one period: `state`'s level for duty_permille/1000 of it, -12 V for the rest
    (A-D with PWM), a constant level without PWM (duty 1000) and for E (0 V) and F (-12 V). Written into
    `out` (a list of n or more) when given, so a running pilot allocates nothing per period."""
    noise = noise or Noise()
    level = line.STATE_VOLTS[state] * 1000
    if state >= line.STATE_E:
        duty_permille = 1000
    high_n = (duty_permille * n + 500) // 1000
    if out is None:
        out = [0] * n
    for i in range(n):
        out[i] = (level if i < high_n else -12000) + noise.next(noise_mv)
    return out


class SimPilot:
    def __init__(self, core, cfg=None, vehicle_line=None):
        cfg = cfg or {}
        self.core = core
        self.line = vehicle_line or line.Pilot()
        self.noise_mv = cfg.get("noise_mv", 0)
        self.noise = Noise(7)
        self.plug_after_ms = cfg.get("plug_after_ms", 0)
        self.pwm_after_ms = cfg.get("pwm_after_ms", 0)
        self.unplug_after_ms = cfg.get("unplug_after_ms", 0)
        self.cycles = cfg.get("cycles", 1)
        self.period_ms = cfg.get("period_ms", 10)
        self._samples = [0] * SAMPLES  # one period, rewritten at each sample()
        self.plugins = 0
        self._phase = 0  # 0 waiting to plug, 1 plugged waiting for PWM, 2 PWM on, 3 unplug pending, 4 done
        self._since = None

    def sample(self, now):
        self._script(now)
        duty = int(self.line.duty() * 10)
        self.core.feed_samples(waveform(self.line.state(), duty, SAMPLES, self.noise_mv, self.noise,
                                        self._samples), now)
        self.apply()

    def apply(self):
        if self.line.state() in (line.STATE_B, line.STATE_C, line.STATE_D):
            want = line.STATE_C if self.core.s2() else line.STATE_B
            if self.line.ev_state() != want:
                self.line.set_ev_state(want)

    def safe(self):
        self.core.request_s2(False, 0)
        if self.line.ev_state() != line.STATE_B:
            self.line.set_ev_state(line.STATE_B)

    def session_over(self, now):
        """The application's session ended: the scripted driver unplugs after unplug_after_ms."""
        if self._phase == 2:
            self._phase = 3
            self._since = now

    def _script(self, now):
        if self._since is None:
            self._since = now
        waited = ticks_diff(now, self._since)
        if self._phase == 0 and self.plugins < self.cycles and waited >= self.plug_after_ms:
            self.line.plug(True)
            self.plugins += 1
            self._phase, self._since = 1, now
        elif self._phase == 1 and waited >= self.pwm_after_ms:
            self.line.set_duty(line.DUTY_DIGITAL)
            self.line.set_oscillator(True)
            self._phase, self._since = 2, now
        elif self._phase == 3 and waited >= self.unplug_after_ms:
            self.line.set_oscillator(False)
            self.line.plug(False)
            self._phase, self._since = 0, now

    def finished(self):
        return self._phase == 0 and self.plugins >= self.cycles

    async def run(self, clock, on_events=None):
        await sample_loop(self, clock, on_events, self.period_ms)
