"""Values of telemetry and attributes, shared by transports, actors and storage."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class JsonValue:
    """A JSON object or array value, kept as its compact text."""

    text: str

    @classmethod
    def of(cls, value: Any) -> JsonValue:
        return cls(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


Value = bool | int | float | str | JsonValue


def to_json_value(value: Value) -> Any:
    """A stored value as it appears in JSON answers."""
    if isinstance(value, JsonValue):
        return json.loads(value.text)
    return value


def java_double(value: float) -> str:
    """A double as Java's ``Double.toString`` writes it (``25.0``, ``1.0E7``, ``1.5E-5``, ``NaN``):
    ThingsBoard's text for numbers in string answers, scripts and alarm details."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    if 1e-3 <= abs(value) < 1e7:
        text = repr(value)
        return text if ("." in text or "e" in text) else text + ".0"
    _, digits, exponent = Decimal(repr(abs(value))).as_tuple()
    shown = "".join(map(str, digits)).rstrip("0") or "0"
    power = len(digits) - 1 + int(exponent)
    return f"{'-' if value < 0 else ''}{shown[0]}.{shown[1:] or '0'}E{power}"


def value_text(value: Any) -> str:
    """A stored value as ThingsBoard writes it as text: ``true``/``false``, doubles as Java does,
    JSON as its text (its string answers of time series, alarm details, rule conditions)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, JsonValue):
        return value.text
    return str(value)
