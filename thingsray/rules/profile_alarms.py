"""Device profile alarm rules (ThingsBoard's ``profileData.alarms[]``): the model, parsed and
checked once, and values converted as ThingsBoard converts them.

``parse_alarms`` turns a profile's alarms into frozen definitions, or raises ``AlarmRulesError``
naming the alarm, the rule, the key filter and what is wrong (the REST save refuses such a
profile). Their evaluation per (device, alarm rule) is in ``rules/profile_eval.py``.
"""

from __future__ import annotations

import json
import math
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from thingsray.kv import JsonValue, Value, value_text
from thingsray.storage.alarms import SEVERITIES

KEY_TYPES = ("TIME_SERIES", "ATTRIBUTE", "ENTITY_FIELD", "CONSTANT")
VALUE_TYPES = ("STRING", "NUMERIC", "BOOLEAN", "DATE_TIME")
OPERATIONS: Mapping[str, tuple[str, ...]] = {
    "NUMERIC": ("EQUAL", "NOT_EQUAL", "GREATER", "LESS", "GREATER_OR_EQUAL", "LESS_OR_EQUAL"),
    "STRING": ("EQUAL", "NOT_EQUAL", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "NOT_CONTAINS", "IN", "NOT_IN"),
    "BOOLEAN": ("EQUAL", "NOT_EQUAL"),
    "COMPLEX": ("AND", "OR"),
}
SOURCE_TYPES = ("CURRENT_DEVICE", "CURRENT_CUSTOMER", "CURRENT_TENANT", "CURRENT_USER")
"""CURRENT_USER is valid in ThingsBoard's model, but no user exists where alarm rules run: it never resolves."""
SPEC_TYPES = ("SIMPLE", "DURATION", "REPEATING")
SCHEDULE_TYPES = ("ANY_TIME", "SPECIFIC_TIME", "CUSTOM")
TIME_UNITS: Mapping[str, tuple[int, int]] = {
    "NANOSECONDS": (1, 1_000_000), "MICROSECONDS": (1, 1_000), "MILLISECONDS": (1, 1), "SECONDS": (1_000, 1),
    "MINUTES": (60_000, 1), "HOURS": (3_600_000, 1), "DAYS": (86_400_000, 1)}
"""Java TimeUnit -> (multiply, divide) to milliseconds."""
ENTITY_FIELDS = ("name", "type", "createdTime", "label")
"""The device fields an ENTITY_FIELD key reads; others never have a value, as in ThingsBoard."""
DAY_MS = 86_400_000
LONG_MAX = (1 << 63) - 1

Key = tuple[str, str]
"""(TIME_SERIES | ATTRIBUTE | ENTITY_FIELD | CONSTANT, key name)."""
Lookup = Mapping[tuple[str, str], Value]
"""(CURRENT_CUSTOMER | CURRENT_TENANT, attribute) -> the server attribute's value, for dynamic values."""


class AlarmRulesError(ValueError):
    """A profile's alarm rules are unusable; the message says which alarm, where, and why."""


class AlarmEvaluationError(RuntimeError):
    """Data made a rule impossible to evaluate (a dynamic duration that is not a number)."""


# --- the model ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Dynamic:
    source: str
    attribute: str
    inherit: bool = False


@dataclass(frozen=True, slots=True)
class Operand:
    """ThingsBoard's FilterPredicateValue: a default, optionally replaced by an attribute's value."""

    default: Any
    dynamic: Dynamic | None = None


@dataclass(frozen=True, slots=True)
class Simple:
    kind: str
    """NUMERIC, STRING or BOOLEAN."""
    operation: str
    value: Operand
    ignore_case: bool = False


@dataclass(frozen=True, slots=True)
class Complex:
    operation: str
    """AND or OR."""
    predicates: tuple[Simple | Complex, ...]


Predicate = Simple | Complex


@dataclass(frozen=True, slots=True)
class Filter:
    key: Key
    value_type: str | None
    constant: Any
    """The filter's own ``value``: what a CONSTANT key compares."""
    predicate: Predicate


@dataclass(frozen=True, slots=True)
class Spec:
    type: str
    unit: str = "MILLISECONDS"
    amount: Operand | None = None
    """DURATION: how long (in ``unit``); REPEATING: how many messages in a row."""


@dataclass(frozen=True, slots=True)
class Window:
    day: int
    """ISO day of the week, 1 (Monday) to 7."""
    enabled: bool
    starts_on: int
    ends_on: int
    """Milliseconds from the start of the day; 0 means the end of the day."""


@dataclass(frozen=True, slots=True)
class Schedule:
    type: str
    zone: zoneinfo.ZoneInfo | None = None
    days: frozenset[int] = frozenset()
    starts_on: int = 0
    ends_on: int = 0
    items: tuple[Window, ...] = ()
    dynamic: Dynamic | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    severity: str | None
    """None for a clear rule."""
    filters: tuple[Filter, ...]
    spec: Spec
    schedule: Schedule | None
    details: str | None
    dashboard_id: str | None
    keys: frozenset[Key]
    """The keys whose change makes the rule worth evaluating: its filters' and its dynamic values'."""


@dataclass(frozen=True, slots=True)
class AlarmDefinition:
    id: str
    """The rule's ``id`` (its ``alarmType`` when it has none): progress is kept under it."""
    alarm_type: str
    create: tuple[Rule, ...]
    """Most severe first."""
    clear: Rule | None
    propagate: bool = False
    propagate_to_owner: bool = False
    propagate_to_tenant: bool = False
    relation_types: tuple[str, ...] = ()


# --- parsing ----------------------------------------------------------------------------------------
class _Where:
    """Builds error messages that say where in the profile a problem is."""

    def __init__(self, alarm: str, place: str = "") -> None:
        self.alarm, self.place = alarm, place

    def at(self, place: str) -> _Where:
        return _Where(self.alarm, f"{self.place}, {place}" if self.place else place)

    def error(self, problem: str) -> AlarmRulesError:
        where = f": {self.place}" if self.place else ""
        return AlarmRulesError(f"Alarm rule '{self.alarm}'{where}: {problem}")


def _obj(value: Any, where: _Where, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(f"{what} must be a JSON object, got {json.dumps(value)[:80]}")
    return value


def _choice(value: Any, choices: Iterable[str], where: _Where, what: str) -> str:
    options = tuple(choices)
    if value not in options:
        raise where.error(f"{what} {json.dumps(value)[:80]} is not one of {', '.join(options)}")
    return value


def _flag(value: Any, where: _Where, what: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise where.error(f"{what} must be true or false, got {json.dumps(value)[:80]}")


def _integer(value: Any, where: _Where, what: str, *, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise where.error(f"{what} must be a whole number, got {json.dumps(value)[:80]}")
    try:
        number = int(value) if not isinstance(value, float) else (int(value) if value.is_integer() else None)
    except ValueError:
        number = None
    if number is None or not -LONG_MAX - 1 <= number <= LONG_MAX:
        raise where.error(f"{what} must be a whole number, got {json.dumps(value)[:80]}")
    return number


def parse_alarms(profile_data: Any) -> tuple[AlarmDefinition, ...]:
    """The alarm rules of a profile's ``profileData``; AlarmRulesError when one is unusable."""
    if not isinstance(profile_data, dict):
        return ()
    alarms = profile_data.get("alarms")
    if alarms is None:
        return ()
    if not isinstance(alarms, list):
        raise AlarmRulesError("Device profile 'alarms' must be a list of alarm rules")
    found: list[AlarmDefinition] = []
    types: set[str] = set()
    for index, alarm in enumerate(alarms, 1):
        if not isinstance(alarm, dict):
            raise AlarmRulesError(f"Alarm rule {index} must be a JSON object")
        alarm_type = alarm.get("alarmType")
        if not isinstance(alarm_type, str) or not alarm_type.strip():
            raise AlarmRulesError("Alarm rule type should be specified!")
        if alarm_type in types:
            raise AlarmRulesError(f'Can\'t create device profile with the same alarm rule types: "{alarm_type}"!')
        types.add(alarm_type)
        found.append(_alarm(alarm, alarm_type))
    return tuple(found)


def _alarm(alarm: dict[str, Any], alarm_type: str) -> AlarmDefinition:
    where = _Where(alarm_type)
    alarm_id = alarm.get("id")
    if alarm_id is not None and not isinstance(alarm_id, str):
        raise where.error(f"'id' must be a string, got {json.dumps(alarm_id)[:80]}")
    rules = alarm.get("createRules") or {}
    _obj(rules, where, "'createRules'")
    create = []
    for severity, rule in rules.items():
        _choice(severity, SEVERITIES, where, "create rule severity")
        create.append(_rule(rule, severity, where.at(f"create rule {severity}")))
    create.sort(key=lambda r: SEVERITIES.index(r.severity or ""))
    clear = alarm.get("clearRule")
    relation_types = alarm.get("propagateRelationTypes") or []
    if not isinstance(relation_types, list) or not all(isinstance(t, str) for t in relation_types):
        raise where.error("'propagateRelationTypes' must be a list of relation types")
    return AlarmDefinition(
        alarm_id or alarm_type, alarm_type, tuple(create),
        None if clear is None else _rule(clear, None, where.at("clear rule")),
        _flag(alarm.get("propagate"), where, "'propagate'"),
        _flag(alarm.get("propagateToOwner"), where, "'propagateToOwner'"),
        _flag(alarm.get("propagateToTenant"), where, "'propagateToTenant'"), tuple(relation_types))


def _rule(rule: Any, severity: str | None, where: _Where) -> Rule:
    _obj(rule, where, "the rule")
    condition = _obj(rule.get("condition"), where, "'condition'")
    filters_json = condition.get("condition") or []
    if not isinstance(filters_json, list):
        raise where.error("'condition.condition' must be a list of key filters")
    filters = tuple(_filter(f, where.at(f"key filter {i}")) for i, f in enumerate(filters_json, 1))
    spec = _spec(condition.get("spec"), where.at("condition spec"))
    schedule = None if rule.get("schedule") is None else _schedule(rule["schedule"], where.at("schedule"))
    details = rule.get("alarmDetails")
    if details is not None and not isinstance(details, str):
        raise where.error("'alarmDetails' must be a string")
    dashboard = rule.get("dashboardId")
    dashboard_id = None
    if dashboard is not None:
        dashboard_id = dashboard.get("id") if isinstance(dashboard, dict) else dashboard
        if not isinstance(dashboard_id, str):
            raise where.error("'dashboardId' must be a dashboard id")
    keys: set[Key] = set()
    for f in filters:
        keys.add(f.key)
        keys.update(("ATTRIBUTE", d.attribute) for d in _dynamics(f.predicate) if d.source != "CURRENT_USER")
    return Rule(severity, filters, spec, schedule, details or None, dashboard_id, frozenset(keys))


def _filter(value: Any, where: _Where) -> Filter:
    _obj(value, where, "a key filter")
    key = _obj(value.get("key"), where, "'key'")
    key_type = _choice(key.get("type"), KEY_TYPES, where, "key type")
    name = key.get("key")
    if not isinstance(name, str) or not name:
        raise where.error("'key.key' must be a non-empty key name")
    where = _Where(where.alarm, f"{where.place} ({name})")
    value_type = value.get("valueType")
    if value_type is not None or key_type == "CONSTANT":
        _choice(value_type, VALUE_TYPES, where, "value type")
    predicate = _predicate(value.get("predicate"), where.at("predicate"))
    return Filter((key_type, name), value_type, value.get("value"), predicate)


def _predicate(value: Any, where: _Where) -> Predicate:
    _obj(value, where, "the predicate")
    kind = _choice(value.get("type"), OPERATIONS, where, "predicate type")
    operation = _choice(value.get("operation"), OPERATIONS[kind], where, f"{kind} operation")
    if kind == "COMPLEX":
        parts = value.get("predicates") or []
        if not isinstance(parts, list):
            raise where.error("'predicates' of a COMPLEX predicate must be a list")
        return Complex(operation, tuple(_predicate(p, where.at(f"predicate {i}")) for i, p in enumerate(parts, 1)))
    operand = _obj(value.get("value"), where, "'value'")
    default = _default(operand.get("defaultValue"), kind, where)
    return Simple(kind, operation, Operand(default, _dynamic(operand.get("dynamicValue"), where)),
                  _flag(value.get("ignoreCase"), where, "'ignoreCase'"))


def _default(value: Any, kind: str, where: _Where) -> Any:
    """The predicate's default value as ThingsBoard's JSON mapper reads it (scalars coerced)."""
    if value is None:
        return None
    if kind == "NUMERIC":
        number = to_number(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else None
        if number is None:
            raise where.error(f"a NUMERIC predicate's default value must be a number, got {json.dumps(value)[:80]}")
        return number
    if kind == "BOOLEAN":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise where.error(f"a BOOLEAN predicate's default value must be true or false, got {json.dumps(value)[:80]}")
    if isinstance(value, dict | list):
        raise where.error(f"a STRING predicate's default value must be text, got {json.dumps(value)[:80]}")
    return value_text(value)


def _dynamic(value: Any, where: _Where) -> Dynamic | None:
    if value is None:
        return None
    _obj(value, where, "'dynamicValue'")
    source, attribute = value.get("sourceType"), value.get("sourceAttribute")
    if source is None or attribute is None:
        return None  # what the UI sends when no dynamic value is chosen
    _choice(source, SOURCE_TYPES, where, "dynamic value source type")
    if not isinstance(attribute, str) or not attribute:
        raise where.error("'dynamicValue.sourceAttribute' must be an attribute name")
    return Dynamic(source, attribute, _flag(value.get("inherit"), where, "'dynamicValue.inherit'"))


def _dynamics(predicate: Predicate) -> Iterable[Dynamic]:
    if isinstance(predicate, Complex):
        for part in predicate.predicates:
            yield from _dynamics(part)
    elif predicate.value.dynamic is not None:
        yield predicate.value.dynamic


def _spec(value: Any, where: _Where) -> Spec:
    if value is None:
        return Spec("SIMPLE")
    _obj(value, where, "'spec'")
    kind = _choice(value.get("type"), SPEC_TYPES, where, "spec type")
    if kind == "SIMPLE":
        return Spec(kind)
    if kind == "DURATION":
        unit = _choice(value.get("unit"), TIME_UNITS, where, "duration unit")
        return Spec(kind, unit, _amount(value, "value", where, "the duration"))
    return Spec(kind, amount=_amount(value, "count", where, "the repeat count"))


def _amount(spec: dict[str, Any], legacy: str, where: _Where, what: str) -> Operand:
    """``predicate: {defaultValue, dynamicValue}``; ThingsBoard 3.2 wrote the number as ``value`` /
    ``count``."""
    predicate = spec.get("predicate")
    if predicate is None and legacy in spec:
        return Operand(_integer(spec[legacy], where, what))
    predicate = _obj(predicate, where, "'predicate'")
    return Operand(_integer(predicate.get("defaultValue"), where, f"{what}'s default value"),
                   _dynamic(predicate.get("dynamicValue"), where))


def _zone(value: Any, where: _Where) -> zoneinfo.ZoneInfo:
    if value in (None, ""):
        return zoneinfo.ZoneInfo("UTC")
    try:
        return zoneinfo.ZoneInfo(str(value))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise where.error(f"unknown time zone {json.dumps(value)[:80]}") from None


def _schedule(value: Any, where: _Where) -> Schedule:
    _obj(value, where, "'schedule'")
    kind = _choice(value.get("type"), SCHEDULE_TYPES, where, "schedule type")
    dynamic = _dynamic(value.get("dynamicValue"), where)
    if kind == "ANY_TIME":
        return Schedule(kind)
    zone = _zone(value.get("timezone"), where)
    if kind == "SPECIFIC_TIME":
        days = value.get("daysOfWeek") or []
        if not isinstance(days, list) or not all(isinstance(d, int) and 1 <= d <= 7 for d in days):
            raise where.error("'daysOfWeek' must be a list of days 1 (Monday) to 7 (Sunday)")
        return Schedule(kind, zone, frozenset(days), _integer(value.get("startsOn"), where, "'startsOn'", default=0),
                        _integer(value.get("endsOn"), where, "'endsOn'", default=0), dynamic=dynamic)
    items = value.get("items") or []
    if not isinstance(items, list):
        raise where.error("'items' must be a list of days")
    windows = []
    for item in items:
        _obj(item, where, "a schedule item")
        day = _integer(item.get("dayOfWeek"), where, "'dayOfWeek'")
        if not 1 <= day <= 7:
            raise where.error(f"'dayOfWeek' must be 1 (Monday) to 7 (Sunday), got {day}")
        windows.append(Window(day, _flag(item.get("enabled"), where, "'enabled'"),
                              _integer(item.get("startsOn"), where, "'startsOn'", default=0),
                              _integer(item.get("endsOn"), where, "'endsOn'", default=0)))
    return Schedule(kind, zone, items=tuple(windows), dynamic=dynamic)


def parse_schedule(value: Any, what: str = "dynamic schedule") -> Schedule:
    """A schedule (``SPECIFIC_TIME``, ``CUSTOM``, ``ANY_TIME``) from its JSON; AlarmRulesError if unusable."""
    return _schedule(value, _Where(what))


def profile_keys(alarms: Iterable[AlarmDefinition]) -> frozenset[Key]:
    """What a device's snapshot holds for these rules: every rule's keys, and the attributes that
    durations, repeat counts and schedules may come from (ThingsBoard's ProfileState entity keys)."""
    keys: set[Key] = set()
    for alarm in alarms:
        for rule in (*alarm.create, *((alarm.clear,) if alarm.clear else ())):
            keys.update(rule.keys)
            for dynamic in (rule.spec.amount.dynamic if rule.spec.amount else None,
                            rule.schedule.dynamic if rule.schedule else None):
                if dynamic is not None and dynamic.source == "CURRENT_DEVICE":
                    keys.add(("ATTRIBUTE", dynamic.attribute))
    return frozenset(k for k in keys if k[0] != "CONSTANT")


def owner_attributes(alarms: Iterable[AlarmDefinition]) -> frozenset[tuple[str, str]]:
    """The (CURRENT_CUSTOMER | CURRENT_TENANT, attribute) pairs dynamic values may read."""
    found: set[tuple[str, str]] = set()
    for alarm in alarms:
        for rule in (*alarm.create, *((alarm.clear,) if alarm.clear else ())):
            dynamics = [d for f in rule.filters for d in _dynamics(f.predicate)]
            dynamics += [d for d in (rule.spec.amount.dynamic if rule.spec.amount else None,
                                     rule.schedule.dynamic if rule.schedule else None) if d is not None]
            for d in dynamics:
                chain = ("CURRENT_DEVICE", "CURRENT_CUSTOMER", "CURRENT_TENANT")
                if d.source not in chain:
                    continue
                sources = chain[chain.index(d.source):] if d.inherit else (d.source,)
                found.update((s, d.attribute) for s in sources if s != "CURRENT_DEVICE")
    return frozenset(found)


# --- values as ThingsBoard converts them ----------------------------------------------------------
def to_number(value: Value | Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    text = value.text if isinstance(value, JsonValue) else value
    if not isinstance(text, str):
        return None
    try:
        return float(text.strip())
    except ValueError:
        return None


def to_long(value: Value) -> int | None:
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    text = value.text if isinstance(value, JsonValue) else value
    if isinstance(text, str) and re.fullmatch(r"[+-]?\d+", text) and -LONG_MAX - 1 <= int(text) <= LONG_MAX:
        return int(text)
    return None


def to_bool(value: Value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value > 0
    text = value.text if isinstance(value, JsonValue) else value
    return text.lower() == "true"






def split_list(text: str) -> list[str]:
    """ThingsBoard's splitByCommaWithoutQuotes: ``a, b`` or ``'a','b'`` or ``"a","b"``."""
    parts = re.split(r"\s*,\s*", text.strip())
    while len(parts) > 1 and parts[-1] == "":
        parts.pop()
    result, quote = [], None
    for part in parts:
        if len(part) < 2 or part[0] not in "'\"" or part[0] != part[-1] or (quote is not None and part[0] != quote):
            return parts
        result.append(part[1:-1])
        quote = part[0]
    return result
