"""The bridge configuration file: which brokers to subscribe to, and how each topic's messages
become a device's telemetry and attributes.

Each bridge's ``mapping`` follows ThingsBoard IoT Gateway's MQTT connector (``topicFilter``,
``subscriptionQos``, ``converter`` with ``deviceInfo``, ``timeseries``, ``attributes``), so a
gateway's ``mqtt.json`` mapping can be pasted in; its older ``deviceNameJsonExpression`` /
``deviceNameTopicExpression`` keys are read too. Every problem is a ``BridgeConfigError`` naming
the file and the field (``bridges[0].mapping[1].converter.type``).
"""

from __future__ import annotations

import enum
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from thingsray.config import ConfigError

__all__ = ["BridgeConfig", "BridgeConfigError", "Broker", "BrokerTls", "Converter", "ConverterType",
           "DeviceExpression", "ExpressionSource", "KeyMapping", "Mapping", "ValueType", "load_bridge_file",
           "parse_bridge", "parse_bridges"]

WILDCARD = "*"
"""A ``timeseries``/``attributes`` entry that takes every top-level key of a JSON message."""


class BridgeConfigError(ConfigError):
    """The bridge file cannot be used; the message names the file and the field."""


class ExpressionSource(enum.Enum):
    TOPIC = "topic"
    """A regular expression searched in the topic: its first group, or the whole match."""
    MESSAGE = "message"
    """``${path}`` into the JSON message (json), ``[from:to]`` bytes of the payload (bytes)."""
    CONSTANT = "constant"


class ConverterType(enum.Enum):
    JSON = "json"
    BYTES = "bytes"


class ValueType(enum.Enum):
    STRING = "string"
    DOUBLE = "double"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    JSON = "json"


_TYPE_NAMES = {"string": ValueType.STRING, "str": ValueType.STRING, "double": ValueType.DOUBLE,
               "float": ValueType.DOUBLE, "integer": ValueType.INTEGER, "int": ValueType.INTEGER,
               "long": ValueType.INTEGER, "boolean": ValueType.BOOLEAN, "bool": ValueType.BOOLEAN,
               "json": ValueType.JSON}


@dataclass(frozen=True, slots=True)
class DeviceExpression:
    source: ExpressionSource
    expression: str
    pattern: re.Pattern[str] | None = None
    """The compiled expression of a TOPIC source."""


@dataclass(frozen=True, slots=True)
class KeyMapping:
    """``{"type", "key", "value"}``; ``key`` WILDCARD takes every key of the message."""

    key: str
    value: str
    type: ValueType | None
    """None (no "type"): typed as ThingsBoard types device JSON (numbers, booleans, numeric strings)."""


@dataclass(frozen=True, slots=True)
class Converter:
    type: ConverterType
    device_name: DeviceExpression
    device_profile: DeviceExpression | None
    """None: the tenant's default profile."""
    timeseries: tuple[KeyMapping, ...]
    attributes: tuple[KeyMapping, ...]


@dataclass(frozen=True, slots=True)
class Mapping:
    topic_filter: str
    qos: int
    converter: Converter


@dataclass(frozen=True, slots=True)
class BrokerTls:
    ca_cert: str | None = None
    """None: the system's trusted CAs."""
    cert: str | None = None
    private_key: str | None = None
    insecure: bool = False
    """Skip verifying the broker's certificate and host name (tests, self-signed brokers)."""


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: BrokerTls | None = None
    clean_session: bool = False
    """False keeps the session on the broker, so messages not yet acknowledged (stored) are
    delivered again after a reconnect."""
    keepalive: int = 60


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    name: str
    tenant_id: uuid.UUID | None
    """None until ``tenant_title`` is resolved against the database."""
    tenant_title: str | None
    broker: Broker
    mappings: tuple[Mapping, ...]
    where: str = "bridge"
    """The file and entry it came from, for messages about it."""

    def with_tenant(self, tenant_id: uuid.UUID) -> BridgeConfig:
        return replace(self, tenant_id=tenant_id)


class _Fields:
    """One JSON object of the file and its path there; every accessor names the field it refuses."""

    def __init__(self, data: Any, path: str, origin: str) -> None:
        self.path = path
        self.origin = origin
        if not isinstance(data, dict):
            self.fail(f"must be a JSON object, got {_kind(data)}")
        self.data: dict[str, Any] = data

    def fail(self, problem: str, name: str | None = None) -> NoReturn:
        where = (f"{self.path}.{name}" if self.path else name) if name else self.path
        raise BridgeConfigError(f"{self.origin}: {where}: {problem}")

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def text(self, name: str, default: str | None = None, *, required: bool = False, empty: bool = False) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                self.fail("is required", name)
            return default
        if not isinstance(value, str):
            self.fail(f"must be a string, got {_kind(value)}", name)
        if not empty and not value.strip():
            self.fail("must not be empty", name)
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"must be a whole number, got {_kind(value)}", name)
        if not low <= value <= high:
            self.fail(f"must be between {low} and {high}, got {value}", name)
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            self.fail(f"must be true or false, got {_kind(value)}", name)
        return value

    def child(self, name: str) -> _Fields:
        return _Fields(self.data.get(name), f"{self.path}.{name}", self.origin)

    def children(self, name: str, *, required: bool = False) -> Iterator[tuple[int, Any]]:
        value = self.data.get(name)
        if value is None:
            if required:
                self.fail("is required", name)
            return iter(())
        if not isinstance(value, list):
            self.fail(f"must be a JSON array, got {_kind(value)}", name)
        return enumerate(value)

    def item(self, name: str, index: int, value: Any) -> _Fields:
        return _Fields(value, f"{self.path}.{name}[{index}]", self.origin)

    def choice(self, name: str, options: dict[str, Any], default: str | None = None) -> Any:
        raw = self.text(name, default, required=default is None)
        assert raw is not None
        found = options.get(raw.strip().lower())
        if found is None:
            self.fail(f"must be one of {', '.join(sorted(options))}, got {raw!r}", name)
        return found


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def load_bridge_file(path: str | Path) -> list[BridgeConfig]:
    """The bridges of a JSON file ``{"bridges": [{...}, ...]}``."""
    file = Path(path).expanduser()
    origin = f"bridge file {str(path)!r}"
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BridgeConfigError(f"{origin}: no such file (bridge_config, THINGSRAY_BRIDGE_CONFIG / "
                                "--bridge-config)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BridgeConfigError(f"{origin}: cannot be read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BridgeConfigError(f"{origin}: not valid JSON: {exc.msg} at line {exc.lineno} "
                                f"column {exc.colno}") from None
    return parse_bridges(data, origin)


def parse_bridges(data: Any, origin: str = "bridge file") -> list[BridgeConfig]:
    root = _Fields(data, "", origin)
    entries = list(root.children("bridges", required=True))
    if not entries:
        raise BridgeConfigError(f"{origin}: bridges: lists no bridge")
    bridges = [_bridge(_Fields(value, f"bridges[{index}]", origin), index) for index, value in entries]
    seen: dict[str, str] = {}
    brokers: dict[tuple[str, int, str], str] = {}
    for bridge in bridges:
        if bridge.name in seen:
            raise BridgeConfigError(f"{bridge.where}.name: {bridge.name!r} is also the name of {seen[bridge.name]}")
        seen[bridge.name] = bridge.where
        key = (bridge.broker.host, bridge.broker.port, bridge.broker.client_id)
        if key in brokers:  # a broker closes the older of two sessions with one client id
            raise BridgeConfigError(f"{bridge.where}.broker.clientId: {key[2]!r} is also used by "
                                    f"{brokers[key]} on the same broker")
        brokers[key] = bridge.where
    return bridges


def parse_bridge(data: Any, origin: str = "bridge", index: int = 0) -> BridgeConfig:
    """One bridge entry (what ``bridges`` lists), for code that builds bridges itself."""
    return _bridge(_Fields(data, "bridge", origin), index)


def _bridge(fields: _Fields, index: int) -> BridgeConfig:
    name = fields.text("name", f"bridge-{index}")
    assert name is not None
    tenant_id: uuid.UUID | None = None
    title = fields.text("tenant")
    raw_id = fields.text("tenantId")
    if raw_id is not None:
        try:
            tenant_id = uuid.UUID(raw_id.strip())
        except ValueError:
            fields.fail(f"must be a UUID, got {raw_id!r}", "tenantId")
    if (tenant_id is None) == (title is None):
        fields.fail("name the tenant with either \"tenantId\" (its id) or \"tenant\" (its title)")
    broker = _broker(fields.child("broker"), name)
    section = "mapping" if fields.has("mapping") or not fields.has("dataMapping") else "dataMapping"
    mappings = tuple(_mapping(fields.item(section, i, value)) for i, value in fields.children(section, required=True))
    if not mappings:
        fields.fail("lists no mapping: the bridge would subscribe to nothing", section)
    return BridgeConfig(name.strip(), tenant_id, title.strip() if title else None, broker, mappings,
                        f"{fields.origin}: {fields.path}")


def _broker(fields: _Fields, bridge_name: str) -> Broker:
    host = fields.text("host", required=True)
    assert host is not None
    port = fields.integer("port", 1883, 1, 65535)
    username = fields.text("username")
    password = fields.text("password", empty=True)
    tls: BrokerTls | None = None
    if fields.has("security"):  # the gateway's {"type": "anonymous" | "basic" | "certificates", ...}
        security = fields.child("security")
        kind = security.choice("type", {"anonymous": "anonymous", "basic": "basic", "certificates": "certificates"},
                               "anonymous")
        if kind == "basic":
            username = security.text("username", required=True)
            password = security.text("password", empty=True)
        elif kind == "certificates":
            tls = _tls(security)
    raw_tls = fields.data.get("tls")
    if raw_tls is True:
        tls = tls or BrokerTls()
    elif isinstance(raw_tls, dict):
        tls = _tls(fields.child("tls"))
    elif raw_tls not in (None, False):
        fields.fail(f"must be true, false or an object, got {_kind(raw_tls)}", "tls")
    if password is not None and username is None:
        fields.fail("a password needs a username", "password")
    client_id = fields.text("clientId", f"thingsray-bridge-{bridge_name}")
    assert client_id is not None
    return Broker(host.strip(), port, client_id, username, password, tls, fields.boolean("cleanSession", False),
                  fields.integer("keepalive", 60, 5, 65535))


def _tls(fields: _Fields) -> BrokerTls:
    files: dict[str, str | None] = {}
    for name in ("caCert", "cert", "privateKey"):
        path = fields.text(name)
        if path is not None and not Path(path).expanduser().is_file():
            fields.fail(f"no such file {path!r}", name)
        files[name] = path
    if bool(files["cert"]) != bool(files["privateKey"]):
        fields.fail("a client certificate needs its key (cert and privateKey)", "cert" if not files["cert"] else
                    "privateKey")
    return BrokerTls(files["caCert"], files["cert"], files["privateKey"], fields.boolean("insecure", False))


_LEVEL = re.compile(r"^[^+#]*$")


def _topic_filter(fields: _Fields) -> str:
    topic = fields.text("topicFilter", required=True)
    assert topic is not None
    levels = topic.split("/")
    for position, level in enumerate(levels):
        if level in ("+", "#") or _LEVEL.match(level):
            if level == "#" and position != len(levels) - 1:
                fields.fail(f"'#' must be the last level, got {topic!r}", "topicFilter")
            continue
        fields.fail(f"'+' and '#' must fill a whole level, got {topic!r}", "topicFilter")
    return topic


def _mapping(fields: _Fields) -> Mapping:
    topic = _topic_filter(fields)
    qos = fields.integer("subscriptionQos", 1, 0, 2)
    if qos == 2:  # paho sends PUBREC on receipt: the broker would consider the message delivered before it is stored
        fields.fail("must be 0 or 1: a QoS 2 message is acknowledged to the broker before it is stored",
                    "subscriptionQos")
    return Mapping(topic, qos, _converter(fields.child("converter")))


def _converter(fields: _Fields) -> Converter:
    kind = fields.choice("type", {"json": ConverterType.JSON, "bytes": ConverterType.BYTES}, "json")
    if fields.has("deviceInfo"):
        info = fields.child("deviceInfo")
    else:  # the gateway's older keys, as its backward compatibility adapter reads them
        info = _Fields(_legacy_device_info(fields.data), f"{fields.path}.deviceInfo", fields.origin)
        if "deviceNameExpression" not in info.data:
            fields.fail("is required (with deviceNameExpressionSource and deviceNameExpression)", "deviceInfo")
    name = _expression(info, "deviceName", kind, required=True)
    assert name is not None
    profile = _expression(info, "deviceProfile", kind, required=False)
    timeseries, attributes = _key_mappings(fields, "timeseries", kind), _key_mappings(fields, "attributes", kind)
    if not timeseries and not attributes:
        fields.fail("maps no timeseries and no attributes: add entries {\"type\", \"key\", \"value\"}", "timeseries")
    return Converter(kind, name, profile, timeseries, attributes)


def _legacy_device_info(converter: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for target, json_key, topic_key in (("deviceName", "deviceNameJsonExpression", "deviceNameTopicExpression"),
                                        ("deviceProfile", "deviceTypeJsonExpression", "deviceTypeTopicExpression")):
        if converter.get(json_key) is not None:
            info[f"{target}ExpressionSource"], info[f"{target}Expression"] = "message", converter[json_key]
        elif converter.get(topic_key) is not None:
            info[f"{target}ExpressionSource"], info[f"{target}Expression"] = "topic", converter[topic_key]
    if converter.get("deviceNameExpression") is not None:  # the older bytes converter
        info["deviceNameExpressionSource"], info["deviceNameExpression"] = "message", converter["deviceNameExpression"]
    if converter.get("deviceTypeExpression") is not None:
        info["deviceProfileExpressionSource"] = "message"
        info["deviceProfileExpression"] = converter["deviceTypeExpression"]
    return info


_SOURCES = {source.value: source for source in ExpressionSource}


def _expression(info: _Fields, what: str, kind: ConverterType, *, required: bool) -> DeviceExpression | None:
    expression = info.text(f"{what}Expression", required=required)
    if expression is None:
        return None
    source = info.choice(f"{what}ExpressionSource", _SOURCES, "message" if required else "constant")
    pattern = None
    if source is ExpressionSource.TOPIC:
        try:
            pattern = re.compile(expression)
        except re.error as exc:
            info.fail(f"not a valid regular expression: {exc}", f"{what}Expression")
    elif source is ExpressionSource.MESSAGE:
        _check_template(info, f"{what}Expression", expression, kind)
    return DeviceExpression(source, expression, pattern)


def _key_mappings(converter: _Fields, section: str, kind: ConverterType) -> tuple[KeyMapping, ...]:
    """The gateway writes "every key" as the entry "*"; ``{"key": "*", "type": ..}`` casts them all."""
    found = []
    for index, value in converter.children(section):
        if value == WILDCARD:
            value = {"key": WILDCARD}
        found.append(_key_mapping(converter.item(section, index, value), kind))
    return tuple(found)


def _key_mapping(fields: _Fields, kind: ConverterType) -> KeyMapping:
    key = fields.text("key", required=True)
    assert key is not None
    value_type = fields.choice("type", _TYPE_NAMES) if fields.has("type") else None
    if key == WILDCARD:
        if kind is not ConverterType.JSON:
            fields.fail("'*' (every key of the message) needs the json converter", "key")
        return KeyMapping(WILDCARD, "", value_type)
    value = fields.text("value", required=True, empty=True)
    assert value is not None
    _check_template(fields, "value", value, kind)
    _check_template(fields, "key", key, kind)
    return KeyMapping(key, value, value_type)


_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_SLICE = re.compile(r"\[(-?\d+)?(:)?(-?\d+)?\]")


def _check_template(fields: _Fields, name: str, text: str, kind: ConverterType) -> None:
    if kind is ConverterType.JSON:
        if "${" in text and not _PLACEHOLDER.search(text):
            fields.fail(f"'${{' without its closing '}}' in {text!r}", name)
        for match in _PLACEHOLDER.finditer(text):
            if not match.group(1).strip():
                fields.fail(f"an empty ${{}} in {text!r}: write ${{path}}, e.g. ${{sensor.temperature}}", name)
    else:
        for match in _SLICE.finditer(text):
            if match.group(1) is None and match.group(2) is None:
                fields.fail(f"an empty [] in {text!r}: write [from:to] or [index]", name)
