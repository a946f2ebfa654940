# The control pilot's machine adapter: machine.ADC for the CP level, a PWM-sense input for the duty cycle,
# machine.Pin for the state-C switch S2; it feeds evpilot.hal.pilot.PilotCore and drives S2 from it.
#
# How this works: run() is evpilot.hal.pilot.sample_loop, the loop the unix board's simulated pilot shares;
# every pilot.period_ms (board file, default 20) it calls sample(), which measures one PWM period on the
# sense pin with machine.time_pulse_us (high time, then low time; a timeout on both means a constant line),
# reads the CP ADC `reads` times and takes the highest and lowest readings as the positive and negative
# levels (the ADC read is slower than a 5 % pulse on most ports, so the highest of several reads is the
# level to trust: boards with a peak-hold on CP give it on every read). ADC counts become CP millivolts
# with the board's divider:
#   cp_mv = (read_u16 * vref_mv / 65535 - offset_mv) * gain
# After each reading the S2 pin follows core.s2() (pilot.s2_active is the level that closes it). This file is
# the only one that imports machine; the core never does.

from evpilot.compat import const
from evpilot.hal.pilot import sample_loop

_PULSE_TIMEOUT_US = const(3000)  # three periods of the 1 kHz oscillator


class MachinePilot:
    def __init__(self, cfg, core, machine=None, reads=8):
        if machine is None:
            import machine
        self.machine = machine
        self.core = core
        self.cfg = cfg
        self.reads = reads
        self.adc = machine.ADC(machine.Pin(cfg["adc"]))
        self.sense = machine.Pin(cfg["sense"], machine.Pin.IN)
        self._closed_level = 1 if cfg.get("s2_active", 1) else 0
        self.s2_pin = machine.Pin(cfg["s2"], machine.Pin.OUT, value=1 - self._closed_level)

    def millivolts(self, raw):
        cfg = self.cfg
        return int((raw * cfg["vref_mv"] // 65535 - cfg["offset_mv"]) * cfg["gain"])

    def sample(self, now):
        m = self.machine
        high_us = m.time_pulse_us(self.sense, 1, _PULSE_TIMEOUT_US)
        low_us = m.time_pulse_us(self.sense, 0, _PULSE_TIMEOUT_US)
        hi = lo = None
        for _ in range(self.reads):
            v = self.millivolts(self.adc.read_u16())
            if hi is None or v > hi:
                hi = v
            if lo is None or v < lo:
                lo = v
        if high_us > 0 and low_us > 0:  # PWM running: duty from the sense pin
            duty = (high_us * 1000 + (high_us + low_us) // 2) // (high_us + low_us)
            self.core.feed_levels(hi, lo, duty, now)
        elif hi > -6000:  # constant positive line (A1..D1, E)
            self.core.feed_levels(hi, None, 1000, now)
        else:  # constant negative line (F)
            self.core.feed_levels(None, lo, 0, now)
        self.apply()

    def apply(self):
        self.s2_pin.value(self._closed_level if self.core.s2() else 1 - self._closed_level)

    def safe(self):
        """S2 open whatever the core says (the application's safe state)."""
        self.core.request_s2(False, 0)
        self.s2_pin.value(1 - self._closed_level)

    async def run(self, clock, on_events=None):
        await sample_loop(self, clock, on_events, self.cfg.get("period_ms", 20))
