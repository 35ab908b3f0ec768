"""TBEL values at run time: plain Python values with Java/MVEL semantics for printing, equality,
comparison and arithmetic, and the per-run limits (steps, time, memory, call depth).

Values are dict (a map), list (a list or array; bytes are lists of signed ints), str, int, float,
bool and None, plus ``Entry`` (a map entry) and ``TbDate`` while a script runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from thingsray.kv import java_double
from thingsray.rules.script.errors import ScriptRuntimeError

MAX_CALL_DEPTH = 100
TIME_CHECK_EVERY = 256
HEAVY_WORK_CHECK = 50_000
SIZED = (list, dict, str)
MAX_COLLECTION_SIZE = 100_000
DEFAULT_MAX_MEMORY = 10 * 1024 * 1024


class LimitExceeded(ScriptRuntimeError):
    """The script ran past a step, time, memory or call-depth limit."""


class ScriptThrown(ScriptRuntimeError):
    """The script called raiseError(message); the message is the script's own."""


class _Empty:
    def __repr__(self) -> str:
        return "empty"


EMPTY = _Empty()
"""MVEL's ``empty`` literal: equal to null, "" and empty collections."""


class Runtime:
    """One run's counters and limits."""

    __slots__ = ("deadline", "depth", "exotic", "max_memory", "max_steps", "memory", "next_check", "steps",
                 "timeout_s", "work")

    def __init__(self, max_steps: int, timeout_s: float, max_memory: int) -> None:
        self.steps = 0
        self.max_steps = max_steps
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.next_check = min(max_steps, TIME_CHECK_EVERY)
        self.depth = 0
        self.memory = 0
        self.max_memory = max_memory
        self.exotic = False
        """Set once an Entry or a Date exists, or a list or map is put into one (which could make a
        cycle): the result then goes through ``plain``."""
        self.work = 0

    def tick(self) -> None:
        """Called when ``steps`` passes ``next_check``: enforce the step and time limits."""
        if self.steps > self.max_steps:
            raise LimitExceeded(f"script ran past {self.max_steps} steps (an endless loop?)")
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"script ran past its time limit of {self.timeout_s:g} s")
        self.next_check = min(self.max_steps, self.steps + TIME_CHECK_EVERY)

    def heavy(self, size: int) -> None:
        """Account for one operation over ``size`` elements or characters: a long run of them
        checks the deadline, however few steps it took."""
        self.work += size
        if self.work >= HEAVY_WORK_CHECK:
            self.work = 0
            if time.monotonic() > self.deadline:
                raise LimitExceeded(f"script ran past its time limit of {self.timeout_s:g} s")

    def charge(self, size: int) -> None:
        self.heavy(size)
        self.memory += size
        if self.memory > self.max_memory:
            raise LimitExceeded(
                f"script ran past its memory limit of {self.max_memory // (1024 * 1024)} MB")

    def string(self, s: str) -> str:
        """Check a string the script built."""
        if len(s) > self.max_memory:
            raise LimitExceeded(f"script built a string of {len(s)} characters, past its memory limit")
        return s

    def collection(self, c: Any) -> Any:
        """Check and charge a list or map the script built."""
        size = len(c)
        if size > MAX_COLLECTION_SIZE:
            raise LimitExceeded(f"script built a collection of {size} elements; at most "
                                     f"{MAX_COLLECTION_SIZE} are allowed")
        self.charge(16 * size + 64)
        return c

    def grow(self, c: Any, value: object) -> None:
        """Check and charge one element added to a list or map."""
        if type(value) in (list, dict):
            self.exotic = True
        if len(c) >= MAX_COLLECTION_SIZE:
            raise LimitExceeded(f"script grew a collection past {MAX_COLLECTION_SIZE} elements")
        self.charge(sizeof(value))


def sizeof(value: object) -> int:
    if type(value) is str:
        return 40 + len(value)
    return 16


class Entry:
    """A map entry, as ``entrySet()`` and ``foreach`` over a map give them."""

    __slots__ = ("key", "value")

    def __init__(self, key: object, value: object) -> None:
        self.key = key
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and self.key == other.key and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.key)


class TbDate:
    """ThingsBoard's ``Date`` (milliseconds since the epoch; shown in UTC)."""

    __slots__ = ("ms",)

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TbDate) and self.ms == other.ms

    def __hash__(self) -> int:
        return hash(self.ms)


# ---- names of types, for messages


def type_name(v: object) -> str:
    if v is None:
        return "null"
    t = type(v)
    if t is bool:
        return "Boolean"
    if t is int:
        return "Integer" if -(2**31) <= v < 2**31 else "Long"  # type: ignore[operator]
    return _TYPE_NAMES.get(t, t.__name__)


_TYPE_NAMES: dict[type, str] = {float: "Double", str: "String", list: "List", dict: "Map", Entry: "Map.Entry",
                                TbDate: "Date"}


# ---- printing (Java's String.valueOf)




def to_str(v: object) -> str:
    t = type(v)
    if t is str:
        return v  # type: ignore[return-value]
    if t is int:
        return str(v)
    if t is float:
        return java_double(v)  # type: ignore[arg-type]
    if v is None:
        return "null"
    if t is bool:
        return "true" if v else "false"
    if t is list:
        return "[" + ", ".join(to_str(x) for x in v) + "]"  # type: ignore[attr-defined]
    if t is dict:
        return "{" + ", ".join(f"{to_str(k)}={to_str(x)}" for k, x in v.items()) + "}"  # type: ignore[attr-defined]
    if t is Entry:
        return f"{to_str(v.key)}={to_str(v.value)}"  # type: ignore[attr-defined]
    if t is TbDate:
        from thingsray.rules.script._tbel.dates import iso

        return iso(v)  # type: ignore[arg-type]
    return str(v)


# ---- truth, equality, comparison


def truthy(v: object) -> bool:
    if v is True:
        return True
    if v is False or v is None:
        return False
    t = type(v)
    if t is int:
        return v != 0
    if t is float:
        return v == v and v != 0
    if t is str:
        return v != ""
    return True


def numeric(v: object) -> int | float | None:
    """The number a value stands for: numbers as they are, numeric strings parsed; else None."""
    t = type(v)
    if t is int or t is float:
        return v  # type: ignore[return-value]
    if t is str:
        s = v.strip()  # type: ignore[attr-defined]
        if not s:
            return None
        try:
            return int(s)
        except ValueError:
            pass
        try:
            f = float(s)
        except ValueError:
            return None
        return f if s[-1].isdigit() or s[-1] == "." else None
    return None


def is_empty(v: object) -> bool:
    return v is None or v == "" or (type(v) in (list, dict) and not v)


def eq(a: object, b: object) -> bool:
    """MVEL's ``==``: value equality, with numbers compared by value and numeric strings as numbers."""
    if a is b:
        return True
    ta, tb = type(a), type(b)
    if ta is tb:
        return a == b
    if a is EMPTY or b is EMPTY:
        return is_empty(b if a is EMPTY else a)
    if a is None or b is None:
        return False
    if ta is bool or tb is bool:
        other = b if ta is bool else a
        flag = a if ta is bool else b
        if type(other) is str:
            return other.lower() == ("true" if flag else "false")  # type: ignore[attr-defined]
        if type(other) in (int, float):
            return (other != 0) == flag
        return False
    if ta in (int, float) or tb in (int, float):
        x, y = numeric(a), numeric(b)
        return x is not None and y is not None and x == y
    return a == b


def compare(op: str, a: object, b: object) -> bool:
    """``<``, ``>``, ``<=``, ``>=``: numbers (and numeric strings next to numbers) by value, strings
    lexically; anything compared with null is false."""
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        x, y = a, b
    elif a is None or b is None:
        return False
    elif ta is str and tb is str:
        x, y = a, b
    else:
        x, y = numeric(a), numeric(b)
        if x is None or y is None or ta is bool or tb is bool:
            raise ScriptRuntimeError(f"cannot compare {type_name(a)} {to_str(a)!r} with {type_name(b)} "
                                     f"{to_str(b)!r} using '{op}'")
    if op == "<":
        return x < y  # type: ignore[operator]
    if op == ">":
        return x > y  # type: ignore[operator]
    if op == "<=":
        return x <= y  # type: ignore[operator]
    return x >= y  # type: ignore[operator]


# ---- arithmetic


def _operands(op: str, a: object, b: object) -> tuple[int | float, int | float]:
    x, y = numeric(a), numeric(b)
    if x is None or y is None or type(a) is bool or type(b) is bool:
        raise ScriptRuntimeError(f"cannot apply '{op}' to {type_name(a)} {to_str(a)!r} and {type_name(b)} "
                                 f"{to_str(b)!r}")
    return x, y


def add(rt: Runtime, a: object, b: object) -> object:
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return a + b  # type: ignore[operator]
    if ta is str or tb is str:
        sa = a if ta is str else to_str(a)
        sb = b if tb is str else to_str(b)
        if len(sa) + len(sb) > rt.max_memory:  # type: ignore[arg-type]
            raise LimitExceeded(f"script built a string of {len(sa) + len(sb)} characters, "  # type: ignore
                                     "past its memory limit")
        rt.charge(min(len(sa), len(sb)))  # type: ignore[arg-type]
        return sa + sb  # type: ignore[operator]
    if ta is list:
        out = list(a) + (list(b) if tb is list else [b])  # type: ignore[call-overload]
        return rt.collection(out)
    if a is None or b is None:
        raise ScriptRuntimeError(f"cannot apply '+' to {type_name(a)} and {type_name(b)}")
    x, y = _operands("+", a, b)
    return x + y


def sub(a: object, b: object) -> object:
    x, y = _operands("-", a, b)
    return x - y


def mul(a: object, b: object) -> object:
    x, y = _operands("*", a, b)
    return x * y


def div(a: object, b: object) -> float:
    """MVEL divides as doubles: 5 / 2 is 2.5, 1 / 0 is Infinity."""
    x, y = _operands("/", a, b)
    if y == 0:
        if x == 0 or x != x:
            return math.nan
        return math.copysign(math.inf, x) * (math.copysign(1.0, y) if type(y) is float else 1.0)
    return x / y


def mod(a: object, b: object) -> int | float:
    """Java's remainder: the sign follows the dividend."""
    x, y = _operands("%", a, b)
    if type(x) is int and type(y) is int:
        if y == 0:
            raise ScriptRuntimeError("integer remainder by zero ('%')")
        r = abs(x) % abs(y)
        return -r if x < 0 else r
    if y == 0:
        return math.nan
    return math.fmod(x, y)


def power(a: object, b: object) -> int | float:
    x, y = _operands("**", a, b)
    try:
        r = math.pow(x, y)
    except (OverflowError, ValueError):
        return math.nan if x < 0 else math.inf
    if type(x) is int and type(y) is int and y >= 0 and abs(r) <= 2**31 - 1:
        return int(r)
    return r


def _int_operands(op: str, a: object, b: object) -> tuple[int, int]:
    ta, tb = type(a), type(b)
    x = int(a) if ta is bool else a  # type: ignore[arg-type]
    y = int(b) if tb is bool else b  # type: ignore[arg-type]
    if type(x) is not int or type(y) is not int:
        raise ScriptRuntimeError(f"'{op}' needs whole numbers, not {type_name(a)} and {type_name(b)}")
    return x, y


def _wrap(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _width(x: int) -> int:
    return 32 if -(2**31) <= x < 2**31 else 64


def bitwise(op: str, a: object, b: object) -> int:
    x, y = _int_operands(op, a, b)
    if op == "&":
        return x & y
    if op == "|":
        return x | y
    if op == "^":
        return x ^ y
    bits = _width(x)
    shift = y & (bits - 1)
    if op == "<<":
        return _wrap(x << shift, bits)
    if op == ">>":
        return x >> shift
    return (x & ((1 << bits) - 1)) >> shift  # >>>


def negate(v: object) -> int | float:
    t = type(v)
    if t is int or t is float:
        return -v  # type: ignore[operator]
    x = numeric(v)
    if x is None or t is bool:
        raise ScriptRuntimeError(f"cannot negate {type_name(v)} {to_str(v)!r}")
    return -x


def invert(v: object) -> int:
    if type(v) is not int:
        raise ScriptRuntimeError(f"'~' needs a whole number, not {type_name(v)}")
    return ~v  # type: ignore[operator]


def cast(typ: str, v: object) -> object:
    """``(int) x`` and typed declarations: Java's narrowing of numbers."""
    base = typ.rstrip("[]")
    if typ.endswith("[]") or base in ("Object", "Number", "List", "Map", "ArrayList", "HashMap"):
        return v
    if base in ("String",):
        return v if v is None else to_str(v)
    if v is None:
        if base in ("int", "long", "short", "byte", "char", "double", "float", "boolean"):
            raise ScriptRuntimeError(f"cannot convert null to {base}")
        return None
    if base in ("boolean", "Boolean"):
        if type(v) is bool:
            return v
        if type(v) is str and v.lower() in ("true", "false"):  # type: ignore[attr-defined]
            return v.lower() == "true"  # type: ignore[attr-defined]
        raise ScriptRuntimeError(f"cannot convert {type_name(v)} {to_str(v)!r} to {base}")
    if base in ("char", "Character"):
        if type(v) is str and len(v) == 1:  # type: ignore[arg-type]
            return v
        if type(v) is int:
            return chr(v & 0xFFFF)  # type: ignore[operator]
        raise ScriptRuntimeError(f"cannot convert {type_name(v)} {to_str(v)!r} to char")
    x = numeric(v) if type(v) is not bool else None
    if x is None:
        raise ScriptRuntimeError(f"cannot convert {type_name(v)} {to_str(v)!r} to {base}")
    if base in ("double", "Double", "float", "Float"):
        return float(x)
    if type(x) is float:
        if x != x:
            return 0
        if math.isinf(x):
            x = (2**63 - 1) if x > 0 else -(2**63)
        x = int(x)
    bits = {"int": 32, "Integer": 32, "long": 64, "Long": 64, "short": 16, "Short": 16, "byte": 8, "Byte": 8}
    return _wrap(int(x), bits.get(base, 64))


# ---- copying in, converting out


def copy_in(v: Any) -> Any:
    """A private copy of an argument, so a script's changes never reach the caller's objects."""
    t = type(v)
    if t is dict:
        return {k: copy_in(x) for k, x in v.items()}
    if t is list or t is tuple:
        return [copy_in(x) for x in v]
    return v


def plain(v: Any) -> Any:
    """A result as JSON-like values: entries and dates written as Jackson writes them, and no
    list or map that contains itself."""
    from thingsray.rules.script._tbel.dates import iso

    path: set[int] = set()

    def convert(x: Any) -> Any:
        t = type(x)
        if t is dict or t is list:
            if id(x) in path:
                raise ScriptRuntimeError("the script's result contains itself")
            if len(path) > 200:
                raise LimitExceeded("the script's result is nested too deeply")
            path.add(id(x))
            out = {k: convert(y) for k, y in x.items()} if t is dict else [convert(y) for y in x]
            path.discard(id(x))
            return out
        if t is Entry:
            return {to_str(x.key): convert(x.value)}
        if t is TbDate:
            return iso(x)
        return x

    return convert(v)


# ---- errors with where they happened

PYTHON_ERRORS = (ArithmeticError, ValueError, TypeError, LookupError, AttributeError)


def located(e: Exception, loc: str, what: str = "") -> Exception:
    """The error to raise for ``e`` met at ``loc``: our limits and raiseError pass unchanged."""
    if isinstance(e, (LimitExceeded, ScriptThrown)):
        return e
    if isinstance(e, ScriptRuntimeError):
        return ScriptRuntimeError(f"{what}{e} (at {loc})")
    return ScriptRuntimeError(f"{what}{type(e).__name__}: {e} (at {loc})")


def guarded(loc: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except (ScriptRuntimeError, *PYTHON_ERRORS) as e:
        raise located(e, loc) from None
