# SupportedAppProtocol negotiation, both sides, with real requests from cars.

from evpilot import exi
from evpilot.errors import PeerError, UsageError
from evpilot.v2g import sap

from vectorlib import exi_records


def test_request_encodes_and_the_station_picks_by_priority():
    offers = [("iso2", 1), ("din", 2)]
    req = sap.request(offers)
    data = exi.encode("apphand", req)
    assert exi.decode("apphand", data) == req
    res, protocol = sap.negotiate(exi.decode("apphand", data), ("din", "iso2"))
    assert protocol == "iso2"
    assert res == {"supportedAppProtocolRes": {"ResponseCode": sap.OK, "SchemaID": 1}}
    assert sap.chosen(exi.decode("apphand", exi.encode("apphand", res)), offers) == "iso2"
    # A DIN-only station picks DIN, the second offer.
    res, protocol = sap.negotiate(req, ("din",))
    assert protocol == "din" and sap.chosen(res, offers) == "din"


def test_no_common_protocol():
    res, protocol = sap.negotiate(sap.request([("din", 1)]), ("iso2",))
    assert protocol is None
    assert res["supportedAppProtocolRes"] == {"ResponseCode": sap.FAILED}
    try:
        sap.chosen(res, [("din", 1)])
    except PeerError as e:
        assert "Failed_NoNegotiation" in str(e)
    else:
        assert False


def test_minor_deviation_and_bad_responses():
    req = sap.request([("iso2", 1)])
    req["supportedAppProtocolReq"]["AppProtocol"][0]["VersionNumberMinor"] = 1
    res, protocol = sap.negotiate(req, ("iso2",))
    assert protocol == "iso2" and res["supportedAppProtocolRes"]["ResponseCode"] == sap.OK_MINOR
    offers = [("iso2", 1)]
    for bad in ({"supportedAppProtocolRes": {"ResponseCode": sap.OK}},  # no SchemaID
                {"supportedAppProtocolRes": {"ResponseCode": sap.OK, "SchemaID": 7}},  # not offered
                {"supportedAppProtocolReq": {}}, {}):
        try:
            sap.chosen(bad, offers)
        except PeerError:
            pass
        else:
            assert False, bad
    for offers in ([], [("iso20", 1)], [("din", 1), ("din", 2)], [("din", 0)]):
        try:
            sap.request(offers)
        except UsageError:
            pass
        else:
            assert False, offers


def test_real_cars_requests():
    # Every car request in the vectors: a station offering both picks one the car offered.
    n = 0
    for r in exi_records(standards=("apphand",)):
        if r["message"] != "supportedAppProtocolReq":
            continue
        req = exi.decode("apphand", bytes.fromhex(r["hex"]))
        res, protocol = sap.negotiate(req, ("din", "iso2"))
        offered = [a["ProtocolNamespace"] for a in req["supportedAppProtocolReq"]["AppProtocol"]]
        if protocol is not None:
            assert sap.PROTOCOLS[protocol][0] in offered
            exi.encode("apphand", res)
        n += 1
    assert n == 24
