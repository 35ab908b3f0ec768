"""Device payloads parsed and typed as ThingsBoard does (spec 1.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thingsray.transports.payloads import (
    AttributeRequest,
    JsonValue,
    PayloadError,
    TelemetryGroup,
    parse_attribute_request,
    parse_attributes,
    parse_telemetry,
)


def test_every_telemetry_form():
    assert parse_telemetry(b'{"temperature":25}') == [TelemetryGroup(None, {"temperature": 25})]
    assert parse_telemetry(b'{"ts":1609459200000,"values":{"t":1.5}}') == [TelemetryGroup(1609459200000, {"t": 1.5})]
    assert parse_telemetry(b'[{"a":1},{"ts":5,"values":{"b":true}}]') == [
        TelemetryGroup(None, {"a": 1}), TelemetryGroup(5, {"b": True})]


def test_only_an_object_with_both_ts_and_values_is_timestamped():
    assert parse_telemetry(b'{"ts":5,"x":1}') == [TelemetryGroup(None, {"ts": 5, "x": 1})]


def test_values_are_typed_like_thingsboard():
    [group] = parse_telemetry(b'{"b":false,"l":42,"d":36.6,"s":"on","n":"42","f":"36.6","j":{"a":[1]},'
                              b'"arr":[1,2],"nul":null,"pad":" 7","big":"99999999999999999999"}')
    assert group.values == {"b": False, "l": 42, "d": 36.6, "s": "on", "n": 42, "f": 36.6,
                            "j": JsonValue('{"a":[1]}'), "arr": JsonValue("[1,2]"), "pad": " 7",
                            "big": "99999999999999999999"}
    assert isinstance(group.values["l"], int) and isinstance(group.values["d"], float)


@pytest.mark.parametrize("payload", [b"not json", b'"a string"', b"42", b'{"ts":"x","values":{}}',
                                     b'{"ts":1,"values":[1]}', b'{"x":123456789012345678901234567890}',
                                     b"[1,2]", b'{"":1}', b"\xff\xfe"])
def test_bad_telemetry_is_refused_with_a_reason(payload):
    with pytest.raises(PayloadError):
        parse_telemetry(payload)


def test_attributes_and_attribute_requests():
    assert parse_attributes(b'{"fw":"1.0","n":3}') == {"fw": 1.0, "n": 3}
    with pytest.raises(PayloadError):
        parse_attributes(b"[1]")
    assert parse_attribute_request(b'{"clientKeys":"a, b","sharedKeys":"c"}') == AttributeRequest(("a", "b"), ("c",))
    assert parse_attribute_request(b"{}") == AttributeRequest(None, None)
    assert parse_attribute_request(b"") == AttributeRequest(None, None)
    with pytest.raises(PayloadError):
        parse_attribute_request(b'{"clientKeys":5}')


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda children: st.lists(children) | st.dictionaries(st.text(), children), max_leaves=20))
def test_any_json_either_parses_or_is_refused_cleanly(value):
    import json

    try:
        payload = json.dumps(value)
    except ValueError:
        return
    try:
        parse_telemetry(payload.encode())
    except PayloadError:
        pass
