# SupportedAppProtocol (ISO 15118-2 clause 8.3, DIN SPEC 70121 clause 8.6.3): the first exchange on a
# V2G connection, in which the EV offers the protocols it speaks and the station picks one.
#
# Both sides are here as plain functions over documents (exi schema set "apphand"):
#   EV:      request(offers) builds supportedAppProtocolReq; chosen(response, offers) returns the protocol
#            the station picked or raises PeerError naming the reason.
#   Station: negotiate(request, supported) builds the supportedAppProtocolRes and returns the choice.
# An offer is (protocol, priority): protocol "din" or "iso2" (PROTOCOLS), priority 1 (best) to 20.

from evpilot.errors import PeerError, UsageError

# protocol -> (ProtocolNamespace, VersionNumberMajor, VersionNumberMinor)
PROTOCOLS = {
    "din": ("urn:din:70121:2012:MsgDef", 2, 0),
    "iso2": ("urn:iso:15118:2:2013:MsgDef", 2, 0),
}

OK = "OK_SuccessfulNegotiation"
OK_MINOR = "OK_SuccessfulNegotiationWithMinorDeviation"
FAILED = "Failed_NoNegotiation"

_MAX_OFFERS = 20  # AppProtocol maxOccurs ([V2G2-172])


def request(offers):
    """supportedAppProtocolReq offering `offers` [(protocol, priority)], SchemaIDs 1, 2, ... in order."""
    if not offers or len(offers) > _MAX_OFFERS:
        raise UsageError("offer 1 to %d protocols" % _MAX_OFFERS)
    apps = []
    seen = {}
    for i, (protocol, priority) in enumerate(offers):
        if protocol not in PROTOCOLS:
            raise UsageError("unknown protocol %r (known: %s)" % (protocol, ", ".join(sorted(PROTOCOLS))))
        if protocol in seen or not 1 <= priority <= _MAX_OFFERS:
            raise UsageError("each protocol once, priorities 1..20")
        seen[protocol] = True
        ns, major, minor = PROTOCOLS[protocol]
        apps.append({"ProtocolNamespace": ns, "VersionNumberMajor": major, "VersionNumberMinor": minor,
                     "SchemaID": i + 1, "Priority": priority})
    return {"supportedAppProtocolReq": {"AppProtocol": apps}}


def chosen(response, offers):
    """The protocol the station picked, from its supportedAppProtocolRes; PeerError if none was."""
    res = response.get("supportedAppProtocolRes") if isinstance(response, dict) else None
    if not isinstance(res, dict):
        raise PeerError("expected supportedAppProtocolRes")
    code = res.get("ResponseCode")
    if code == FAILED:
        raise PeerError("the station supports none of the offered protocols (Failed_NoNegotiation)")
    if code not in (OK, OK_MINOR):
        raise PeerError("supportedAppProtocolRes: unexpected ResponseCode %r" % (code,))
    schema_id = res.get("SchemaID")
    if schema_id is None:
        raise PeerError("supportedAppProtocolRes: %s without SchemaID" % code)
    if not 1 <= schema_id <= len(offers):
        raise PeerError("supportedAppProtocolRes: SchemaID %d was not offered" % schema_id)
    return offers[schema_id - 1][0]


def negotiate(req, supported):
    """Station side: (supportedAppProtocolRes document, protocol or None).

    Picks the offer with the best (lowest) Priority among the protocols in `supported` whose major version
    matches ours; a different minor version is accepted as a minor deviation."""
    body = req.get("supportedAppProtocolReq") if isinstance(req, dict) else None
    if not isinstance(body, dict):
        raise PeerError("expected supportedAppProtocolReq")
    best = None
    for app in body.get("AppProtocol", ()):
        for protocol in supported:
            ns, major, minor = PROTOCOLS[protocol]
            if app.get("ProtocolNamespace") != ns or app.get("VersionNumberMajor") != major:
                continue
            if best is None or app.get("Priority", 99) < best[0].get("Priority", 99):
                best = (app, protocol, app.get("VersionNumberMinor") != minor)
    if best is None:
        return {"supportedAppProtocolRes": {"ResponseCode": FAILED}}, None
    app, protocol, deviation = best
    res = {"ResponseCode": OK_MINOR if deviation else OK, "SchemaID": app["SchemaID"]}
    return {"supportedAppProtocolRes": res}, protocol
