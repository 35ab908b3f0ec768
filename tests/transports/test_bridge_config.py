"""The bridge file and its mappings without a broker: what a gateway user's configuration means,
and how a bad one is refused, naming the file and the field."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from thingsray.config import ConfigError
from thingsray.transports.bridge import BridgeConfigError, convert, load_bridge_file, parse_bridges, topic_matches
from thingsray.transports.bridge.config import ConverterType, ExpressionSource, ValueType
from thingsray.transports.bridge.convert import cast, lookup
from thingsray.transports.payloads import JsonValue, PayloadError, TelemetryGroup

TENANT = "8a1bc5a0-0d4e-11ee-9d2f-1b2c3d4e5f60"


def valid() -> dict[str, Any]:
    return {"bridges": [{
        "name": "plant", "tenantId": TENANT,
        "broker": {"host": "broker.local", "port": 1884, "username": "u", "password": "p"},
        "mapping": [{
            "topicFilter": "sensors/+/data",
            "converter": {
                "type": "json",
                "deviceInfo": {"deviceNameExpressionSource": "topic", "deviceNameExpression": "sensors/([^/]+)/data",
                               "deviceProfileExpressionSource": "message", "deviceProfileExpression": "${kind}"},
                "timeseries": [{"type": "double", "key": "temperature", "value": "${values.t}"}],
                "attributes": [{"type": "string", "key": "model", "value": "${model}"}]}}]}]}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "bridges.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_a_gateway_style_file_is_read_with_its_defaults(tmp_path: Path):
    [bridge] = load_bridge_file(write(tmp_path, valid()))
    assert bridge.name == "plant" and bridge.tenant_id == uuid.UUID(TENANT) and bridge.tenant_title is None
    broker = bridge.broker
    assert (broker.host, broker.port, broker.username, broker.password) == ("broker.local", 1884, "u", "p")
    assert broker.client_id == "thingsray-bridge-plant" and broker.clean_session is False and broker.tls is None
    [mapping] = bridge.mappings
    assert mapping.topic_filter == "sensors/+/data" and mapping.qos == 1  # QoS 1 unless asked otherwise
    converter = mapping.converter
    assert converter.type is ConverterType.JSON
    assert converter.device_name.source is ExpressionSource.TOPIC
    assert converter.device_profile is not None and converter.device_profile.source is ExpressionSource.MESSAGE
    assert converter.timeseries[0].type is ValueType.DOUBLE
    assert str(tmp_path / "bridges.json") in bridge.where and "bridges[0]" in bridge.where


def test_the_gateways_older_keys_and_sections_are_read_too():
    data = {"bridges": [{"tenant": "Tenant", "broker": {"host": "h", "security": {
        "type": "basic", "username": "user", "password": "secret"}}, "dataMapping": [
        {"topicFilter": "/sensor/data", "converter": {
            "type": "json", "deviceNameJsonExpression": "${serialNumber}", "deviceTypeJsonExpression": "${sensorType}",
            "timeseries": ["*"]}},
        {"topicFilter": "/sensor/+/data", "converter": {
            "deviceNameTopicExpression": "(?<=sensor/)(.*?)(?=/data)", "deviceTypeTopicExpression": "Thermometer",
            "timeseries": [{"type": "double", "key": "temperature", "value": "${temp}"}]}}]}]}
    [bridge] = parse_bridges(data)
    assert bridge.tenant_id is None and bridge.tenant_title == "Tenant"
    assert (bridge.broker.username, bridge.broker.password) == ("user", "secret")
    first, second = bridge.mappings
    assert first.converter.device_name.source is ExpressionSource.MESSAGE
    assert first.converter.timeseries[0].key == "*" and first.converter.timeseries[0].type is None
    assert second.converter.device_name.source is ExpressionSource.TOPIC
    [device] = convert(second.converter, "/sensor/SN-7/data", b'{"temp": 3}')
    assert (device.device_name, device.device_type) == ("SN-7", "Thermometer")  # the gateway's whole-match regex
    [device] = convert(first.converter, "/sensor/data", b'{"serialNumber": "A", "sensorType": "T", "t": "5"}')
    assert device.telemetry == (TelemetryGroup(None, {"serialNumber": "A", "sensorType": "T", "t": 5}),)


def edit(path: str, value: Any) -> dict[str, Any]:
    """``valid()`` with the value at a dotted path replaced (``...`` deletes it)."""
    data = copy.deepcopy(valid())
    target: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    last = parts[-1]
    if value is ...:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return data


MAP = "bridges.0.mapping.0"
CONV = f"{MAP}.converter"


@pytest.mark.parametrize(("path", "value", "field", "problem"), [
    ("bridges", ..., "bridges", "is required"),
    ("bridges", [], "bridges", "lists no bridge"),
    ("bridges.0.tenantId", ..., "bridges[0]", "tenantId"),
    ("bridges.0.tenantId", "not-a-uuid", "bridges[0].tenantId", "must be a UUID"),
    ("bridges.0.broker", ..., "bridges[0].broker", "must be a JSON object"),
    ("bridges.0.broker.host", ..., "bridges[0].broker.host", "is required"),
    ("bridges.0.broker.port", 70000, "bridges[0].broker.port", "between 1 and 65535"),
    ("bridges.0.broker.port", "1883", "bridges[0].broker.port", "whole number"),
    ("bridges.0.broker.tls", {"caCert": "/nowhere/ca.pem"}, "bridges[0].broker.tls.caCert", "no such file"),
    ("bridges.0.broker.cleanSession", "yes", "bridges[0].broker.cleanSession", "true or false"),
    ("bridges.0.mapping", ..., "bridges[0].mapping", "is required"),
    ("bridges.0.mapping", [], "bridges[0].mapping", "subscribe to nothing"),
    (f"{MAP}.topicFilter", "sensors/#/data", "bridges[0].mapping[0].topicFilter", "'#' must be the last level"),
    (f"{MAP}.topicFilter", "sensors/a+/data", "bridges[0].mapping[0].topicFilter", "whole level"),
    (f"{MAP}.subscriptionQos", 2, "bridges[0].mapping[0].subscriptionQos", "must be 0 or 1"),
    (f"{CONV}.type", "xml", "bridges[0].mapping[0].converter.type", "must be one of bytes, json"),
    (f"{CONV}.deviceInfo", ..., "bridges[0].mapping[0].converter.deviceInfo", "is required"),
    (f"{CONV}.deviceInfo.deviceNameExpressionSource", "payload",
     "bridges[0].mapping[0].converter.deviceInfo.deviceNameExpressionSource", "one of constant, message, topic"),
    (f"{CONV}.deviceInfo.deviceNameExpression", "sensors/(", "converter.deviceInfo.deviceNameExpression",
     "not a valid regular expression"),
    (f"{CONV}.deviceInfo.deviceProfileExpression", "${}", "converter.deviceInfo.deviceProfileExpression", "empty ${}"),
    (f"{CONV}.timeseries.0.type", "decimal", "converter.timeseries[0].type", "must be one of"),
    (f"{CONV}.timeseries.0.value", ..., "converter.timeseries[0].value", "is required"),
    (f"{CONV}.timeseries.0.value", "${values.t", "converter.timeseries[0].value", "without its closing"),
    (f"{CONV}.attributes.0", "model", "converter.attributes[0]", "must be a JSON object"),
])
def test_a_bad_file_is_refused_naming_the_file_and_the_field(tmp_path: Path, path, value, field, problem):
    file = write(tmp_path, edit(path, value))
    with pytest.raises(BridgeConfigError) as refused:
        load_bridge_file(file)
    message = str(refused.value)
    assert str(file) in message and field in message and problem in message, message
    assert isinstance(refused.value, ConfigError)  # what `thingsray up` reports and exits 2 for


def test_a_mapping_without_values_and_duplicate_bridges_are_refused():
    data = edit(f"{CONV}.attributes", ...)
    data["bridges"][0]["mapping"][0]["converter"]["timeseries"] = []
    with pytest.raises(BridgeConfigError, match=r"converter.timeseries: maps no timeseries and no attributes"):
        parse_bridges(data)
    twice = valid()
    twice["bridges"].append(copy.deepcopy(twice["bridges"][0]))
    with pytest.raises(BridgeConfigError, match=r"bridges\[1\].name: 'plant' is also the name of"):
        parse_bridges(twice)
    twice["bridges"][1]["name"] = "other"
    twice["bridges"][1]["broker"]["clientId"] = "thingsray-bridge-plant"
    with pytest.raises(BridgeConfigError, match=r"bridges\[1\].broker.clientId: .* same broker"):
        parse_bridges(twice)


@pytest.mark.parametrize(("text", "problem"), [("{", "not valid JSON"), ("[]", "must be a JSON object")])
def test_a_file_that_is_not_a_json_object_is_refused(tmp_path: Path, text, problem):
    with pytest.raises(BridgeConfigError, match=problem):
        load_bridge_file(write(tmp_path, text))
    with pytest.raises(BridgeConfigError, match="no such file"):
        load_bridge_file(tmp_path / "missing.json")


@pytest.mark.parametrize(("topic_filter", "topic", "matches"), [
    ("a/+/c", "a/b/c", True), ("a/+/c", "a/b/d", False), ("a/+", "a/b/c", False), ("a/#", "a", True),
    ("a/#", "a/b/c", True), ("#", "x/y", True), ("#", "$SYS/broker", False), ("+/b", "/b", True),
    ("a/b", "a/b", True), ("a/b", "a/b/", False)])
def test_topic_filters_match_as_mqtt_says(topic_filter, topic, matches):
    assert topic_matches(topic_filter, topic) is matches


def test_paths_reach_into_objects_and_arrays():
    data = {"a": {"b": [{"c": 1}, {"c": 2}]}, "x.y": 3, "n": None}
    assert lookup(data, "a.b[1].c") == 2
    assert lookup(data, "x.y") == 3  # a key holding the whole path wins
    assert lookup(data, "a.b") == [{"c": 1}, {"c": 2}]
    for missing in ("a.z", "a.b[5].c", "n", "a..b", "a.b.c"):
        assert lookup(data, missing).__class__.__name__ == "_Missing", missing


@pytest.mark.parametrize(("raw", "value_type", "expected"), [
    ("21.5", ValueType.DOUBLE, 21.5), (3, ValueType.DOUBLE, 3.0), ("7", ValueType.INTEGER, 7),
    (7.9, ValueType.INTEGER, 7), ("-7.9", ValueType.INTEGER, -7), ("On", ValueType.BOOLEAN, True),
    (0, ValueType.BOOLEAN, False), ("false", ValueType.BOOLEAN, False), (12, ValueType.STRING, "12"),
    (True, ValueType.STRING, "true"), ({"a": 1}, ValueType.STRING, '{"a":1}'),
    ({"a": [1]}, ValueType.JSON, JsonValue('{"a":[1]}')), ('{"b":2}', ValueType.JSON, JsonValue('{"b":2}'))])
def test_values_take_their_mappings_type(raw, value_type, expected):
    value = cast("k", raw, value_type)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(("raw", "value_type"), [
    ("abc", ValueType.DOUBLE), (True, ValueType.DOUBLE), ("nan", ValueType.DOUBLE), ("1e400", ValueType.INTEGER),
    (2**70, ValueType.INTEGER), ("maybe", ValueType.BOOLEAN), ([1], ValueType.INTEGER)])
def test_a_value_that_cannot_take_its_type_is_an_error_naming_the_key(raw, value_type):
    with pytest.raises(PayloadError, match="'k'"):
        cast("k", raw, value_type)


def test_text_around_placeholders_makes_a_string_and_a_missing_path_leaves_the_key_out():
    [bridge] = parse_bridges(edit(f"{CONV}.timeseries", [
        {"type": "string", "key": "label", "value": "${values.t} C at ${where}"},
        {"type": "double", "key": "t", "value": "${values.t}"},
        {"type": "string", "key": "${values.name}", "value": "${values.t}"}]))
    converter = bridge.mappings[0].converter
    [device] = convert(converter, "sensors/S1/data", b'{"values": {"t": 20.5}, "model": "M"}')
    assert device.device_name == "S1" and device.device_type is None  # ${kind} absent: the default profile
    assert device.telemetry == (TelemetryGroup(None, {"t": 20.5}),)  # label and the named key need what is absent
    assert device.attributes == {"model": "M"}
    [device] = convert(converter, "sensors/S1/data",
                       b'{"values": {"t": 1, "name": "probe"}, "where": "hall", "kind": "K", "ts": "1700000000000"}')
    assert device.device_type == "K"
    assert device.telemetry == (TelemetryGroup(1_700_000_000_000, {"label": "1 C at hall", "t": 1.0, "probe": "1"}),)


@pytest.mark.parametrize(("payload", "problem"), [
    (b"\xff\xfe", "not valid JSON"), (b"[]", "empty JSON array"), (b"42", "takes a JSON object"),
    (b'{"values": {"t": 1}, "ts": -5}', "'ts' must be a non-negative integer"),
    (b'{"model": null, "values": {}}', "no timeseries and no attributes")])
def test_a_message_that_gives_nothing_says_why(payload, problem):
    [bridge] = parse_bridges(valid())
    with pytest.raises(PayloadError, match=problem):
        convert(bridge.mappings[0].converter, "sensors/S1/data", payload)
    with pytest.raises(PayloadError, match="no device name"):
        convert(bridge.mappings[0].converter, "elsewhere/S1", b'{"values": {"t": 1}}')
