# The vehicle-controller interface, the PhysicalValue helpers and SimVehicle's battery model, on a virtual
# clock.

from evpilot.errors import PeerError, UsageError
from evpilot.ev import pilot
from evpilot.ev.pilot import Pilot
from evpilot_sim.vehicle import PRECHARGE_CURRENT, SimVehicle
from evpilot.ev.vehicle import (
    AC_SINGLE_PHASE_CORE,
    AC_THREE_PHASE_CORE,
    DC_CORE,
    DC_EXTENDED,
    Vehicle,
)
from evpilot.v2g.messages import pv, pv_value


def raises(error, call):
    try:
        call()
    except error as e:
        return str(e)
    assert False, "no " + error.__name__


def test_pv_picks_the_smallest_multiplier_that_fits():
    assert pv(400.5, "V") == {"Multiplier": -1, "Unit": "V", "Value": 4005}
    assert pv(230, "V") == {"Multiplier": -2, "Unit": "V", "Value": 23000}
    assert pv(16, "A") == {"Multiplier": -3, "Unit": "A", "Value": 16000}
    assert pv(0.5, "A") == {"Multiplier": -3, "Unit": "A", "Value": 500}
    assert pv(-12.3456, "A") == {"Multiplier": -3, "Unit": "A", "Value": -12346}
    assert pv(11000, "W") == {"Multiplier": 0, "Unit": "W", "Value": 11000}
    assert pv(150000, "W") == {"Multiplier": 1, "Unit": "W", "Value": 15000}
    assert pv(60000, "Wh") == {"Multiplier": 1, "Unit": "Wh", "Value": 6000}
    assert pv(32767, "s") == {"Multiplier": 0, "Unit": "s", "Value": 32767}
    assert pv(32768, "s") == {"Multiplier": 1, "Unit": "s", "Value": 3277}
    assert pv(-32768, "W") == {"Multiplier": 0, "Unit": "W", "Value": -32768}
    assert pv(32767000, "Wh") == {"Multiplier": 3, "Unit": "Wh", "Value": 32767}
    assert pv(0, "A") == {"Multiplier": 0, "Unit": "A", "Value": 0}
    assert pv(0.0004, "A") == {"Multiplier": -3, "Unit": "A", "Value": 0}
    assert "does not fit" in raises(UsageError, lambda: pv(32767501, "W"))
    assert "does not fit" in raises(UsageError, lambda: pv(-40000000, "W"))


def test_pv_round_trip_keeps_precision():
    for x in (0.123, 1.5, 3.3, 9.87, 42.0, 230.0, 399.9, 410.25, 920.0, 3276.7, 3276.8, 12345.6, 150000.0,
              350000.0, 1234567.0, 32767000.0, -0.5, -250.75, -3276.8, -150000.0):
        d = pv(x, "W")
        assert -32768 <= d["Value"] <= 32767 and -3 <= d["Multiplier"] <= 3, x
        back = pv_value(d, "W")
        # Within half a step of the chosen multiplier, and at least 3 significant digits.
        assert abs(back - x) <= 0.5 * 10 ** d["Multiplier"] + 1e-9, (x, d)
        assert abs(back - x) <= abs(x) * 0.0015, (x, d)


def test_pv_value_reads_peer_values():
    assert pv_value({"Multiplier": 0, "Unit": "V", "Value": 400}) == 400.0
    assert pv_value({"Multiplier": -1, "Unit": "V", "Value": 4005}, "V") == 400.5
    assert pv_value({"Multiplier": 2, "Unit": "W", "Value": 1500}, "W") == 150000.0
    assert pv_value({"Multiplier": -3, "Unit": "A", "Value": -1}, "A") == -0.001
    assert pv_value({"Multiplier": 3, "Unit": "Wh", "Value": 60}) == 60000.0
    # DIN SPEC 70121 allows Unit to be left out.
    assert pv_value({"Multiplier": 0, "Value": 125}, "A") == 125.0
    assert "Unit A" in raises(PeerError, lambda: pv_value({"Multiplier": 0, "Unit": "A", "Value": 1}, "V"))
    assert "Multiplier 4" in raises(PeerError, lambda: pv_value({"Multiplier": 4, "Unit": "V", "Value": 1}))
    assert "without" in raises(PeerError, lambda: pv_value({"Multiplier": 0, "Unit": "V"}))
    assert "without" in raises(PeerError, lambda: pv_value(None))


def test_vehicle_defaults():
    v = Vehicle()
    for call in (v.evcc_id, v.energy_transfer_modes, v.ev_ress_soc, v.ev_target_current, v.charging_complete,
                 v.contactors_closed, v.ev_maximum_voltage_limit, v.e_amount):
        assert "not implemented" in raises(UsageError, call)
    assert "not implemented: Vehicle.close_contactors" in raises(UsageError, lambda: v.close_contactors(0))
    assert "not implemented" in raises(UsageError, lambda: v.set_cp_state(pilot.STATE_C))
    assert v.stop_requested() is False and v.ev_error_code() == "NO_ERROR" and v.ev_ready() is True
    assert v.ev_maximum_power_limit() is None and v.departure_time() is None and v.bulk_soc() is None
    assert v.advance(5) is None and v.on_evse_status(5, present_voltage=400) is None
    assert "unknown" in raises(UsageError, lambda: v.set_energy_transfer_mode("DC_fast"))


def test_requested_energy_transfer_mode():
    ev = SimVehicle(modes=(DC_EXTENDED, AC_THREE_PHASE_CORE))
    assert ev.requested_energy_transfer_mode(["AC_three_phase_core", "DC_extended"]) == DC_EXTENDED
    offered = ["AC_single_phase_core", "AC_three_phase_core"]
    assert ev.requested_energy_transfer_mode(offered) == AC_THREE_PHASE_CORE
    assert ev.requested_energy_transfer_mode([DC_CORE]) is None
    ev.set_energy_transfer_mode(AC_THREE_PHASE_CORE)
    assert ev.energy_transfer_mode == AC_THREE_PHASE_CORE
    assert ev.evcc_id() == b"\x02\x00\x00\x00\x00\x01" and len(ev.evcc_id()) == 6


def _dc_charge(ev, seconds, step_ms=1000, evse_max_current=500.0):
    # A DC station that delivers what the EV asks (up to evse_max_current) at the battery's voltage.
    # Returns [(minute, soc, current)] and the energy the station measured, in Wh.
    ev.close_contactors(0)
    ev.on_evse_status(0, present_voltage=ev.present_voltage(), present_current=0.0)
    # A value reported at `now` holds until the next report, for the station's meter as for the vehicle.
    samples = [(0, ev.soc(), 0.0)]
    measured = 0.0
    now = 0
    while now < seconds * 1000:
        current = min(ev.ev_target_current(), evse_max_current)
        voltage = ev.present_voltage()
        ev.on_evse_status(now, present_voltage=voltage, present_current=current)
        now += step_ms
        measured += voltage * current * step_ms / 3600000.0
        ev.advance(now)
        if now % 60000 == 0:
            samples.append((now // 60000, ev.soc(), current))
    return samples, measured


def test_dc_thirty_minutes_rises_then_tapers():
    ev = SimVehicle(target_soc=100)  # 60 kWh, 20 %, CC 400 A / 150 kW up to 80 %
    assert ev.ev_target_current() == PRECHARGE_CURRENT and abs(ev.ev_target_voltage() - 346.0) < 1e-9
    start_wh = ev.energy_wh()
    samples, measured = _dc_charge(ev, 30 * 60)
    socs = [s for _, s, _ in samples]
    for a, b in zip(socs, socs[1:]):
        assert b > a
    # The energy in the battery is what the station measured (mWh integer accounting).
    assert abs(ev.energy_wh() - start_wh - measured) < 0.01
    by_minute = dict((m, (s, i)) for m, s, i in samples)
    # Constant current at first: 400 A from 20 % to about 42 % (400 A x 375 V = 150 kW).
    assert by_minute[1][1] == 400.0 and by_minute[5][1] == 400.0 and by_minute[7][1] < 400.0
    # Then power-limited: 150 kW at the terminals (current * voltage).
    soc10, i10 = by_minute[10]
    v10 = ev.ocv(soc10) + ev.r * i10
    assert 360 < i10 < 400 and abs(i10 * v10 - 150000.0) < 1500
    # 80 % after 14 to 15 minutes: 36 kWh at ~145 kW.
    assert by_minute[14][0] < 80 < by_minute[15][0]
    # Above 80 % the current tapers: each minute less, ever slower SoC gain.
    currents = [i for m, s, i in samples if s > 81]
    assert len(currents) > 10
    for a, b in zip(currents, currents[1:]):
        assert b < a
    assert by_minute[20][1] < 0.35 * 400 and by_minute[30][1] < 20
    gains = [b - a for a, b in zip(socs, socs[1:])]
    assert gains[5] > 4.0 and gains[25] < 0.5
    assert 98.0 < socs[-1] < 100.0 and not ev.charging_complete()
    assert ev.bulk_charging_complete()


def test_dc_limits_and_pack_voltage():
    ev = SimVehicle()
    assert ev.ev_maximum_voltage_limit() == 420.0 and ev.ev_maximum_current_limit() == 400.0
    assert ev.ev_maximum_power_limit() == 150000.0
    assert ev.full_soc() == 80 and ev.bulk_soc() == 80 and ev.ev_ress_soc() == 20
    assert ev.ev_energy_capacity() == 60000 and abs(ev.ev_energy_request() - 36000.0) < 1e-6
    # Pre-charge target is the open pack, then the CV set point once the contactors are closed.
    assert abs(ev.present_voltage() - 346.0) < 1e-9 and ev.ev_target_voltage() == ev.present_voltage()
    ev.close_contactors(0)
    assert ev.contactors_closed() and ev.ev_target_voltage() == 410.0
    # The station's limits bound the demand.
    ev.on_evse_status(0, present_voltage=346.0, present_current=0.0, max_current=200.0)
    assert ev.ev_target_current() == 200.0
    ev.on_evse_status(0, max_current=500.0, max_power=50000.0)
    i = ev.ev_target_current()
    assert abs(i * (346.0 + 0.03 * i) - 50000.0) < 1e-6
    # Fault injection: an error code drops the demand and EVReady.
    ev.error_code = "FAILED_RESSTemperatureInhibit"
    assert ev.ev_target_current() == 0.0 and ev.ev_ready() is False
    # Remaining time: 20 -> 80 % at 50 kW takes about 36 kWh / 50 kW = 43 minutes.
    assert abs(ev.remaining_time_to_full_soc() - 36000 / 50000 * 3600) < 60
    assert ev.remaining_time_to_bulk_soc() == ev.remaining_time_to_full_soc()
    raises(UsageError, lambda: ev.advance(-1000))


def test_dc_stops_at_target():
    ev = SimVehicle(soc=79, target_soc=80)
    assert ev.ev_ress_soc() == 79 and not ev.charging_complete()
    samples, measured = _dc_charge(ev, 120)
    assert ev.charging_complete() and ev.ev_ress_soc() == 80
    assert ev.ev_target_current() == 0.0 and ev.ev_energy_request() == 0.0
    # 600 Wh at ~150 kW: about 15 s; the demand drops to zero at the first step after the target, so at
    # most one 1 s step (41.7 Wh) of overshoot.
    assert 0 <= ev.energy_wh() - 48000 < 150000 / 3600
    assert ev.remaining_time_to_full_soc() == 0


def _ac_charge(ev, seconds, voltage=230.0, max_current=32.0, step_ms=1000):
    ev.set_cp_state(pilot.STATE_C)
    ev.on_evse_status(0, present_voltage=voltage, max_current=max_current)
    now = 0
    while now < seconds * 1000:
        now += step_ms
        ev.advance(now)


def test_ac_eleven_kw_for_an_hour():
    ev = SimVehicle(modes=(AC_THREE_PHASE_CORE,), target_soc=100)
    assert ev.ev_max_current() == 16.0 and ev.ev_min_current() == 6.0
    start = ev.energy_wh()
    _ac_charge(ev, 3600)
    assert ev.ac_current == 16.0
    # 3 x 230 V x 16 A = 11.04 kW for one hour.
    added = ev.energy_wh() - start
    assert abs(added - 11040.0) < 11040.0 * 0.01, added
    assert abs(ev.soc() - (20 + 11040.0 / 600)) < 0.2
    # Remaining time to 100 % from there: (100 - 38.4) % of 60 kWh at 11.04 kW, a bit more near full.
    t = ev.remaining_time_to_full_soc()
    assert 3.3 * 3600 < t < 3.6 * 3600, t


def test_ac_offer_limits_the_draw():
    # EVSEMaxCurrent 10 A: 6.9 kW.
    ev = SimVehicle(modes=(AC_THREE_PHASE_CORE,), target_soc=100)
    _ac_charge(ev, 1800, max_current=10.0)
    assert ev.ac_current == 10.0 and abs(ev.energy_wh() - 12000 - 3450.0) < 1.0
    # Single phase, and the PWM duty on an attached pilot (13 A) under a larger message offer.
    line = Pilot()
    line.plug(True)
    line.set_duty(pilot.current_to_duty(13))
    line.set_oscillator(True)
    ev = SimVehicle(modes=(AC_SINGLE_PHASE_CORE,), target_soc=100, pilot=line)
    _ac_charge(ev, 3600, max_current=32.0)
    assert line.state() == pilot.STATE_C
    assert abs(ev.ac_current - 13.0) < 1e-9 and abs(ev.energy_wh() - 12000 - 230 * 13) < 1.0
    # The EVSE stops the PWM: no offer, no current. Below EVMinCurrent: none either.
    line.set_oscillator(False)
    ev.on_evse_status(3600000, max_current=32.0)
    assert ev.ac_current == 0.0
    ev = SimVehicle(modes=(AC_THREE_PHASE_CORE,))
    _ac_charge(ev, 10, max_current=5.0)
    assert ev.ac_current == 0.0 and ev.energy_wh() == 12000.0
    # State B: no current.
    ev = SimVehicle(modes=(AC_THREE_PHASE_CORE,))
    ev.on_evse_status(0, present_voltage=230.0, max_current=16.0)
    ev.advance(60000)
    assert ev.ac_current == 0.0 and ev.energy_wh() == 12000.0


def test_ac_charging_complete_at_target():
    ev = SimVehicle(modes=(AC_THREE_PHASE_CORE,), soc=78, target_soc=80)
    assert abs(ev.e_amount() - 1200.0) < 1e-6
    # 1.2 kWh at 11.04 kW: 391 s; run 10 minutes.
    _ac_charge(ev, 600)
    assert ev.charging_complete() and ev.ev_ress_soc() == 80
    assert ev.energy_wh() == 48000.0  # stops exactly at the target
    assert ev.ac_current == 0.0 and ev.e_amount() == 0.0
    assert ev.remaining_time_to_full_soc() == 0


def test_cp_state_and_driver_stop():
    line = Pilot()
    line.plug(True)
    ev = SimVehicle(pilot=line)
    ev.set_cp_state(pilot.STATE_C)
    assert line.state() == pilot.STATE_C and ev.cp_state == pilot.STATE_C
    ev.set_cp_state(pilot.STATE_B)
    assert line.state() == pilot.STATE_B
    raises(UsageError, lambda: ev.set_cp_state(pilot.STATE_A))
    assert not ev.stop_requested()
    ev.stop = True
    ev.close_contactors(0)
    assert ev.stop_requested() and ev.ev_target_current() == 0.0
    ev.open_contactors(0)
    assert not ev.contactors_closed()
