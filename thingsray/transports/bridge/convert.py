"""From one broker message to what a mapping makes of it: a device name and profile, telemetry
and attributes, as ThingsBoard IoT Gateway's MQTT uplink converters ("json", "bytes") do.

Differences from the gateway, each on purpose: a device name that cannot be found (a topic
regex that does not match, a ``${path}`` the message lacks) refuses the message instead of
naming the device after the expression itself (a profile's topic regex that does not match still
names the profile so, as the gateway's examples rely on); a topic regex with a group names the device by
its first group (the gateway takes the whole match, which its look-around examples make the
same); values are typed strictly ("double" refuses "abc" instead of passing it on), and a value
that cannot take its type is left out and reported. The "bytes" converter's ``[from:to]`` and
``[index]`` take the payload's bytes decoded as UTF-8 text (the gateway joins the byte values' numbers).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from thingsray.transports.bridge.config import (
    WILDCARD,
    Converter,
    ConverterType,
    DeviceExpression,
    ExpressionSource,
    KeyMapping,
    ValueType,
)
from thingsray.transports.payloads import (
    LONG_MAX,
    LONG_MIN,
    JsonValue,
    PayloadError,
    TelemetryGroup,
    Value,
    loads,
    typed,
)

__all__ = ["DeviceData", "convert", "topic_matches"]

_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_SLICE = re.compile(r"\[(-?\d+)?(:)?(-?\d+)?\]")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_TIMESTAMP_KEYS = ("ts", "timestamp")


class _Missing:
    """A path the message does not have (JSON null counts as missing, as ThingsBoard drops nulls)."""


MISSING = _Missing()


@dataclass(frozen=True, slots=True)
class DeviceData:
    """What one mapping made of one message for one device."""

    device_name: str
    device_type: str | None
    """None: the tenant's default profile."""
    telemetry: tuple[TelemetryGroup, ...] = ()
    attributes: dict[str, Value] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    """Why values were left out ("'temp': not a number: 'abc'")."""


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT's matching: ``+`` one level, ``#`` the rest (the parent included); ``$`` topics only
    by a filter that names their first level."""
    if topic.startswith("$") and not topic_filter.startswith("$"):
        return False
    wanted, levels = topic_filter.split("/"), topic.split("/")
    for index, part in enumerate(wanted):
        if part == "#":
            return True
        if index >= len(levels) or (part != "+" and part != levels[index]):
            return False
    return len(wanted) == len(levels)


def convert(converter: Converter, topic: str, payload: bytes) -> list[DeviceData]:
    """Raises ``PayloadError`` saying why the message gives nothing (not JSON, no device name,
    no values)."""
    if converter.type is ConverterType.BYTES:
        return [_convert_bytes(converter, topic, payload)]
    data = loads(payload)
    items = data if isinstance(data, list) else [data]
    if not items:
        raise PayloadError("the message is an empty JSON array")
    return [_convert_json(converter, topic, item) for item in items]


# --- json ----------------------------------------------------------------------------------------
def _convert_json(converter: Converter, topic: str, item: Any) -> DeviceData:
    if not isinstance(item, dict):
        raise PayloadError(f"the json converter takes a JSON object (or an array of them), got {type(item).__name__}")
    name = _device_text(converter.device_name, topic, lambda text: _render(text, item))
    if not name:
        raise PayloadError(f"no device name: {converter.device_name.source.value} expression "
                           f"{converter.device_name.expression!r} found nothing")
    profile = None
    if converter.device_profile is not None:
        profile = _device_text(converter.device_profile, topic, lambda text: _render(text, item), literal=True) or None
    ts, ts_key = _timestamp(item)
    skipped: list[str] = []
    values = _json_values(converter.timeseries, item, skipped, exclude=ts_key)
    attributes = _json_values(converter.attributes, item, skipped, exclude=ts_key)
    return _result(name, profile, ts, values, attributes, skipped)


def _timestamp(item: dict[str, Any]) -> tuple[int | None, str | None]:
    """The gateway's ``ts`` (or ``timestamp``) of the message, in milliseconds."""
    for key in _TIMESTAMP_KEYS:
        raw = item.get(key)
        if raw is None:
            continue
        if isinstance(raw, str) and raw.strip().isdigit():
            raw = int(raw.strip())
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= LONG_MAX:
            raise PayloadError(f"'{key}' must be a non-negative integer of milliseconds, got {raw!r}")
        return raw, key
    return None, None


def _json_values(mappings: tuple[KeyMapping, ...], item: dict[str, Any], skipped: list[str],
                 exclude: str | None) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for mapping in mappings:
        if mapping.key == WILDCARD:
            for key, raw in item.items():
                if key != exclude and isinstance(key, str) and key:
                    _put(out, key, raw, mapping.type, skipped)
            continue
        key = _render(mapping.key, item)
        raw = _resolve(mapping.value, item)
        if isinstance(key, _Missing) or isinstance(raw, _Missing):
            continue  # the message does not carry it: the gateway leaves it out too
        _put(out, str(key), raw, mapping.type, skipped)
    return out


def _resolve(template: str, item: Any) -> Any:
    """``${a.b}`` alone is the value itself (any JSON type); text around or between
    placeholders makes a string; no placeholder is a constant."""
    only = _PLACEHOLDER.fullmatch(template)
    if only is not None:
        return lookup(item, only.group(1).strip())
    return _render(template, item)


def _render(template: str, item: Any) -> str | _Missing:
    parts: list[str] = []
    last = 0
    for match in _PLACEHOLDER.finditer(template):
        value = lookup(item, match.group(1).strip())
        if isinstance(value, _Missing):
            return MISSING
        parts += [template[last:match.start()], _text(value)]
        last = match.end()
    parts.append(template[last:])
    return "".join(parts)


def lookup(item: Any, path: str) -> Any:
    """``a.b[0].c`` into a JSON value; a key that holds the whole path (dots and all) wins."""
    if isinstance(item, dict) and path in item:
        return MISSING if item[path] is None else item[path]
    current = item
    position = 0
    for match in _PATH_PART.finditer(path):
        between = path[position:match.start()]
        if between not in ("", "."):
            return MISSING
        position = match.end()
        name, index = match.groups()
        if name is not None and isinstance(current, dict) and name in current:
            current = current[name]
        elif index is not None and isinstance(current, list) and int(index) < len(current):
            current = current[int(index)]
        else:
            return MISSING
    if position != len(path) or current is None:
        return MISSING
    return current


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


# --- bytes ---------------------------------------------------------------------------------------
def _convert_bytes(converter: Converter, topic: str, payload: bytes) -> DeviceData:
    name = _device_text(converter.device_name, topic, lambda text: _slices(text, payload))
    if not name:
        raise PayloadError(f"no device name: {converter.device_name.source.value} expression "
                           f"{converter.device_name.expression!r} found nothing")
    profile = None
    if converter.device_profile is not None:
        profile = _device_text(converter.device_profile, topic, lambda text: _slices(text, payload),
                               literal=True) or None
    skipped: list[str] = []
    sections = []
    for mappings in (converter.timeseries, converter.attributes):
        out: dict[str, Value] = {}
        for mapping in mappings:
            key, raw = _slices(mapping.key, payload), _slices(mapping.value, payload)
            if isinstance(key, _Missing) or isinstance(raw, _Missing) or not key:
                continue
            _put(out, key, raw, mapping.type, skipped)
        sections.append(out)
    return _result(name, profile, None, sections[0], sections[1], skipped)


def _slices(template: str, payload: bytes) -> str | _Missing:
    """``[from:to]`` and ``[index]`` of the payload's bytes, decoded as UTF-8, in place."""
    parts: list[str] = []
    last = 0
    for match in _SLICE.finditer(template):
        start, colon, end = match.groups()
        if colon:
            chunk = payload[int(start) if start else None:int(end) if end else None]
        else:
            index = int(start)
            if not -len(payload) <= index < len(payload):
                return MISSING
            chunk = bytes([payload[index]])
        parts += [template[last:match.start()], chunk.decode("utf-8", errors="replace")]
        last = match.end()
    parts.append(template[last:])
    return "".join(parts)


# --- shared --------------------------------------------------------------------------------------
def _device_text(expression: DeviceExpression, topic: str, from_message: Any, *, literal: bool = False) -> str | None:
    """``literal``: a topic regex that does not match means the expression itself (the gateway's
    ``"deviceTypeTopicExpression": "Thermometer"`` names a profile so)."""
    if expression.source is ExpressionSource.CONSTANT:
        text: Any = expression.expression
    elif expression.source is ExpressionSource.TOPIC:
        assert expression.pattern is not None
        found = expression.pattern.search(topic)
        if found is None:
            return expression.expression.strip() if literal else None
        groups = [g for g in found.groups() if g]
        text = groups[0] if groups else found.group(0)
    else:
        text = from_message(expression.expression)
    if isinstance(text, _Missing):
        return None
    text = text.strip()
    return text if text and len(text) <= 255 else None


def _result(name: str, profile: str | None, ts: int | None, values: dict[str, Value],
            attributes: dict[str, Value], skipped: list[str]) -> DeviceData:
    if not values and not attributes:
        why = f" ({'; '.join(skipped)})" if skipped else ""
        raise PayloadError(f"no timeseries and no attributes for device {name!r} in the message{why}")
    telemetry = (TelemetryGroup(ts, values),) if values else ()
    return DeviceData(name, profile, telemetry, attributes, tuple(skipped))


def _put(out: dict[str, Value], key: str, raw: Any, value_type: ValueType | None, skipped: list[str]) -> None:
    if len(key) > 255:
        skipped.append(f"'{key[:32]}...': a key is at most 255 characters")
        return
    try:
        value = typed(key, raw) if value_type is None else cast(key, raw, value_type)
    except PayloadError as exc:
        skipped.append(str(exc))
        return
    if value is not None:
        out[key] = value


def cast(key: str, raw: Any, value_type: ValueType) -> Value:
    """``raw`` as the mapping's ``type`` says; ``PayloadError`` when it cannot be."""
    match value_type:
        case ValueType.STRING:
            return _text(raw)
        case ValueType.DOUBLE:
            number = _number(key, raw, float)
            if not math.isfinite(number):
                raise PayloadError(f"value of '{key}' is not a finite number: {raw!r}")
            return float(number)
        case ValueType.INTEGER:
            number = _number(key, raw, int)
            if isinstance(number, float):
                if not math.isfinite(number):
                    raise PayloadError(f"value of '{key}' is not a finite number: {raw!r}")
                number = int(number)  # the gateway's int(float(x)): toward zero
            if not LONG_MIN <= number <= LONG_MAX:
                raise PayloadError(f"value of '{key}' is an integer beyond 64 bits: {raw!r}")
            return number
        case ValueType.BOOLEAN:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, int | float):
                return raw != 0
            if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
                return raw.strip().lower() in _TRUE
            raise PayloadError(f"value of '{key}' is not a boolean: {raw!r}")
        case ValueType.JSON:
            if isinstance(raw, str):
                try:
                    raw = json.loads(raw)
                except ValueError:
                    pass
            return JsonValue.of(raw)
    raise AssertionError(value_type)


def _number(key: str, raw: Any, kind: type) -> int | float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise PayloadError(f"value of '{key}' is not a number: {raw!r}")
    if isinstance(raw, str):
        text = raw.strip()
        try:
            return int(text) if kind is int and re.fullmatch(r"[+-]?\d+", text) else float(text)
        except ValueError:
            raise PayloadError(f"value of '{key}' is not a number: {raw!r}") from None
    return raw
