"""ThingsBoard's SNMP transport configurations (spec 1.4), parsed, checked and written back.

A device profile with transport type SNMP carries ``SnmpProfileConfig`` (what to poll and set,
how long to wait); each of its devices carries ``SnmpDeviceConfig`` (where the agent is and how to
speak to it). ``*.from_json`` refuses what ThingsBoard refuses, with an ``SnmpConfigError`` that names
the field; ``to_json`` is the configuration as ThingsBoard returns it (unknown fields dropped,
defaults filled in).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AuthenticationProtocol", "CommunicationSpec", "DataType", "PrivacyProtocol", "SnmpCommunicationConfig",
           "SnmpConfigError", "SnmpDeviceConfig", "SnmpMapping", "SnmpMethod", "SnmpProfileConfig",
           "SnmpProtocolVersion", "oid_tuple"]

_OID = re.compile(r"^\.?([0-2])((\.0)|(\.[1-9][0-9]*))*$")
"""ThingsBoard's SnmpMapping OID pattern: numeric, dot-separated, no leading zeros."""


class SnmpConfigError(ValueError):
    """A transport configuration ThingsBoard would refuse; the text names the field and the fault."""


class SnmpProtocolVersion(enum.Enum):
    V1 = "V1"
    V2C = "V2C"
    V3 = "V3"


class AuthenticationProtocol(enum.Enum):
    """ThingsBoard's names of the SNMPv3 USM authentication protocols."""

    SHA_1 = "SHA_1"
    SHA_224 = "SHA_224"
    SHA_256 = "SHA_256"
    SHA_384 = "SHA_384"
    SHA_512 = "SHA_512"
    MD5 = "MD5"


class PrivacyProtocol(enum.Enum):
    """ThingsBoard's names of the SNMPv3 USM privacy protocols (AES_192/256 extend the key as
    SNMP4J does, Blumenthal's draft)."""

    DES = "DES"
    AES_128 = "AES_128"
    AES_192 = "AES_192"
    AES_256 = "AES_256"


class CommunicationSpec(enum.Enum):
    TELEMETRY_QUERYING = "TELEMETRY_QUERYING"
    CLIENT_ATTRIBUTES_QUERYING = "CLIENT_ATTRIBUTES_QUERYING"
    SHARED_ATTRIBUTES_SETTING = "SHARED_ATTRIBUTES_SETTING"
    TO_DEVICE_RPC_REQUEST = "TO_DEVICE_RPC_REQUEST"
    TO_SERVER_RPC_REQUEST = "TO_SERVER_RPC_REQUEST"

    @property
    def repeating(self) -> bool:
        """Polled every ``queryingFrequencyMs`` with a GET."""
        return self in (CommunicationSpec.TELEMETRY_QUERYING, CommunicationSpec.CLIENT_ATTRIBUTES_QUERYING)


class DataType(enum.Enum):
    LONG = "LONG"
    DOUBLE = "DOUBLE"
    STRING = "STRING"
    BOOLEAN = "BOOLEAN"
    JSON = "JSON"


class SnmpMethod(enum.Enum):
    """What a TO_DEVICE_RPC_REQUEST's ``method`` names."""

    GET = "GET"
    SET = "SET"


def oid_tuple(oid: str) -> tuple[int, ...]:
    """The numbers of a checked OID text (a leading dot is allowed, as in ThingsBoard)."""
    return tuple(int(part) for part in oid.lstrip(".").split("."))


def _enum(kind: type[enum.Enum], value: Any, where: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(member.value for member in kind)
        raise SnmpConfigError(f"{where} must be one of {names}, got {value!r}") from None


def _int(data: Mapping[str, Any], name: str, where: str, *, minimum: int, default: int | None = None) -> int:
    value = data.get(name, default)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        value = int(value)  # Jackson takes a numeric string for an Integer
    if value is None:
        raise SnmpConfigError(f"{where}{name} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise SnmpConfigError(f"{where}{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise SnmpConfigError(f"{where}{name} must be at least {minimum}, got {value}")
    return value


def _text(data: Mapping[str, Any], name: str, where: str, *, default: str | None = None) -> str | None:
    value = data.get(name, default)
    if value is not None and not isinstance(value, str):
        raise SnmpConfigError(f"{where}{name} must be a string, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class SnmpMapping:
    """One OID and the key its value is stored under (or set from)."""

    oid: str
    key: str
    data_type: DataType

    @property
    def numbers(self) -> tuple[int, ...]:
        return oid_tuple(self.oid)

    @classmethod
    def from_json(cls, data: Any, where: str) -> SnmpMapping:
        if not isinstance(data, Mapping):
            raise SnmpConfigError(f"{where} must be an object with oid, key and dataType")
        oid = _text(data, "oid", where + ".")
        if not oid or not _OID.match(oid):
            raise SnmpConfigError(f"{where}.oid must be a numeric OID such as 1.3.6.1.2.1.1.3.0, got {oid!r}")
        key = _text(data, "key", where + ".")
        if not key or not key.strip():
            raise SnmpConfigError(f"{where}.key must not be blank")
        if data.get("dataType") is None:
            raise SnmpConfigError(f"{where}.dataType is required")
        return cls(oid, key, _enum(DataType, data["dataType"], f"{where}.dataType"))

    def to_json(self) -> dict[str, Any]:
        return {"oid": self.oid, "key": self.key, "dataType": self.data_type.value}


@dataclass(frozen=True, slots=True)
class SnmpCommunicationConfig:
    """What to do with a set of mappings; ``querying_frequency_ms`` only for the repeating specs."""

    spec: CommunicationSpec
    mappings: tuple[SnmpMapping, ...]
    querying_frequency_ms: int | None = None

    def mapping_for_key(self, key: str) -> SnmpMapping | None:
        return next((m for m in self.mappings if m.key == key), None)

    @classmethod
    def from_json(cls, data: Any, where: str) -> SnmpCommunicationConfig:
        if not isinstance(data, Mapping):
            raise SnmpConfigError(f"{where} must be an object with a spec and mappings")
        if data.get("spec") is None:
            raise SnmpConfigError(f"{where}.spec is required")
        spec = _enum(CommunicationSpec, data["spec"], f"{where}.spec")
        raw = data.get("mappings")
        if not isinstance(raw, list) or not raw:
            raise SnmpConfigError(f"{where}.mappings must be a non-empty list")
        mappings = tuple(SnmpMapping.from_json(m, f"{where}.mappings[{i}]") for i, m in enumerate(raw))
        frequency = _int(data, "queryingFrequencyMs", where + ".", minimum=1) if spec.repeating else None
        return cls(spec, mappings, frequency)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"spec": self.spec.value}
        if self.spec.repeating:
            out["queryingFrequencyMs"] = self.querying_frequency_ms
        out["mappings"] = [m.to_json() for m in self.mappings]
        return out


@dataclass(frozen=True, slots=True)
class SnmpProfileConfig:
    """A device profile's ``profileData.transportConfiguration`` of type SNMP."""

    timeout_ms: int
    retries: int
    communication_configs: tuple[SnmpCommunicationConfig, ...]

    def first(self, spec: CommunicationSpec) -> SnmpCommunicationConfig | None:
        """The config of that spec ThingsBoard uses for setting attributes and RPC (its first one)."""
        return next((c for c in self.communication_configs if c.spec is spec), None)

    @property
    def repeating(self) -> tuple[SnmpCommunicationConfig, ...]:
        return tuple(c for c in self.communication_configs if c.spec.repeating)

    @classmethod
    def from_json(cls, data: Any) -> SnmpProfileConfig:
        if not isinstance(data, Mapping):
            raise SnmpConfigError("the transport configuration must be a JSON object")
        if data.get("type", "SNMP") != "SNMP":
            raise SnmpConfigError(f"type must be SNMP, got {data.get('type')!r}")
        timeout_ms = _int(data, "timeoutMs", "", minimum=0)
        retries = _int(data, "retries", "", minimum=0)
        raw = data.get("communicationConfigs")
        if not isinstance(raw, list):
            raise SnmpConfigError("communicationConfigs must be a list")
        configs = tuple(SnmpCommunicationConfig.from_json(c, f"communicationConfigs[{i}]") for i, c in enumerate(raw))
        return cls(timeout_ms, retries, configs)

    def to_json(self) -> dict[str, Any]:
        return {"type": "SNMP", "timeoutMs": self.timeout_ms, "retries": self.retries,
                "communicationConfigs": [c.to_json() for c in self.communication_configs]}


@dataclass(frozen=True, slots=True)
class SnmpDeviceConfig:
    """A device's ``deviceData.transportConfiguration`` of type SNMP. ``engine_id`` is hex text
    (the agent's authoritative engine id; empty: discovered)."""

    host: str = "localhost"
    port: int = 161
    protocol_version: SnmpProtocolVersion = SnmpProtocolVersion.V2C
    community: str | None = "public"
    username: str | None = None
    security_name: str | None = None
    context_name: str | None = None
    authentication_protocol: AuthenticationProtocol | None = None
    authentication_passphrase: str | None = None
    privacy_protocol: PrivacyProtocol | None = None
    privacy_passphrase: str | None = None
    engine_id: str | None = None

    def __repr__(self) -> str:  # passphrases stay out of logs
        return (f"SnmpDeviceConfig(host={self.host!r}, port={self.port}, "
                f"protocol_version={self.protocol_version.value})")

    @classmethod
    def from_json(cls, data: Any) -> SnmpDeviceConfig:
        """Missing fields take ThingsBoard's defaults (localhost:161, V2C, "public"); a field sent as
        null stays null, and is refused where the version needs it."""
        if not isinstance(data, Mapping):
            raise SnmpConfigError("the transport configuration must be a JSON object")
        if data.get("type", "SNMP") != "SNMP":
            raise SnmpConfigError(f"type must be SNMP, got {data.get('type')!r}")
        host = _text(data, "host", "", default="localhost")
        if not host or not host.strip():
            raise SnmpConfigError("host must not be blank")
        port = _int(data, "port", "", minimum=1, default=161)
        if port > 65535:
            raise SnmpConfigError(f"port must be at most 65535, got {port}")
        if data.get("protocolVersion", "V2C") is None:
            raise SnmpConfigError("protocolVersion is required")
        version = _enum(SnmpProtocolVersion, data.get("protocolVersion", "V2C"), "protocolVersion")
        texts = {name: _text(data, name, "") for name in ("username", "securityName", "contextName",
                                                           "authenticationPassphrase", "privacyPassphrase",
                                                           "engineId")}
        community = _text(data, "community", "", default="public")
        auth = data.get("authenticationProtocol")
        privacy = data.get("privacyProtocol")
        config = cls(
            host=host, port=port, protocol_version=version, community=community, username=texts["username"],
            security_name=texts["securityName"], context_name=texts["contextName"],
            authentication_protocol=None if auth is None else _enum(AuthenticationProtocol, auth,
                                                                    "authenticationProtocol"),
            authentication_passphrase=texts["authenticationPassphrase"],
            privacy_protocol=None if privacy is None else _enum(PrivacyProtocol, privacy, "privacyProtocol"),
            privacy_passphrase=texts["privacyPassphrase"], engine_id=texts["engineId"])
        config._check()
        return config

    def _check(self) -> None:
        if self.protocol_version is not SnmpProtocolVersion.V3:
            if not self.community:
                raise SnmpConfigError(f"community must not be empty for SNMP {self.protocol_version.value}")
            return
        for field, value in (("username", self.username), ("securityName", self.security_name),
                             ("authenticationPassphrase", self.authentication_passphrase),
                             ("privacyPassphrase", self.privacy_passphrase)):
            if not value or not value.strip():
                raise SnmpConfigError(f"{field} must not be blank for SNMP V3")
        for field, value in (("contextName", self.context_name), ("engineId", self.engine_id),
                             ("authenticationProtocol", self.authentication_protocol),
                             ("privacyProtocol", self.privacy_protocol)):
            if value is None:
                raise SnmpConfigError(f"{field} is required for SNMP V3")
        engine = (self.engine_id or "").replace(":", "")
        if engine and (len(engine) % 2 or not re.fullmatch(r"[0-9a-fA-F]+", engine)):
            raise SnmpConfigError(f"engineId must be hexadecimal (the agent's engine id), got {self.engine_id!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "SNMP", "host": self.host, "port": self.port, "protocolVersion": self.protocol_version.value,
            "community": self.community, "username": self.username, "securityName": self.security_name,
            "contextName": self.context_name,
            "authenticationProtocol": self.authentication_protocol.value if self.authentication_protocol else None,
            "authenticationPassphrase": self.authentication_passphrase,
            "privacyProtocol": self.privacy_protocol.value if self.privacy_protocol else None,
            "privacyPassphrase": self.privacy_passphrase, "engineId": self.engine_id}
