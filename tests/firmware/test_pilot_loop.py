# The pilot adapters' run() under a real event loop: SimPilot and MachinePilot (over a fake machine module)
# both run evpilot.hal.pilot.sample_loop with asyncio's own sleep (sleep_ms on MicroPython, float seconds
# on CPython) until the line shows the 5 % PWM. The clock is virtual (10 ms a reading), so nothing here
# depends on how long a sleep really takes.

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

from evpilot.ev.pilot import STATE_B
from evpilot.hal import pilot
from evpilot.hal.pilot import PilotCore
from evpilot_sim.pilot_sim import SimPilot

MICROPYTHON_PORTS = ("unix",)  # the webassembly port's asyncio has no run() (it runs on the browser's loop)


class _Digital(Exception):
    pass


def _until_digital(adapter):
    """Run adapter.run() until on_events sees EV_DIGITAL; (readings, event kinds, clock calls)."""
    t = [0]
    kinds = []

    def clock():
        t[0] += 10
        return t[0]

    def on_events(events, now):
        assert now == t[0]
        for kind, _ in events:
            kinds.append(pilot.EVENT_NAMES[kind])
            if kind == pilot.EV_DIGITAL:
                raise _Digital()

    async def main():
        try:
            await adapter.run(clock, on_events)
        except _Digital:
            return True
        return False

    assert asyncio.run(main())
    return adapter.core.readings, kinds, t[0] // 10


def test_sim_pilot_runs_until_the_pwm():
    core = PilotCore()
    sim = SimPilot(core, {"plug_after_ms": 30, "pwm_after_ms": 30, "period_ms": 1})
    readings, kinds, calls = _until_digital(sim)
    assert kinds[:2] == ["state", "plug"] and kinds[-1] == "digital"
    assert readings == calls and readings >= 9  # plug at 30 ms, PWM 30 ms later, each debounced 30 ms
    assert core.state() == STATE_B and core.digital()


def test_machine_pilot_runs_until_the_pwm():
    from evpilot.hal.pilot_machine import MachinePilot

    from test_pilot_core import _FakeMachine

    fake = _FakeMachine()
    fake.level_mv, fake.high_us, fake.low_us = 9000, 50, 950
    cfg = {"adc": 36, "sense": 39, "s2": 4, "s2_active": 1, "vref_mv": 3300, "offset_mv": 1650, "gain": 8.0,
           "period_ms": 1}
    core = PilotCore()
    readings, kinds, calls = _until_digital(MachinePilot(cfg, core, machine=fake))
    assert kinds[:2] == ["state", "plug"] and kinds[-1] == "digital" and readings == calls
    assert core.name() == "B2" and fake.s2_level == 0
