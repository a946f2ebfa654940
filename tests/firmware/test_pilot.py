# Control pilot (IEC 61851-1 Annex A): duty cycle <-> current mapping, state names and levels, and the
# in-process line between one EV and one EVSE.

from evpilot.errors import UsageError
from evpilot.ev import pilot
from evpilot.ev.pilot import STATE_A, STATE_B, STATE_C, STATE_D, STATE_E, STATE_F, Pilot


def close(a, b, eps=1e-9):
    return abs(a - b) <= eps


def test_duty_to_current_table_points():
    # Points of the IEC 61851-1 table of maximum current per duty cycle.
    table = [
        (8, 6.0), (9, 6.0), (10, 6.0), (16, 9.6), (25, 15.0), (26.7, 16.02), (50, 30.0), (53.3, 31.98),
        (85, 51.0), (86, 55.0), (90, 65.0), (96, 80.0), (96.5, 80.0), (97, 80.0),
    ]
    for duty, amps in table:
        assert close(pilot.duty_to_current(duty), amps), (duty, pilot.duty_to_current(duty))


def test_duty_without_pwm_current():
    # 5 %: digital communication; 100 %: no PWM; below 3 %, the 7..8 % gap and above 97 %: no charging.
    for duty in (0, 2.9, 3, 5, 7, 7.5, 97.5, 99, 100):
        assert pilot.duty_to_current(duty) == 0.0, duty
    assert pilot.is_digital(5) and pilot.is_digital(3) and pilot.is_digital(7)
    assert not pilot.is_digital(2.9) and not pilot.is_digital(7.5) and not pilot.is_digital(100)
    assert pilot.DUTY_DIGITAL == 5 and pilot.DUTY_NO_PWM == 100


def test_current_to_duty_inverts_the_table():
    assert close(pilot.current_to_duty(6), 10.0)
    assert close(pilot.current_to_duty(16), 16 / 0.6)  # 26.67 %
    assert close(pilot.current_to_duty(32), 32 / 0.6)  # 53.33 %
    assert close(pilot.current_to_duty(51), 85.0)
    assert close(pilot.current_to_duty(63), 89.2)
    assert close(pilot.current_to_duty(80), 96.0)
    # The mapping jumps from 51 A (85 %) to over 52.5 A (just above 85 %): in between, 85 % (never more).
    assert pilot.current_to_duty(51.5) == 85.0 and pilot.current_to_duty(52.5) == 85.0
    assert close(pilot.duty_to_current(85.01), 52.525) and close(pilot.current_to_duty(52.75), 85.1)
    amps = 6.0
    while amps <= 80.0:
        back = pilot.duty_to_current(pilot.current_to_duty(amps))
        if amps > 51 and amps <= 52.5:
            assert back == 51.0, amps
        else:
            assert close(back, amps, 1e-6), amps
        amps += 0.25
    for bad in (5.9, 0, 80.1, -6):
        try:
            pilot.current_to_duty(bad)
        except UsageError:
            pass
        else:
            assert False, bad


def test_state_names_and_levels():
    assert [pilot.state_name(s) for s in range(6)] == ["A", "B", "C", "D", "E", "F"]
    assert pilot.state_name(STATE_B, True) == "B2" and pilot.state_name(STATE_C, False) == "C1"
    assert pilot.state_name(STATE_F, True) == "F"
    assert [pilot.STATE_VOLTS[s] for s in (STATE_A, STATE_B, STATE_C, STATE_D, STATE_E, STATE_F)] == [
        12, 9, 6, 3, 0, -12
    ]
    readings = [(12.0, STATE_A), (11.2, STATE_A), (9.0, STATE_B), (8.3, STATE_B), (6.0, STATE_C),
                (3.1, STATE_D), (0.2, STATE_E), (-12.0, STATE_F), (10.5, None), (7.5, None), (-5, None)]
    for volts, state in readings:
        assert pilot.volts_to_state(volts) == state, volts


def test_line_session_sequence():
    line = Pilot()
    seen = line.changes
    assert line.state() == STATE_A and line.duty() == 100 and line.name() == "A1"
    # Plug in: B1; the EVSE starts the 5 % PWM: B2, digital communication (SLAC may start).
    line.plug(True)
    assert line.name() == "B1" and line.changes == seen + 1
    line.set_duty(pilot.DUTY_DIGITAL)
    assert line.changes == seen + 1  # oscillator still off: the EV sees no change
    line.set_oscillator(True)
    assert line.name() == "B2" and line.duty() == 5 and line.digital() and line.max_current() == 0.0
    assert line.changes == seen + 2
    # The EV closes S2: C2; the EVSE sees it.
    line.set_ev_state(STATE_C)
    assert line.state() == STATE_C and line.name() == "C2" and line.changes == seen + 3
    # Nothing changes, no count.
    line.set_ev_state(STATE_C)
    line.set_oscillator(True)
    assert line.changes == seen + 3
    # Basic charging: 16 A by PWM.
    line.set_duty(pilot.current_to_duty(16))
    assert close(line.max_current(), 16.0) and not line.digital() and line.changes == seen + 4
    # Stop: EV opens S2, EVSE stops the oscillator, unplug.
    line.set_ev_state(STATE_B)
    line.set_oscillator(False)
    assert line.name() == "B1" and line.duty() == 100
    line.plug(False)
    assert line.state() == STATE_A and line.changes == seen + 7
    # The EV's switch position survives unplugging, but the line shows A.
    line.set_ev_state(STATE_C)
    assert line.state() == STATE_A and line.ev_state() == STATE_C


def test_faults_and_bad_use():
    line = Pilot()
    line.plug(True)
    line.set_oscillator(True)
    line.set_duty(5)
    line.set_ev_state(STATE_D)
    assert line.name() == "D2"
    before = line.changes
    line.evse_fault(STATE_F)
    assert line.state() == STATE_F and line.duty() == 100 and not line.oscillator() and line.name() == "F"
    line.evse_fault(STATE_E)
    assert line.state() == STATE_E
    line.evse_fault(None)
    assert line.name() == "D2" and line.changes == before + 3
    for call in (
        lambda: line.set_ev_state(STATE_A),
        lambda: line.set_ev_state(STATE_F),
        lambda: line.evse_fault(STATE_C),
        lambda: line.set_duty(101),
        lambda: line.set_duty(-1),
        lambda: pilot.state_name(6),
    ):
        try:
            call()
        except UsageError:
            pass
        else:
            assert False
