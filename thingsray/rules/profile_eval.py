"""Device profile alarm rules evaluated per (device, alarm rule), as ThingsBoard's profile package
does (DataSnapshot, AlarmRuleState, AlarmState).

``AlarmEvaluation`` is one device's progress on one alarm definition: ``evaluate`` on new data,
``evaluate_at`` when time passes (DURATION rules), each answering a ``Verdict`` (raise at a
severity, clear, or nothing) that the device profile node carries out against the alarm service.
Evaluation is synchronous: the device's values are in a ``Snapshot``; customer and tenant
attributes for dynamic values are fetched before and handed in as a ``Lookup``.
"""

from __future__ import annotations

import enum
import json
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from thingsray.kv import JsonValue, Value, value_text
from thingsray.rules.profile_alarms import (
    DAY_MS,
    LONG_MAX,
    TIME_UNITS,
    AlarmDefinition,
    AlarmEvaluationError,
    AlarmRulesError,
    Complex,
    Dynamic,
    Filter,
    Key,
    Lookup,
    Predicate,
    Rule,
    Schedule,
    parse_schedule,
    split_list,
    to_bool,
    to_long,
    to_number,
)


# --- a device's values ------------------------------------------------------------------------------
class Snapshot:
    """The latest values of the keys a device's rules use (ThingsBoard's DataSnapshot), and the
    time of the data last merged in."""

    __slots__ = ("keys", "ts", "values")

    def __init__(self, keys: frozenset[Key]) -> None:
        self.keys = keys
        self.ts = 0
        self.values: dict[Key, Value] = {}

    def put(self, key: Key, ts: int, value: Value) -> bool:
        """Store a value of a key the rules use; True when it is an update (a new time, or a new value)."""
        if key not in self.keys:
            return False
        old = self.values.get(key)
        self.values[key] = value
        return self.ts != ts or old is None or old != value or type(old) is not type(value)

    def get(self, key: Key) -> Value | None:
        return self.values.get(key)

    def remove(self, key: Key) -> None:
        self.values.pop(key, None)


@dataclass(frozen=True, slots=True)
class Update:
    """Which keys of which kind (TIME_SERIES or ATTRIBUTE) a message changed."""

    kind: str
    keys: frozenset[Key]


# --- evaluation -------------------------------------------------------------------------------------
class Outcome(enum.Enum):
    TRUE = "TRUE"
    FALSE = "FALSE"
    NOT_YET_TRUE = "NOT_YET_TRUE"


@dataclass(slots=True)
class Progress:
    """ThingsBoard's PersistedAlarmRuleState."""

    last_event_ts: int = 0
    duration: int = 0
    event_count: int = 0

    def to_json(self) -> dict[str, int]:
        return {"lastEventTs": self.last_event_ts, "duration": self.duration, "eventCount": self.event_count}

    @classmethod
    def of(cls, value: Any) -> Progress:
        if not isinstance(value, dict):
            return cls()
        return cls(*(int(value.get(k) or 0) for k in ("lastEventTs", "duration", "eventCount")))


class RuleState:
    """One rule's progress for one device (ThingsBoard's AlarmRuleState)."""

    __slots__ = ("changed", "progress", "rule")

    def __init__(self, rule: Rule, progress: Progress | None = None) -> None:
        self.rule = rule
        self.progress = progress or Progress()
        self.changed = False

    def take_changed(self) -> bool:
        changed, self.changed = self.changed, False
        return changed

    def accepts(self, update: Update | None) -> bool:
        return update is None or not update.keys.isdisjoint(self.rule.keys)

    def clear(self) -> bool:
        p = self.progress
        if p.event_count or p.last_event_ts or p.duration:
            self.progress = Progress()
            return True
        return False

    def eval(self, data: Snapshot, owners: Lookup, now: int) -> Outcome:
        """On new data (ThingsBoard's ``eval(DataSnapshot)``)."""
        holds = self._active(data, data.ts or now, owners) and self._condition(data, owners)
        kind = self.rule.spec.type
        if kind == "SIMPLE":
            return Outcome.TRUE if holds else Outcome.FALSE
        if not holds:
            return Outcome.FALSE
        p = self.progress
        if kind == "REPEATING":
            p.event_count += 1
            self.changed = True
            return Outcome.TRUE if p.event_count >= self.required(data, owners) else Outcome.NOT_YET_TRUE
        if p.last_event_ts > 0:
            if data.ts > p.last_event_ts:
                p.duration += data.ts - p.last_event_ts
                p.last_event_ts = data.ts
                self.changed = True
        else:
            p.last_event_ts, p.duration = data.ts, 0
            self.changed = True
        return Outcome.TRUE if p.duration > self.required(data, owners) else Outcome.NOT_YET_TRUE

    def eval_at(self, ts: int, data: Snapshot, owners: Lookup) -> Outcome:
        """As time passes without new data (ThingsBoard's ``eval(ts, DataSnapshot)``)."""
        if self.rule.spec.type != "DURATION":
            return Outcome.NOT_YET_TRUE
        required = self.required(data, owners)
        p = self.progress
        if required > 0 and p.last_event_ts > 0 and ts > p.last_event_ts:
            if not self._active(data, ts, owners):
                return Outcome.FALSE
            return Outcome.TRUE if p.duration + (ts - p.last_event_ts) > required else Outcome.NOT_YET_TRUE
        return Outcome.FALSE

    def due(self, data: Snapshot, owners: Lookup) -> int | None:
        """When (ms) a DURATION rule under way turns true if its condition keeps holding."""
        p = self.progress
        if self.rule.spec.type != "DURATION" or p.last_event_ts <= 0:
            return None
        try:
            required = self.required(data, owners)
        except AlarmEvaluationError:
            return None
        return p.last_event_ts + required - p.duration + 1 if required > 0 else None

    def required(self, data: Snapshot, owners: Lookup) -> int:
        """The duration (ms) or repeat count the rule needs, from its dynamic value when there is one."""
        spec = self.rule.spec
        assert spec.amount is not None
        amount = spec.amount.default
        if spec.amount.dynamic is not None:
            found = dynamic_value(spec.amount.dynamic, data, owners)
            if found is not None:
                number = to_long(found)
                if number is None:
                    raise AlarmEvaluationError(
                        f"Could not convert attribute '{spec.amount.dynamic.attribute}' with value "
                        f"'{value_text(found)}' to numeric value!")
                amount = number
        if spec.type != "DURATION":
            return amount
        multiply, divide = TIME_UNITS[spec.unit]
        millis = abs(amount) * multiply // divide
        return max(-LONG_MAX - 1, min(LONG_MAX, millis if amount >= 0 else -millis))

    # --- conditions and schedules --------------------------------------------------------------
    def _condition(self, data: Snapshot, owners: Lookup) -> bool:
        for f in self.rule.filters:
            value = constant_value(f) if f.key[0] == "CONSTANT" else data.get(f.key)
            if value is None or not holds(f.predicate, value, data, owners, constant=f.key[0] == "CONSTANT"):
                return False
        return True

    def _active(self, data: Snapshot, ts: int, owners: Lookup) -> bool:
        schedule = self.rule.schedule
        if schedule is None or schedule.type == "ANY_TIME":
            return True
        if schedule.dynamic is not None:
            schedule = _dynamic_schedule(schedule, dynamic_value(schedule.dynamic, data, owners))
        return schedule_active(schedule, ts)


def constant_value(f: Filter) -> Value | None:
    """A CONSTANT key's value, typed by the filter's value type (None when it does not parse)."""
    if f.constant is None:
        return None
    text = value_text(f.constant)
    try:
        match f.value_type:
            case "STRING":
                return text
            case "DATE_TIME":
                return int(text)
            case "NUMERIC":
                return float(text)
            case "BOOLEAN":
                return text.lower() == "true"
    except ValueError:
        return None
    return None


def dynamic_value(dynamic: Dynamic, data: Snapshot, owners: Lookup) -> Value | None:
    """The device's attribute (from the snapshot), else with ``inherit`` its customer's, else its
    tenant's server attribute, as ThingsBoard falls through."""
    order = ("CURRENT_DEVICE", "CURRENT_CUSTOMER", "CURRENT_TENANT")
    if dynamic.source not in order:
        return None
    for source in order[order.index(dynamic.source):]:
        if source == "CURRENT_DEVICE":
            found = data.get(("ATTRIBUTE", dynamic.attribute))
        else:
            found = owners.get((source, dynamic.attribute))
        if found is not None or not dynamic.inherit:
            return found
    return None


def holds(predicate: Predicate, value: Value, data: Snapshot, owners: Lookup, *, constant: bool = False) -> bool:
    """Whether ``value`` satisfies ``predicate`` (ThingsBoard's AlarmRuleState predicate evaluation).
    A CONSTANT key compares only with a dynamic value: its default is ignored."""
    if isinstance(predicate, Complex):
        results = (holds(p, value, data, owners, constant=constant) for p in predicate.predicates)
        return any(results) if predicate.operation == "OR" else all(results)
    convert: Callable[[Value], Any] = {"NUMERIC": to_number, "STRING": value_text, "BOOLEAN": to_bool}[predicate.kind]
    mine = convert(value)
    if mine is None:
        return False
    other = None
    if predicate.value.dynamic is not None:
        found = dynamic_value(predicate.value.dynamic, data, owners)
        if found is not None:
            other = convert(found)
    if other is None and not constant:
        other = predicate.value.default
    if other is None:
        return False
    op = predicate.operation
    if predicate.kind == "STRING":
        if predicate.ignore_case:
            mine, other = mine.lower(), other.lower()
        match op:
            case "CONTAINS":
                return other in mine
            case "NOT_CONTAINS":
                return other not in mine
            case "STARTS_WITH":
                return mine.startswith(other)
            case "ENDS_WITH":
                return mine.endswith(other)
            case "IN":
                return mine in split_list(other)
            case "NOT_IN":
                return mine not in split_list(other)
    match op:
        case "EQUAL":
            return mine == other
        case "NOT_EQUAL":
            return mine != other
        case "GREATER":
            return mine > other
        case "LESS":
            return mine < other
        case "GREATER_OR_EQUAL":
            return mine >= other
        case "LESS_OR_EQUAL":
            return mine <= other
    raise AlarmEvaluationError(f"Operation not supported: {op}")


def _dynamic_schedule(schedule: Schedule, value: Value | None) -> Schedule:
    """A schedule an attribute holds as JSON replaces the rule's own (same type); else the rule's."""
    if value is None:
        return schedule
    text = value.text if isinstance(value, JsonValue) else value
    try:
        parsed = json.loads(text) if isinstance(text, str) else None
        if isinstance(parsed, dict):
            return parse_schedule({**parsed, "type": schedule.type, "dynamicValue": None})
    except (ValueError, AlarmRulesError):
        pass
    return schedule


def schedule_active(schedule: Schedule, ts: int) -> bool:
    """Whether a SPECIFIC_TIME or CUSTOM schedule covers ``ts`` (ms) in its time zone."""
    if schedule.type == "ANY_TIME":
        return True
    zone = schedule.zone or zoneinfo.ZoneInfo("UTC")
    moment = datetime.fromtimestamp(ts / 1000, zone)
    day = moment.isoweekday()
    if schedule.type == "SPECIFIC_TIME":
        if len(schedule.days) != 7 and day not in schedule.days:
            return False
        return _in_window(ts, moment, zone, schedule.starts_on, schedule.ends_on or DAY_MS)
    for item in schedule.items:
        if item.day == day:
            return item.enabled and _in_window(ts, moment, zone, item.starts_on, item.ends_on or DAY_MS)
    return False


def _in_window(ts: int, moment: datetime, zone: zoneinfo.ZoneInfo, starts_on: int, ends_on: int) -> bool:
    start_of_day = int(datetime.combine(moment.date(), time(0), zone).timestamp() * 1000)
    offset = ts - start_of_day
    if starts_on <= ends_on:
        return starts_on <= offset < ends_on
    return starts_on < offset or 0 < offset < ends_on


@dataclass(slots=True)
class Verdict:
    """What an evaluation decided: raise the alarm at ``raise_rule``'s severity, or clear it."""

    raise_rule: RuleState | None = None
    clear_rule: RuleState | None = None
    changed: bool = False
    """Progress changed (to be persisted)."""


@dataclass(slots=True)
class AlarmEvaluation:
    """One device's progress on one alarm definition (ThingsBoard's AlarmState, without the alarm
    service calls: the node carries out the verdicts)."""

    definition: AlarmDefinition
    create: list[RuleState] = field(default_factory=list)
    clear: RuleState | None = None

    @classmethod
    def start(cls, definition: AlarmDefinition, persisted: Any = None) -> AlarmEvaluation:
        evaluation = cls(definition)
        evaluation.load(definition, persisted)
        return evaluation

    def load(self, definition: AlarmDefinition, persisted: Any = None) -> None:
        """Take a (new version of the) definition; progress of rules that still exist is kept,
        from ``persisted`` (ThingsBoard's PersistedAlarmState JSON) when given."""
        old = {s.rule.severity: s.progress for s in self.create}
        old_clear = self.clear.progress if self.clear is not None else None
        if isinstance(persisted, dict):
            states = persisted.get("createRuleStates") or {}
            old = {k: Progress.of(v) for k, v in states.items()} if isinstance(states, dict) else {}
            old_clear = Progress.of(persisted.get("clearRuleState"))
        self.definition = definition
        self.create = [RuleState(rule, old.get(rule.severity)) for rule in definition.create]
        self.clear = None if definition.clear is None else RuleState(definition.clear, old_clear)

    def to_json(self) -> dict[str, Any]:
        return {"createRuleStates": {s.rule.severity: s.progress.to_json() for s in self.create},
                "clearRuleState": self.clear.progress.to_json() if self.clear is not None else None}

    def evaluate(self, data: Snapshot, update: Update | None, has_alarm: bool, owners: Lookup,
                 now: int) -> Verdict:
        """On new data; ``update`` says which keys changed (rules that use none of them are skipped)."""
        return self._decide(update, has_alarm, lambda s: s.eval(data, owners, now))

    def evaluate_at(self, ts: int, data: Snapshot, has_alarm: bool, owners: Lookup) -> Verdict:
        """As time passes: DURATION rules whose condition still holds may now be long enough."""
        return self._decide(None, has_alarm, lambda s: s.eval_at(ts, data, owners))

    def _decide(self, update: Update | None, has_alarm: bool, evaluate: Callable[[RuleState], Outcome]) -> Verdict:
        verdict = Verdict()
        for state in self.create:  # most severe first: the first that holds wins
            if not state.accepts(update):
                continue
            outcome = evaluate(state)
            verdict.changed |= state.take_changed()
            if outcome is Outcome.TRUE:
                verdict.raise_rule = state
                break
            if outcome is Outcome.FALSE:
                verdict.changed |= state.clear()
        if verdict.raise_rule is not None:
            if self.clear is not None:
                verdict.changed |= self.clear.clear()
            return verdict
        if has_alarm and self.clear is not None and self.clear.accepts(update):
            outcome = evaluate(self.clear)
            verdict.changed |= self.clear.take_changed()
            if outcome is Outcome.TRUE:
                verdict.clear_rule = self.clear
                verdict.changed |= self.clear.clear()
                verdict.changed |= self.alarm_gone()
            elif outcome is Outcome.FALSE:
                verdict.changed |= self.clear.clear()
        return verdict

    def alarm_gone(self) -> bool:
        """The alarm was cleared (or deleted): the create rules start over."""
        changed = False
        for state in self.create:
            changed |= state.clear()
        return changed

    def due(self, data: Snapshot, has_alarm: bool, owners: Lookup) -> int | None:
        """The earliest time (ms) a DURATION rule under way would turn true."""
        states = [*self.create, *((self.clear,) if has_alarm and self.clear is not None else ())]
        times = [t for t in (s.due(data, owners) for s in states) if t is not None]
        return min(times) if times else None


def details_of(rule: Rule, data: Snapshot, current: Any) -> Any:
    """The alarm's details: ``alarmDetails`` with ``${key}`` replaced by the rule's values, and the
    dashboard id; the current alarm's details (else ``{}``) when the rule sets neither."""
    if rule.details or rule.dashboard_id:
        details: dict[str, Any] = {}
        if rule.details:
            text = rule.details
            for f in rule.filters:
                value = data.get(f.key)
                if value is not None:
                    text = text.replace("${" + f.key[1] + "}", value_text(value))
            details["data"] = text
        if rule.dashboard_id:
            details["dashboardId"] = rule.dashboard_id
        return details
    return current if current is not None else {}
