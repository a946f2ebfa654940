# EV timers: a handful of values with their sources (see the comments in evpilot/v2g/timers.py) and the
# per-message lookup.

from evpilot.errors import UsageError
from evpilot.v2g import timers


def test_sdp_and_session_timers():
    assert timers.SDP_RESPONSE_TIMEOUT == 250
    assert timers.SDP_MAX_REQUESTS == 50
    assert timers.ISO2_EVCC_SEQUENCE_PERFORMANCE_TIME == 40000
    assert timers.ISO2_SECC_SEQUENCE_TIMEOUT == 60000
    assert timers.ISO2_EVCC_ONGOING_TIMEOUT == 60000
    assert timers.ISO2_EVCC_COMMUNICATION_SETUP_TIMEOUT == 20000
    assert timers.ISO2_EVCC_CABLE_CHECK_TIMEOUT == 40000
    assert timers.ISO2_EVCC_PRE_CHARGE_TIMEOUT == 7000
    assert timers.DIN_EVCC_CABLE_CHECK_TIMEOUT == 40000
    assert timers.DIN_EVCC_PRE_CHARGE_TIMEOUT == 7000
    assert timers.DIN_EVCC_COMMUNICATION_SETUP_TIMEOUT == 20000
    assert timers.DIN_SECC_SEQUENCE_TIMEOUT == 60000


def test_msg_timeout_iso2():
    assert timers.msg_timeout("iso2", "supportedAppProtocolReq") == 2000
    assert timers.msg_timeout("iso2", "SessionSetupReq") == 2000
    assert timers.msg_timeout("iso2", "ServiceDetailReq") == 5000
    assert timers.msg_timeout("iso2", "PaymentDetailsReq") == 5000
    assert timers.msg_timeout("iso2", "PowerDeliveryReq") == 5000
    assert timers.msg_timeout("iso2", "CertificateInstallationReq") == 5000
    assert timers.msg_timeout("iso2", "CurrentDemandReq") == 250
    assert timers.msg_timeout("iso2", "ChargingStatusReq") == 2000


def test_msg_timeout_din():
    assert timers.msg_timeout("din", "supportedAppProtocolReq") == 2000
    assert timers.msg_timeout("din", "ContractAuthenticationReq") == 2000
    assert timers.msg_timeout("din", "PowerDeliveryReq") == 2000
    assert timers.msg_timeout("din", "CurrentDemandReq") == 250


def test_msg_timeout_unknown_raises_usage_error():
    bad = [
        ("iso2", "ContractAuthenticationReq"),  # DIN's name; ISO-2 calls it AuthorizationReq
        ("din", "AuthorizationReq"),
        ("din", "CertificateInstallationReq"),  # not part of DIN's sequence
        ("iso2", "CurrentDemandRes"),  # responses have no EV timeout
        ("iso2", ""),
        ("iso20", "SessionSetupReq"),
        ("ISO2", "SessionSetupReq"),
    ]
    for protocol, name in bad:
        try:
            timers.msg_timeout(protocol, name)
        except UsageError as e:
            assert "msg_timeout" in str(e)
        else:
            assert False, (protocol, name)
