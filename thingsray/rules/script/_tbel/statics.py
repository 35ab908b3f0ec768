"""The classes TBEL scripts call statically: JSON (ThingsBoard's TbJson, written as Jackson writes),
Math, Integer, Long, Double, Float, String, Boolean and Date."""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable
from typing import Any

from thingsray.rules.script._tbel.convert import NumberFormatError, arity, flag, items, real, text, whole
from thingsray.rules.script._tbel.dates import now_ms
from thingsray.rules.script._tbel.values import (
    MAX_COLLECTION_SIZE,
    Entry,
    LimitExceeded,
    Runtime,
    TbDate,
    java_double,
    to_str,
    type_name,
)
from thingsray.rules.script.errors import ScriptRuntimeError

Fn = Callable[..., Any]

# ---- JSON

_FLOAT_HINT = re.compile(r"\d[eE][-+]?\d|\d{8}\.\d|(?<![\d.])0\.000|NaN|Infinity")
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)|(-?\d+\.\d+(?:[eE][-+]?\d+)?|-?\d+[eE][-+]?\d+)')


def _java_number(m: re.Match[str]) -> str:
    if m.group(1):
        return f'"{m.group(1)}"'
    if m.group(2):
        return java_double(float(m.group(2)))
    return m.group(0)


def _json_default(v: object) -> object:
    if type(v) is Entry:
        return {to_str(v.key): v.value}  # type: ignore[attr-defined]
    if type(v) is TbDate:
        from thingsray.rules.script._tbel.dates import iso

        return iso(v)  # type: ignore[arg-type]
    raise TypeError(f"cannot write {type_name(v)} as JSON")


def json_stringify(rt: Runtime, value: object) -> str:
    """Compact JSON with Java's number text (1.0E7, "NaN"), as Jackson writes it."""
    if value is None:
        return "null"
    try:
        out = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    except ValueError as e:
        raise ScriptRuntimeError(f"JSON.stringify: {e}") from None
    except RecursionError:
        raise ScriptRuntimeError("JSON.stringify: the value is nested too deeply") from None
    if _FLOAT_HINT.search(out):
        out = _JSON_TOKEN.sub(_java_number, out)
    return rt.string(out)


def _reject_constant(name: str) -> None:
    raise ValueError(f"'{name}' is not valid JSON")


def json_parse(rt: Runtime, value: object) -> object:
    if value is None:
        return None
    s = text(value, "JSON.parse's argument")
    try:
        out = json.loads(s, parse_constant=_reject_constant)
    except ValueError as e:
        raise ScriptRuntimeError(f"JSON.parse: invalid JSON: {e}") from None
    except RecursionError:
        raise ScriptRuntimeError("JSON.parse: the JSON is nested too deeply") from None
    _charge_tree(rt, out)
    return out


def _charge_tree(rt: Runtime, root: object) -> None:
    size, stack = 0, [root]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is dict or t is list:
            if len(v) > MAX_COLLECTION_SIZE:  # type: ignore[arg-type]
                raise LimitExceeded(f"JSON.parse built a collection of {len(v)} elements; at most "  # type: ignore
                                    f"{MAX_COLLECTION_SIZE} are allowed")
            stack.extend(v.values() if t is dict else v)  # type: ignore[attr-defined,arg-type]
            size += 64 + 16 * len(v)  # type: ignore[arg-type]
        elif t is str:
            size += 40 + len(v)  # type: ignore[arg-type]
    rt.charge(size)


# ---- Math


def _real_fn(fn: Callable[..., float], count: int = 1) -> Fn:
    def call(rt: Runtime, *args: object) -> float:
        try:
            return float(fn(*(real(a) for a in args)))
        except ValueError:
            return math.nan
        except OverflowError:
            return math.inf

    call.arity = (count, count)  # type: ignore[attr-defined]
    return call


def _same_type(fn: Callable[..., Any], count: int) -> Fn:
    def call(rt: Runtime, *args: object) -> int | float:
        nums = [real(a) if type(a) is not int else a for a in args]
        if any(type(x) is float and x != x for x in nums):
            return math.nan
        r = fn(*nums)
        return r if all(type(a) is int for a in args) else float(r)

    call.arity = (count, count)  # type: ignore[attr-defined]
    return call


def _round(rt: Runtime, x: object) -> int:
    v = real(x)
    if v != v:
        return 0
    if math.isinf(v):
        return 2**63 - 1 if v > 0 else -(2**63)
    return math.floor(v + 0.5)


def _rint(rt: Runtime, x: object) -> float:
    return float(round(real(x)))


def _signum(rt: Runtime, x: object) -> float:
    v = real(x)
    return v if v == 0 or v != v else math.copysign(1.0, v)


def _floor_div(rt: Runtime, a: object, b: object) -> int:
    x, y = whole(a), whole(b)
    if y == 0:
        raise ScriptRuntimeError("Math.floorDiv: / by zero")
    return x // y


def _floor_mod(rt: Runtime, a: object, b: object) -> int:
    x, y = whole(a), whole(b)
    if y == 0:
        raise ScriptRuntimeError("Math.floorMod: / by zero")
    return x % y


_MATH: dict[str, Fn] = {
    "abs": _same_type(abs, 1),
    "max": _same_type(max, 2),
    "min": _same_type(min, 2),
    "round": _round,
    "rint": _rint,
    "signum": _signum,
    "floorDiv": _floor_div,
    "floorMod": _floor_mod,
    "random": lambda rt: random.random(),
    **{name: _real_fn(fn) for name, fn in {
        "floor": math.floor, "ceil": math.ceil, "sqrt": math.sqrt,
        "cbrt": lambda x: math.copysign(abs(x) ** (1 / 3), x),
        "exp": math.exp, "expm1": math.expm1, "log": math.log, "log10": math.log10,
        "log1p": math.log1p, "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin,
        "acos": math.acos, "atan": math.atan, "sinh": math.sinh, "cosh": math.cosh,
        "tanh": math.tanh, "toRadians": math.radians, "toDegrees": math.degrees,
    }.items()},
    **{name: _real_fn(fn, 2) for name, fn in {"pow": math.pow, "atan2": math.atan2, "hypot": math.hypot}.items()},
}
for _name in ("floor", "ceil", "log", "log10", "sqrt"):
    _inner = _MATH[_name]

    def _guarded(rt: Runtime, x: object, _f: Fn = _inner, _n: str = _name) -> float:
        v = real(x)
        if math.isinf(v) or v != v:
            return v if _n in ("floor", "ceil") or v > 0 else math.nan
        if _n in ("log", "log10") and v == 0:
            return -math.inf
        return _f(rt, x)  # type: ignore[no-any-return]

    _guarded.arity = (1, 1)  # type: ignore[attr-defined]
    _MATH[_name] = _guarded


# ---- Integer, Long, Double, Float, Boolean, String

_JAVA_INT = re.compile(r"[+-]?[0-9A-Za-z]+")


def _java_parse_int(bits: int) -> Fn:
    def parse(rt: Runtime, value: object, radix: object = 10) -> int:
        if type(value) is int:
            return value  # type: ignore[return-value]
        s, r = text(value), whole(radix, "radix")
        try:
            if not _JAVA_INT.fullmatch(s) or not 2 <= r <= 36:
                raise ValueError
            v = int(s, r)
        except ValueError:
            raise NumberFormatError(f'For input string: "{s}"' + (f" under radix {r}" if r != 10 else "")) from None
        if not -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
            raise NumberFormatError(f'For input string: "{s}"' + (f" under radix {r}" if r != 10 else ""))
        return v

    return parse


def _java_parse_double(rt: Runtime, value: object) -> float:
    if type(value) in (int, float):
        return float(value)  # type: ignore[arg-type]
    s = text(value).strip()
    try:
        return float(s[:-1] if s[-1:] in "fFdD" and s[-2:-1].isdigit() else s)
    except ValueError:
        raise NumberFormatError(f'For input string: "{s}"') from None


def _unsigned_text(base: str, bits: int) -> Fn:
    def convert(rt: Runtime, value: object) -> str:
        return format(whole(value) & ((1 << bits) - 1), base)

    return convert


def _to_string(rt: Runtime, value: object, radix: object = 10) -> str:
    r = whole(radix, "radix")
    if not 2 <= r <= 36 or r == 10 or type(value) is not int:  # Java falls back to 10
        return to_str(value)
    v, digits, out = abs(value), "0123456789abcdefghijklmnopqrstuvwxyz", ""  # type: ignore[arg-type]
    while True:
        v, d = divmod(v, r)
        out = digits[d] + out
        if not v:
            break
    return ("-" if value < 0 else "") + out  # type: ignore[operator]


_FORMAT_SPEC = re.compile(r"%(?:(\d+)\$)?([-#+ 0,(]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def java_format(rt: Runtime, fmt: object, *args: object) -> str:
    """Java's String.format for the conversions scripts use: s S d x X o f e E g b c n %."""
    pattern = text(fmt, "the format")
    position = 0

    def one(m: re.Match[str]) -> str:
        nonlocal position
        index, flags, width, precision, conv = m.groups()
        if conv == "%":
            return "%"
        if conv == "n":
            return "\n"
        if index:
            i = int(index) - 1
        else:
            i, position = position, position + 1
        if i >= len(args):
            raise ScriptRuntimeError(f"String.format: no argument for '{m.group()}'")
        arg = args[i]
        align = "<" if "-" in flags else ""
        sign = "+" if "+" in flags else (" " if " " in flags else "")
        zero = "0" if "0" in flags and not align else ""
        group = "," if "," in flags else ""
        alt = "#" if "#" in flags else ""
        w = width or ""
        p = f".{precision}" if precision else ""
        if conv in "sS":
            s = to_str(arg)
            s = s[: int(precision)] if precision else s
            s = format(s, f"{align or '>'}{w}")
            return s.upper() if conv == "S" else s
        if conv in "bB":
            s = "false" if arg is None or arg is False else "true"
            return format(s, f"{align or '>'}{w}")
        if conv == "c":
            s = arg if type(arg) is str else chr(whole(arg))
            return format(s, f"{align or '>'}{w}")  # type: ignore[arg-type]
        if conv in "dxXo":
            v = whole(arg)
            if conv != "d" and v < 0:
                v &= (1 << (32 if -(2**31) <= v < 2**31 else 64)) - 1
            return format(v, f"{align}{sign}{alt}{zero}{w}{group if conv == 'd' else ''}{conv}")
        if conv in "feEgG":
            v = real(arg)
            return format(v, f"{align}{sign}{alt}{zero}{w}{group}{p or '.6'}{conv}")
        raise ScriptRuntimeError(f"String.format: unsupported conversion '{m.group()}'")

    return rt.string(_FORMAT_SPEC.sub(one, pattern))


def _join(rt: Runtime, sep: object, *parts: object) -> str:
    seq = items(parts[0]) if len(parts) == 1 and type(parts[0]) is list else list(parts)
    return rt.string(text(sep, "the separator").join(to_str(x) for x in seq))


def _parse_boolean(rt: Runtime, value: object) -> bool:
    return type(value) is str and value.lower() == "true"  # type: ignore[attr-defined]


def _is_nan(rt: Runtime, value: object) -> bool:
    return math.isnan(real(value))


def _is_infinite(rt: Runtime, value: object) -> bool:
    return math.isinf(real(value))


def _compare(rt: Runtime, a: object, b: object) -> int:
    x, y = real(a), real(b)
    return (x > y) - (x < y)


_INTEGER: dict[str, Fn] = {
    "parseInt": _java_parse_int(32),
    "valueOf": _java_parse_int(32),
    "toString": _to_string,
    "toHexString": _unsigned_text("x", 32),
    "toBinaryString": _unsigned_text("b", 32),
    "toOctalString": _unsigned_text("o", 32),
    "max": _MATH["max"],
    "min": _MATH["min"],
    "sum": lambda rt, a, b: whole(a) + whole(b),
    "compare": _compare,
    "signum": lambda rt, a: (whole(a) > 0) - (whole(a) < 0),
}
_LONG: dict[str, Fn] = {
    **_INTEGER,
    "parseLong": _java_parse_int(64),
    "valueOf": _java_parse_int(64),
    "toHexString": _unsigned_text("x", 64),
    "toBinaryString": _unsigned_text("b", 64),
    "toOctalString": _unsigned_text("o", 64),
}
del _LONG["parseInt"]
_DOUBLE: dict[str, Fn] = {
    "parseDouble": _java_parse_double,
    "valueOf": _java_parse_double,
    "toString": lambda rt, v: java_double(real(v)),
    "isNaN": _is_nan,
    "isInfinite": _is_infinite,
    "compare": _compare,
    "max": _MATH["max"],
    "min": _MATH["min"],
    "sum": lambda rt, a, b: real(a) + real(b),
}
_FLOAT: dict[str, Fn] = {**_DOUBLE, "parseFloat": _java_parse_double}
del _FLOAT["parseDouble"]

STATIC_METHODS: dict[str, dict[str, tuple[Fn, int, int]]] = {
    cls: {name: (fn, *arity(fn)) for name, fn in methods.items()}
    for cls, methods in {
        "JSON": {"stringify": json_stringify, "parse": json_parse},
        "Math": _MATH,
        "Integer": _INTEGER,
        "Long": _LONG,
        "Double": _DOUBLE,
        "Float": _FLOAT,
        "String": {"valueOf": lambda rt, v: to_str(v), "format": java_format, "join": _join},
        "Boolean": {"parseBoolean": _parse_boolean, "valueOf": lambda rt, v: v if type(v) is bool
                    else _parse_boolean(rt, v), "toString": lambda rt, v: to_str(flag(v, "value"))},
        "Date": {"now": lambda rt: now_ms()},
    }.items()
}
STATIC_FIELDS: dict[str, dict[str, object]] = {
    "Math": {"PI": math.pi, "E": math.e},
    "Integer": {"MAX_VALUE": 2**31 - 1, "MIN_VALUE": -(2**31), "SIZE": 32, "BYTES": 4},
    "Long": {"MAX_VALUE": 2**63 - 1, "MIN_VALUE": -(2**63), "SIZE": 64, "BYTES": 8},
    "Double": {"MAX_VALUE": 1.7976931348623157e308, "MIN_VALUE": 5e-324, "NaN": math.nan,
               "POSITIVE_INFINITY": math.inf, "NEGATIVE_INFINITY": -math.inf},
    "Float": {"MAX_VALUE": 3.4028234663852886e38, "MIN_VALUE": 1.401298464324817e-45, "NaN": math.nan,
              "POSITIVE_INFINITY": math.inf, "NEGATIVE_INFINITY": -math.inf},
    "Boolean": {"TRUE": True, "FALSE": False},
}
STATIC_CLASSES = set(STATIC_METHODS) | set(STATIC_FIELDS)
