"""Device profile alarm rules: parsing and checking, and their evaluation per device (every
predicate type, every spec, dynamic values, schedules), without storage."""

from __future__ import annotations

import operator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thingsray.kv import JsonValue, java_double
from thingsray.rules.profile_alarms import (
    AlarmEvaluationError,
    AlarmRulesError,
    owner_attributes,
    parse_alarms,
    profile_keys,
    split_list,
)
from thingsray.rules.profile_eval import (
    AlarmEvaluation,
    Outcome,
    Progress,
    RuleState,
    Snapshot,
    Update,
    details_of,
    holds,
)

T0 = 1_700_000_000_000


# --- building profiles --------------------------------------------------------------------------------
def ts_key(key: str) -> dict[str, str]:
    return {"type": "TIME_SERIES", "key": key}


def numeric(operation: str, default: Any, dynamic: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "NUMERIC", "operation": operation, "value": {"defaultValue": default, "dynamicValue": dynamic}}


def string(operation: str, default: Any, ignore_case: bool = False, dynamic: dict[str, Any] | None = None) -> dict:
    return {"type": "STRING", "operation": operation, "ignoreCase": ignore_case,
            "value": {"defaultValue": default, "dynamicValue": dynamic}}


def boolean(operation: str, default: Any) -> dict[str, Any]:
    return {"type": "BOOLEAN", "operation": operation, "value": {"defaultValue": default}}


def condition(*filters: dict[str, Any], spec: dict[str, Any] | None = None, **rule: Any) -> dict[str, Any]:
    return {"condition": {"condition": list(filters), "spec": spec or {"type": "SIMPLE"}}, **rule}


def flt(key: dict[str, str], predicate: dict[str, Any], value_type: str = "NUMERIC", **extra: Any) -> dict:
    return {"key": key, "valueType": value_type, "predicate": predicate, **extra}


def alarm(create: dict[str, dict[str, Any]], clear: dict[str, Any] | None = None, alarm_type: str = "High temperature",
          **extra: Any) -> dict[str, Any]:
    return {"id": f"id-{alarm_type}", "alarmType": alarm_type, "createRules": create, "clearRule": clear, **extra}


def evaluation_of(*alarms: dict[str, Any]) -> tuple[AlarmEvaluation, Snapshot]:
    definitions = parse_alarms({"alarms": list(alarms)})
    return AlarmEvaluation.start(definitions[0]), Snapshot(profile_keys(definitions))


def feed(evaluation: AlarmEvaluation, snapshot: Snapshot, ts: int, has_alarm: bool = False,
         owners: dict | None = None, **values: Any) -> Any:
    keys = frozenset(("TIME_SERIES", k) for k in values if snapshot.put(("TIME_SERIES", k), ts, values[k]))
    snapshot.ts = ts
    return evaluation.evaluate(snapshot, Update("TIME_SERIES", keys), has_alarm, owners or {}, ts)


def raised(verdict: Any) -> str | None:
    return None if verdict.raise_rule is None else verdict.raise_rule.rule.severity


TEMPERATURE = alarm({"CRITICAL": condition(flt(ts_key("temperature"), numeric("GREATER", 50))),
                     "MAJOR": condition(flt(ts_key("temperature"), numeric("GREATER", 30)))},
                    condition(flt(ts_key("temperature"), numeric("LESS", 20))))


# --- parsing ------------------------------------------------------------------------------------------
def test_a_profile_without_alarms_or_with_bare_ones_parses() -> None:
    assert parse_alarms({"alarms": None}) == ()
    assert parse_alarms({}) == ()
    [bare] = parse_alarms({"alarms": [{"id": "a1", "alarmType": "High temperature"}]})
    assert (bare.id, bare.alarm_type, bare.create, bare.clear) == ("a1", "High temperature", (), None)


def test_create_rules_are_ordered_most_severe_first() -> None:
    [definition] = parse_alarms({"alarms": [alarm({
        "WARNING": condition(flt(ts_key("t"), numeric("GREATER", 1))),
        "CRITICAL": condition(flt(ts_key("t"), numeric("GREATER", 3))),
        "MINOR": condition(flt(ts_key("t"), numeric("GREATER", 2)))})]})
    assert [r.severity for r in definition.create] == ["CRITICAL", "MINOR", "WARNING"]


@pytest.mark.parametrize("alarms,message", [
    ([{"createRules": {}}], "Alarm rule type should be specified!"),
    ([{"alarmType": "  "}], "Alarm rule type should be specified!"),
    ([alarm({}), alarm({})], 'Can\'t create device profile with the same alarm rule types: "High temperature"!'),
    ([alarm({"SEVERE": condition()})], "create rule severity \"SEVERE\" is not one of CRITICAL"),
    ([alarm({"MAJOR": condition(flt(ts_key("t"), {"type": "NUMBER", "operation": "EQUAL", "value": {}}))})],
     "create rule MAJOR, key filter 1 (t), predicate: predicate type \"NUMBER\" is not one of NUMERIC"),
    ([alarm({"MAJOR": condition(flt(ts_key("t"), numeric("BIGGER", 3)))})],
     "NUMERIC operation \"BIGGER\" is not one of EQUAL"),
    ([alarm({"MAJOR": condition(flt(ts_key("t"), string("GREATER", "a")))})],
     "STRING operation \"GREATER\" is not one of EQUAL"),
    ([alarm({"MAJOR": condition(flt(ts_key("t"), numeric("GREATER", "hot")))})],
     "a NUMERIC predicate's default value must be a number, got \"hot\""),
    ([alarm({"MAJOR": condition(flt(ts_key("t"), boolean("EQUAL", "yes")))})],
     "a BOOLEAN predicate's default value must be true or false"),
    ([alarm({"MAJOR": condition(flt({"type": "SERVER", "key": "t"}, numeric("GREATER", 1)))})],
     "key type \"SERVER\" is not one of TIME_SERIES"),
    ([alarm({"MAJOR": condition(flt({"type": "CONSTANT", "key": "c"}, numeric("GREATER", 1), value_type="NUM"))})],
     "value type \"NUM\" is not one of STRING"),
    ([alarm({"MAJOR": condition(flt(ts_key("t"), numeric("GREATER", 1, {"sourceType": "CURRENT_ASSET",
                                                                         "sourceAttribute": "x"})))})],
     "dynamic value source type \"CURRENT_ASSET\""),
    ([alarm({"MAJOR": condition(flt(ts_key("t"), {"type": "COMPLEX", "operation": "XOR", "predicates": []}))})],
     "COMPLEX operation \"XOR\" is not one of AND, OR"),
    ([alarm({"MAJOR": condition(flt(ts_key("t"), numeric("GREATER", 1)), spec={"type": "DURATION"})})],
     "condition spec: duration unit null is not one of"),
    ([alarm({"MAJOR": condition(flt(ts_key("t"), numeric("GREATER", 1)),
                                spec={"type": "REPEATING", "predicate": {"defaultValue": "many"}})})],
     "the repeat count's default value must be a whole number"),
    ([alarm({"MAJOR": condition(flt(ts_key("t"), numeric("GREATER", 1)),
                                schedule={"type": "SPECIFIC_TIME", "timezone": "Mars/Olympus",
                                          "daysOfWeek": [1]})})],
     "schedule: unknown time zone \"Mars/Olympus\""),
    ([alarm({}, clear={"condition": None})], "clear rule: 'condition' must be a JSON object"),
    ("not a list", "'alarms' must be a list"),
])
def test_unusable_rules_are_refused_naming_the_place(alarms: Any, message: str) -> None:
    with pytest.raises(AlarmRulesError) as refused:
        parse_alarms({"alarms": alarms})
    assert message in str(refused.value)


def test_thingsboard_3_2_spec_forms_are_read() -> None:
    [definition] = parse_alarms({"alarms": [alarm({
        "MAJOR": condition(flt(ts_key("t"), numeric("GREATER", 1)), spec={"type": "DURATION", "unit": "SECONDS",
                                                                          "value": 5}),
        "MINOR": condition(flt(ts_key("t"), numeric("GREATER", 0)), spec={"type": "REPEATING", "count": 3})})]})
    major, minor = definition.create
    assert major.spec.amount is not None and major.spec.amount.default == 5
    assert minor.spec.amount is not None and minor.spec.amount.default == 3


def test_the_snapshot_holds_condition_and_dynamic_keys() -> None:
    dynamic = {"sourceType": "CURRENT_DEVICE", "sourceAttribute": "threshold", "inherit": True}
    definitions = parse_alarms({"alarms": [alarm(
        {"MAJOR": condition(flt(ts_key("t"), numeric("GREATER", 1, dynamic)),
                            flt({"type": "CONSTANT", "key": "c"}, numeric("EQUAL", 0), value=1),
                            spec={"type": "REPEATING", "predicate": {"defaultValue": 2, "dynamicValue": {
                                "sourceType": "CURRENT_DEVICE", "sourceAttribute": "repeats"}}})})]})
    assert profile_keys(definitions) == {("TIME_SERIES", "t"), ("ATTRIBUTE", "threshold"), ("ATTRIBUTE", "repeats")}
    assert owner_attributes(definitions) == {("CURRENT_CUSTOMER", "threshold"), ("CURRENT_TENANT", "threshold")}


# --- predicates ---------------------------------------------------------------------------------------
NUMERIC_OPS = {"EQUAL": operator.eq, "NOT_EQUAL": operator.ne, "GREATER": operator.gt, "LESS": operator.lt,
               "GREATER_OR_EQUAL": operator.ge, "LESS_OR_EQUAL": operator.le}


def predicate(value: dict[str, Any]) -> Any:
    [definition] = parse_alarms({"alarms": [alarm({"MAJOR": condition(flt(ts_key("x"), value))})]})
    return definition.create[0].filters[0].predicate


finite = st.floats(allow_nan=False, allow_infinity=False, width=32)


@given(st.sampled_from(sorted(NUMERIC_OPS)), finite, finite, st.sampled_from(["number", "text", "json"]))
def test_numeric_predicates_compare_as_numbers(op: str, value: float, threshold: float, form: str) -> None:
    stored: Any = {"number": value, "text": repr(value), "json": JsonValue(repr(value))}[form]
    assert holds(predicate(numeric(op, threshold)), stored, Snapshot(frozenset()), {}) == NUMERIC_OPS[op](
        value, threshold)


def test_numeric_predicates_read_booleans_and_refuse_text() -> None:
    assert holds(predicate(numeric("EQUAL", 1)), True, Snapshot(frozenset()), {})
    assert holds(predicate(numeric("EQUAL", "0")), False, Snapshot(frozenset()), {})
    assert not holds(predicate(numeric("NOT_EQUAL", 1)), "warm", Snapshot(frozenset()), {})
    assert not holds(predicate(numeric("GREATER", None)), 5, Snapshot(frozenset()), {})  # no value: false


STRING_CASES = [
    ("EQUAL", "Alpha", "Alpha", False, True), ("EQUAL", "Alpha", "alpha", False, False),
    ("EQUAL", "Alpha", "alpha", True, True), ("NOT_EQUAL", "Alpha", "alpha", True, False),
    ("STARTS_WITH", "Alphabet", "ALPHA", True, True), ("STARTS_WITH", "Alphabet", "bet", False, False),
    ("ENDS_WITH", "Alphabet", "bet", False, True), ("CONTAINS", "Alphabet", "pha", False, True),
    ("NOT_CONTAINS", "Alphabet", "PHA", True, False), ("NOT_CONTAINS", "Alphabet", "PHA", False, True),
    ("IN", "b", "a, b ,c", False, True), ("IN", "b", "'a','b'", False, True), ("IN", "'b'", "'a','b'", False, False),
    ("IN", "B", "\"a\",\"b\"", True, True), ("NOT_IN", "d", "a,b,c", False, True), ("NOT_IN", "a", "a,b", False, False),
]


@pytest.mark.parametrize("op,value,other,ignore_case,expected", STRING_CASES)
def test_string_predicates(op: str, value: str, other: str, ignore_case: bool, expected: bool) -> None:
    assert holds(predicate(string(op, other, ignore_case)), value, Snapshot(frozenset()), {}) is expected


def test_string_predicates_see_numbers_as_java_writes_them() -> None:
    assert holds(predicate(string("EQUAL", "25.0")), 25.0, Snapshot(frozenset()), {})
    assert holds(predicate(string("EQUAL", "25")), 25, Snapshot(frozenset()), {})
    assert holds(predicate(string("EQUAL", "true")), True, Snapshot(frozenset()), {})
    assert holds(predicate(string("EQUAL", 7)), "7", Snapshot(frozenset()), {})  # a numeric default is text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_java_double_text_reads_back_as_the_same_number(x: float) -> None:
    text = java_double(x)
    assert float(text.replace("E", "e")) == x
    assert "." in text


def test_java_double_forms() -> None:
    assert [java_double(x) for x in (25.0, 1e7, 1.5e-5, 0.001, -0.0, 123456.789)] == [
        "25.0", "1.0E7", "1.5E-5", "0.001", "-0.0", "123456.789"]


def test_split_list_as_thingsboard() -> None:
    assert split_list(" a , b,c ") == ["a", "b", "c"]
    assert split_list("'a','b'") == ["a", "b"]
    assert split_list("'a',\"b\"") == ["'a'", "\"b\""]  # mixed quotes stay as written
    assert split_list("a,") == ["a"]


@pytest.mark.parametrize("op,value,default,expected", [
    ("EQUAL", True, True, True), ("EQUAL", False, True, False), ("NOT_EQUAL", False, True, True),
    ("EQUAL", "TRUE", True, True), ("EQUAL", 3, True, True), ("EQUAL", 0, False, True), ("EQUAL", "no", False, True),
])
def test_boolean_predicates(op: str, value: Any, default: bool, expected: bool) -> None:
    assert holds(predicate(boolean(op, default)), value, Snapshot(frozenset()), {}) is expected


simple_numeric = st.builds(lambda op, v: numeric(op, v), st.sampled_from(sorted(NUMERIC_OPS)),
                           st.integers(-5, 5))
trees = st.recursive(simple_numeric, lambda children: st.builds(
    lambda op, parts: {"type": "COMPLEX", "operation": op, "predicates": parts},
    st.sampled_from(["AND", "OR"]), st.lists(children, max_size=3)), max_leaves=8)


def reference(tree: dict[str, Any], x: int) -> bool:
    if tree["type"] == "COMPLEX":
        results = [reference(p, x) for p in tree["predicates"]]
        return any(results) if tree["operation"] == "OR" else all(results)
    return NUMERIC_OPS[tree["operation"]](x, tree["value"]["defaultValue"])


@given(trees, st.integers(-6, 6))
def test_complex_predicates_combine_with_and_or(tree: dict[str, Any], x: int) -> None:
    assert holds(predicate(tree), x, Snapshot(frozenset()), {}) == reference(tree, x)


# --- dynamic values -----------------------------------------------------------------------------------
def test_dynamic_values_come_from_the_device_then_customer_then_tenant_with_inherit() -> None:
    inherit = {"sourceType": "CURRENT_DEVICE", "sourceAttribute": "limit", "inherit": True}
    alone = {"sourceType": "CURRENT_DEVICE", "sourceAttribute": "limit", "inherit": False}
    snapshot = Snapshot(frozenset({("ATTRIBUTE", "limit")}))
    owners = {("CURRENT_TENANT", "limit"): 40, ("CURRENT_CUSTOMER", "limit"): "30"}
    assert holds(predicate(numeric("GREATER", 100, inherit)), 35, snapshot, owners)  # customer's 30
    assert not holds(predicate(numeric("GREATER", 100, alone)), 35, snapshot, owners)  # default 100
    assert not holds(predicate(numeric("GREATER", 100, inherit)), 35, snapshot,
                     {("CURRENT_TENANT", "limit"): 40})  # tenant's 40
    snapshot.put(("ATTRIBUTE", "limit"), T0, 20)
    assert holds(predicate(numeric("GREATER", 100, alone)), 35, snapshot, owners)  # the device's 20
    tenant = {"sourceType": "CURRENT_TENANT", "sourceAttribute": "limit"}
    assert not holds(predicate(numeric("GREATER", 100, tenant)), 35, snapshot, owners)
    not_a_number = {("CURRENT_TENANT", "limit"): "lots"}
    assert holds(predicate(numeric("GREATER", 30, tenant)), 35, snapshot, not_a_number)  # unusable: the default


def test_a_constant_key_compares_only_with_a_dynamic_value() -> None:
    dynamic = {"sourceType": "CURRENT_TENANT", "sourceAttribute": "enabled"}
    evaluation, snapshot = evaluation_of(alarm({"MAJOR": condition(
        flt({"type": "CONSTANT", "key": "on"}, boolean("EQUAL", True) | {"value": {
            "defaultValue": True, "dynamicValue": dynamic}}, value_type="BOOLEAN", value=True),
        flt(ts_key("t"), numeric("GREATER", 0)))}))
    assert raised(feed(evaluation, snapshot, T0, t=5)) is None  # the default is not used for a constant
    assert raised(feed(evaluation, snapshot, T0 + 1, owners={("CURRENT_TENANT", "enabled"): True}, t=5)) == "MAJOR"


# --- specs --------------------------------------------------------------------------------------------
def test_simple_rules_raise_the_most_severe_that_holds_and_clear() -> None:
    evaluation, snapshot = evaluation_of(TEMPERATURE)
    assert raised(feed(evaluation, snapshot, T0, temperature=25)) is None
    assert raised(feed(evaluation, snapshot, T0 + 1, temperature=35)) == "MAJOR"
    assert raised(feed(evaluation, snapshot, T0 + 2, has_alarm=True, temperature=55)) == "CRITICAL"
    still = feed(evaluation, snapshot, T0 + 3, has_alarm=True, temperature=25)
    assert (still.raise_rule, still.clear_rule) == (None, None)
    cleared = feed(evaluation, snapshot, T0 + 4, has_alarm=True, temperature=15)
    assert cleared.clear_rule is evaluation.clear


def test_a_clear_rule_is_only_evaluated_while_an_alarm_is_active() -> None:
    evaluation, snapshot = evaluation_of(TEMPERATURE)
    assert feed(evaluation, snapshot, T0, has_alarm=False, temperature=10).clear_rule is None


def test_rules_are_skipped_when_none_of_their_keys_changed() -> None:
    evaluation, snapshot = evaluation_of(alarm({"MAJOR": condition(flt(ts_key("t"), numeric("GREATER", 1)),
                                                                   spec={"type": "REPEATING", "predicate": {
                                                                       "defaultValue": 2}})}))
    feed(evaluation, snapshot, T0, t=5)
    snapshot.keys = snapshot.keys | {("TIME_SERIES", "other")}
    feed(evaluation, snapshot, T0 + 1, other=1)  # not a key of the rule: not counted
    assert evaluation.create[0].progress.event_count == 1
    assert raised(feed(evaluation, snapshot, T0 + 2, t=5)) == "MAJOR"


def test_repeating_rules_raise_after_n_messages_in_a_row() -> None:
    evaluation, snapshot = evaluation_of(alarm({"MAJOR": condition(
        flt(ts_key("t"), numeric("GREATER", 30)), spec={"type": "REPEATING", "predicate": {"defaultValue": 3}})}))
    assert raised(feed(evaluation, snapshot, T0, t=31)) is None
    assert raised(feed(evaluation, snapshot, T0 + 1, t=32)) is None
    verdict = feed(evaluation, snapshot, T0 + 2, t=10)  # the run is broken: counting starts over
    assert verdict.changed and evaluation.create[0].progress.event_count == 0
    for i in range(2):
        assert raised(feed(evaluation, snapshot, T0 + 3 + i, t=40)) is None
    assert raised(feed(evaluation, snapshot, T0 + 5, t=40)) == "MAJOR"


def test_a_repeat_count_from_an_attribute_must_be_a_number() -> None:
    spec = {"type": "REPEATING", "predicate": {"defaultValue": 5, "dynamicValue": {
        "sourceType": "CURRENT_DEVICE", "sourceAttribute": "repeats"}}}
    evaluation, snapshot = evaluation_of(alarm({"MAJOR": condition(flt(ts_key("t"), numeric("GREATER", 0)),
                                                                   spec=spec)}))
    snapshot.put(("ATTRIBUTE", "repeats"), T0, 1)
    assert raised(feed(evaluation, snapshot, T0, t=1)) == "MAJOR"
    snapshot.put(("ATTRIBUTE", "repeats"), T0, "often")
    with pytest.raises(AlarmEvaluationError, match="Could not convert attribute 'repeats' with value 'often'"):
        feed(evaluation, snapshot, T0 + 1, t=1)


DURATION = alarm({"MAJOR": condition(flt(ts_key("t"), numeric("GREATER", 30)),
                                     spec={"type": "DURATION", "unit": "SECONDS",
                                           "predicate": {"defaultValue": 10}})},
                 condition(flt(ts_key("t"), numeric("LESS", 20))))


def test_duration_rules_raise_once_the_condition_held_long_enough() -> None:
    evaluation, snapshot = evaluation_of(DURATION)
    assert raised(feed(evaluation, snapshot, T0, t=31)) is None
    assert evaluation.due(snapshot, False, {}) == T0 + 10_001
    assert raised(feed(evaluation, snapshot, T0 + 6_000, t=35)) is None
    assert raised(feed(evaluation, snapshot, T0 + 10_001, t=35)) == "MAJOR"


def test_duration_rules_raise_as_time_passes_without_data() -> None:
    evaluation, snapshot = evaluation_of(DURATION)
    feed(evaluation, snapshot, T0, t=31)
    assert raised(evaluation.evaluate_at(T0 + 10_000, snapshot, False, {})) is None  # not more than 10 s yet
    assert raised(evaluation.evaluate_at(T0 + 10_001, snapshot, False, {})) == "MAJOR"


def test_a_duration_starts_over_when_the_condition_stops_holding() -> None:
    evaluation, snapshot = evaluation_of(DURATION)
    feed(evaluation, snapshot, T0, t=31)
    feed(evaluation, snapshot, T0 + 9_000, t=25)
    assert evaluation.due(snapshot, False, {}) is None
    feed(evaluation, snapshot, T0 + 9_500, t=40)
    assert evaluation.due(snapshot, False, {}) == T0 + 19_501
    assert raised(evaluation.evaluate_at(T0 + 12_000, snapshot, False, {})) is None


@given(st.integers(1, 10_000), st.lists(st.integers(1, 5_000), min_size=1, max_size=12))
def test_duration_raises_exactly_when_the_held_time_passes_the_limit(limit_ms: int, gaps: list[int]) -> None:
    evaluation, snapshot = evaluation_of(alarm({"MAJOR": condition(
        flt(ts_key("t"), numeric("GREATER", 0)),
        spec={"type": "DURATION", "unit": "MILLISECONDS", "predicate": {"defaultValue": limit_ms}})}))
    ts = T0
    assert raised(feed(evaluation, snapshot, ts, t=1)) is None
    for gap in gaps:
        ts += gap
        verdict = feed(evaluation, snapshot, ts, t=1)
        assert (raised(verdict) == "MAJOR") == (ts - T0 > limit_ms)
        if verdict.raise_rule is not None:
            break


def test_a_rule_outside_its_schedule_does_not_hold() -> None:
    monday_9 = int(datetime(2024, 1, 8, 9, 0, tzinfo=ZoneInfo("Europe/Kyiv")).timestamp() * 1000)
    hours = {"startsOn": 8 * 3_600_000, "endsOn": 18 * 3_600_000}
    specific = {"type": "SPECIFIC_TIME", "timezone": "Europe/Kyiv", "daysOfWeek": [1, 2, 3, 4, 5], **hours}
    custom = {"type": "CUSTOM", "timezone": "Europe/Kyiv", "items": [
        {"dayOfWeek": 1, "enabled": True, **hours}, {"dayOfWeek": 2, "enabled": False, **hours}]}
    for schedule, day_off in ((specific, 5), (custom, 1)):  # Saturday; Tuesday, which is disabled
        evaluation, snapshot = evaluation_of(alarm({"MAJOR": condition(
            flt(ts_key("t"), numeric("GREATER", 0)), schedule=schedule)}))
        assert raised(feed(evaluation, snapshot, monday_9, t=1)) == "MAJOR"
        assert raised(feed(evaluation, snapshot, monday_9 + 10 * 3_600_000, t=1)) is None  # 19:00
        assert raised(feed(evaluation, snapshot, monday_9 + day_off * 24 * 3_600_000, t=1)) is None
        assert raised(feed(evaluation, snapshot, monday_9 + 7 * 24 * 3_600_000, t=1)) == "MAJOR"
    overnight = {"type": "SPECIFIC_TIME", "timezone": "UTC", "daysOfWeek": list(range(1, 8)),
                 "startsOn": 22 * 3_600_000, "endsOn": 6 * 3_600_000}
    evaluation, snapshot = evaluation_of(alarm({"MAJOR": condition(flt(ts_key("t"), numeric("GREATER", 0)),
                                                                   schedule=overnight)}))
    midnight = int(datetime(2024, 1, 8, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)
    assert raised(feed(evaluation, snapshot, midnight + 3_600_000, t=1)) == "MAJOR"
    assert raised(feed(evaluation, snapshot, midnight + 12 * 3_600_000, t=1)) is None


# --- progress as ThingsBoard persists it ---------------------------------------------------------------
def test_progress_round_trips_through_thingsboards_json() -> None:
    evaluation, snapshot = evaluation_of(alarm({"MAJOR": condition(
        flt(ts_key("t"), numeric("GREATER", 0)), spec={"type": "REPEATING", "predicate": {"defaultValue": 3}})},
        condition(flt(ts_key("t"), numeric("LESS", 0)))))
    feed(evaluation, snapshot, T0, t=1)
    feed(evaluation, snapshot, T0 + 1, t=1)
    saved = evaluation.to_json()
    assert saved == {"createRuleStates": {"MAJOR": {"lastEventTs": 0, "duration": 0, "eventCount": 2}},
                     "clearRuleState": {"lastEventTs": 0, "duration": 0, "eventCount": 0}}
    again = AlarmEvaluation.start(evaluation.definition, saved)
    assert raised(feed(again, snapshot, T0 + 2, t=1)) == "MAJOR"


def test_a_saved_profile_keeps_the_progress_of_rules_that_remain() -> None:
    evaluation, snapshot = evaluation_of(TEMPERATURE | {"createRules": {"MAJOR": condition(
        flt(ts_key("temperature"), numeric("GREATER", 30)), spec={"type": "REPEATING", "predicate": {
            "defaultValue": 2}})}})
    feed(evaluation, snapshot, T0, temperature=40)
    [changed] = parse_alarms({"alarms": [TEMPERATURE | {"createRules": {"MAJOR": condition(
        flt(ts_key("temperature"), numeric("GREATER", 35)), spec={"type": "REPEATING", "predicate": {
            "defaultValue": 2}})}}]})
    evaluation.load(changed)
    assert evaluation.create[0].progress.event_count == 1
    assert raised(feed(evaluation, snapshot, T0 + 1, temperature=40)) == "MAJOR"


def test_details_substitute_the_rules_values() -> None:
    [definition] = parse_alarms({"alarms": [alarm({"MAJOR": condition(
        flt(ts_key("temperature"), numeric("GREATER", 30)), alarmDetails="Too hot: ${temperature} C",
        dashboardId={"entityType": "DASHBOARD", "id": "d-1"})})]})
    snapshot = Snapshot(profile_keys([definition]))
    snapshot.put(("TIME_SERIES", "temperature"), T0, 42.5)
    assert details_of(definition.create[0], snapshot, None) == {"data": "Too hot: 42.5 C", "dashboardId": "d-1"}
    plain = RuleState(parse_alarms({"alarms": [TEMPERATURE]})[0].create[0])
    assert details_of(plain.rule, snapshot, {"kept": 1}) == {"kept": 1}
    assert details_of(plain.rule, snapshot, None) == {}


def test_outcomes_of_a_rule_state() -> None:
    state = RuleState(parse_alarms({"alarms": [DURATION]})[0].create[0], Progress(T0, 500, 0))
    snapshot = Snapshot(frozenset({("TIME_SERIES", "t")}))
    assert state.eval_at(T0 + 9_501, snapshot, {}) is Outcome.TRUE
    assert state.eval_at(T0 + 9_500, snapshot, {}) is Outcome.NOT_YET_TRUE
    assert state.eval_at(T0 - 1, snapshot, {}) is Outcome.FALSE
