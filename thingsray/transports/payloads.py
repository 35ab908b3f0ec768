"""ThingsBoard's JSON device payloads, parsed and typed the same way for every transport.

Value typing (spec 1.1): booleans stay BOOLEAN; integral numbers LONG; other numbers DOUBLE;
objects and arrays JSON; ``null`` dropped; numeric strings ("42", "36.6") become numbers, as
ThingsBoard's default type-cast does; other strings STRING. An integer beyond 64 bits is refused,
as ThingsBoard refuses it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from thingsray.kv import JsonValue, Value, to_json_value

__all__ = ["AttributeRequest", "JsonValue", "PayloadError", "TelemetryGroup", "Value", "attribute_request_from_query",
           "loads", "parse_attribute_request", "parse_attributes", "parse_telemetry", "telemetry_group",
           "to_json_value", "typed", "typed_values"]

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
_INTEGER = re.compile(r"^[+-]?\d+$")
_DECIMAL = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_LONG_DIGITS_TEXT = re.compile(r"[0-9]{19}")


class PayloadError(ValueError):
    """The payload is not what the topic or path takes; the text says what is wrong."""


@dataclass(frozen=True, slots=True)
class TelemetryGroup:
    """Data points sharing one timestamp; ``ts`` None means "server time when received"."""

    ts: int | None
    values: dict[str, Value]

    def __reduce__(self) -> tuple[Any, ...]:
        return TelemetryGroup, (self.ts, self.values)


@dataclass(frozen=True, slots=True)
class AttributeRequest:
    client_keys: tuple[str, ...] | None
    """None: every client attribute (when shared_keys is None too) or none."""
    shared_keys: tuple[str, ...] | None


def loads(payload: bytes | str) -> Any:
    """orjson (ten times faster) unless the payload has a run of 19+ digits: orjson turns integers
    beyond 64 bits into floats, and ThingsBoard refuses them; those payloads, and whatever orjson
    refuses, go to the standard parser, so what is accepted, and how, stays the standard one's."""
    long_digits = _LONG_DIGITS_TEXT if isinstance(payload, str) else _LONG_DIGITS
    if not long_digits.search(payload):
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"payload is not valid JSON: {exc}") from None


def typed(key: str, value: Any) -> Value | None:
    """The stored form of one value; None for a JSON null (dropped)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not LONG_MIN <= value <= LONG_MAX:
            raise PayloadError(f"value of '{key}' is an integer beyond 64 bits, which is not supported")
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise PayloadError(f"value of '{key}' is not a finite number")
        return value
    if isinstance(value, str):
        return _cast_string(value)
    if isinstance(value, dict | list):
        return JsonValue.of(value)
    raise PayloadError(f"value of '{key}' has an unsupported type")


def _cast_string(text: str) -> Value:
    stripped = text.strip()
    if stripped != text or not stripped:
        return text
    if _INTEGER.match(stripped):
        number = int(stripped)
        return number if LONG_MIN <= number <= LONG_MAX else text
    if _DECIMAL.match(stripped):
        as_float = float(stripped)
        if as_float not in (float("inf"), float("-inf")):
            return as_float
    return text


def typed_values(obj: dict[str, Any]) -> dict[str, Value]:
    """A decoded JSON object's values, typed (spec 1.1); nulls dropped."""
    out: dict[str, Value] = {}
    for key, raw in obj.items():
        if not isinstance(key, str) or not key:
            raise PayloadError("keys must be non-empty strings")
        if len(key) > 255:
            raise PayloadError(f"key '{key[:32]}...' is longer than 255 characters")
        value = typed(key, raw)
        if value is not None:
            out[key] = value
    return out


def telemetry_group(item: Any) -> TelemetryGroup:
    """One decoded telemetry item: ``{"ts", "values"}`` or a flat object."""
    if not isinstance(item, dict):
        raise PayloadError("telemetry must be a JSON object or an array of objects")
    if "ts" in item and "values" in item:
        ts = item["ts"]
        if isinstance(ts, str) and _INTEGER.match(ts):
            ts = int(ts)
        if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0 or ts > LONG_MAX:
            raise PayloadError("'ts' must be a non-negative integer of milliseconds")
        if not isinstance(item["values"], dict):
            raise PayloadError("'values' must be a JSON object")
        return TelemetryGroup(ts, typed_values(item["values"]))
    return TelemetryGroup(None, typed_values(item))


def parse_telemetry(payload: bytes | str) -> list[TelemetryGroup]:
    """``{"k":v}``, ``{"ts":ms,"values":{..}}``, or an array of these; empty groups are dropped."""
    data = loads(payload)
    items = data if isinstance(data, list) else [data]
    groups = [telemetry_group(item) for item in items]
    return [g for g in groups if g.values]


def parse_attributes(payload: bytes | str) -> dict[str, Value]:
    data = loads(payload)
    if not isinstance(data, dict):
        raise PayloadError("attributes must be a JSON object")
    return typed_values(data)


def _keys(value: Any, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(k.strip() for k in value.split(",") if k.strip())
    if isinstance(value, list) and all(isinstance(k, str) for k in value):
        return tuple(k.strip() for k in value if k.strip())
    raise PayloadError(f"'{name}' must be a comma-separated string of keys")


def parse_attribute_request(payload: bytes | str) -> AttributeRequest:
    """``{"clientKeys":"a,b","sharedKeys":"c"}``; an empty payload asks for everything."""
    if not payload or (isinstance(payload, bytes) and not payload.strip()):
        return AttributeRequest(None, None)
    data = loads(payload)
    if not isinstance(data, dict):
        raise PayloadError("an attribute request must be a JSON object")
    return AttributeRequest(_keys(data.get("clientKeys"), "clientKeys"), _keys(data.get("sharedKeys"), "sharedKeys"))


def attribute_request_from_query(client_keys: str | None, shared_keys: str | None) -> AttributeRequest:
    """The same request from HTTP or CoAP query parameters."""
    return AttributeRequest(_keys(client_keys, "clientKeys"), _keys(shared_keys, "sharedKeys"))
