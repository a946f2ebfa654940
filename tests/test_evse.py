"""The simulated EVSE power stage (host): cable check, pre-charge, DC current regulation, AC, meter, faults,
and a DC session against SimVehicle on the virtual clock."""

import pytest

from evpilot.errors import UsageError
from evpilot_sim.vehicle import SimVehicle
from evpilot.v2g.messages import pv_value
from evpilot_sim.evse import EVSE, EVSEConfig


def run(evse, start, stop, step=100):
    now = start
    while now < stop:
        now += step
        evse.advance(now)
    return now


def test_cable_check_takes_its_time():
    evse = EVSE(cable_check_ms=2000)
    evse.advance(0)
    assert "EVSEIsolationStatus" not in evse.dc_evse_status()
    evse.start_cable_check(1000, voltage=500.0)
    assert evse.cable_check(1000) == ("Ongoing", "Invalid")
    assert evse.dc_evse_status()["EVSEStatusCode"] == "EVSE_IsolationMonitoringActive"
    # The output is at the test voltage during the check (500 V at 500 V/s: after 1 s).
    run(evse, 1000, 2900)
    assert evse.cable_check(2900) == ("Ongoing", "Invalid") and evse.present_voltage == 500.0
    assert evse.cable_check(3000) == ("Finished", "Valid")
    assert evse.dc_evse_status() == {
        "NotificationMaxDelay": 0,
        "EVSENotification": "None",
        "EVSEStatusCode": "EVSE_Ready",
        "EVSEIsolationStatus": "Valid",
    }
    # ... and discharged afterwards.
    run(evse, 3000, 4000)
    assert evse.present_voltage == 0.0
    with pytest.raises(UsageError):
        EVSE().cable_check(0)


@pytest.mark.parametrize(
    "result, code, notification",
    [
        ("Warning", "EVSE_Ready", "None"),
        ("Fault", "EVSE_Shutdown", "StopCharging"),
        ("Invalid", "EVSE_NotReady", "StopCharging"),
    ],
)
def test_cable_check_fault_injection(result, code, notification):
    evse = EVSE(isolation_result=result, cable_check_ms=500)
    evse.start_cable_check(0)
    assert evse.cable_check(499)[0] == "Ongoing"
    assert evse.cable_check(500) == ("Finished", result)
    status = evse.dc_evse_status()
    assert (status["EVSEStatusCode"], status["EVSENotification"], status["EVSEIsolationStatus"]) == (
        code, notification, result,
    )
    # After a failed check the converter will not pre-charge.
    evse.precharge(500, 350.0, 2.0)
    run(evse, 500, 2000)
    assert evse.present_voltage == (350.0 if result == "Warning" else 0.0)
    with pytest.raises(UsageError):
        EVSE(isolation_result="Maybe")


def test_precharge_reaches_target_at_ramp_rate():
    # 50 V per 100 ms: 0 -> 347.3 V takes 695 ms, then holds exactly.
    evse = EVSE(precharge_rate=500.0)
    evse.advance(0)
    assert evse.precharge(0, 347.3, 2.0) == 0.0
    assert evse.precharge(100, 347.3, 2.0) == 50.0
    assert evse.precharge(600, 347.3, 2.0) == 300.0
    assert evse.precharge(690, 347.3, 2.0) == pytest.approx(345.0)
    assert evse.precharge(700, 347.3, 2.0) == 347.3
    assert evse.precharge(2000, 347.3, 2.0) == 347.3
    # No load: no current during pre-charge.
    assert evse.present_current == 0.0
    # A new target applies from the call on: the output follows down at the same rate.
    assert evse.precharge(2100, 300.0, 2.0) == 347.3
    assert evse.precharge(2200, 300.0, 2.0) == 300.0
    # Beyond the EVSE's range the output stops at its maximum.
    evse = EVSE(dc_max_voltage=500.0)
    evse.precharge(0, 800.0, 2.0)
    run(evse, 0, 3000)
    assert evse.present_voltage == 500.0
    evse.current_demand(3000, 800.0, 10.0)
    assert evse.voltage_limit_achieved


def _charging(evse, battery_voltage, now=0):
    evse.precharge(now, battery_voltage, 2.0)
    now = run(evse, now, now + 2000)
    assert abs(evse.present_voltage - battery_voltage) < 1e-9
    evse.ev_contactors(now, True, battery_voltage)
    return now


def test_dc_current_follows_target_with_lag_and_limits():
    evse = EVSE(dc_max_current=500.0, dc_max_power=150000.0, current_time_constant_ms=200.0)
    now = _charging(evse, 400.0)
    evse.current_demand(now, 410.0, 100.0)
    # First-order lag: 63 % after one time constant, within the regulation tolerance after five.
    now = run(evse, now, now + 200, step=10)
    assert evse.present_current == pytest.approx(100 * (1 - 2.718281828 ** -1), rel=1e-3)
    now = run(evse, now, now + 800, step=10)
    assert abs(evse.present_current - 100.0) < evse.config.current_regulation_tolerance
    assert not evse.current_limit_achieved and not evse.power_limit_achieved
    # 400 A at 400 V would be 160 kW: the EVSE delivers 150 kW = 375 A.
    evse.current_demand(now, 410.0, 400.0)
    now = run(evse, now, now + 3000)
    assert evse.present_current == pytest.approx(375.0, abs=0.01)
    assert evse.power_limit_achieved and not evse.current_limit_achieved
    fields = evse.current_demand_fields()
    assert pv_value(fields["EVSEPresentCurrent"], "A") == pytest.approx(375.0, abs=0.001)
    assert pv_value(fields["EVSEPresentVoltage"], "V") == 400.0
    assert fields["EVSEPowerLimitAchieved"] is True
    assert fields["EVSEMaximumPowerLimit"] == {"Multiplier": 1, "Unit": "W", "Value": 15000}
    # A current-limited EVSE.
    evse = EVSE(dc_max_current=200.0)
    now = _charging(evse, 400.0)
    evse.current_demand(now, 410.0, 300.0)
    run(evse, now, now + 3000)
    assert evse.present_current == pytest.approx(200.0, abs=0.01) and evse.current_limit_achieved
    # Stop: the current decays to zero.
    evse.stop(now + 3000)
    run(evse, now + 3000, now + 5000)
    assert evse.present_current < 0.01


def test_meter_dc_and_ac():
    # 100 A at 400 V for one hour: 40 kWh, less the first time constant's worth of lag (~2 Wh).
    evse = EVSE()
    now = _charging(evse, 400.0)
    start = evse.meter_wh
    evse.current_demand(now, 410.0, 100.0)
    run(evse, now, now + 3600 * 1000, step=1000)
    assert evse.meter_wh - start == pytest.approx(40000.0, abs=15.0)
    assert evse.meter_info() == {"MeterID": "EVPILOT-SIM-METER", "MeterReading": int(evse.meter_wh)}
    # AC: 3 x 230 V x 16 A for one hour = 11.04 kWh; the offer bounds the request.
    evse = EVSE(ac_max_current=16.0)
    evse.advance(0)
    evse.ac_close(0)
    assert evse.ac_request(0, 32.0) == 16.0
    run(evse, 0, 3600 * 1000, step=1000)
    assert evse.meter_wh == pytest.approx(11040.0, rel=1e-9)
    assert evse.ac_request(3600 * 1000, 10.0) == 10.0
    evse.ac_open(3600 * 1000)
    assert evse.ac_request(3600 * 1000, 10.0) == 0.0
    params = evse.ac_charge_parameter()
    assert pv_value(params["EVSENominalVoltage"], "V") == 230.0 and pv_value(params["EVSEMaxCurrent"], "A") == 16.0
    assert params["AC_EVSEStatus"] == {"NotificationMaxDelay": 0, "EVSENotification": "None", "RCD": False}


def test_energy_to_be_delivered_stops_the_current():
    evse = EVSE(energy_to_be_delivered=1000.0)
    assert pv_value(evse.dc_charge_parameter()["EVSEEnergyToBeDelivered"], "Wh") == 1000.0
    now = _charging(evse, 400.0)
    evse.begin_session()
    evse.current_demand(now, 410.0, 100.0)
    # 1 kWh at 40 kW: 90 s.
    now = run(evse, now, now + 89000)
    assert evse.present_current > 99.0 and evse.dc_evse_status()["EVSENotification"] == "None"
    now = run(evse, now, now + 3000)
    assert evse.present_current < 1.0 and evse.dc_evse_status()["EVSENotification"] == "StopCharging"
    assert evse.meter_wh == pytest.approx(1000.0, abs=5.0)


def test_emergency_stop_and_malfunction():
    evse = EVSE()
    now = _charging(evse, 380.0)
    evse.current_demand(now, 410.0, 200.0)
    now = run(evse, now, now + 2000)
    assert evse.present_current > 199.0
    evse.emergency_stop(now)
    assert evse.present_current == 0.0
    evse.current_demand(now + 100, 410.0, 200.0)
    run(evse, now + 100, now + 1000)
    assert evse.present_current == 0.0
    status = evse.dc_evse_status()
    assert status["EVSEStatusCode"] == "EVSE_EmergencyShutdown" and status["EVSENotification"] == "StopCharging"
    # Malfunction on AC: the contactor opens, the offer is zero, it will not close again.
    evse = EVSE()
    evse.ac_close(0)
    evse.ac_request(0, 16.0)
    evse.set_malfunction(1000)
    assert not evse.ac_closed and evse.ac_current == 0.0 and evse.ac_offer() == 0.0
    assert evse.dc_evse_status()["EVSEStatusCode"] == "EVSE_Malfunction"
    with pytest.raises(UsageError):
        evse.ac_close(2000)
    evse.set_malfunction(3000, False)
    evse.ac_close(3000)
    # RCD trip.
    evse.rcd = True
    evse.advance(3100)
    assert not evse.ac_closed and evse.ac_evse_status()["RCD"] is True
    assert evse.ac_evse_status()["EVSENotification"] == "StopCharging"


def test_charge_parameter_and_config():
    evse = EVSE(EVSEConfig(dc_max_voltage=500.0, dc_max_current=125.0, dc_max_power=50000.0))
    p = evse.dc_charge_parameter()
    assert [pv_value(p[k]) for k in (
        "EVSEMaximumVoltageLimit", "EVSEMaximumCurrentLimit", "EVSEMaximumPowerLimit", "EVSEMinimumVoltageLimit",
        "EVSEMinimumCurrentLimit", "EVSECurrentRegulationTolerance", "EVSEPeakCurrentRipple",
    )] == [500.0, 125.0, 50000.0, 150.0, 0.0, 5.0, 5.0]
    assert "EVSEEnergyToBeDelivered" not in p
    assert p["DC_EVSEStatus"]["EVSEStatusCode"] == "EVSE_Ready"
    evse.stop_charging = True
    assert evse.dc_evse_status()["EVSENotification"] == "StopCharging"
    evse.stop_charging, evse.renegotiate = False, True
    assert evse.dc_evse_status()["EVSENotification"] == "ReNegotiation"
    assert EVSE(notification_max_delay=5).dc_evse_status()["NotificationMaxDelay"] == 5
    with pytest.raises(UsageError):
        evse.advance(100)
        evse.advance(50)


def test_dc_session_with_simvehicle():
    # Cable check, pre-charge to the pack, contactors, 10 minutes of current demand at 250 ms steps: the
    # station's meter and the vehicle's battery agree, the SoC rises as the energy says.
    ev = SimVehicle()
    evse = EVSE(dc_max_power=100000.0)
    now = 0
    evse.start_cable_check(now, voltage=ev.ev_maximum_voltage_limit())
    while evse.cable_check(now)[0] == "Ongoing":
        now += 250
    assert now == 2000
    while abs(evse.precharge(now, ev.ev_target_voltage(), ev.ev_target_current()) - ev.present_voltage()) > 20:
        now += 250
    assert now < 3000
    ev.close_contactors(now)
    evse.ev_contactors(now, True, ev.present_voltage())
    start_meter, start_wh = evse.meter_wh, ev.energy_wh()
    ev.on_evse_status(now, present_voltage=evse.present_voltage, present_current=evse.present_current,
                      max_power=evse.config.dc_max_power)
    end = now + 600 * 1000
    while now < end:
        voltage, current = evse.current_demand(now, ev.ev_target_voltage(), ev.ev_target_current())
        ev.on_evse_status(now, present_voltage=voltage, present_current=current)
        evse.set_battery_voltage(ev.present_voltage())
        now += 250
    evse.advance(now)
    ev.advance(now)
    delivered = evse.meter_wh - start_meter
    # About 100 kW for 10 minutes; both sides see the same energy (to a step's worth at most).
    assert 16000 < delivered < 16700
    assert abs((ev.energy_wh() - start_wh) - delivered) < 100000 * 0.25 / 3600 + 1
    assert evse.power_limit_achieved
    assert ev.ev_ress_soc() == int(20 + (ev.energy_wh() - 12000) / 600)
