"""The helper functions' registry and the conversions of their arguments, with TbUtils's rules:
Java's String, int, double, boolean and List parameters, and bytes as lists of signed ints."""

from __future__ import annotations

import codecs
import inspect
from collections.abc import Callable
from typing import Any

from thingsray.rules.script._tbel.values import Runtime, to_str, type_name
from thingsray.rules.script.errors import ScriptRuntimeError

Fn = Callable[..., Any]
FUNCTIONS: dict[str, tuple[Fn, int, int]] = {}
"""name -> (function, fewest arguments, most arguments); arguments after the Runtime."""


def arity(fn: Fn) -> tuple[int, int]:
    fixed = getattr(fn, "arity", None)
    if fixed is not None:
        return fixed  # type: ignore[no-any-return]
    params = list(inspect.signature(fn).parameters.values())[1:]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return sum(p.default is p.empty and p.kind is not p.VAR_POSITIONAL for p in params), 255
    return sum(p.default is p.empty for p in params), len(params)


def helper(*names: str) -> Callable[[Fn], Fn]:
    def register(fn: Fn) -> Fn:
        lo, hi = arity(fn)
        for name in names or (fn.__name__.rstrip("_"),):
            FUNCTIONS[name] = (fn, lo, hi)
        return fn

    return register


class NumberFormatError(ScriptRuntimeError):
    pass


# ---- argument conversion


def text(v: object, what: str = "value") -> str:
    if type(v) is str:
        return v  # type: ignore[return-value]
    if type(v) in (int, float):
        return to_str(v)
    raise ScriptRuntimeError(f"{what} must be a String, not {type_name(v)}")


def whole(v: object, what: str = "value") -> int:
    if type(v) is int:
        return v  # type: ignore[return-value]
    if type(v) is float and v == int(v):  # type: ignore[arg-type]
        return int(v)  # type: ignore[arg-type]
    raise ScriptRuntimeError(f"{what} must be a whole number, not {type_name(v)} {to_str(v)!r}")


def real(v: object, what: str = "value") -> float:
    if type(v) in (int, float):
        return float(v)  # type: ignore[arg-type]
    raise ScriptRuntimeError(f"{what} must be a number, not {type_name(v)}")


def flag(v: object, what: str) -> bool:
    if type(v) is bool:
        return v  # type: ignore[return-value]
    raise ScriptRuntimeError(f"{what} must be true or false, not {type_name(v)}")


def items(v: object, what: str = "value") -> list[Any]:
    if type(v) is list:
        return v  # type: ignore[return-value]
    raise ScriptRuntimeError(f"{what} must be a list, not {type_name(v)}")


def to_bytes(v: object) -> bytes:
    """Java's bytesFromList: ints from -128 to 255, or numeric strings."""
    out = bytearray()
    for x in items(v, "the bytes"):
        if type(x) is str:
            from thingsray.rules.script._tbel.numeric import parse_int

            x = parse_int(x)
        if type(x) is not int or not -128 <= x <= 255:
            raise NumberFormatError(f"The value '{to_str(x)}' could not be correctly converted to a byte. "
                                    "Integer to byte conversion requires the use of only 8 bits "
                                    "(with a range of min/max = -128/255)!")
        out.append(x & 0xFF)
    return bytes(out)


def signed(data: bytes, rt: Runtime | None = None) -> list[int]:
    out = [b - 256 if b > 127 else b for b in data]
    return rt.collection(out) if rt is not None else out  # type: ignore[no-any-return]


def charset(name: object) -> str:
    try:
        return codecs.lookup(text(name, "charset")).name
    except LookupError:
        raise ScriptRuntimeError(f"unsupported charset {to_str(name)!r}") from None
