"""Java regular expressions as scripts use them (replaceAll, split, matches, ``~=``), run on
Python's ``re`` with a guard: a pattern that nests repetition (``(a+)+``), the kind that can
backtrack for ever on a short input, is refused, since no step counter can stop a regex match."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from thingsray.rules.script.errors import ScriptRuntimeError

try:  # Python 3.11+: the parser under ``re`` without the deprecated sre_parse alias
    from re import _constants as sre_constants  # type: ignore[attr-defined]
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    import sre_constants  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

MAX_SUBJECT = 1_000_000
"""The longest text split on a literal separator."""
SUBJECT_CAPS = (1_000_000, 100_000, 10_000)
"""The longest text a pattern may search, by how many variable-length repetitions it has (0, 1,
2 or more): a search can cost the length to the power of that number plus one."""
_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT}
if hasattr(sre_constants, "POSSESSIVE_REPEAT"):
    _REPEATS.add(sre_constants.POSSESSIVE_REPEAT)
_NAMED_GROUP = re.compile(r"\(\?<([A-Za-z][A-Za-z0-9]*)>")
_META = set(".$|()[]{}^?*+\\")


_C = sre_constants


def _char_matcher(node: tuple[object, object]) -> Callable[[str], bool] | None:
    """For a node that matches exactly one character: a test of which characters it matches."""
    op, av = node
    if op is _C.LITERAL:
        return lambda c: ord(c) == av
    if op is _C.NOT_LITERAL:
        return lambda c: ord(c) != av
    if op is _C.ANY:
        return lambda c: c != "\n"
    if op is _C.IN:
        negate = any(o is _C.NEGATE for o, _ in av)  # type: ignore[attr-defined]
        tests = []
        for o, a in av:  # type: ignore[attr-defined]
            if o is _C.LITERAL:
                tests.append(lambda c, a=a: ord(c) == a)
            elif o is _C.RANGE:
                tests.append(lambda c, a=a: a[0] <= ord(c) <= a[1])
            elif o is _C.CATEGORY:
                tests.append(_CATEGORIES.get(a, lambda c: True))
        return lambda c: any(t(c) for t in tests) != negate
    return None


_CATEGORIES: dict[object, Callable[[str], bool]] = {
    _C.CATEGORY_DIGIT: str.isdigit,
    _C.CATEGORY_NOT_DIGIT: lambda c: not c.isdigit(),
    _C.CATEGORY_SPACE: str.isspace,
    _C.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
    _C.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    _C.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
}


def _bounded_by_next(items: list[tuple[object, object]], i: int) -> bool:
    """``\\d+:`` inside a repetition is safe: the repeated class cannot match the literal after it."""
    sub = items[i][1][2]  # type: ignore[index]
    if len(sub) != 1 or i + 1 >= len(items) or items[i + 1][0] is not _C.LITERAL:
        return False
    test = _char_matcher(sub[0])
    return test is not None and not test(chr(items[i + 1][1]))  # type: ignore[arg-type]


def _nested_repeat(parsed: object, inside: bool) -> bool:
    seq = list(parsed)  # type: ignore[call-overload]
    for i, (op, av) in enumerate(seq):
        if op in _REPEATS:
            lo, hi, sub = av
            if inside and lo != hi and not _bounded_by_next(seq, i):
                return True
            if _nested_repeat(sub, inside or hi > 1):
                return True
        elif op is _C.SUBPATTERN:
            if _nested_repeat(av[-1], inside):
                return True
        elif op is _C.BRANCH:
            branches = av[1]
            if inside:
                firsts = [b[0] if len(b) else None for b in branches]
                if any(f is None or f[0] is not _C.LITERAL for f in firsts) or len({f[1] for f in firsts}) < len(
                        firsts):
                    return True
            if any(_nested_repeat(b, inside) for b in branches):
                return True
        elif op in (_C.ASSERT, _C.ASSERT_NOT):
            if _nested_repeat(av[1], inside):
                return True
        elif hasattr(_C, "ATOMIC_GROUP") and op is _C.ATOMIC_GROUP:
            if _nested_repeat(av, inside):
                return True
    return False


def _variable_repeats(parsed: object) -> int:
    count = 0
    for op, av in parsed:  # type: ignore[attr-defined]
        if op in _REPEATS:
            count += (av[0] != av[1]) + _variable_repeats(av[2])
        elif op is _C.SUBPATTERN:
            count += _variable_repeats(av[-1])
        elif op is _C.BRANCH:
            count += max((_variable_repeats(b) for b in av[1]), default=0)
    return count


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> tuple[re.Pattern[str], int]:
    source = _NAMED_GROUP.sub(r"(?P<\1>", pattern)
    try:
        parsed = sre_parse.parse(source)
        compiled = re.compile(source)
    except (re.error, OverflowError, RecursionError) as e:
        raise ScriptRuntimeError(f"invalid regular expression {pattern!r}: {e}") from None
    if _nested_repeat(parsed, False):
        raise ScriptRuntimeError(f"regular expression {pattern!r} nests repetition (like (a+)+ or (a|ab)*), "
                                 "which can run for ever; write it without the nesting")
    return compiled, SUBJECT_CAPS[min(_variable_repeats(parsed), 2)]


def java_regex(pattern: str, subject: str = "") -> re.Pattern[str]:
    """The compiled pattern, once the pattern and the length of the text it will search are safe."""
    compiled, cap = _compiled(pattern)
    if len(subject) > cap:
        raise ScriptRuntimeError(f"regular expression {pattern!r} may search at most {cap} characters, "
                                 f"not {len(subject)}")
    return compiled


@functools.lru_cache(maxsize=256)
def java_replacement(replacement: str) -> Callable[[re.Match[str]], str]:
    """Java's replacement text: $1 and ${name} are groups, backslash escapes the next character."""
    parts: list[str | int] = []
    literal, i = "", 0
    while i < len(replacement):
        c = replacement[i]
        if c == "\\":
            if i + 1 >= len(replacement):
                raise ScriptRuntimeError("character to be escaped is missing in the replacement")
            literal += replacement[i + 1]
            i += 2
        elif c == "$":
            m = re.match(r"\{([A-Za-z][A-Za-z0-9]*)\}|(\d)", replacement[i + 1:])
            if m is None:
                raise ScriptRuntimeError(f"illegal group reference in the replacement {replacement!r}")
            parts.append(literal)
            literal = ""
            parts.append(m.group(1) or int(m.group(2)))  # type: ignore[arg-type]
            i += 1 + m.end()
        else:
            literal += c
            i += 1
    parts.append(literal)

    def expand(m: re.Match[str]) -> str:
        try:
            return "".join(p if k % 2 == 0 else (m.group(p) or "") for k, p in enumerate(parts))  # type: ignore
        except (IndexError, re.error) as e:
            raise ScriptRuntimeError(f"the replacement refers to a group the expression lacks: {e}") from None

    return expand


def _literal(pattern: str) -> str | None:
    """The text a pattern stands for when it has no regex syntax (Java's split fast path)."""
    if not any(c in _META for c in pattern):
        return pattern
    if len(pattern) == 2 and pattern[0] == "\\" and not pattern[1].isalnum():
        return pattern[1]
    return None


def split(s: str, pattern: str, limit: int = 0) -> list[str]:
    """Java's String.split: trailing empty strings go when limit is 0; a leading empty string from
    a zero-width match at the start goes too."""
    if len(s) > MAX_SUBJECT:
        raise ScriptRuntimeError(f"cannot split a text of {len(s)} characters")
    literal = _literal(pattern)
    if literal == "":
        parts = list(s)
        if limit > 0 and len(parts) > limit:
            parts = [*parts[: limit - 1], "".join(parts[limit - 1:])]
        return parts if s else [""]
    if literal is not None:
        parts = s.split(literal, limit - 1 if limit > 0 else -1)
    else:
        compiled = java_regex(pattern, s)
        parts = compiled.split(s, maxsplit=limit - 1 if limit > 0 else 0) if compiled.groups == 0 else [
            p for k, p in enumerate(compiled.split(s, maxsplit=limit - 1 if limit > 0 else 0))
            if k % (compiled.groups + 1) == 0]
        if parts and parts[0] == "" and s and (m := compiled.match(s)) is not None and m.end() == 0:
            parts = parts[1:]
    if len(parts) == 1:
        return parts
    if limit == 0:
        while parts and parts[-1] == "":
            parts.pop()
    return parts
