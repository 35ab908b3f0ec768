"""Math function: its expression reader, and the node against stored attributes and time series."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from tests.rules import entities
from tests.rules.conftest import EngineHarness
from thingsray.rules.node import NodeConfigError
from thingsray.rules.nodes.math import Expression, ExpressionError

MATH = "org.thingsboard.rule.engine.math.TbMathNode"


@pytest.mark.parametrize("text,values,expected", [
    ("(x - 32) / 1.8", {"x": 212}, 100.0),
    ("1 + 2 * 3 - 4 / 2", {}, 5.0),
    ("2 ^ 3 ^ 2", {}, 512.0),            # right-associative
    ("-2 ^ 2", {}, -4.0),                # the power binds tighter than the sign, as in exp4j
    ("2 ^ -1", {}, 0.5),
    ("2x + 3(y - 1)", {"x": 4, "y": 2}, 11.0),   # implicit multiplication
    ("x y", {"x": 3, "y": 5}, 15.0),
    ("sqrt(x) + abs(-y) + pow(2, 10) + logb(2, 8)", {"x": 16, "y": 2}, 1033.0),
    ("7 % 4 + -7 % 4", {}, 0.0),         # Java's remainder keeps the dividend's sign
    ("sin(pi / 2) + e - e", {}, 1.0),
    ("1.5e3 + .5", {}, 1500.5),
])
def test_expressions_read_as_exp4j_reads_them(text: str, values: dict[str, float], expected: float) -> None:
    assert Expression(text, set(values)).evaluate({k: float(v) for k, v in values.items()}) == pytest.approx(expected)


@pytest.mark.parametrize("text,error", [
    ("x +", "ends too early"), ("(x", "expected ')'"), ("x $ 2", "unexpected '$' at 2"),
    ("z * 2", "unknown variable or function 'z' at 0"), ("pow(2)", "takes 2 argument"), ("x )", "unexpected ')' at 2"),
])
def test_bad_expressions_say_where(text: str, error: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(error)):
        Expression(text, {"x"})


def test_division_by_zero_and_domain_errors() -> None:
    with pytest.raises(ValueError, match="Division by zero!"):
        Expression("x / 0", {"x"}).evaluate({"x": 1.0})
    assert math.isnan(Expression("sqrt(x)", {"x"}).evaluate({"x": -1.0}))  # NaN, as Java's Math answers


def math_node(engine: EngineHarness, operation: str, arguments: list[dict[str, Any]], result: dict[str, Any],
              custom: str | None = None) -> Any:
    config: dict[str, Any] = {"operation": operation, "arguments": arguments, "result": result}
    if custom is not None:
        config["customFunction"] = custom
    return engine.build(MATH, config)


async def test_thingsboards_default_converts_fahrenheit_in_the_body(engine: EngineHarness) -> None:
    node = engine.build(MATH)
    [(relation, out)] = await engine.run(node, engine.msg(engine.device(), {"temperature": 100, "keep": "me"}))
    assert relation == "Success" and out.data == {"temperature": 100, "keep": "me", "temperatureCelsius": 37.78}
    [(_, out)] = await engine.run(node, engine.msg(engine.device(), {"temperature": "-40"}))  # numeric text
    assert out.data["temperatureCelsius"] == -40.0
    with pytest.raises(ValueError, match="Message body has no 'temperature'!"):
        await engine.run(node, engine.msg(engine.device(), {"humidity": 3}))
    with pytest.raises(ValueError, match="Message body is not a JSON object!"):
        await engine.run(node, engine.msg(engine.device(), [1, 2]))


async def test_metadata_constants_and_integer_results(engine: EngineHarness) -> None:
    node = math_node(engine, "ADD", [{"type": "MESSAGE_METADATA", "key": "a"}, {"type": "CONSTANT", "key": "2.5"}],
                     {"type": "MESSAGE_METADATA", "key": "sum", "resultValuePrecision": 1})
    [(_, out)] = await engine.run(node, engine.msg(engine.device(), {}, a="1.27"))
    assert out.metadata["sum"] == "3.8"  # rounded half up to the precision
    floor = math_node(engine, "FLOOR", [{"type": "MESSAGE_BODY", "key": "v"}],
                      {"type": "MESSAGE_BODY", "key": "v", "resultValuePrecision": 3})
    [(_, out)] = await engine.run(floor, engine.msg(engine.device(), {"v": 7.9}))
    assert out.data == {"v": 7}  # FLOOR answers an integer whatever the precision
    defaulted = math_node(engine, "MULT", [{"type": "MESSAGE_METADATA", "key": "missing", "defaultValue": 3},
                                           {"type": "CONSTANT", "key": "4"}],
                          {"type": "MESSAGE_METADATA", "key": "product", "resultValuePrecision": 0})
    [(_, out)] = await engine.run(defaulted, engine.msg(engine.device(), {}))
    assert out.metadata["product"] == "12"


async def test_stored_arguments_and_stored_results(engine: EngineHarness) -> None:
    device = engine.device()
    entities.save_attributes(engine.client, device, "SERVER_SCOPE", {"total": 100.5})
    entities.save_timeseries(engine.client, device, {"delta": 4})
    node = math_node(engine, "CUSTOM", [
        {"name": "t", "type": "ATTRIBUTE", "key": "total", "attributeScope": "SERVER_SCOPE"},
        {"name": "d", "type": "TIME_SERIES", "key": "delta"},
        {"name": "m", "type": "MESSAGE_BODY", "key": "more"}],
        {"type": "ATTRIBUTE", "key": "total", "attributeScope": "SERVER_SCOPE", "resultValuePrecision": 2,
         "addToBody": True, "addToMetadata": True}, custom="t + d + m")
    [(_, out)] = await engine.run(node, engine.msg(device, {"more": 0.25}))
    assert out.data == {"more": 0.25, "total": 104.75} and out.metadata["total"] == "104.75"
    stored = engine.client.get(f"/api/plugins/telemetry/DEVICE/{device.id}/values/attributes/SERVER_SCOPE",
                               params={"keys": "total"}).json()
    assert [a["value"] for a in stored] == [104.75]

    to_series = math_node(engine, "SQRT", [{"type": "TIME_SERIES", "key": "delta"}],
                          {"type": "TIME_SERIES", "key": "root", "resultValuePrecision": 1})
    [(_, out)] = await engine.run(to_series, engine.msg(device, {}))
    assert out.data == {}  # neither addToBody nor addToMetadata
    latest = engine.client.get(f"/api/plugins/telemetry/DEVICE/{device.id}/values/timeseries",
                               params={"keys": "root"}).json()
    assert latest["root"][0]["value"] == "2.0"
    with pytest.raises(ValueError, match="Attribute: nothing with scope: SERVER_SCOPE not found"):
        await engine.run(math_node(engine, "ABS", [{"type": "ATTRIBUTE", "key": "nothing"}],
                                   {"type": "MESSAGE_METADATA", "key": "x"}), engine.msg(device, {}))


async def test_a_result_that_is_no_number_fails_the_message(engine: EngineHarness) -> None:
    node = math_node(engine, "LOG", [{"type": "CONSTANT", "key": "0"}], {"type": "MESSAGE_METADATA", "key": "x"})
    with pytest.raises(ValueError, match="not a finite number"):
        await engine.run(node, engine.msg(engine.device(), {}))
    divide = math_node(engine, "DIV", [{"type": "CONSTANT", "key": "1"}, {"type": "CONSTANT", "key": "0"}],
                       {"type": "MESSAGE_METADATA", "key": "x"})
    with pytest.raises(ValueError, match="Division by zero!"):
        await engine.run(divide, engine.msg(engine.device(), {}))


def test_bad_configurations_are_refused(engine: EngineHarness) -> None:
    body = {"type": "MESSAGE_BODY", "key": "r"}
    with pytest.raises(NodeConfigError, match="Args count: 1 does not match operation: ADD"):
        math_node(engine, "ADD", [{"type": "CONSTANT", "key": "1"}], body)
    with pytest.raises(NodeConfigError, match="Custom function is blank!"):
        math_node(engine, "CUSTOM", [], body, custom=" ")
    with pytest.raises(NodeConfigError, match="too complex"):
        math_node(engine, "CUSTOM", [{"name": "x", "type": "CONSTANT", "key": "1"}], body, custom="x+" * 200)
    with pytest.raises(NodeConfigError, match="unknown variable or function 'y'"):
        math_node(engine, "CUSTOM", [{"name": "x", "type": "CONSTANT", "key": "1"}], body, custom="x + y")
    with pytest.raises(NodeConfigError, match="'operation' must be one of"):
        math_node(engine, "MODULO", [], body)
    with pytest.raises(NodeConfigError, match=r"result\.type"):
        math_node(engine, "ABS", [{"type": "CONSTANT", "key": "1"}], {"type": "NOWHERE", "key": "r"})
