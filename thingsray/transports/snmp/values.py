"""SNMP values to ThingsBoard values and back.

An agent's answer is first turned into text as SNMP4J's ``toValueString`` does (what ThingsBoard
types), with two changes a user relies on: TimeTicks are their number of hundredths (SNMP4J writes
"1 day, 2:03:04.05", which no LONG mapping could read), and valid UTF-8 text stays text (SNMP4J
shows any byte above 0x7f as hex). The text is then typed by the mapping's ``dataType``; a value that
is not of that type is refused (``ValueTypeError``) rather than stored as something else.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pyasn1.type import univ
from pysnmp.proto import rfc1902, rfc1905

from thingsray.kv import JsonValue, Value, value_text
from thingsray.transports.payloads import LONG_MAX, LONG_MIN, typed
from thingsray.transports.snmp.config import DataType

__all__ = ["MISSING_VALUES", "ValueTypeError", "missing_reason", "set_text", "snmp_text", "to_snmp", "typed_value"]

MISSING_VALUES: dict[type, str] = {rfc1905.NoSuchObject: "noSuchObject", rfc1905.NoSuchInstance: "noSuchInstance",
                                   rfc1905.EndOfMibView: "endOfMibView"}
"""The SNMPv2 exception values an agent answers in place of a value, and their names."""

_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class ValueTypeError(ValueError):
    """The agent's value is not of the mapping's dataType."""


def missing_reason(value: Any) -> str | None:
    """Why a response holds no value for an OID (an exception value or NULL), else None."""
    for kind, name in MISSING_VALUES.items():
        if isinstance(value, kind):
            return name
    if isinstance(value, univ.Null):
        return "null"
    return None


def _octets_text(octets: bytes) -> str:
    try:
        text = octets.decode("utf-8")
    except UnicodeDecodeError:
        return ":".join(f"{b:02x}" for b in octets)
    if any((ord(c) < 0x20 and c not in "\t\n\r") or ord(c) == 0x7F for c in text):
        return ":".join(f"{b:02x}" for b in octets)
    return text


def snmp_text(value: Any) -> str:
    """The text of a value the agent answered (never an exception value: see ``missing_reason``)."""
    if isinstance(value, rfc1902.IpAddress):
        return value.prettyPrint()
    if isinstance(value, rfc1902.Opaque | rfc1902.Bits):
        return ":".join(f"{b:02x}" for b in value.asOctets())
    if isinstance(value, univ.OctetString):
        return _octets_text(value.asOctets())
    if isinstance(value, univ.ObjectIdentifier):
        return ".".join(str(n) for n in value)
    if isinstance(value, univ.Integer):
        return str(int(value))
    return str(value.prettyPrint())


def _number(text: str, key: str, data_type: DataType) -> float | int:
    stripped = text.strip()
    if not _NUMBER.match(stripped):
        raise ValueTypeError(f"'{text}' of '{key}' is not a number ({data_type.value} mapping)")
    stripped = stripped.replace(",", ".")
    if data_type is DataType.DOUBLE:
        number = float(stripped)
        if not math.isfinite(number):
            raise ValueTypeError(f"'{text}' of '{key}' is not a finite number")
        return number
    if re.fullmatch(r"[+-]?\d+", stripped):
        whole = int(stripped)
    else:
        as_float = float(stripped)
        if not math.isfinite(as_float) or not as_float.is_integer():
            raise ValueTypeError(f"'{text}' of '{key}' is not a whole number (LONG mapping)")
        whole = int(as_float)
    if not LONG_MIN <= whole <= LONG_MAX:
        raise ValueTypeError(f"'{text}' of '{key}' does not fit in 64 bits (LONG mapping)")
    return whole


def typed_value(key: str, text: str, data_type: DataType) -> Value:
    """The value stored for ``text`` under a mapping of ``data_type``. STRING takes ThingsBoard's
    type cast of JSON payloads (a numeric string is stored as a number), as its SNMP transport does."""
    if data_type is DataType.LONG or data_type is DataType.DOUBLE:
        return _number(text, key, data_type)
    if data_type is DataType.BOOLEAN:
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueTypeError(f"'{text}' of '{key}' is not true or false (BOOLEAN mapping)")
        return lowered == "true"
    if data_type is DataType.JSON:
        try:
            parsed = json.loads(text)
        except ValueError:
            raise ValueTypeError(f"'{text[:64]}' of '{key}' is not JSON (JSON mapping)") from None
        if not isinstance(parsed, dict | list):
            raise ValueTypeError(f"'{text[:64]}' of '{key}' is not a JSON object or array (JSON mapping)")
        return JsonValue.of(parsed)
    value = typed(key, text)
    return text if value is None else value


def set_text(value: Any) -> str:
    """The text ThingsBoard sets for an attribute or RPC value (a JSON primitive's text, else its JSON)."""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, JsonValue):
        return value.text
    return value_text(value)


def to_snmp(text: str, data_type: DataType | None) -> Any:
    """The SNMP value ThingsBoard sends in a SET: an Integer32 for a LONG mapping whose text is a
    32-bit integer, an OCTET STRING of the text for everything else."""
    if data_type is DataType.LONG and re.fullmatch(r"[+-]?\d+", text.strip()):
        number = int(text)
        if _INT32_MIN <= number <= _INT32_MAX:
            return rfc1902.Integer32(number)
    return rfc1902.OctetString(text.encode("utf-8"))
