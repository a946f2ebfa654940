# The control-pilot core (evpilot.hal.pilot) fed with synthesised CP waveforms (evpilot_sim.pilot_sim): every
# IEC 61851-1 state A-F, duty cycles including 5 % (digital communication) and the PWM current table, noise,
# debounce of short glitches, S2 commands and the safe state on A/E/F, the EVSE's wake-up through E/F, and the
# machine adapter (hal/pilot_machine.py) over a fake machine module.

from evpilot.ev import pilot as line
from evpilot.ev.pilot import STATE_A, STATE_B, STATE_C, STATE_D, STATE_E, STATE_F
from evpilot.hal import pilot
from evpilot.hal.pilot import PilotCore
from evpilot_sim.pilot_sim import Noise, SimPilot, waveform


def _feed(core, state, duty, start, ms, step=10, noise_mv=0, seed=3):
    noise = Noise(seed)
    t = start
    while t < start + ms:
        core.feed_samples(waveform(state, duty, 200, noise_mv, noise), t)
        t += step
    return t


def _kinds(events):
    return [pilot.EVENT_NAMES[k] for k, _ in events]


def test_every_state_from_its_waveform():
    cases = [(STATE_A, 1000, "A1"), (STATE_B, 1000, "B1"), (STATE_B, 50, "B2"), (STATE_C, 1000, "C1"),
             (STATE_C, 50, "C2"), (STATE_D, 500, "D2"), (STATE_E, 1000, "E"), (STATE_F, 1000, "F")]
    for state, duty, name in cases:
        for noise_mv in (0, 400):
            core = PilotCore()
            if state != STATE_A:
                _feed(core, STATE_B, 1000, 0, 100, noise_mv=noise_mv)  # plugged first
            _feed(core, state, duty, 1000, 100, noise_mv=noise_mv)
            assert core.state() == state and core.name() == name, (name, noise_mv, core.name())
            assert core.oscillator() == (duty != 1000 and state <= STATE_D)


def test_duty_cycles_and_currents():
    for duty, amps, digital in ((50, 0.0, True), (30, 0.0, True), (70, 0.0, True), (100, 6.0, False),
                                (160, 9.6, False), (250, 15.0, False), (500, 30.0, False), (850, 51.0, False),
                                (900, 65.0, False), (960, 80.0, False)):
        core = PilotCore()
        _feed(core, STATE_B, duty, 0, 200, noise_mv=300)
        assert abs(core.duty() - duty) <= 5, (duty, core.duty())
        assert core.digital() == digital, duty
        assert abs(core.max_current() - line.duty_to_current(core.duty() / 10)) < 1e-9
        assert abs(core.max_current() - amps) <= 1.6, (duty, core.max_current())


def test_five_percent_starts_digital_communication_once():
    core = PilotCore()
    t = _feed(core, STATE_B, 1000, 0, 100)
    assert _kinds(core.events()) == ["state", "plug"]
    t = _feed(core, STATE_B, 50, t, 100, noise_mv=300)
    events = core.events()
    assert _kinds(events) == ["duty", "digital"] and events[1][1] in range(45, 56)
    _feed(core, STATE_B, 52, t, 200, noise_mv=300)  # the same 5 % with jitter: nothing new
    assert core.events() == []


def test_debounce_ignores_glitches_and_takes_held_states():
    core = PilotCore(debounce_ms=30)
    t = _feed(core, STATE_B, 50, 0, 100)
    core.events()
    # A 20 ms dip to C and a 10 ms spike to A (shorter than the debounce): no change.
    t = _feed(core, STATE_C, 50, t, 20)
    t = _feed(core, STATE_A, 1000, t, 10)
    t = _feed(core, STATE_B, 50, t, 50)
    assert core.state() == STATE_B and core.events() == []
    # C held: taken after the debounce, not before.
    core.feed_samples(waveform(STATE_C, 50), t)
    assert core.state() == STATE_B
    core.feed_samples(waveform(STATE_C, 50), t + 29)
    assert core.state() == STATE_B
    core.feed_samples(waveform(STATE_C, 50), t + 30)
    assert core.state() == STATE_C and _kinds(core.events()) == ["state"]


def test_a_level_between_the_ranges_for_long_is_a_fault():
    core = PilotCore(invalid_ms=500)
    _feed(core, STATE_B, 50, 0, 100)
    core.request_s2(True, 100)
    core.feed_levels(None, None, 0, 100)  # nothing measurable: ignored at first
    assert core.state() == STATE_B
    for t in range(110, 700, 10):
        core.feed_levels(7500, -12000, 50, t)  # 7.5 V: neither B nor C
    assert core.state() == STATE_E and not core.s2()


def test_s2_follows_the_session_and_opens_in_the_safe_states():
    core = PilotCore()
    core.request_s2(True, 0)
    assert not core.s2()  # unplugged: never closed
    t = _feed(core, STATE_B, 50, 0, 100)
    assert core.s2()
    t = _feed(core, STATE_C, 50, t, 100)
    core.request_s2(False, t)
    assert not core.s2()
    core.request_s2(True, t)
    for fault in (STATE_E, STATE_F, STATE_A):
        t = _feed(core, STATE_C, 50, t, 100)
        assert core.s2()
        t = _feed(core, fault, 1000, t, 100)
        assert not core.s2() and core.state() == fault and not core.oscillator()


def test_evse_wake_up_through_e_or_f():
    for fault in (STATE_E, STATE_F):
        core = PilotCore()
        t = _feed(core, STATE_B, 50, 0, 100)
        core.events()
        t = _feed(core, fault, 1000, t, 4000, step=50)  # T_step_EF >= 4 s
        assert _kinds(core.events()) == ["state", "fault", "duty"]  # a fault, not a paused PWM
        t = _feed(core, STATE_B, 50, t, 100)
        assert _kinds(core.events()) == ["state", "wake", "duty", "digital"]


def test_pwm_lost_and_ev_wake_pulse():
    core = PilotCore(wake_pulse_ms=300)
    t = _feed(core, STATE_B, 50, 0, 100)
    t = _feed(core, STATE_B, 1000, t, 100)  # the EVSE paused its PWM (B1)
    assert "pwm_lost" in _kinds(core.events())
    assert core.request_wake(t) and core.s2() and core.next_deadline() == t + 300
    assert not core.request_wake(t + 10)  # one pulse at a time
    core.on_timer(t + 299)
    assert core.s2()
    core.on_timer(t + 300)
    assert not core.s2() and core.next_deadline() is None
    fresh = PilotCore()
    assert not fresh.request_wake(0)  # unplugged: no pulse


def test_events_are_bounded():
    core = PilotCore(debounce_ms=0)
    for i in range(100):
        core.feed_samples(waveform(STATE_B if i % 2 else STATE_A, 1000), i)
    assert len(core.events()) == 16


def test_sim_pilot_plugs_in_and_follows_s2():
    core = PilotCore()
    sim = SimPilot(core, {"noise_mv": 300, "plug_after_ms": 50, "pwm_after_ms": 50, "unplug_after_ms": 50,
                          "cycles": 2})
    t = 0
    seen = []
    while t < 400:
        sim.sample(t)
        seen += _kinds(core.events())
        t += 10
    assert core.state() == STATE_B and core.digital() and seen[:2] == ["state", "plug"] and "digital" in seen
    core.request_s2(True, t)
    sim.apply()
    assert sim.line.state() == STATE_C
    for _ in range(10):
        sim.sample(t)
        t += 10
    assert core.state() == STATE_C
    sim.safe()
    assert sim.line.state() == STATE_B and not core.s2()
    sim.session_over(t)
    for _ in range(9):  # the driver unplugs 50 ms later (and plugs in again 50 ms after that)
        sim.sample(t)
        t += 10
    assert core.state() == STATE_A and sim.plugins == 1 and "unplug" in _kinds(core.events())
    for _ in range(30):
        sim.sample(t)
        t += 10
    assert sim.plugins == 2 and core.state() == STATE_B


class _FakeMachine:
    """machine.ADC/Pin/time_pulse_us over a scripted CP line: level in mV, PWM high/low times in us."""

    def __init__(self):
        self.level_mv = 12000
        self.high_us = 0
        self.low_us = 0
        self.s2_level = None
        fake = self

        class Pin:
            IN = 1
            OUT = 3

            def __init__(self, ident, mode=-1, value=None):
                self.ident = ident
                if value is not None:
                    self.value(value)

            def value(self, v=None):
                if v is not None and self.ident == 4:
                    fake.s2_level = v

        class ADC:
            def __init__(self, pin):
                self.n = 0

            def read_u16(self):
                # Alternate the high and the low level when PWM runs (what several reads of a pulse see).
                self.n += 1
                mv = fake.level_mv if (fake.high_us == 0 or self.n % 2) else -12000
                return int((mv / 8.0 + 1650) * 65535 / 3300)

        self.Pin = Pin
        self.ADC = ADC

    def time_pulse_us(self, pin, level, timeout):
        t = self.high_us if level else self.low_us
        return t if t else -2  # -2: timeout, as MicroPython reports it


def test_machine_adapter_feeds_the_core_and_drives_s2():
    from evpilot.hal.pilot_machine import MachinePilot

    fake = _FakeMachine()
    cfg = {"adc": 36, "sense": 39, "s2": 4, "s2_active": 1, "vref_mv": 3300, "offset_mv": 1650, "gain": 8.0}
    core = PilotCore()
    mp = MachinePilot(cfg, core, machine=fake)
    assert fake.s2_level == 0  # open from the start
    for t in range(0, 100, 10):
        mp.sample(t)
    assert core.name() == "A1"
    fake.level_mv, fake.high_us, fake.low_us = 9000, 50, 950
    for t in range(100, 200, 10):
        mp.sample(t)
    assert core.name() == "B2" and core.digital() and core.duty() == 50
    core.request_s2(True, 200)
    mp.apply()
    assert fake.s2_level == 1
    fake.level_mv, fake.high_us, fake.low_us = -12000, 0, 0  # F: a constant -12 V
    for t in range(200, 300, 10):
        mp.sample(t)
    assert core.state() == STATE_F and fake.s2_level == 0
    mp.safe()
    assert fake.s2_level == 0


def test_level_classification_is_ev_pilots_rule():
    for mv in range(-14000, 14001, 50):
        assert pilot.level_state(mv) == line.volts_to_state(mv / 1000), mv


# --- the adapters' loop (evpilot.hal.pilot.sample_loop), driven without an event loop ---------------------


class _Stop(Exception):
    pass


class _Clock:
    """now in ms from `start`, `step` further at every call; raises _Stop past `until` (ends the loop)."""

    def __init__(self, step, until, start=0):
        self.t = start - step
        self.step = step
        self.until = until

    def __call__(self):
        self.t += self.step
        if self.t > self.until:
            raise _Stop()
        return self.t


def _run_loop(adapter, clock, on_events, period_ms, sleeps):
    async def sleep_ms(ms):  # never suspends: one send() runs the loop until the clock stops it
        sleeps.append(ms)

    coro = pilot.sample_loop(adapter, clock, on_events, period_ms, sleep_ms)
    try:
        coro.send(None)
    except _Stop:
        return
    raise AssertionError("sample_loop returned")


def test_sample_loop_reads_the_sim_line_and_hands_over_events():
    core = PilotCore()
    sim = SimPilot(core, {"plug_after_ms": 50, "pwm_after_ms": 50})
    got = []
    sleeps = []
    _run_loop(sim, _Clock(10, 300), lambda events, now: got.append((_kinds(events), now)), 7, sleeps)
    assert core.readings == 31 and sleeps == [7] * 31  # one reading and one sleep per period
    kinds = [k for batch, _ in got for k in batch]
    assert kinds[:2] == ["state", "plug"] and "digital" in kinds
    assert all(batch for batch, _ in got)  # called only when there is something
    assert [now for _, now in got] == sorted(now for _, now in got) and got[0][1] >= 50
    assert core.state() == STATE_B and core.digital()


class _Recorder:
    """An adapter whose reading feeds nothing: it records (now, core.s2()) as the loop leaves them."""

    def __init__(self, core):
        self.core = core
        self.seen = []

    def sample(self, now):
        self.seen.append((now, self.core.s2()))


def test_sample_loop_runs_the_core_timers_before_each_reading():
    core = PilotCore()
    _feed(core, STATE_B, 50, 0, 200)
    assert core.request_wake(200) and core.s2() and core.next_deadline() == 500
    rec = _Recorder(core)
    _run_loop(rec, _Clock(50, 700, 250), None, 50, [])  # no on_events: the events stay with the core
    # only on_timer(now) ends the pulse here, and it runs before the reading at the same now
    assert rec.seen == [(250, True), (300, True), (350, True), (400, True), (450, True), (500, False),
                        (550, False), (600, False), (650, False), (700, False)]
    assert core.next_deadline() is None and "digital" in _kinds(core.events())


def test_sample_loop_drives_the_machine_adapter():
    from evpilot.hal.pilot_machine import MachinePilot

    fake = _FakeMachine()
    cfg = {"adc": 36, "sense": 39, "s2": 4, "s2_active": 0, "vref_mv": 3300, "offset_mv": 1650, "gain": 8.0}
    core = PilotCore()
    mp = MachinePilot(cfg, core, machine=fake)
    fake.level_mv, fake.high_us, fake.low_us = 9000, 50, 950
    got = []
    _run_loop(mp, _Clock(10, 200), lambda events, now: got.extend(_kinds(events)), 20, [])
    assert core.name() == "B2" and core.digital() and got[:2] == ["state", "plug"] and "digital" in got
    assert fake.s2_level == 1  # s2_active 0: open is the high level
    core.request_s2(True, 210)
    _run_loop(mp, _Clock(10, 260, 210), None, 20, [])
    assert fake.s2_level == 0  # closed, set by the loop's reading


def test_has_events_asks_without_taking_them():
    core = PilotCore()
    assert not core.has_events()
    _feed(core, STATE_B, 1000, 0, 100)
    assert core.has_events() and core.has_events()  # asking twice takes nothing
    assert _kinds(core.events()) == ["state", "plug"]
    assert not core.has_events() and core.events() == []
