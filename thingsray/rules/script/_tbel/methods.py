"""Methods scripts call on values: Java's String, TBEL's lists (ExecutionArrayList: Java List plus
push/pop/slice/join...) and maps (ExecutionHashMap: Java Map plus sortByKey/invert...), map
entries, numbers and dates. Each takes the run's ``Runtime`` and the receiver first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from thingsray.rules.script._tbel.convert import arity, charset, flag, items, real, signed, text, whole
from thingsray.rules.script._tbel.dates import DATE_METHODS
from thingsray.rules.script._tbel.regex import java_regex, java_replacement, split
from thingsray.rules.script._tbel.values import Entry, Runtime, TbDate, cast, sizeof, to_str, type_name
from thingsray.rules.script.errors import ScriptRuntimeError

Fn = Callable[..., Any]


def same(a: object, b: object) -> bool:
    """Java's equals: same kind and same value (1 is not 1.0, and true is not 1)."""
    ta, tb = type(a), type(b)
    return (ta is tb or (ta in (list, dict) and tb in (list, dict))) and a == b


def _index(size: int, i: object) -> int:
    idx = whole(i, "index")
    if not 0 <= idx < size:
        raise ScriptRuntimeError(f"Index {idx} out of bounds for length {size}")
    return idx


def _start(i: object, size: int) -> int:
    v = whole(i, "start")
    return max(size + v, 0) if v < 0 else min(v, size)


# ---- String


def _substring(rt: Runtime, s: str, begin: object, end: object = None) -> str:
    b = whole(begin, "beginIndex")
    e = len(s) if end is None else whole(end, "endIndex")
    if not 0 <= b <= e <= len(s):
        raise ScriptRuntimeError(f"begin {b}, end {e}, length {len(s)}")
    return s[b:e]


def _char_at(rt: Runtime, s: str, i: object) -> str:
    idx = whole(i, "index")
    if not 0 <= idx < len(s):
        raise ScriptRuntimeError(f"String index out of range: {idx}")
    return s[idx]


def _needle(x: object) -> str:
    return chr(x) if type(x) is int else text(x, "the text to find")  # type: ignore[arg-type]


def _index_of(rt: Runtime, s: str, x: object, start: object = 0) -> int:
    return s.find(_needle(x), max(whole(start, "fromIndex"), 0))


def _last_index_of(rt: Runtime, s: str, x: object, start: object = None) -> int:
    needle = _needle(x)
    if start is None:
        return s.rfind(needle)
    return s.rfind(needle, 0, max(whole(start, "fromIndex"), -1) + len(needle))


def _java_trim(rt: Runtime, s: str) -> str:
    start, end = 0, len(s)
    while start < end and s[start] <= " ":
        start += 1
    while end > start and s[end - 1] <= " ":
        end -= 1
    return s[start:end]


def _replace_all(rt: Runtime, s: str, regex: object, replacement: object) -> str:
    pattern = java_regex(text(regex, "the regex"), s)
    return rt.string(pattern.sub(java_replacement(text(replacement, "the replacement")), s))


def _replace_first(rt: Runtime, s: str, regex: object, replacement: object) -> str:
    pattern = java_regex(text(regex, "the regex"), s)
    return rt.string(pattern.sub(java_replacement(text(replacement, "the replacement")), s, count=1))


def _repeat(rt: Runtime, s: str, count: object) -> str:
    n = whole(count, "count")
    if n < 0:
        raise ScriptRuntimeError(f"count is negative: {n}")
    if len(s) * n > rt.max_memory:
        raise ScriptRuntimeError(f"repeat({n}) would build {len(s) * n} characters, past the memory limit")
    return s * n


def _java_hash(rt: Runtime, s: str) -> int:
    h = 0
    for unit in s.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h - (1 << 32) if h >> 31 else h


def _compare_text(rt: Runtime, s: str, other: object, fold: bool = False) -> int:
    o = text(other)
    a, b = (s.lower(), o.lower()) if fold else (s, o)
    for x, y in zip(a, b, strict=False):
        if x != y:
            return ord(x) - ord(y)
    return len(a) - len(b)


STRING: dict[str, Fn] = {
    "length": lambda rt, s: len(s),
    "isEmpty": lambda rt, s: not s,
    "isBlank": lambda rt, s: not s.strip(),
    "charAt": _char_at,
    "codePointAt": lambda rt, s, i: ord(_char_at(rt, s, i)),
    "substring": _substring,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "contains": lambda rt, s, x: text(x, "the text to find") in s,
    "startsWith": lambda rt, s, p, offset=0: s.startswith(text(p, "the prefix"), whole(offset, "offset")),
    "endsWith": lambda rt, s, p: s.endswith(text(p, "the suffix")),
    "toUpperCase": lambda rt, s: s.upper(),
    "toLowerCase": lambda rt, s: s.lower(),
    "trim": _java_trim,
    "strip": lambda rt, s: s.strip(),
    "stripLeading": lambda rt, s: s.lstrip(),
    "stripTrailing": lambda rt, s: s.rstrip(),
    "replace": lambda rt, s, a, b: rt.string(s.replace(_needle(a), _needle(b))),
    "replaceAll": _replace_all,
    "replaceFirst": _replace_first,
    "split": lambda rt, s, regex, limit=0: rt.collection(split(s, text(regex, "the regex"), whole(limit, "limit"))),
    "matches": lambda rt, s, regex: java_regex(text(regex, "the regex"), s).fullmatch(s) is not None,
    "equals": lambda rt, s, o: same(s, o),
    "equalsIgnoreCase": lambda rt, s, o: type(o) is str and s.lower() == o.lower(),
    "compareTo": _compare_text,
    "compareToIgnoreCase": lambda rt, s, o: _compare_text(rt, s, o, True),
    "concat": lambda rt, s, o: rt.string(s + text(o)),
    "repeat": _repeat,
    "toCharArray": lambda rt, s: rt.collection(list(s)),
    "getBytes": lambda rt, s, cs="UTF-8": signed(s.encode(charset(cs)), rt),
    "hashCode": _java_hash,
    "toString": lambda rt, s: s,
}


# ---- List


def _sort_key(values: list[Any]) -> Callable[[Any], Any]:
    def number(v: object) -> float:
        return float(to_str(v))

    try:
        for v in values:
            number(v)
    except ValueError:
        return to_str
    return number


def _sort(rt: Runtime, lst: list[Any], asc: object = True) -> None:
    lst.sort(key=_sort_key(lst), reverse=not flag(asc, "asc"))


def _add(rt: Runtime, lst: list[Any], a: object, *rest: object) -> object:
    if rest:
        idx = whole(a, "index")
        if not 0 <= idx <= len(lst):
            raise ScriptRuntimeError(f"Index: {idx}, Size: {len(lst)}")
        rt.grow(lst, rest[0])
        lst.insert(idx, rest[0])
        return None
    rt.grow(lst, a)
    lst.append(a)
    return True


def _add_all(rt: Runtime, lst: list[Any], a: object, b: object = None) -> bool:
    rt.exotic = True
    if b is None:
        idx, more = len(lst), items(a, "the elements")
    else:
        idx, more = whole(a, "index"), items(b, "the elements")
        if not 0 <= idx <= len(lst):
            raise ScriptRuntimeError(f"Index: {idx}, Size: {len(lst)}")
    rt.collection(range(len(lst) + len(more)))
    lst[idx:idx] = list(more)
    return bool(more)


def _remove(rt: Runtime, lst: list[Any], x: object) -> object:
    if type(x) is int:
        return lst.pop(_index(len(lst), x))
    for i, v in enumerate(lst):
        if same(v, x):
            del lst[i]
            return True
    return False


def _list_index_of(rt: Runtime, lst: list[Any], x: object, start: object = 0) -> int:
    for i in range(max(whole(start, "fromIndex"), 0), len(lst)):
        if same(lst[i], x):
            return i
    return -1


def _list_last_index_of(rt: Runtime, lst: list[Any], x: object) -> int:
    for i in range(len(lst) - 1, -1, -1):
        if same(lst[i], x):
            return i
    return -1


def _contains_all(rt: Runtime, lst: list[Any], xs: object) -> bool:
    wanted = items(xs, "the elements")
    try:
        present = {(type(v), v) for v in lst}
        return all((type(x), x) in present for x in wanted)
    except TypeError:  # maps or lists inside: compare one by one
        rt.heavy(len(lst) * len(wanted))
        return all(any(same(v, x) for v in lst) for x in wanted)


def _set(rt: Runtime, lst: list[Any], i: object, v: object) -> object:
    rt.exotic = True
    idx = _index(len(lst), i)
    old = lst[idx]
    rt.charge(sizeof(v))
    lst[idx] = v
    return old


def _unshift(rt: Runtime, lst: list[Any], *values: object) -> None:
    for v in values:
        rt.grow(lst, v)
    lst[0:0] = values


def _shift(rt: Runtime, lst: list[Any]) -> object:
    if not lst:
        raise ScriptRuntimeError("Index 0 out of bounds for length 0")
    return lst.pop(0)


def _slice(rt: Runtime, lst: list[Any], start: object = 0, end: object = None) -> list[Any]:
    b = _start(start, len(lst))
    e = len(lst) if end is None else _start(end, len(lst))
    return rt.collection(lst[b:e])  # type: ignore[no-any-return]


def _join(rt: Runtime, lst: list[Any], sep: object = ",") -> str:
    def part(v: object) -> str:
        return ",".join(part(x) for x in v) if type(v) is list else to_str(v)  # type: ignore[attr-defined]

    return rt.string(text(sep, "the separator").join(part(v) for v in lst))


def _splice(rt: Runtime, lst: list[Any], start: object, count: object = None, *values: object) -> list[Any]:
    rt.exotic = True
    b = _start(start, len(lst))
    n = len(lst) - b if count is None else max(0, min(whole(count, "deleteCount"), len(lst) - b))
    removed = lst[b:b + n]
    rt.collection(range(len(lst) - n + len(values)))
    lst[b:b + n] = values
    return rt.collection(removed)  # type: ignore[no-any-return]


def _fill(rt: Runtime, lst: list[Any], value: object, start: object = 0, end: object = None) -> list[Any]:
    rt.exotic = True
    b = _start(start, len(lst))
    e = len(lst) if end is None else _start(end, len(lst))
    for i in range(b, e):
        lst[i] = value
    return lst


def _with(rt: Runtime, lst: list[Any], i: object, value: object) -> list[Any]:
    rt.exotic = True
    idx = whole(i, "index")
    pos = idx + len(lst) if idx < 0 else idx
    if not 0 <= pos < len(lst):
        raise ScriptRuntimeError(f"Index: {idx}, Size: {len(lst)}")
    out = rt.collection(list(lst))
    out[pos] = value
    return out  # type: ignore[no-any-return]


def _copy(rt: Runtime, c: Any) -> Any:
    return rt.collection(type(c)(c))


def _on_copy(fn: Fn) -> Fn:
    """toSorted, toReversed...: the in-place method applied to a copy."""

    def call(rt: Runtime, obj: Any, *args: Any) -> Any:
        out = _copy(rt, obj)
        fn(rt, out, *args)
        return out

    call.arity = arity(fn)  # type: ignore[attr-defined]
    return call


def _reverse(rt: Runtime, lst: list[Any]) -> None:
    lst.reverse()


def _sub_list(rt: Runtime, lst: list[Any], start: object, end: object) -> list[Any]:
    b, e = whole(start, "fromIndex"), whole(end, "toIndex")
    if not 0 <= b <= e <= len(lst):
        raise ScriptRuntimeError(f"fromIndex {b}, toIndex {e}, size {len(lst)}")
    return rt.collection(lst[b:e])  # type: ignore[no-any-return]


def _push(rt: Runtime, lst: list[Any], v: object) -> bool:
    rt.grow(lst, v)
    lst.append(v)
    return True


LIST: dict[str, Fn] = {
    "size": lambda rt, lst: len(lst),
    "length": lambda rt, lst: len(lst),
    "isEmpty": lambda rt, lst: not lst,
    "get": lambda rt, lst, i: lst[_index(len(lst), i)],
    "set": _set,
    "add": _add,
    "push": _push,
    "addAll": _add_all,
    "remove": _remove,
    "contains": lambda rt, lst, x: any(same(v, x) for v in lst),
    "containsAll": _contains_all,
    "indexOf": _list_index_of,
    "lastIndexOf": _list_last_index_of,
    "clear": lambda rt, lst: lst.clear(),
    "sort": _sort,
    "toSorted": _on_copy(_sort),
    "reverse": _reverse,
    "toReversed": _on_copy(_reverse),
    "pop": lambda rt, lst: lst.pop() if lst else None,
    "shift": _shift,
    "unshift": _unshift,
    "slice": _slice,
    "subList": _sub_list,
    "join": _join,
    "concat": lambda rt, lst, more: rt.collection(lst + items(more, "the elements")),
    "splice": _splice,
    "toSpliced": _on_copy(_splice),
    "with": _with,
    "fill": _fill,
    "clone": _copy,
    "toArray": _copy,
    "toString": lambda rt, lst: rt.string(to_str(lst)),
    "equals": lambda rt, lst, o: same(lst, o),
    "memorySize": lambda rt, lst: sum(sizeof(v) for v in lst),
}


# ---- Map


def _put(rt: Runtime, m: dict[Any, Any], k: object, v: object) -> object:
    """TBEL's map drops a key put with null."""
    old = m.get(k)
    if v is None:
        m.pop(k, None)
        return old
    if k not in m:
        rt.grow(m, v)
    else:
        rt.grow({}, v)
    m[k] = v
    return old


def _put_if_absent(rt: Runtime, m: dict[Any, Any], k: object, v: object) -> object:
    if m.get(k) is None:
        _put(rt, m, k, v)
        return None
    return m[k]


def _put_all(rt: Runtime, m: dict[Any, Any], other: object) -> None:
    rt.exotic = True
    if type(other) is not dict:
        raise ScriptRuntimeError(f"putAll needs a map, not {type_name(other)}")
    rt.collection(range(len(m) + len(other)))  # type: ignore[arg-type]
    m.update(other)  # type: ignore[call-overload]


def _entries(rt: Runtime, m: dict[Any, Any]) -> list[Entry]:
    rt.exotic = True
    return rt.collection([Entry(k, v) for k, v in m.items()])  # type: ignore[no-any-return]


def _sort_by_key(rt: Runtime, m: dict[Any, Any], asc: object = True) -> None:
    keys = list(m)
    keys.sort(key=_sort_key(keys), reverse=not flag(asc, "asc"))
    ordered = {k: m[k] for k in keys}
    m.clear()
    m.update(ordered)


def _sort_by_value(rt: Runtime, m: dict[Any, Any], asc: object = True) -> None:
    key = _sort_key(list(m.values()))
    ordered = dict(sorted(m.items(), key=lambda kv: key(kv[1]), reverse=not flag(asc, "asc")))
    m.clear()
    m.update(ordered)


def _invert(rt: Runtime, m: dict[Any, Any]) -> None:
    counts: dict[str, int] = {}
    for v in m.values():
        counts[to_str(v)] = counts.get(to_str(v), 0) + 1
    out: dict[Any, Any] = {}
    for k, v in m.items():
        if counts[to_str(v)] == 1:
            out[v] = k
        else:
            out.setdefault(v, []).append(k)
    m.clear()
    m.update(out)


def _map_reverse(rt: Runtime, m: dict[Any, Any]) -> None:
    ordered = dict(reversed(list(m.items())))
    m.clear()
    m.update(ordered)


def _map_slice(rt: Runtime, m: dict[Any, Any], start: object = 0, end: object = None) -> dict[Any, Any]:
    keys = list(m)
    b = _start(start, len(keys))
    e = len(keys) if end is None else _start(end, len(keys))
    return rt.collection({k: m[k] for k in keys[b:e]})  # type: ignore[no-any-return]


def _replace(rt: Runtime, m: dict[Any, Any], k: object, v: object) -> object:
    if k in m:
        return _put(rt, m, k, v)
    return None


MAP: dict[str, Fn] = {
    "get": lambda rt, m, k: m.get(k),
    "getOrDefault": lambda rt, m, k, d: m.get(k, d),
    "put": _put,
    "putIfAbsent": _put_if_absent,
    "putAll": _put_all,
    "containsKey": lambda rt, m, k: k in m,
    "containsValue": lambda rt, m, v: any(same(x, v) for x in m.values()),
    "keySet": lambda rt, m: rt.collection(list(m)),
    "keys": lambda rt, m: rt.collection(list(m)),
    "values": lambda rt, m: rt.collection(list(m.values())),
    "entrySet": _entries,
    "remove": lambda rt, m, k: m.pop(k, None),
    "replace": _replace,
    "size": lambda rt, m: len(m),
    "isEmpty": lambda rt, m: not m,
    "clear": lambda rt, m: m.clear(),
    "sortByKey": _sort_by_key,
    "sortByValue": _sort_by_value,
    "toSorted": _on_copy(_sort_by_key),
    "toSortedByKey": _on_copy(_sort_by_key),
    "toSortedByValue": _on_copy(_sort_by_value),
    "invert": _invert,
    "toInverted": _on_copy(_invert),
    "reverse": _map_reverse,
    "toReversed": _on_copy(_map_reverse),
    "slice": _map_slice,
    "clone": _copy,
    "toString": lambda rt, m: rt.string(to_str(m)),
    "equals": lambda rt, m, o: same(m, o),
    "memorySize": lambda rt, m: sum(sizeof(v) + sizeof(k) for k, v in m.items()),
}


def _set_value(rt: Runtime, e: Entry, v: object) -> object:
    rt.exotic = True
    old, e.value = e.value, v
    return old


ENTRY: dict[str, Fn] = {
    "getKey": lambda rt, e: e.key,
    "getValue": lambda rt, e: e.value,
    "setValue": _set_value,
    "toString": lambda rt, e: to_str(e),
    "equals": lambda rt, e, o: e == o,
}


def _number(kind: str) -> Fn:
    return lambda rt, v: cast(kind, v)


def _compare_number(rt: Runtime, v: object, other: object) -> int:
    x, y = real(v), real(other)
    return (x > y) - (x < y)


NUMBER: dict[str, Fn] = {
    "intValue": _number("int"),
    "longValue": _number("long"),
    "shortValue": _number("short"),
    "byteValue": _number("byte"),
    "doubleValue": _number("double"),
    "floatValue": _number("float"),
    "toString": lambda rt, v: to_str(v),
    "equals": lambda rt, v, o: same(v, o),
    "compareTo": _compare_number,
    "isNaN": lambda rt, v: v != v,
    "isInfinite": lambda rt, v: v in (float("inf"), float("-inf")),
}
BOOLEAN: dict[str, Fn] = {
    "booleanValue": lambda rt, v: v,
    "toString": lambda rt, v: to_str(v),
    "equals": lambda rt, v, o: same(v, o),
}

METHODS: dict[str, dict[type, tuple[Fn, int, int]]] = {}
"""method name -> receiver type -> (function, fewest arguments, most arguments)"""
for _types, _table in (((str,), STRING), ((list,), LIST), ((dict,), MAP), ((Entry,), ENTRY),
                       ((int, float), NUMBER), ((bool,), BOOLEAN), ((TbDate,), DATE_METHODS)):
    for _name, _fn in _table.items():
        _lo, _hi = arity(_fn)
        for _t in _types:
            METHODS.setdefault(_name, {})[_t] = (_fn, max(_lo - 1, 0), max(_hi - 1, 0))

