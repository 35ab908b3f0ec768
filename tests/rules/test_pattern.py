"""Configuration templates, as ThingsBoard's TbNodeUtils.processPattern fills them."""

from __future__ import annotations

import json
import uuid

from thingsray.kv import JsonValue
from thingsray.rules.msg import EntityId, TbMsg
from thingsray.rules.pattern import process_pattern


def msg(data: object, **metadata: str) -> TbMsg:
    return TbMsg("POST_TELEMETRY_REQUEST", EntityId("DEVICE", uuid.uuid4()), data, dict(metadata))


def test_metadata_and_body_values_fill_their_placeholders() -> None:
    m = msg({"t": 21.5, "on": True, "room": {"name": "lab", "floor": 2}, "none": None}, deviceName="thermo")
    assert process_pattern("${deviceName}/$[room.name]/$[room.floor]/$[t]/$[on]/$[none]", m) == \
        "thermo/lab/2/21.5/true/null"


def test_what_has_no_value_stays_as_written() -> None:
    m = msg({"room": {"name": "lab"}, "list": [1, 2]}, deviceName="thermo")
    assert process_pattern("${missing}/$[room]/$[list]/$[nope.deeper]/$[]", m) == \
        "${missing}/$[room]/$[list]/$[nope.deeper]/$[]"


def test_whole_metadata_and_body() -> None:
    m = msg({"a": JsonValue('{"b":[1]}')}, k="v")
    assert json.loads(process_pattern("${*}", m)) == {"k": "v"}
    assert process_pattern("$[*]", m) == '{"a":{"b":[1]}}'
    assert process_pattern("${*}", msg({})) == "{}"


def test_a_body_that_is_no_object_fills_only_the_whole_body() -> None:
    assert process_pattern("$[*]|$[a]", msg([1, 2])) == "[1,2]|$[a]"
    assert process_pattern("$[*]", msg("text")) == '"text"'
