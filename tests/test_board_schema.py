"""boards/schema.json agrees with the device's validator (evpilot.hal.board): every board file passes both,
and the schema's required fields are the validator's."""

import glob
import json
import os

import jsonschema

from evpilot.hal import board

BOARDS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "boards")


def test_board_files_match_the_schema():
    with open(os.path.join(BOARDS, "schema.json")) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    files = sorted(p for p in glob.glob(os.path.join(BOARDS, "*.json")) if not p.endswith("schema.json"))
    assert len(files) >= 4
    for path in files:
        with open(path) as f:
            doc = json.load(f)
        jsonschema.validate(doc, schema)
        assert board.validate(doc)["name"] + ".json" == os.path.basename(path)
    assert tuple(schema["required"]) == board.REQUIRED
    assert schema["properties"]["port"]["enum"] == list(board.PORTS)
    assert schema["properties"]["provisioning"]["properties"]["channel"]["enum"] == list(board.CHANNELS)
    bad = dict(doc, port="stm32")
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the schema accepts port stm32")
