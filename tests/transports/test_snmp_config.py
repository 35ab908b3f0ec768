"""The SNMP transport configurations: what ThingsBoard accepts, refuses, and returns."""

from __future__ import annotations

import pytest

from thingsray.transports.snmp import (
    AuthenticationProtocol,
    CommunicationSpec,
    DataType,
    PrivacyProtocol,
    SnmpConfigError,
    SnmpDeviceConfig,
    SnmpProfileConfig,
    SnmpProtocolVersion,
)
from thingsray.transports.snmp.values import ValueTypeError, to_snmp, typed_value

PROFILE = {
    "type": "SNMP", "timeoutMs": 500, "retries": 1,
    "communicationConfigs": [
        {"spec": "TELEMETRY_QUERYING", "queryingFrequencyMs": 5000,
         "mappings": [{"oid": "1.3.6.1.2.1.1.3.0", "key": "uptime", "dataType": "LONG"}]},
        {"spec": "SHARED_ATTRIBUTES_SETTING", "mappings": [{"oid": ".1.3.6.1.2.1.1.5.0", "key": "name",
                                                            "dataType": "STRING"}]},
        {"spec": "TO_DEVICE_RPC_REQUEST", "mappings": [{"oid": "1.3.6.1.2.1.1.6.0", "key": "location",
                                                        "dataType": "STRING", "extra": "dropped"}]},
    ],
}


def test_a_profile_configuration_is_returned_as_thingsboard_writes_it() -> None:
    config = SnmpProfileConfig.from_json(PROFILE)
    assert config.timeout_ms == 500 and config.retries == 1
    assert [c.spec for c in config.communication_configs] == [CommunicationSpec.TELEMETRY_QUERYING,
                                                               CommunicationSpec.SHARED_ATTRIBUTES_SETTING,
                                                               CommunicationSpec.TO_DEVICE_RPC_REQUEST]
    assert config.repeating[0].querying_frequency_ms == 5000
    assert config.first(CommunicationSpec.SHARED_ATTRIBUTES_SETTING).mappings[0].numbers == (1, 3, 6, 1, 2, 1, 1, 5, 0)
    written = config.to_json()
    assert written["communicationConfigs"][2]["mappings"] == [{"oid": "1.3.6.1.2.1.1.6.0", "key": "location",
                                                               "dataType": "STRING"}]
    assert "queryingFrequencyMs" not in written["communicationConfigs"][1]
    assert SnmpProfileConfig.from_json(written) == config


@pytest.mark.parametrize(("change", "complaint"), [
    ({"timeoutMs": None}, "timeoutMs is required"),
    ({"retries": -1}, "retries must be at least 0"),
    ({"communicationConfigs": None}, "communicationConfigs must be a list"),
    ({"communicationConfigs": [{"spec": "TRAPS", "mappings": []}]}, "communicationConfigs[0].spec must be one of"),
    ({"communicationConfigs": [{"spec": "TELEMETRY_QUERYING", "mappings": [
        {"oid": "1.3.6.1", "key": "a", "dataType": "LONG"}]}]}, "communicationConfigs[0].queryingFrequencyMs is"),
    ({"communicationConfigs": [{"spec": "TELEMETRY_QUERYING", "queryingFrequencyMs": 0, "mappings": [
        {"oid": "1.3.6.1", "key": "a", "dataType": "LONG"}]}]}, "queryingFrequencyMs must be at least 1"),
    ({"communicationConfigs": [{"spec": "CLIENT_ATTRIBUTES_QUERYING", "queryingFrequencyMs": 10,
                                "mappings": []}]}, "mappings must be a non-empty list"),
    ({"communicationConfigs": [{"spec": "SHARED_ATTRIBUTES_SETTING", "mappings": [
        {"oid": "1.3.06.1", "key": "a", "dataType": "LONG"}]}]}, "mappings[0].oid must be a numeric OID"),
    ({"communicationConfigs": [{"spec": "SHARED_ATTRIBUTES_SETTING", "mappings": [
        {"oid": "1.3.6.1", "key": " ", "dataType": "LONG"}]}]}, "mappings[0].key must not be blank"),
    ({"communicationConfigs": [{"spec": "SHARED_ATTRIBUTES_SETTING", "mappings": [
        {"oid": "1.3.6.1", "key": "a", "dataType": "INTEGER"}]}]}, "mappings[0].dataType must be one of"),
])
def test_an_invalid_profile_configuration_is_refused_naming_the_field(change: dict, complaint: str) -> None:
    with pytest.raises(SnmpConfigError) as raised:
        SnmpProfileConfig.from_json({**PROFILE, **change})
    assert complaint in str(raised.value)


def test_a_device_configuration_takes_thingsboards_defaults() -> None:
    config = SnmpDeviceConfig.from_json({"type": "SNMP"})
    assert (config.host, config.port, config.protocol_version, config.community) == (
        "localhost", 161, SnmpProtocolVersion.V2C, "public")
    assert config.to_json() == {
        "type": "SNMP", "host": "localhost", "port": 161, "protocolVersion": "V2C", "community": "public",
        "username": None, "securityName": None, "contextName": None, "authenticationProtocol": None,
        "authenticationPassphrase": None, "privacyProtocol": None, "privacyPassphrase": None, "engineId": None}


def test_a_v3_device_configuration_needs_its_usm_fields() -> None:
    v3 = {"type": "SNMP", "host": "10.0.0.5", "port": "1161", "protocolVersion": "V3", "username": "tb",
          "securityName": "tb", "contextName": "", "authenticationProtocol": "SHA_256",
          "authenticationPassphrase": "authpass1", "privacyProtocol": "AES_256", "privacyPassphrase": "privpass1",
          "engineId": "80001f8880"}
    config = SnmpDeviceConfig.from_json(v3)
    assert config.port == 1161
    assert config.authentication_protocol is AuthenticationProtocol.SHA_256
    assert config.privacy_protocol is PrivacyProtocol.AES_256
    assert "authpass1" not in repr(config)
    for field, complaint in (("username", "username must not be blank"), ("engineId", "engineId is required"),
                             ("privacyProtocol", "privacyProtocol is required")):
        with pytest.raises(SnmpConfigError, match=complaint):
            SnmpDeviceConfig.from_json({**v3, field: None})
    with pytest.raises(SnmpConfigError, match="engineId must be hexadecimal"):
        SnmpDeviceConfig.from_json({**v3, "engineId": "not hex"})
    with pytest.raises(SnmpConfigError, match="authenticationProtocol must be one of"):
        SnmpDeviceConfig.from_json({**v3, "authenticationProtocol": "SHA"})


@pytest.mark.parametrize(("data", "complaint"), [
    ({"host": " "}, "host must not be blank"),
    ({"host": None}, "host must not be blank"),
    ({"port": 70000}, "port must be at most 65535"),
    ({"port": "x"}, "port must be a whole number"),
    ({"protocolVersion": "V2"}, "protocolVersion must be one of V1, V2C, V3"),
    ({"protocolVersion": "V1", "community": ""}, "community must not be empty"),
    ({"type": "MQTT"}, "type must be SNMP"),
])
def test_an_invalid_device_configuration_is_refused(data: dict, complaint: str) -> None:
    with pytest.raises(SnmpConfigError, match=complaint):
        SnmpDeviceConfig.from_json({"type": "SNMP", **data})


@pytest.mark.parametrize(("text", "data_type", "value"), [
    ("42", DataType.LONG, 42), ("-7", DataType.LONG, -7), ("42.0", DataType.LONG, 42),
    ("36.6", DataType.DOUBLE, 36.6), ("36,6", DataType.DOUBLE, 36.6), ("5", DataType.DOUBLE, 5.0),
    ("TRUE", DataType.BOOLEAN, True), ("false", DataType.BOOLEAN, False),
    ("hello", DataType.STRING, "hello"), ("17", DataType.STRING, 17),
])
def test_values_are_typed_by_their_mapping(text: str, data_type: DataType, value: object) -> None:
    typed = typed_value("k", text, data_type)
    assert typed == value and type(typed) is type(value)


@pytest.mark.parametrize(("text", "data_type"), [
    ("36.6", DataType.LONG), ("abc", DataType.LONG), ("abc", DataType.DOUBLE), ("1", DataType.BOOLEAN),
    ("plain", DataType.JSON), ("99999999999999999999", DataType.LONG),
])
def test_a_value_of_another_type_is_refused(text: str, data_type: DataType) -> None:
    with pytest.raises(ValueTypeError):
        typed_value("k", text, data_type)


def test_set_values_are_integers_for_long_mappings_and_strings_otherwise() -> None:
    assert int(to_snmp("42", DataType.LONG)) == 42
    assert bytes(to_snmp("4294967296", DataType.LONG)) == b"4294967296"  # beyond Integer32: a string
    assert bytes(to_snmp("42", DataType.STRING)) == b"42"
