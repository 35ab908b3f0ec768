"""Math function (ThingsBoard's TbMathNode): a function of values taken from the message, its
metadata, the originator's attributes or latest time series, or constants; the result goes to
the message body or metadata, or is saved as an attribute or a time series value.

A CUSTOM operation is an arithmetic expression in the arguments' names, read by a small parser of
our own (``Expression``; no ``eval``) that follows exp4j, the library ThingsBoard uses: ``+ - * /
% ^``, unary signs, implicit multiplication (``2x``, ``3(x + 1)``), the functions below and the
constants ``pi``, ``e``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.kv import JsonValue, to_json_value
from thingsray.rules.msg import TbMsg
from thingsray.rules.node import NodeConfigError, NodeInit, Outputs, RuleNode, flag, node, optional
from thingsray.rules.nodes._script import plain
from thingsray.rules.pattern import process_pattern

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext

ARGUMENT_TYPES = ("CONSTANT", "MESSAGE_BODY", "MESSAGE_METADATA", "ATTRIBUTE", "TIME_SERIES")
RESULT_TYPES = ("MESSAGE_BODY", "MESSAGE_METADATA", "ATTRIBUTE", "TIME_SERIES")
SCOPES = ("SERVER_SCOPE", "CLIENT_SCOPE", "SHARED_SCOPE")
MAX_CUSTOM_LENGTH = 256


def _java_floor_div(a: float, b: float) -> float:
    if int(b) == 0:
        raise ValueError("/ by zero")
    return float(int(a) // int(b))


def _java_floor_mod(a: float, b: float) -> float:
    if int(b) == 0:
        raise ValueError("/ by zero")
    return float(int(a) % int(b))


def _get_exponent(x: float) -> float:
    """Java's Math.getExponent: the unbiased binary exponent of a double."""
    if x == 0 or not math.isfinite(x):
        return 1024.0 if not math.isfinite(x) else -1023.0
    _, exponent = math.frexp(abs(x))
    return float(max(exponent - 1, -1023))


def _signum(x: float) -> float:
    return 0.0 if x == 0 else math.copysign(1.0, x)


OPERATIONS: dict[str, tuple[int, int, bool, Callable[..., float] | None]] = {
    # name: (min args, max args, integer result, function)
    "ADD": (2, 2, False, lambda a, b: a + b), "SUB": (2, 2, False, lambda a, b: a - b),
    "MULT": (2, 2, False, lambda a, b: a * b), "DIV": (2, 2, False, lambda a, b: _divide(a, b)),
    "SIN": (1, 1, False, math.sin), "SINH": (1, 1, False, math.sinh), "COS": (1, 1, False, math.cos),
    "COSH": (1, 1, False, math.cosh), "TAN": (1, 1, False, math.tan), "TANH": (1, 1, False, math.tanh),
    "ACOS": (1, 1, False, math.acos), "ASIN": (1, 1, False, math.asin), "ATAN": (1, 1, False, math.atan),
    "ATAN2": (2, 2, False, math.atan2), "EXP": (1, 1, False, math.exp), "EXPM1": (1, 1, False, math.expm1),
    "SQRT": (1, 1, False, math.sqrt), "CBRT": (1, 1, False, lambda x: math.copysign(abs(x) ** (1 / 3), x)),
    "GET_EXP": (1, 1, True, _get_exponent), "HYPOT": (2, 2, False, math.hypot), "LOG": (1, 1, False, math.log),
    "LOG10": (1, 1, False, math.log10), "LOG1P": (1, 1, False, math.log1p), "CEIL": (1, 1, True, math.ceil),
    "FLOOR": (1, 1, True, math.floor), "FLOOR_DIV": (2, 2, False, _java_floor_div),
    "FLOOR_MOD": (2, 2, False, _java_floor_mod), "ABS": (1, 1, False, abs), "MIN": (2, 2, False, min),
    "MAX": (2, 2, False, max), "POW": (2, 2, False, math.pow), "SIGNUM": (1, 1, False, _signum),
    "RAD": (1, 1, False, math.radians), "DEG": (1, 1, False, math.degrees),
    "CUSTOM": (0, 16, False, None),
}


def _divide(a: float, b: float) -> float:
    if b == 0:
        raise ValueError("Division by zero!")
    return a / b


def _modulo(a: float, b: float) -> float:
    if b == 0:
        raise ValueError("Division by zero!")
    return math.fmod(a, b)  # Java's % on doubles keeps the dividend's sign


# --- the custom expression ----------------------------------------------------------------------
FUNCTIONS: dict[str, tuple[int, Callable[..., float]]] = {
    "abs": (1, abs), "acos": (1, math.acos), "asin": (1, math.asin), "atan": (1, math.atan),
    "cbrt": (1, OPERATIONS["CBRT"][3]), "ceil": (1, math.ceil), "cos": (1, math.cos), "cosh": (1, math.cosh),
    "cot": (1, lambda x: 1 / math.tan(x)), "csc": (1, lambda x: 1 / math.sin(x)),
    "csch": (1, lambda x: 1 / math.sinh(x)), "coth": (1, lambda x: math.cosh(x) / math.sinh(x)),
    "exp": (1, math.exp), "expm1": (1, math.expm1), "floor": (1, math.floor), "log": (1, math.log),
    "log10": (1, math.log10), "log1p": (1, math.log1p), "log2": (1, math.log2),
    "logb": (2, lambda b, x: math.log(x) / math.log(b)), "pow": (2, math.pow),
    "sec": (1, lambda x: 1 / math.cos(x)), "sech": (1, lambda x: 1 / math.cosh(x)), "signum": (1, _signum),
    "sin": (1, math.sin), "sinh": (1, math.sinh), "sqrt": (1, math.sqrt), "tan": (1, math.tan),
    "tanh": (1, math.tanh), "toradian": (1, math.radians), "todegree": (1, math.degrees),
}
CONSTANTS = {"pi": math.pi, "π": math.pi, "e": math.e, "φ": (1 + math.sqrt(5)) / 2}
BINARY: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": _divide, "%": _modulo,
    "^": math.pow,
}

Node = Callable[[dict[str, float]], float]
"""A parsed expression: variables -> value."""


class ExpressionError(ValueError):
    """The custom function cannot be read; the text says where."""


def _tokens(text: str) -> list[tuple[str, Any, int]]:
    """(kind, value, position): kinds num, name, op, "(", ")", ","."""
    out: list[tuple[str, Any, int]] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c.isdigit() or (c == "." and i + 1 < len(text) and text[i + 1].isdigit()):
            start = i
            while i < len(text) and (text[i].isdigit() or text[i] == "."):
                i += 1
            if i < len(text) and text[i] in "eE" and (
                    (i + 1 < len(text) and text[i + 1].isdigit())
                    or (i + 2 < len(text) and text[i + 1] in "+-" and text[i + 2].isdigit())):
                i += 2
                while i < len(text) and text[i].isdigit():
                    i += 1
            try:
                out.append(("num", float(text[start:i]), start))
            except ValueError:
                raise ExpressionError(f"'{text[start:i]}' at {start} is not a number") from None
        elif c.isalpha() or c == "_" or c in "πφ":
            start = i
            while i < len(text) and (text[i].isalnum() or text[i] == "_"):
                i += 1
            out.append(("name", text[start:i], start))
        elif c in "+-*/%^":
            out.append(("op", c, i))
            i += 1
        elif c in "(),":
            out.append((c, c, i))
            i += 1
        else:
            raise ExpressionError(f"unexpected '{c}' at {i}")
    return out


class Expression:
    """An arithmetic expression over named variables, parsed once and evaluated per message."""

    def __init__(self, text: str, variables: set[str]) -> None:
        self.text = text
        self.variables = variables
        self._tokens = _tokens(text)
        self._at = 0
        if not self._tokens:
            raise ExpressionError("the expression is empty")
        self._root = self._sum()
        if self._at < len(self._tokens):
            _, value, position = self._tokens[self._at]
            raise ExpressionError(f"unexpected '{value}' at {position}")

    def evaluate(self, values: dict[str, float]) -> float:
        try:
            return float(self._root(values))
        except (ValueError, OverflowError, ZeroDivisionError) as exc:
            if str(exc) == "Division by zero!":
                raise
            return math.nan  # Java's Math answers NaN (or an infinity) where Python raises

    # --- a recursive descent, loosest binding first ---------------------------------------------
    def _peek(self) -> tuple[str, Any, int] | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def _take(self) -> tuple[str, Any, int]:
        token = self._peek()
        if token is None:
            raise ExpressionError("the expression ends too early")
        self._at += 1
        return token

    def _sum(self) -> Node:
        left = self._product()
        while (token := self._peek()) is not None and token[0] == "op" and token[1] in "+-":
            self._at += 1
            left = _binary(BINARY[token[1]], left, self._product())
        return left

    def _product(self) -> Node:
        left = self._unary()
        while (token := self._peek()) is not None:
            if token[0] == "op" and token[1] in "*/%":
                self._at += 1
                left = _binary(BINARY[token[1]], left, self._unary())
            elif token[0] in ("num", "name", "("):  # implicit multiplication: 2x, 2(x + 1), x(y)
                left = _binary(BINARY["*"], left, self._unary())
            else:
                break
        return left

    def _unary(self) -> Node:
        token = self._peek()
        if token is not None and token[0] == "op" and token[1] in "+-":
            self._at += 1
            operand = self._unary()
            return operand if token[1] == "+" else (lambda v: -operand(v))
        return self._power()

    def _power(self) -> Node:
        base = self._primary()
        token = self._peek()
        if token is not None and token[0] == "op" and token[1] == "^":
            self._at += 1
            return _binary(BINARY["^"], base, self._unary())  # right-associative, tighter than a sign
        return base

    def _primary(self) -> Node:
        kind, value, position = self._take()
        if kind == "num":
            return lambda _v, number=value: number
        if kind == "(":
            inner = self._sum()
            self._expect(")")
            return inner
        if kind == "name":
            following = self._peek()
            if value in FUNCTIONS and value not in self.variables and following is not None and following[0] == "(":
                return self._call(value, position)
            if value in self.variables:
                return lambda v, name=value: v[name]
            if value in CONSTANTS:
                return lambda _v, number=CONSTANTS[value]: number
            raise ExpressionError(f"unknown variable or function '{value}' at {position}")
        raise ExpressionError(f"unexpected '{value}' at {position}")

    def _call(self, name: str, position: int) -> Node:
        arity, function = FUNCTIONS[name]
        self._expect("(")
        args = [self._sum()]
        while (token := self._peek()) is not None and token[0] == ",":
            self._at += 1
            args.append(self._sum())
        self._expect(")")
        if len(args) != arity:
            raise ExpressionError(f"function '{name}' at {position} takes {arity} argument(s), got {len(args)}")
        return lambda v: function(*(arg(v) for arg in args))

    def _expect(self, kind: str) -> None:
        token = self._peek()
        if token is None or token[0] != kind:
            where = "the end" if token is None else f"'{token[1]}' at {token[2]}"
            raise ExpressionError(f"expected '{kind}' but found {where}")
        self._at += 1


def _binary(operator: Callable[[float, float], float], left: Node, right: Node) -> Node:
    return lambda v: operator(left(v), right(v))


# --- the node -----------------------------------------------------------------------------------
def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"Can't convert value '{text}' to double!") from None


class _Argument:
    __slots__ = ("default", "key", "name", "scope", "type")

    def __init__(self, raw: Any, index: int) -> None:
        if not isinstance(raw, dict):
            raise NodeConfigError(f"'arguments[{index}]' must be an object, got {raw!r}")
        self.type = raw.get("type")
        if self.type not in ARGUMENT_TYPES:
            raise NodeConfigError(f"'arguments[{index}].type' must be one of {', '.join(ARGUMENT_TYPES)}, "
                                  f"got {self.type!r}")
        self.key = raw.get("key")
        if not isinstance(self.key, str) or not self.key.strip():
            raise NodeConfigError(f"'arguments[{index}].key' must be a non-empty string, got {self.key!r}")
        name = raw.get("name")
        self.name = name if isinstance(name, str) and name else self.key
        self.scope = raw.get("attributeScope") or "SERVER_SCOPE"
        if self.scope not in SCOPES:
            raise NodeConfigError(f"'arguments[{index}].attributeScope' must be one of {', '.join(SCOPES)}, "
                                  f"got {self.scope!r}")
        default = raw.get("defaultValue")
        if default is not None and (isinstance(default, bool) or not isinstance(default, int | float)):
            raise NodeConfigError(f"'arguments[{index}].defaultValue' must be a number, got {default!r}")
        self.default = None if default is None else float(default)
        if self.type == "CONSTANT":
            try:
                float(self.key)
            except ValueError:
                raise NodeConfigError(f"'arguments[{index}].key' of a CONSTANT must be a number, "
                                      f"got {self.key!r}") from None

    def missing(self, why: str) -> float:
        if self.default is not None:
            return self.default
        raise ValueError(why)


@node
class MathNode(RuleNode):
    type = "org.thingsboard.rule.engine.math.TbMathNode"
    name = "math function"
    component = "ACTION"
    default_config: ClassVar[dict[str, Any]] = {
        "operation": "CUSTOM", "customFunction": "(x - 32) / 1.8",
        "arguments": [{"name": "x", "type": "MESSAGE_BODY", "key": "temperature", "attributeScope": None,
                       "defaultValue": None}],
        "result": {"type": "MESSAGE_BODY", "key": "temperatureCelsius", "resultValuePrecision": 2,
                   "addToBody": False, "addToMetadata": False, "attributeScope": None}}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.operation = config.get("operation")
        if self.operation not in OPERATIONS:
            raise NodeConfigError(f"'operation' must be one of {', '.join(OPERATIONS)}, got {self.operation!r}")
        raw_args = config.get("arguments") or []
        if not isinstance(raw_args, list):
            raise NodeConfigError(f"'arguments' must be a list, got {raw_args!r}")
        self.arguments = [_Argument(raw, i) for i, raw in enumerate(raw_args)]
        low, high, self.integer_result, self.function = OPERATIONS[self.operation]
        if not low <= len(self.arguments) <= high:
            raise NodeConfigError(f"Args count: {len(self.arguments)} does not match operation: {self.operation}")
        self.expression: Expression | None = None
        if self.operation == "CUSTOM":
            text = config.get("customFunction")
            if not isinstance(text, str) or not text.strip():
                raise NodeConfigError("Custom function is blank!")
            if len(text) > MAX_CUSTOM_LENGTH:
                raise NodeConfigError(f"Custom function is too complex (length > {MAX_CUSTOM_LENGTH})!")
            try:
                self.expression = Expression(text, {a.name for a in self.arguments})
            except ExpressionError as exc:
                raise NodeConfigError(f"'customFunction': {exc}") from None
        result = config.get("result")
        if not isinstance(result, dict):
            raise NodeConfigError(f"'result' must be an object, got {result!r}")
        self.result_type = result.get("type")
        if self.result_type not in RESULT_TYPES:
            raise NodeConfigError(f"'result.type' must be one of {', '.join(RESULT_TYPES)}, got {self.result_type!r}")
        self.result_key = result.get("key")
        if not isinstance(self.result_key, str) or not self.result_key.strip():
            raise NodeConfigError(f"'result.key' must be a non-empty string, got {self.result_key!r}")
        self.precision = optional(result, "resultValuePrecision", int, 0)
        if not 0 <= self.precision <= 15:
            raise NodeConfigError("'result.resultValuePrecision' must be 0 to 15")
        self.add_to_body = flag(result, "addToBody", False)
        self.add_to_metadata = flag(result, "addToMetadata", False)
        self.result_scope = result.get("attributeScope") or "SERVER_SCOPE"
        if self.result_scope not in SCOPES:
            raise NodeConfigError(f"'result.attributeScope' must be one of {', '.join(SCOPES)}, "
                                  f"got {self.result_scope!r}")
        self.needs_body = (any(a.type == "MESSAGE_BODY" for a in self.arguments) or self.result_type == "MESSAGE_BODY"
                           or (self.result_type in ("ATTRIBUTE", "TIME_SERIES") and self.add_to_body))

    # --- arguments ------------------------------------------------------------------------------
    async def _value(self, ctx: RuleContext, msg: TbMsg, body: dict[str, Any] | None, arg: _Argument) -> float:
        key = process_pattern(arg.key, msg) if arg.type != "CONSTANT" else arg.key
        if arg.type == "CONSTANT":
            return _number(key)
        if arg.type == "MESSAGE_BODY":
            assert body is not None
            if key not in body:
                return arg.missing(f"Message body has no '{key}'!")
            value = body[key]
            if value is None:
                return arg.missing(f"Message body has null '{key}'!")
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError(f"Can't convert value '{value}' to double!")
            if isinstance(value, str):
                if not value.strip():
                    return arg.missing(f"Message value is empty for '{key}'!")
                return _number(value)
            return float(value)
        if arg.type == "MESSAGE_METADATA":
            text = msg.metadata.get(key)
            if not text:
                return arg.missing(f"Message metadata has no '{key}'!")
            return _number(text)
        if arg.type == "ATTRIBUTE":
            found = (await ctx.get_attributes(msg.originator, arg.scope, [key])).get(key)
            if found is None:
                return arg.missing(f"Attribute: {key} with scope: {arg.scope} not found for entity: "
                                   f"{msg.originator.id}")
            return _stored_number(found)
        latest = (await ctx.get_latest(msg.originator, [key])).get(key)
        if latest is None:
            return arg.missing(f"Time-series: {key} not found for entity: {msg.originator.id}")
        return _stored_number(latest[1])

    def _calculate(self, values: list[float]) -> float:
        if self.expression is not None:
            result = self.expression.evaluate({a.name: v for a, v in zip(self.arguments, values, strict=True)})
        else:
            assert self.function is not None
            try:
                result = float(self.function(*values))
            except (ValueError, OverflowError) as exc:
                if "by zero" in str(exc):
                    raise
                result = math.nan
        if not math.isfinite(result):
            raise ValueError(f"The result of {self.operation} is not a finite number ({result})")
        return result

    def _typed(self, result: float) -> int | float:
        """The result as ThingsBoard stores it: a long (truncated) for integer operations and
        precision 0, else a double rounded half-up to the precision."""
        if self.integer_result or self.precision == 0:
            return int(result)
        return float(Decimal(repr(result)).quantize(Decimal(1).scaleb(-self.precision), rounding=ROUND_HALF_UP))

    # --- the message ----------------------------------------------------------------------------
    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        body: dict[str, Any] | None = None
        if self.needs_body:
            body = _object_body(msg.data)
        values = [await self._value(ctx, msg, body, arg) for arg in self.arguments]
        value = self._typed(self._calculate(values))
        key = process_pattern(self.result_key, msg)
        out = msg
        if self.result_type == "ATTRIBUTE":
            await ctx.save_attributes(msg.originator, self.result_scope, {key: value}, _now())
        elif self.result_type == "TIME_SERIES":
            await ctx.save_timeseries(msg.originator, [(_now(), key, float(value))])
        if self.result_type == "MESSAGE_BODY" or (self.result_type in ("ATTRIBUTE", "TIME_SERIES")
                                                  and self.add_to_body):
            assert body is not None
            out = out.copy(data={**body, key: value})
        if self.result_type == "MESSAGE_METADATA" or (self.result_type in ("ATTRIBUTE", "TIME_SERIES")
                                                      and self.add_to_metadata):
            out = out.with_metadata(**{key: str(value)})
        return [("Success", out)]


def _object_body(data: Any) -> dict[str, Any]:
    value = plain(data)
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, dict):
        raise ValueError("Message body is not a JSON object!")
    return value


def _stored_number(value: Any) -> float:
    if isinstance(value, JsonValue):
        value = to_json_value(value)
    if isinstance(value, bool):
        raise ValueError(f"Can't convert value '{str(value).lower()}' to double!")
    if isinstance(value, int | float):
        return float(value)
    return _number(str(value))


def _now() -> int:
    return time.time_ns() // 1_000_000
