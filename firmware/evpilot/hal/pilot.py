# The control pilot on the board: a sans-I/O sampling core (IEC 61851-1 Annex A, EV side).
#
# How this works
# --------------
# The adapter (hal/pilot_machine.py on a board, evpilot_sim.pilot_sim on the unix port) measures the CP line
# and hands the core either
#   feed_samples(samples, now)   CP voltages in millivolts taken evenly over whole PWM periods (a fast ADC or
#                                a synthesised waveform): the core finds the high and low levels and the duty
#                                cycle itself, or
#   feed_levels(high_mv, low_mv, duty_permille, now)   the positive and negative levels and the duty cycle
#                                measured separately (an ADC for the level, a PWM-sense input for the duty).
# Each reading is classified with the shared ranges of evpilot.ev.pilot (volts_to_state); a state or duty
# cycle is taken only once the same reading has held for `debounce_ms` (noise and the edges of S2 switching
# never reach the session). A level between the ranges for longer than `invalid_ms` counts as state E: the
# line cannot be trusted, so the EV goes to its safe state.
#
# Out of the core: state() (A-F), duty() in per mille (1000 = no PWM), oscillator(), digital() (3-7 %:
# ISO 15118 / DIN SPEC 70121 communication required), max_current() from the duty (ev.pilot.duty_to_current),
# events() (what changed since the last call, as (kind, value) tuples; has_events() asks without taking
# them), and s2() - whether the state-C switch S2 must be closed now. The session asks for S2 with
# request_s2(); the core closes it only while the line is in B, C or D and opens it at once on A, E or F
# (the safe state). request_wake() makes one B->C->B pulse of S2 (an EV asking a paused EVSE to restart its
# PWM); next_deadline()/on_timer() end the pulse.
#
# Events: EV_PLUG (A -> B/C/D), EV_UNPLUG (-> A), EV_STATE (any new state), EV_DUTY (a new duty cycle),
# EV_DIGITAL (5 % PWM appeared: start SLAC, ISO 15118-3), EV_PWM_LOST (the oscillator stopped while plugged),
# EV_FAULT (E or F), EV_WAKE (the line came back from E/F to a plugged state: the EVSE's wake-up, after which
# matching starts again, ISO 15118-3 T_step_EF).
#
# The adapters' loop, sample_loop(adapter, clock, on_events, period_ms), is here too, once for both adapters:
# every period_ms it runs the core's timers, lets the adapter read the line (adapter.sample(now): feed the
# core, then drive S2 from it) and hands the core's events to on_events(events, now). Only the reading
# differs between a board and the unix board. The loop imports its sleep (evpilot.aio.stream.sleep_ms, the
# adapters' asyncio) when it starts, so the core never imports asyncio; it calls events() only when
# has_events(), so an iteration with nothing to report allocates nothing of its own on MicroPython.

from evpilot.compat import const, ticks_add, ticks_diff
from evpilot.ev import pilot as line
from evpilot.errors import UsageError

EV_PLUG = const(1)
EV_UNPLUG = const(2)
EV_STATE = const(3)
EV_DUTY = const(4)
EV_DIGITAL = const(5)
EV_PWM_LOST = const(6)
EV_FAULT = const(7)
EV_WAKE = const(8)
EVENT_NAMES = ("", "plug", "unplug", "state", "duty", "digital", "pwm_lost", "fault", "wake")

NO_PWM = const(1000)  # duty in per mille of a constant line
DEBOUNCE_MS = const(30)
INVALID_MS = const(1000)
WAKE_PULSE_MS = const(300)  # not from a normative table: long enough for any EVSE's debounce of C
_DUTY_TOLERANCE = const(5)  # per mille: readings within 0.5 % count as the same duty
_HIGH_THRESHOLD_MV = const(-6000)  # between the lowest positive level (D, +3 V; E, 0 V) and -12 V
_MAX_EVENTS = const(16)
_PLUGGED = (line.STATE_B, line.STATE_C, line.STATE_D)  # built once: a tuple display of module attributes
# would be built (allocated) on every reading


def level_state(mv):
    """The state for a CP level in millivolts: ev.pilot's rule (nominal level +/- 1 V, Annex A) on its
    STATE_VOLTS table in integers, so a reading allocates no float on the board; None between the ranges."""
    state = line.STATE_A
    while state <= line.STATE_F:  # no range object: nothing allocated per reading
        d = mv - line.STATE_VOLTS[state] * 1000
        if -1000 <= d <= 1000:
            return state
        state += 1
    return None


class PilotCore:
    def __init__(self, debounce_ms=DEBOUNCE_MS, invalid_ms=INVALID_MS, wake_pulse_ms=WAKE_PULSE_MS):
        self.debounce_ms = debounce_ms
        self.invalid_ms = invalid_ms
        self.wake_pulse_ms = wake_pulse_ms
        self._state = line.STATE_A
        self._duty = NO_PWM
        self._digital = False
        self._cand_state = line.STATE_A
        self._cand_state_since = None
        self._cand_duty = NO_PWM
        self._cand_duty_since = None
        self._invalid_since = None
        self._requested = False
        self._pulse_until = None
        self._s2 = False
        self._events = []
        self.high_mv = None
        self.low_mv = None
        self.readings = 0

    # -- input --

    def feed_samples(self, samples, now, count=None):
        """CP millivolts sampled evenly over whole PWM periods (a list, array or memoryview; `count` first)."""
        n = len(samples) if count is None else count
        if n <= 0:
            raise UsageError("pilot: no samples")
        hi_sum = hi_n = lo_sum = lo_n = 0
        for i in range(n):
            v = samples[i]
            if v > _HIGH_THRESHOLD_MV:
                hi_sum += v
                hi_n += 1
            else:
                lo_sum += v
                lo_n += 1
        high = hi_sum // hi_n if hi_n else None
        low = lo_sum // lo_n if lo_n else None
        self.feed_levels(high, low, (hi_n * 1000 + n // 2) // n, now)

    def feed_levels(self, high_mv, low_mv, duty_permille, now):
        """One reading: the positive level (None if the line never went above -6 V), the negative level (None
        if it never went below), and the share of the period above -6 V in per mille."""
        self.readings += 1
        self.high_mv = high_mv
        self.low_mv = low_mv
        if high_mv is None:
            state = level_state(low_mv) if low_mv is not None else None
            duty = NO_PWM
        else:
            state = level_state(high_mv)
            duty = duty_permille if state is not None and state <= line.STATE_D else NO_PWM
            if duty >= 1000 - _DUTY_TOLERANCE:
                duty = NO_PWM
        if state is None:
            if self._invalid_since is None:
                self._invalid_since = now
            elif ticks_diff(now, self._invalid_since) >= self.invalid_ms:
                state = line.STATE_E  # a level outside every range for too long: the line is not usable
            if state is None:
                self._update_s2(now)
                return
        else:
            self._invalid_since = None
        self._debounce_state(state, now)
        self._debounce_duty(duty, now)
        self._update_s2(now)

    def request_s2(self, closed, now):
        """What the session wants: S2 closed (state C, ready for energy) or open (state B)."""
        self._requested = bool(closed)
        self._update_s2(now)

    def request_wake(self, now):
        """One B->C->B pulse of S2 (only while plugged in state B and not already pulsing)."""
        if self._state != line.STATE_B or self._pulse_until is not None:
            return False
        self._pulse_until = ticks_add(now, self.wake_pulse_ms)
        self._update_s2(now)
        return True

    def on_timer(self, now):
        if self._pulse_until is not None and ticks_diff(now, self._pulse_until) >= 0:
            self._pulse_until = None
        self._update_s2(now)

    def next_deadline(self):
        return self._pulse_until

    # -- output --

    def state(self):
        return self._state

    def name(self):
        return line.state_name(self._state, self.oscillator())

    def duty(self):
        return self._duty

    def oscillator(self):
        return self._duty != NO_PWM

    def digital(self):
        return self._digital

    def max_current(self):
        return line.duty_to_current(self._duty / 10) if self.oscillator() else 0.0

    def plugged(self):
        return self._state in _PLUGGED

    def s2(self):
        return self._s2

    def events(self):
        """The events since the last call, oldest first: a list of (kind, value)."""
        out = self._events
        self._events = []
        return out

    def has_events(self):
        """Whether events() has anything (asking allocates nothing; events() makes a new list)."""
        return len(self._events) > 0

    # -- inside --

    def _emit(self, kind, value):
        if len(self._events) < _MAX_EVENTS:  # an adapter that never reads events costs no memory
            self._events.append((kind, value))

    def _debounce_state(self, state, now):
        if state != self._cand_state:
            self._cand_state = state
            self._cand_state_since = now
        if state == self._state:
            return
        if ticks_diff(now, self._cand_state_since) < self.debounce_ms:
            return
        old = self._state
        self._state = state
        self._emit(EV_STATE, state)
        if state == line.STATE_A:
            self._emit(EV_UNPLUG, state)
        elif state >= line.STATE_E:
            self._emit(EV_FAULT, state)
        elif old == line.STATE_A:
            self._emit(EV_PLUG, state)
        elif old >= line.STATE_E:
            self._emit(EV_WAKE, state)
        if state == line.STATE_A or state >= line.STATE_E:
            self._pulse_until = None
            if self._duty != NO_PWM:
                self._duty = NO_PWM
                self._digital = False
                self._cand_duty = NO_PWM
                self._emit(EV_DUTY, NO_PWM)

    def _debounce_duty(self, duty, now):
        if self._state == line.STATE_A or self._state >= line.STATE_E:
            return
        if abs(duty - self._cand_duty) > _DUTY_TOLERANCE or (duty == NO_PWM) != (self._cand_duty == NO_PWM):
            self._cand_duty = duty
            self._cand_duty_since = now
            return
        if abs(duty - self._duty) <= _DUTY_TOLERANCE and (duty == NO_PWM) == (self._duty == NO_PWM):
            return
        if self._cand_duty_since is None or ticks_diff(now, self._cand_duty_since) < self.debounce_ms:
            return
        old = self._duty
        self._duty = self._cand_duty if duty == NO_PWM else (self._cand_duty + duty) // 2
        was_digital = self._digital
        self._digital = self._duty != NO_PWM and line.is_digital(self._duty / 10)
        self._emit(EV_DUTY, self._duty)
        if self._duty == NO_PWM and old != NO_PWM:
            self._emit(EV_PWM_LOST, self._state)
        elif self._digital and not was_digital:
            self._emit(EV_DIGITAL, self._duty)

    def _update_s2(self, now):
        if self._pulse_until is not None and ticks_diff(now, self._pulse_until) >= 0:
            self._pulse_until = None
        allowed = self._state in _PLUGGED
        self._s2 = allowed and (self._requested or self._pulse_until is not None)


async def sample_loop(adapter, clock, on_events, period_ms, sleep_ms=None):
    """Read the line through `adapter` every period_ms until cancelled. adapter.core is the PilotCore and
    adapter.sample(now) one reading (it feeds the core and drives S2); clock() is now in ms; on_events (or
    None) gets (events, now) when the core has any; sleep_ms(ms) is awaited between readings (default:
    evpilot.aio.stream.sleep_ms, asyncio's in whole milliseconds)."""
    if sleep_ms is None:
        from evpilot.aio.stream import sleep_ms  # the adapters' asyncio, imported only when a loop runs
    core = adapter.core
    sample = adapter.sample
    while True:
        now = clock()
        core.on_timer(now)
        sample(now)
        if on_events is not None and core.has_events():  # events() only then: a reading allocates nothing
            on_events(core.events(), now)
        await sleep_ms(period_ms)
