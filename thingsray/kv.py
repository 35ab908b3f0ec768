"""Values of telemetry and attributes, shared by transports, actors and storage."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
