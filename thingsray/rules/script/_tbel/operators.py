"""Binary operators as closures: a fast path for the common kinds (two numbers, two strings, a
number constant on the right), and the MVEL rules of ``values`` for the rest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from thingsray.rules.script._tbel import values as V
from thingsray.rules.script._tbel.methods import same
from thingsray.rules.script._tbel.regex import java_regex
from thingsray.rules.script._tbel.values import Runtime, guarded, to_str

Expr = Callable[[dict[Any, Any]], Any]
RT = 1
NO_CONSTANT = object()


def _concat(rt: Runtime, a: object, b: object) -> str:
    return V.add(rt, to_str(a), to_str(b))  # type: ignore[return-value]


def _contains(a: object, b: object) -> bool:
    t = type(a)
    if t is str:
        return to_str(b) in a  # type: ignore[operator]
    if t is list:
        return any(same(x, b) for x in a)  # type: ignore[attr-defined]
    if t is dict:
        return b in a  # type: ignore[operator]
    return False


def _matches(a: object, b: object) -> bool:
    subject = to_str(a)
    return java_regex(to_str(b), subject).fullmatch(subject) is not None


def apply(rt: Runtime, op: str, a: object, b: object) -> object:
    """One operator on two values, by the rules (the slow path of every operator)."""
    if op == "+":
        return V.add(rt, a, b)
    if op == "-":
        return V.sub(a, b)
    if op == "*":
        return V.mul(a, b)
    if op == "/":
        return V.div(a, b)
    if op == "%":
        return V.mod(a, b)
    if op == "**":
        return V.power(a, b)
    if op in ("&", "|", "^", "<<", ">>", ">>>"):
        return V.bitwise(op, a, b)
    if op == "#":
        return _concat(rt, a, b)
    if op in ("==", "==="):
        return V.eq(a, b)
    if op in ("!=", "!=="):
        return not V.eq(a, b)
    if op in ("<", ">", "<=", ">="):
        return V.compare(op, a, b)
    if op == "contains":
        return _contains(a, b)
    if op == "~=":
        return _matches(a, b)
    raise V.ScriptRuntimeError(f"unknown operator '{op}'")


def _slow(op: str, loc: str) -> Callable[[dict[Any, Any], Any, Any], Any]:
    def slow(L: dict[Any, Any], a: Any, b: Any) -> Any:
        return guarded(loc, apply, L[RT], op, a, b)

    return slow


def binary(op: str, left: Expr, right: Expr, loc: str, constant: object = NO_CONSTANT) -> Expr:
    slow = _slow(op, loc)
    if op in ("<", ">", "<=", ">="):
        return _comparison(op, left, right, slow, constant)
    if op in ("==", "===", "!=", "!=="):
        return _equality(op in ("!=", "!=="), left, right, constant)
    if op in ("+", "-", "*"):
        return _arithmetic(op, left, right, slow)
    if op == "/":
        def div(L: dict[Any, Any]) -> Any:
            a = left(L)
            b = right(L)
            ta, tb = type(a), type(b)
            if (ta is int or ta is float) and (tb is int or tb is float) and b:
                return a / b
            return slow(L, a, b)

        return div
    if op == "%":
        def mod(L: dict[Any, Any]) -> Any:
            a = left(L)
            b = right(L)
            if type(a) is int and type(b) is int and a >= 0 and b > 0:
                return a % b
            return slow(L, a, b)

        return mod

    def other(L: dict[Any, Any]) -> Any:
        return slow(L, left(L), right(L))

    return other


def _arithmetic(op: str, left: Expr, right: Expr, slow: Callable[..., Any]) -> Expr:
    if op == "+":
        def plus(L: dict[Any, Any]) -> Any:
            a = left(L)
            b = right(L)
            ta, tb = type(a), type(b)
            if (ta is int or ta is float) and (tb is int or tb is float):
                return a + b
            return slow(L, a, b)

        return plus
    if op == "-":
        def minus(L: dict[Any, Any]) -> Any:
            a = left(L)
            b = right(L)
            ta, tb = type(a), type(b)
            if (ta is int or ta is float) and (tb is int or tb is float):
                return a - b
            return slow(L, a, b)

        return minus

    def times(L: dict[Any, Any]) -> Any:
        a = left(L)
        b = right(L)
        ta, tb = type(a), type(b)
        if (ta is int or ta is float) and (tb is int or tb is float):
            return a * b
        return slow(L, a, b)

    return times


def _comparison(op: str, left: Expr, right: Expr, slow: Callable[..., Any], constant: object) -> Expr:
    import operator

    test = {"<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}[op]
    if type(constant) in (int, float):
        c = constant
        if op == ">":
            def greater_than(L: dict[Any, Any]) -> Any:
                a = left(L)
                ta = type(a)
                if ta is int or ta is float:
                    return a > c
                return slow(L, a, c)

            return greater_than
        if op == "<":
            def less_than(L: dict[Any, Any]) -> Any:
                a = left(L)
                ta = type(a)
                if ta is int or ta is float:
                    return a < c
                return slow(L, a, c)

            return less_than

        def against_constant(L: dict[Any, Any]) -> Any:
            a = left(L)
            ta = type(a)
            if ta is int or ta is float:
                return test(a, c)
            return slow(L, a, c)

        return against_constant

    def compare(L: dict[Any, Any]) -> Any:
        a = left(L)
        b = right(L)
        ta, tb = type(a), type(b)
        if ((ta is int or ta is float) and (tb is int or tb is float)) or (ta is str and tb is str):
            return test(a, b)
        return slow(L, a, b)

    return compare


def _equality(negate: bool, left: Expr, right: Expr, constant: object) -> Expr:
    eq = V.eq
    if type(constant) is str:
        c = constant

        def equals_text(L: dict[Any, Any]) -> bool:
            a = left(L)
            if type(a) is str:
                return (a == c) != negate
            return eq(a, c) != negate

        return equals_text

    def equals(L: dict[Any, Any]) -> bool:
        a = left(L)
        b = right(L)
        if a is b:
            return not negate
        ta = type(a)
        if ta is type(b) and (ta is str or ta is int or ta is float):
            return (a == b) != negate
        return eq(a, b) != negate

    return equals
